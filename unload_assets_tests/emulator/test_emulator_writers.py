"""The emulator's output pieces on their own: names, compression bounds, rolling at MAXFILESIZE, S3 cleanup.

Commands are built directly (no parser) and files go to the real S3 server; MAXFILESIZE is set far
below Redshift's 5 MB floor so that splitting is cheap to exercise.
"""

from __future__ import annotations

import bz2
import gzip
import json
import os
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest
import zstandard
from hypothesis import given, settings
from hypothesis import strategies as st
from unload_assets_local.emulator.sql.translate import to_postgres
from unload_assets_local.emulator.unload import compress, manifest, render
from unload_assets_local.emulator.unload.columns import ColumnInfo
from unload_assets_local.emulator.unload.command import UnloadCommand
from unload_assets_local.emulator.unload.uploads import PART_SIZE, S3Target
from unload_assets_local.emulator.unload.writers import (
    FileResult,
    LineWriter,
    Naming,
    Output,
    hive_folder,
    suffix,
    utcnow,
)

DECOMPRESS = {None: lambda b: b, "gzip": gzip.decompress, "bzip2": bz2.decompress, "zstd": None}


def _unzstd(data: bytes) -> bytes:
    return zstandard.ZstdDecompressor().decompressobj().decompress(data)


def _cmd(**fields) -> UnloadCommand:
    return UnloadCommand(select="select 1", to=fields.pop("to", "s3://b/p/"), auth="iam_role", **fields)


_GZIP_POOL = ThreadPoolExecutor(2)


@pytest.fixture(scope="module")
def pools():
    cpu, io = ThreadPoolExecutor(4), ThreadPoolExecutor(4)
    yield cpu, io
    cpu.shutdown()
    io.shutdown()


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({}, ""),
        ({"compression": "gzip"}, ".gz"),
        ({"compression": "bzip2"}, ".bz2"),
        ({"compression": "zstd"}, ".zst"),
        ({"format": "parquet"}, ".parquet"),
        ({"format": "csv"}, ""),
        ({"format": "json"}, ""),
        ({"extension": "csv"}, ".csv"),
        ({"extension": "csv", "compression": "gzip"}, ".csv.gz"),
        ({"extension": "csv.gz", "compression": "gzip"}, ".csv.gz"),
        ({"extension": ".txt"}, ".txt"),
    ],
)
def test_suffix(fields, expected):
    assert suffix(_cmd(**fields)) == expected


def test_names_parallel_on_off_and_partitioned():
    assert Naming(_cmd(to="s3://b/venue")).key(0, 1) == "venue0000_part_01"
    assert Naming(_cmd(to="s3://b/dir/")).key(3, 0) == "dir/0003_part_00"
    assert Naming(_cmd(to="s3://b/key", parallel=False)).key(0, 2) == "key002"
    partitioned = Naming(_cmd(to="s3://b/out", partition_by=("d",), compression="gzip"))
    assert partitioned.key(1, 0, "d=2024-01-01/") == "out/d=2024-01-01/0001_part_00.gz"
    assert partitioned.manifest_key == "out/manifest"
    assert Naming(_cmd(to="s3://b/venue_")).manifest_key == "venue_manifest"


def test_hive_folder_escapes_and_null():
    assert hive_folder(("a", "b"), (b"x/y=1", None)) == "a=x%2Fy%3D1/b=__HIVE_DEFAULT_PARTITION__/"
    assert hive_folder(("t",), (b"2024-01-01 10:00:00",)) == "t=2024-01-01 10%3A00%3A00/"


@pytest.mark.parametrize("kind", ["gzip", "bzip2", "zstd", None])
@settings(max_examples=15, deadline=None)
@given(chunks=st.lists(st.binary(min_size=0, max_size=40_000), max_size=6))
def test_compressor_bound_holds_and_stream_is_valid(kind, chunks):
    comp = compress.make(kind, _GZIP_POOL)
    out = b""
    for i, chunk in enumerate(chunks):
        bound = comp.bound(len(chunk))  # how much the file may still grow if it ends after `chunk`
        piece = comp.compress(chunk)
        if i == len(chunks) - 1:
            piece += comp.finish()
        assert len(piece) <= bound
        out += piece
    if not chunks:
        out = comp.finish()
    assert (DECOMPRESS[kind] or _unzstd)(out) == b"".join(chunks)


@pytest.mark.parametrize("kind", ["gzip", "zstd", "bzip2"])
def test_bound_covers_finish(kind):
    comp = compress.make(kind)
    data = os.urandom(100_000)
    budget = comp.bound(len(data))
    assert len(comp.compress(data)) + len(comp.finish()) <= budget


