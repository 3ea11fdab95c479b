"""The rename against a real S3 server (moto on loopback): single, combine, parts, fallbacks, re-runs."""

from __future__ import annotations

import bz2
import csv
import gzip
import io
import json
import uuid

import pytest
import zstandard

from unload_assets.rename.step import RenameError, RenameRequest, SplitRefused, rename_unload
from unload_assets_tests.support.rename_helpers import (
    CallWatch,
    MiB,
    body,
    csv_rows,
    keys_under,
    run,
    sized,
    stage,
)


@pytest.fixture()
def out() -> str:
    """A fresh final-key folder per test (the S3 server is shared by the session)."""
    return f"exports/{uuid.uuid4().hex}/"


def test_single_staged_file_is_copied_to_exactly_the_final_key(s3, bucket, out):
    data = csv_rows(0, 50)
    staged = stage(s3, bucket, [data], parallel=False)
    result = run(s3, bucket, staged, out + "sales.csv", on_split="fail")
    assert result.mode == "single" and result.staged_files == 1 and result.client_bytes == 0
    assert [(o.key, o.size) for o in result.objects] == [(out + "sales.csv", len(data))]
    assert keys_under(s3, bucket, out) == [out + "sales.csv"]
    assert body(s3, bucket, out + "sales.csv") == data
    assert keys_under(s3, bucket, staged.prefix) == [] and result.staging_cleaned


def test_single_file_above_copy_limit_goes_multipart_server_side(s3, bucket, out):
    data = sized(16 * MiB, 1)
    staged = stage(s3, bucket, [data], parallel=False)
    watch = CallWatch()
    result = run(watch.attach(s3), bucket, staged, out + "big.txt", fmt="text", max_copy_size=6 * MiB,
                 max_part_size=15 * MiB)  # fmt: skip
    copies = [p["CopySourceRange"] for name, p in watch.calls if name == "UploadPartCopy"]
    assert copies == [f"bytes=0-{8 * MiB - 1}", f"bytes={8 * MiB}-{16 * MiB - 1}"]
    assert "CopyObject" not in watch.names() and result.client_bytes == 0
    assert body(s3, bucket, out + "big.txt") == data


def test_combine_text_keeps_manifest_order_and_skips_empty_pieces(s3, bucket, out):
    pieces = [b"1|a\n2|b\n", b"", b"3|c\n", b"4|d\n5|e\n"]
    staged = stage(s3, bucket, pieces, verbose=True)
    result = run(s3, bucket, staged, out + "t.txt", fmt="text")
    assert result.mode == "combine" and result.staged_files == 4
    assert body(s3, bucket, out + "t.txt") == b"".join(pieces)
    assert keys_under(s3, bucket, staged.prefix) == []


def test_a_combine_aborts_the_uploads_of_its_key_whose_creation_answer_was_lost(s3, bucket, out):
    # S3 created these uploads, the answers never came (boto3 created another one each time): nobody
    # knows their ids, and without a lifecycle rule they would stay open, and billed, for good.
    for _ in range(2):
        s3.create_multipart_upload(Bucket=bucket, Key=out + "t.txt")
    other = s3.create_multipart_upload(Bucket=bucket, Key=out + "t.txt.manifest")["UploadId"]
    staged = stage(s3, bucket, [b"1|a\n", b"2|b\n"])
    run(s3, bucket, staged, out + "t.txt", fmt="text")
    assert body(s3, bucket, out + "t.txt") == b"1|a\n2|b\n"
    left = s3.list_multipart_uploads(Bucket=bucket, Prefix=out).get("Uploads", [])
    # The key's only writer is the holder of its rename lock: every other upload of it is a stray.
    assert [(u["Key"], u["UploadId"]) for u in left] == [(out + "t.txt.manifest", other)]


def test_combine_csv_with_header_keeps_one_header(s3, bucket, out):
    head = b"id,name\n"
    pieces = [head + csv_rows(0, 3), head + csv_rows(3, 4), b"", head, head + csv_rows(7, 2)]
    staged = stage(s3, bucket, pieces)
    watch = CallWatch()
    result = run(watch.attach(s3), bucket, staged, out + "s.csv", header=True)
    text = body(s3, bucket, out + "s.csv")
    rows = list(csv.reader(io.StringIO(text.decode())))
    assert rows[0] == ["id", "name"] and [int(r[0]) for r in rows[1:]] == list(range(9))
    assert result.objects[0].size == len(text) == sum(map(len, pieces)) - 3 * len(head)
    reads = {(p["Key"], p.get("Range")) for name, p in watch.calls if name == "GetObject"}
    for key, piece in zip(staged.keys, pieces, strict=True):  # first lines come from small ranged GETs
        assert not piece or (key, f"bytes=0-{min(4096, len(piece)) - 1}") in reads


