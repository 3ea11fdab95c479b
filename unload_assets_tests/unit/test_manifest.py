"""Redshift manifests: what UNLOAD writes (plain and VERBOSE) and what COPY ... MANIFEST reads."""

from __future__ import annotations

import json
import uuid

import pytest

from unload_assets.rename.manifest import (
    ManifestError,
    ManifestNotFound,
    StagedFile,
    parse_copy_manifest,
    parse_unload_manifest,
    read_manifest,
    render_copy_manifest,
)

PLAIN = '{"entries":[{"url":"s3://b/p000","meta":{"content_length":53316}},{"url":"s3://b/p001","meta":{"content_length":7}}]}'
VERBOSE = json.dumps(
    {
        "entries": [
            {"url": "s3://b/venue_0000_part_00", "meta": {"content_length": 32295, "record_count": 10}},
            {"url": "s3://b/venue_0001_part_00", "meta": {"content_length": 32771, "record_count": 12}},
        ],
        "schema": {
            "elements": [
                {"name": "id", "type": {"base": "integer"}},
                {"name": "n", "type": {"base": "character varying", "max_length": 60}},
            ]
        },
        "meta": {"content_length": 65066, "record_count": 22},
        "author": {"name": "Amazon Redshift", "version": "1.0.0"},
    }
)


def test_plain_manifest_entries_in_order():
    assert parse_unload_manifest(PLAIN, bucket="b") == [
        {"key": "p000", "size": 53316, "record_count": None},
        {"key": "p001", "size": 7, "record_count": None},
    ]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("not json", "not JSON"),
        ('{"files": []}', '"entries"'),
        ('{"entries": [{"meta": {}}]}', '"url"'),
        ('{"entries": [{"url": "https://b/k"}]}', "s3://"),
        ('{"entries": [{"url": "s3://other/k"}]}', "bucket 'other'"),
        ('{"entries": [{"url": "s3://b/k", "meta": {"content_length": "9"}}]}', "non-negative integer"),
        ('{"entries": [{"url": "s3://b/k"}, {"url": "s3://b/k"}]}', "twice"),
    ],
)
def test_malformed_manifests_are_refused_with_a_reason(text, message):
    with pytest.raises(ManifestError, match=message):
        parse_unload_manifest(text, bucket="b")


def test_copy_manifest_shape_and_round_trip():
    text = render_copy_manifest("b", [("x.part-001.csv", 10), ("x.part-002.csv", 0)])
    assert json.loads(text) == {
        "entries": [
            {"url": "s3://b/x.part-001.csv", "mandatory": True, "meta": {"content_length": 10}},
            {"url": "s3://b/x.part-002.csv", "mandatory": True, "meta": {"content_length": 0}},
        ]
    }
    assert parse_copy_manifest(text, bucket="b") == [("x.part-001.csv", 10), ("x.part-002.csv", 0)]


def test_read_verbose_manifest_from_s3(s3_server):
    s3, bucket = s3_server.client(), s3_server.bucket
    key = f"_staging/m/{uuid.uuid4().hex}/manifest"
    s3.put_object(Bucket=bucket, Key=key, Body=VERBOSE.replace("s3://b/", f"s3://{bucket}/").encode())
    manifest = read_manifest(s3, bucket, key)
    assert manifest.entries == [
        StagedFile("venue_0000_part_00", 32295, 10),
        StagedFile("venue_0001_part_00", 32771, 12),
    ]
    assert (manifest.record_count, manifest.content_length) == (22, 65066)
    assert manifest.schema is not None and manifest.schema["elements"][0]["name"] == "id"


def test_read_manifest_heads_objects_whose_length_is_missing(s3_server):
    s3, bucket = s3_server.client(), s3_server.bucket
    prefix = f"_staging/m/{uuid.uuid4().hex}/"
    s3.put_object(Bucket=bucket, Key=prefix + "000", Body=b"12345")
    doc = {"entries": [{"url": f"s3://{bucket}/{prefix}000"}]}
    s3.put_object(Bucket=bucket, Key=prefix + "manifest", Body=json.dumps(doc).encode())
    assert read_manifest(s3, bucket, prefix + "manifest").entries == [StagedFile(prefix + "000", 5, None)]


def test_missing_manifest_is_reported_as_such(s3_server):
    with pytest.raises(ManifestNotFound, match="no UNLOAD manifest at s3://"):
        read_manifest(s3_server.client(), s3_server.bucket, "_staging/none/manifest")
