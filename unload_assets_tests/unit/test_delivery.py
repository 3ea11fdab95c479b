"""The delivery record round-trips through metadata, and deliveries recorded under the former keys still
read (history written before the keys were named after their fields)."""

from __future__ import annotations

import dagster as dg

from unload_assets.delivery import (
    CLIENT_BYTES,
    DELIVERED_AS,
    FINAL_KEY,
    QUERY_ID,
    ROWS,
    STAGING_URI,
    URI,
    Delivery,
)
from unload_assets.rename import FinalObject

PARTS = Delivery(
    target="sales",
    partition="2026-11-22",
    bucket="b",
    primary_key="out/sales.csv.manifest",
    final_key="out/sales.csv",
    objects=(FinalObject("out/sales.part-001.csv", 10), FinalObject("out/sales.csv.manifest", 3)),
    rows=7,
    bytes=10,
    delivered_as="parts",
    staged_files=2,
    staging_uri="s3://b/_staging/sales/2026-11-22/run/",
    staging_cleaned=True,
    client_bytes=5,
    query_id=42,
    statement="UNLOAD ('select 1') TO '...'",
)


def test_a_delivery_reads_back_what_it_wrote_under_keys_named_after_its_fields() -> None:
    metadata = PARTS.to_metadata()
    assert Delivery.from_metadata(metadata) == PARTS
    assert (metadata[FINAL_KEY], metadata[DELIVERED_AS], metadata[STAGING_URI]) == (
        "out/sales.csv",
        "parts",
        "s3://b/_staging/sales/2026-11-22/run/",
    )
    assert metadata[URI] == "s3://b/out/sales.csv.manifest" and metadata[ROWS] == dg.MetadataValue.int(7)
    assert {"rows", "s3_uri", "finalized_as", "staging_prefix", "rename_client_bytes"}.isdisjoint(metadata)


def test_a_delivery_recorded_under_the_former_keys_still_reads() -> None:
    former = {
        "s3_uri": "s3://b/out/sales.csv.manifest",
        "final_objects": [
            {"key": "out/sales.part-001.csv", "size": 10},
            {"key": "out/sales.csv.manifest", "size": 3},
        ],
        "partition": "2026-11-22",
        "rows": 7,
        "bytes": 10,
        "finalized_as": "parts",
        "staged_files": 2,
        "staging_prefix": "s3://b/_staging/sales/2026-11-22/run/",
        "staging_cleaned": True,
        "rename_client_bytes": 5,
        "redshift_query_id": 42,
        "statement": "```sql\nUNLOAD ('select 1') TO '...'\n```",
        "target": "sales",
    }
    assert Delivery.from_metadata(former) == PARTS  # the final key too, from the parts' manifest
    assert {CLIENT_BYTES, QUERY_ID}.isdisjoint(former)