def test_header_only_pieces_give_a_header_only_file(s3, bucket, out):
    staged = stage(s3, bucket, [b"id,name\n", b"id,name\n", b""])
    run(s3, bucket, staged, out + "h.csv", header=True)
    assert body(s3, bucket, out + "h.csv") == b"id,name\n"


@pytest.mark.parametrize(
    ("compression", "pack", "unpack"),
    [
        ("gzip", gzip.compress, gzip.decompress),
        ("bzip2", bz2.compress, bz2.decompress),
        (
            "zstd",
            lambda b: zstandard.ZstdCompressor().compress(b),
            lambda b: (
                zstandard.ZstdDecompressor().stream_reader(io.BytesIO(b), read_across_frames=True).read()
            ),
        ),
    ],
)
def test_combine_compressed_members_concatenate_into_one_valid_stream(
    s3, bucket, out, compression, pack, unpack
):
    plain = [csv_rows(0, 100), csv_rows(100, 1), csv_rows(101, 40)]
    staged = stage(
        s3, bucket, [pack(p) for p in plain], suffix={"gzip": ".gz", "bzip2": ".bz2"}.get(compression, ".zst")
    )
    result = run(s3, bucket, staged, out + "s.csv.x", compression=compression)
    assert result.mode == "combine"
    assert unpack(body(s3, bucket, out + "s.csv.x")) == b"".join(plain)


def test_big_pieces_never_pass_through_the_client(s3, bucket, out):
    """PARALLEL ON with mixed sizes: big pieces are copied server-side, small ones buffered at the end."""
    small = [csv_rows(0, 5), csv_rows(5, 7), csv_rows(12, 3)]
    big = [sized(5 * MiB + 100, 1), sized(6 * MiB, 2)]
    pieces = [small[0], big[0], small[1], big[1], small[2]]
    staged = stage(s3, bucket, pieces)
    watch = CallWatch()
    result = run(watch.attach(s3), bucket, staged, out + "m.csv")
    downloaded = {p["Key"] for name, p in watch.calls if name == "GetObject"}
    assert not downloaded & {staged.keys[1], staged.keys[3]}
    assert result.client_bytes == 2 * sum(map(len, small))  # each small byte: one GET, one UploadPart
    assert body(s3, bucket, out + "m.csv") == big[0] + big[1] + b"".join(small)


def test_parallel_off_output_keeps_order_with_zero_client_bytes(s3, bucket, out):
    pieces = [sized(5 * MiB + 7, 1), sized(5 * MiB + 7, 2), csv_rows(0, 10)]
    staged = stage(s3, bucket, pieces, parallel=False)
    watch = CallWatch()
    result = run(watch.attach(s3), bucket, staged, out + "o.csv")
    assert result.client_bytes == 0 and "UploadPart" not in watch.names()
    assert body(s3, bucket, out + "o.csv") == b"".join(pieces)


def test_big_pieces_with_header_are_read_only_for_their_first_line(s3, bucket, out):
    head = b"id,payload\n"
    pieces = [head + sized(5 * MiB, 1), head + csv_rows(0, 4), head + sized(5 * MiB + 50, 2)]
    staged = stage(s3, bucket, pieces)
    watch = CallWatch()
    run(watch.attach(s3), bucket, staged, out + "h.csv", header=True)
    big_reads = [
        p.get("Range")
        for n, p in watch.calls
        if n == "GetObject" and p["Key"] in (staged.keys[0], staged.keys[2])
    ]
    assert big_reads == ["bytes=0-4095", "bytes=0-4095"]
    assert body(s3, bucket, out + "h.csv") == pieces[0] + pieces[2][len(head) :] + pieces[1][len(head) :]


def test_parts_are_named_in_manifest_order_with_a_copy_manifest(s3, bucket, out):
    pieces = [gzip.compress(csv_rows(i * 10, 10)) for i in range(3)]
    staged = stage(s3, bucket, pieces, suffix=".gz")
    final = out + "sales_2026-11-22.csv.gz"
    result = run(s3, bucket, staged, final, on_split="parts", compression="gzip")
    names = [out + f"sales_2026-11-22.part-00{i}.csv.gz" for i in (1, 2, 3)]
    assert [o.key for o in result.objects] == [*names, final + ".manifest"]
    assert keys_under(s3, bucket, out) == sorted([*names, final + ".manifest"])
    assert [body(s3, bucket, k) for k in names] == pieces
    manifest = json.loads(body(s3, bucket, final + ".manifest"))
    assert manifest == {
        "entries": [
            {"url": f"s3://{bucket}/{k}", "mandatory": True, "meta": {"content_length": len(p)}}
            for k, p in zip(names, pieces, strict=True)
        ]
    }
    assert result.mode == "parts" and result.fallback_reason is None and result.client_bytes == 0


