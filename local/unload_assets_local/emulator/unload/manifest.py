"""The MANIFEST object Redshift writes after the data files, plain or VERBOSE."""

from __future__ import annotations

import json
from typing import Any

from unload_assets_local.emulator.unload.columns import ColumnInfo
from unload_assets_local.emulator.unload.writers import FileResult

AUTHOR = {"name": "Amazon Redshift", "version": "1.0.0"}


def manifest(files: list[FileResult], columns: list[ColumnInfo], *, verbose: bool) -> bytes:
    """Entries in key order; VERBOSE adds record counts, totals, the schema and the author."""
    entries: list[dict[str, Any]] = []
    for f in sorted(files, key=lambda f: f.key):
        meta: dict[str, Any] = {"content_length": f.size}
        if verbose:
            meta["record_count"] = f.records
        entries.append({"url": f.url, "meta": meta})
    doc: dict[str, Any] = {"entries": entries}
    if verbose:
        doc["schema"] = {"elements": [c.schema_element() for c in columns]}
        doc["meta"] = {
            "content_length": sum(f.size for f in files),
            "record_count": sum(f.records for f in files),
        }
        doc["author"] = AUTHOR
    return (json.dumps(doc, indent=2) + "\n").encode()
