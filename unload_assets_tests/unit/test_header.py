"""The header line the rename writes on top of a combined CSV or text output: pure, no servers."""

from __future__ import annotations

import bz2
import gzip
import io

import pytest
import zstandard

from unload_assets.catalogue import UnloadTarget
from unload_assets.rename.header import (
    HeaderStyle,
    column_names,
    compressed_member,
    zstd_raw_frame,
)


@pytest.mark.parametrize(
    ("style", "names", "line"),
    [
        (HeaderStyle("csv"), ["id", "name"], b"id,name\n"),
        (HeaderStyle("csv"), ["a,b", 'say "hi"', "x"], b'"a,b","say ""hi""",x\n'),
        (HeaderStyle("csv", ";"), ["a,b", "c;d"], b'a,b;"c;d"\n'),
        (HeaderStyle("csv"), ["two\nlines"], b'"two\nlines"\n'),
        (HeaderStyle("text"), ["id", "a,b"], b"id|a,b\n"),
        (HeaderStyle("text", "~", addquotes=True), ["id", "n"], b'"id"~"n"\n'),
        (HeaderStyle("csv"), ["prénom"], "prénom\n".encode()),
    ],
)
def test_header_line_is_written_as_unload_header_writes_it(style, names, line):
    assert style.line(names) == line


def test_column_names_come_from_the_verbose_schema():
    schema = {"elements": [{"name": "id", "type": {"base": "integer"}}, {"name": "n", "type": {}}]}
    assert column_names(schema) == ["id", "n"]
    for bad in (None, {}, {"elements": []}, {"elements": [{"type": {}}]}):
        with pytest.raises(ValueError, match="schema"):
            column_names(bad)


@pytest.mark.parametrize("compression", [None, "gzip", "bzip2", "zstd"])
def test_a_header_member_concatenates_with_the_data_into_one_valid_stream(compression):
    header, data = b"id,name\n", b"1,a\n2,b\n" * 1000
    compress = {
        None: lambda b: b,
        "gzip": gzip.compress,
        "bzip2": bz2.compress,
        "zstd": zstandard.ZstdCompressor().compress,
    }[compression]
    joined = compressed_member(header, compression) + compress(data[:3000]) + compress(data[3000:])
    decompress = {
        None: lambda b: b,
        "gzip": gzip.decompress,
        "bzip2": bz2.decompress,
        "zstd": lambda b: (
            zstandard.ZstdDecompressor().stream_reader(io.BytesIO(b), read_across_frames=True).read()
        ),
    }[compression]
    assert decompress(joined) == header + data
    assert compressed_member(header, compression) == compressed_member(header, compression)  # no time stamp


@pytest.mark.parametrize("size", [0, 1, 255, 256, 128 * 1024, 128 * 1024 + 1, 300_000])
def test_zstd_raw_frame_is_read_by_the_reference_library(size):
    data = bytes(range(256)) * (size // 256 + 1)
    frame = zstd_raw_frame(data[:size])
    assert zstandard.ZstdDecompressor().decompress(frame) == data[:size]
    assert zstandard.frame_content_size(frame) == size


@pytest.mark.parametrize(
    ("fmt", "header", "on_split", "expected"),
    [
        ("csv", True, "combine", True),
        ("text", True, "combine", True),
        ("csv", True, "parts", False),
        ("csv", True, "fail", False),
        ("csv", False, "combine", False),
        ("json", False, "combine", False),
    ],
)
def test_who_writes_the_header(fmt, header, on_split, expected):
    target = UnloadTarget.model_validate(
        {"name": "t", "description": "d", "sql": "select 1", "key_template": f"x/t.{fmt}"}
        | {"format": fmt, "header": header, "on_split": on_split}
    )
    assert target.header_by_rename is expected