@pytest.mark.parametrize(
    ("fmt", "compression", "header", "why"),
    [("parquet", None, False, "parquet"), ("csv", "gzip", True, "HEADER with gzip")],
)
def test_combine_falls_back_to_parts_where_it_cannot_be_valid(s3, bucket, out, fmt, compression, header, why):
    staged = stage(s3, bucket, [b"PAR1 one", b"PAR1 two"], suffix=".parquet")
    logged: list[str] = []
    result = run(s3, bucket, staged, out + "x.dat", fmt=fmt, compression=compression, header=header,
                 log=logged.append)  # fmt: skip
    assert result.mode == "parts" and why in (result.fallback_reason or "")
    assert any("writing 2 parts" in m and why in m for m in logged)
    assert [o.key for o in result.objects] == [
        out + "x.part-001.dat",
        out + "x.part-002.dat",
        out + "x.dat.manifest",
    ]
    # The fallback is recorded on the commit object, so a re-run after the fact reports it too.
    again = run(s3, bucket, staged, out + "x.dat", fmt=fmt, compression=compression, header=header)
    assert again.fallback_reason == result.fallback_reason and again.objects == result.objects


def test_fail_refuses_a_split_and_touches_nothing(s3, bucket, out):
    old = stage(s3, bucket, [b"old\n"])
    run(s3, bucket, old, out + "f.txt", fmt="text")
    staged = stage(s3, bucket, [b"a\n", b"b\n"])
    with pytest.raises(SplitRefused, match=r"2 files for s3://.*f\.txt.*untouched"):
        run(s3, bucket, staged, out + "f.txt", fmt="text", on_split="fail")
    assert body(s3, bucket, out + "f.txt") == b"old\n" and keys_under(s3, bucket, out) == [out + "f.txt"]
    assert len(keys_under(s3, bucket, staged.prefix)) == 3


def test_rerun_replaces_the_previous_output_exactly(s3, bucket, out):
    final = out + "r.csv"
    bystander = out + "r.part-notes.csv"  # same stem, not a part name: never ours to delete
    s3.put_object(Bucket=bucket, Key=bystander, Body=b"keep me")
    run(s3, bucket, stage(s3, bucket, [b"1\n", b"2\n", b"3\n"]), final, on_split="parts")
    assert len(keys_under(s3, bucket, out)) == 5
    result = run(s3, bucket, stage(s3, bucket, [b"4\n", b"5\n"]), final, on_split="parts")
    expected = [out + "r.part-001.csv", out + "r.part-002.csv", final + ".manifest"]
    assert keys_under(s3, bucket, out) == sorted([*expected, bystander])
    assert [o.key for o in result.objects] == expected
    assert [e["url"] for e in json.loads(body(s3, bucket, final + ".manifest"))["entries"]] == [
        f"s3://{bucket}/{k}" for k in expected[:2]
    ]
    run(s3, bucket, stage(s3, bucket, [b"6\n", b"7\n"]), final)  # combine: parts and manifest go
    assert keys_under(s3, bucket, out) == sorted([final, bystander]) and body(s3, bucket, final) == b"6\n7\n"
    run(s3, bucket, stage(s3, bucket, [b"8\n", b"9\n"]), final, on_split="parts")  # and back
    assert keys_under(s3, bucket, out) == sorted([*expected, bystander])


@pytest.mark.parametrize(("fmt", "pieces"), [("text", [b""]), ("csv", [b"", b"", b""]), ("json", [])])
def test_zero_rows_give_an_empty_object(s3, bucket, out, fmt, pieces):
    result = run(s3, bucket, stage(s3, bucket, pieces), out + "z", fmt=fmt)
    assert body(s3, bucket, out + "z") == b"" and [o.size for o in result.objects] == [0]