@pytest.mark.parametrize("kind", [None, "gzip", "bzip2", "zstd"])
def test_line_writer_rolls_below_maxfilesize(s3_server, pools, kind):
    """Incompressible rows, a 64 KiB limit: several files, none over it, each a whole stream."""
    cpu, io = pools
    client, prefix = s3_server.client(), f"writers/{uuid.uuid4().hex}/"
    limit = 64 * 1024
    cmd = _cmd(to=f"s3://{s3_server.bucket}/{prefix}", compression=kind, maxfilesize=limit, header=True)
    output = Output(cmd, S3Target(client, s3_server.bucket, {}, io), b"id|value\n", cpu)
    writer = LineWriter(output, slice_no=2)
    rows = [f"{i}|{os.urandom(60).hex()}\n".encode() for i in range(2500)]
    for start in range(0, len(rows), 700):
        writer.write(rows[start : start + 700])
    writer.close()

    files = sorted(output.files, key=lambda f: f.key)
    assert len(files) >= 3
    assert [f.key for f in files] == [f"{prefix}0002_part_{i:02d}{suffix(cmd)}" for i in range(len(files))]
    got = []
    for f in files:
        body = client.get_object(Bucket=s3_server.bucket, Key=f.key)["Body"].read()
        assert len(body) == f.size <= limit
        text = (DECOMPRESS[kind] or _unzstd)(body)
        lines = text.splitlines(keepends=True)
        assert lines[0] == b"id|value\n"
        assert f.records == len(lines)
        got += lines[1:]
    assert got == rows


def test_one_row_larger_than_the_limit_gets_its_own_file(s3_server, pools):
    cpu, io = pools
    cmd = _cmd(to=f"s3://{s3_server.bucket}/big/{uuid.uuid4().hex}/", maxfilesize=1000, parallel=False)
    output = Output(cmd, S3Target(s3_server.client(), s3_server.bucket, {}, io), None, cpu)
    writer = LineWriter(output, 0)
    writer.write([b"a\n", b"x" * 5000 + b"\n", b"b\n"])
    writer.close()
    assert [f.records for f in sorted(output.files, key=lambda f: f.key)] == [1, 1, 1]


def test_abort_all_removes_open_uploads_and_finished_objects(s3_server, pools):
    _, io = pools
    client, prefix = s3_server.client(), f"abort/{uuid.uuid4().hex}/"
    target = S3Target(client, s3_server.bucket, {}, io)
    done = target.open(prefix + "done")
    done.write(b"finished")
    done.close()
    big = target.open(prefix + "big")
    big.write(os.urandom(PART_SIZE + 10))  # one part uploaded, upload still open
    target.abort_all()
    assert client.list_objects_v2(Bucket=s3_server.bucket, Prefix=prefix).get("KeyCount", 0) == 0
    uploads = client.list_multipart_uploads(Bucket=s3_server.bucket, Prefix=prefix).get("Uploads", [])
    assert uploads == []


def test_multipart_object_and_kms_arguments(s3_server, pools):
    _, io = pools
    client, key = s3_server.client(), f"mp/{uuid.uuid4().hex}"
    extra = {"ServerSideEncryption": "aws:kms", "SSEKMSKeyId": "alias/unload"}
    stream = S3Target(client, s3_server.bucket, extra, io).open(key)
    data = os.urandom(2 * PART_SIZE + 123)
    for start in range(0, len(data), 1 << 20):
        stream.write(data[start : start + (1 << 20)])
    assert stream.close() == len(data)
    head = client.head_object(Bucket=s3_server.bucket, Key=key)
    assert head["ContentLength"] == len(data)
    assert head["ServerSideEncryption"] == "aws:kms"
    assert head["SSEKMSKeyId"] == "alias/unload"


def test_verbose_manifest_document():
    cols = [
        ColumnInfo("id", 23, -1),
        ColumnInfo("name", 1043, 64),
        ColumnInfo("amount", 1700, (12 << 16 | 2) + 4),
    ]
    now = utcnow()
    files = [
        FileResult("p/0001_part_00", "s3://b/p/0001_part_00", 20, 3, 1, now, now),
        FileResult("p/0000_part_00", "s3://b/p/0000_part_00", 10, 2, 0, now, now),
    ]
    doc = json.loads(manifest.manifest(files, cols, verbose=True))
    assert [e["url"] for e in doc["entries"]] == ["s3://b/p/0000_part_00", "s3://b/p/0001_part_00"]
    assert doc["entries"][0]["meta"] == {"content_length": 10, "record_count": 2}
    assert doc["meta"] == {"content_length": 30, "record_count": 5}
    assert doc["author"] == {"name": "Amazon Redshift", "version": "1.0.0"}
    assert doc["schema"]["elements"] == [
        {"name": "id", "type": {"base": "integer"}},
        {"name": "name", "type": {"base": "character varying", "max_length": 60}},
        {"name": "amount", "type": {"base": "numeric", "precision": 12, "scale": 2}},
    ]
    plain = json.loads(manifest.manifest(files, cols, verbose=False))
    assert plain == {
        "entries": [
            {"url": e["url"], "meta": {"content_length": e["meta"]["content_length"]}} for e in doc["entries"]
        ]
    }


def test_header_line_quoting():
    names = ["id", 'say "hi"', "a|b"]
    assert render.header_line(_cmd(format="csv"), names) == b'id,"say ""hi""",a|b\n'
    assert render.header_line(_cmd(addquotes=True, escape=True), names) == b'"id"|"say \\"hi\\""|"a\\|b"\n'


def test_transpile_patches_what_postgres_refuses():
    assert to_postgres("select listagg(x, ',') within group (order by x) from t") == (
        "SELECT STRING_AGG(x, ',' ORDER BY x) FROM t"
    )
    assert to_postgres("select isnull(a, 0) from t") == "SELECT COALESCE(a, 0) FROM t"
    assert to_postgres(r"select 'c:\\tmp'") == r"SELECT 'c:\tmp'"  # standard-conforming output
    assert to_postgres("select from where (") is None