@pytest.mark.parametrize(
    ("compression", "read"),
    [("gzip", gzip.decompress), ("bzip2", bz2.decompress), ("zstd", lambda b: zstandard.decompress(b, 1))],
)
def test_zero_rows_without_a_staged_file_give_a_valid_empty_compressed_object(
    s3, bucket, out, compression, read
):
    # JSON UNLOAD writes no file for zero rows: the final key still gets a valid (empty) stream.
    result = run(s3, bucket, stage(s3, bucket, []), out + "z.json", fmt="json", compression=compression)
    data = body(s3, bucket, out + "z.json")
    assert result.mode == "single" and [o.size for o in result.objects] == [len(data)] and data
    assert read(data) == b""


def test_zero_rows_of_parquet_give_a_valid_file_with_the_columns_and_no_rows(s3, bucket, out):
    pq = pytest.importorskip("pyarrow.parquet")
    result = run(s3, bucket, stage(s3, bucket, [], verbose=True), out + "z.parquet", fmt="parquet")
    assert result.mode == "single" and [o.key for o in result.objects] == [out + "z.parquet"]
    table = pq.read_table(io.BytesIO(body(s3, bucket, out + "z.parquet")))
    assert table.num_rows == 0
    assert [(f.name, str(f.type)) for f in table.schema] == [("id", "int32"), ("n", "string")]


def test_zero_rows_of_parquet_without_a_schema_give_an_empty_copy_manifest(s3, bucket, out):
    # A manifest without VERBOSE has no columns to build the file from: an empty, COPY-loadable manifest.
    result = run(s3, bucket, stage(s3, bucket, []), out + "z.parquet", fmt="parquet")
    assert result.mode == "parts" and "no rows" in (result.fallback_reason or "")
    assert "schema" in (result.fallback_reason or "")
    assert json.loads(body(s3, bucket, out + "z.parquet.manifest")) == {"entries": []}


def test_more_than_1000_staged_files_are_deleted_in_batches(s3, bucket, out):
    # Many slices, few rows: most pieces are empty (and cost no GET), a few carry rows.
    pieces = [f"{i}\n".encode() if i % 100 == 7 else b"" for i in range(1001)]
    staged = stage(s3, bucket, pieces)
    watch = CallWatch()
    run(watch.attach(s3), bucket, staged, out + "many.txt", fmt="text", workers=8)
    batches = [len(p["Delete"]["Objects"]) for name, p in watch.calls if name == "DeleteObjects"]
    assert batches == [1000, 1, 1]  # data files, then the UNLOAD manifest on its own, last
    assert keys_under(s3, bucket, staged.prefix) == []
    assert body(s3, bucket, out + "many.txt") == b"".join(pieces)


def test_calling_again_after_success_is_a_no_op(s3, bucket, out):
    staged = stage(s3, bucket, [b"a\n", b"b\n"])
    first = run(s3, bucket, staged, out + "d.txt", fmt="text")
    logged: list[str] = []
    again = run(s3, bucket, staged, out + "d.txt", fmt="text", log=logged.append)
    assert again.objects == first.objects and again.mode == "combine" and again.staging_cleaned
    assert any("already renamed" in m for m in logged)


def test_missing_manifest_without_output_is_an_error(s3, bucket, out):
    with pytest.raises(RenameError, match="no UNLOAD manifest"):
        rename_unload(
            s3,
            RenameRequest(
                bucket=bucket,
                staging_prefix="_staging/none/",
                manifest_key="_staging/none/manifest",
                final_key=out + "n.csv",
                lock_key=f"_staging/_locks/{out}n.csv.lock",
                on_split="combine",
                fmt="csv",
                compression=None,
                header=False,
            ),
        )


def test_manifest_entries_outside_the_staging_prefix_are_refused(s3, bucket, out):
    elsewhere = stage(s3, bucket, [b"precious\n"])
    staged = stage(s3, bucket, [b"a\n"])
    doc = {"entries": [{"url": f"s3://{bucket}/{elsewhere.keys[0]}", "meta": {"content_length": 9}}]}
    s3.put_object(Bucket=bucket, Key=staged.manifest_key, Body=json.dumps(doc).encode())
    with pytest.raises(RenameError, match="outside"):
        run(s3, bucket, staged, out + "o.csv")
    assert body(s3, bucket, elsewhere.keys[0]) == b"precious\n"


def test_pieces_with_different_headers_are_not_combined(s3, bucket, out):
    staged = stage(s3, bucket, [b"id,name\n1,a\n", b"id,other\n2,b\n"])
    with pytest.raises(RenameError, match="not the header"):
        run(s3, bucket, staged, out + "x.csv", header=True)
    assert len(keys_under(s3, bucket, staged.prefix)) == 3 and keys_under(s3, bucket, out) == []
