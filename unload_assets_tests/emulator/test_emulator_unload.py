"""UNLOAD through the Redshift emulator, end to end: psycopg2 -> proxy -> real PostgreSQL, files on the
real S3 server. What lands in S3 is parsed back and compared with the same query run on PostgreSQL.
"""

from __future__ import annotations

import bz2
import csv
import gzip
import io
import json
import re
import threading
import time
import uuid
from decimal import Decimal

import psycopg2
import pytest
import zstandard
from unload_assets_local.emulator.server import RedshiftEmulator

from unload_assets_tests.support.emulator_helpers import connect, last_unload, objects, unload

AWKWARD_ROWS = [
    (1, 'say "hi", ok', "plain", Decimal("1.50"), 0.25, "2024-01-31", "2024-01-31 10:11:12.5", True),
    (2, "back\\slash | pipe", "", Decimal("-3.00"), None, None, None, False),
    (3, "line1\nline2\r\nend", None, None, 1e20, "1999-12-31", "2000-01-01 00:00:00", None),
    (4, "ünïcödé ✓ 中文", "tab\there", Decimal("0.00"), -0.5, "2024-02-29", None, True),
    (5, None, "it's", Decimal("99999999.99"), 3.0, "2024-03-01", "2024-03-01 23:59:59", False),
    (6, "", "x", Decimal("7.25"), 2.5, "2024-03-02", "2024-03-02 01:02:03", True),
]
AWKWARD_SELECT = "select id, txt, vc, num, flt, d, ts, b from emu_awkward order by id"
# The same rows as PostgreSQL prints them (booleans as t/f, like Redshift's text output).
AWKWARD_TEXT = (
    "select id::text, txt, vc, num::text, flt::text, d::text, ts::text,"
    " case b when true then 't' when false then 'f' end from emu_awkward order by id"
)


@pytest.fixture(scope="module")
def pg(pg_cluster):
    """A direct PostgreSQL connection (the reference), with the module's tables."""
    conn = psycopg2.connect(pg_cluster.dsn())
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute(
            "drop table if exists emu_awkward; create table emu_awkward (id int, txt text, vc varchar(20),"
            " num numeric(10,2), flt float8, d date, ts timestamp, b boolean)"
        )
        cur.executemany("insert into emu_awkward values (%s,%s,%s,%s,%s,%s,%s,%s)", AWKWARD_ROWS)
    yield conn
    conn.close()


@pytest.fixture
def rs(emulator, pg_cluster, pg):
    conn = connect(emulator, pg_cluster)
    yield conn
    conn.close()


@pytest.fixture
def to(s3_server):
    return f"s3://{s3_server.bucket}/emu/{uuid.uuid4().hex}/"


def plain(name: str, body: bytes) -> bytes:
    if name.endswith(".gz"):
        return gzip.decompress(body)
    if name.endswith(".bz2"):
        return bz2.decompress(body)
    if name.endswith(".zst"):
        return zstandard.ZstdDecompressor().decompressobj().decompress(body)
    return body


def data_files(found: dict[str, bytes]) -> dict[str, bytes]:
    return {k: v for k, v in found.items() if not k.endswith("manifest")}


def reference(pg, select: str) -> list[tuple]:
    with pg.cursor() as cur:
        cur.execute(select)
        return cur.fetchall()


# ---- what the client sees ---------------------------------------------------------------------------


def test_notice_tag_and_session_functions(rs, to, s3_server, emulator, pg_cluster):
    assert last_unload(rs) == (0, -1)
    unload(rs, "select g from generate_series(1, 10) g", to)
    assert rs.notices[-1] == "INFO:  UNLOAD completed, 10 record(s) unloaded successfully.\n"
    count, query_id = last_unload(rs)
    assert count == 10 and query_id > 0
    with rs.cursor() as cur:
        cur.execute(
            "select status, unloaded_rows, unloaded_files_count, unloaded_files_size, unloaded_location,"
            " file_format from sys_unload_history where query_id = %s",
            (query_id,),
        )
        status, rows, nfiles, size, location, fmt = cur.fetchone()
        cur.execute(
            "select slice, path, line_count, transfer_size, pid = pg_backend_pid() from stl_unload_log"
            " where query = %s order by path",
            (query_id,),
        )
        log = cur.fetchall()
    files = objects(s3_server, to)
    assert (status, rows, nfiles, location, fmt) == ("completed", 10, len(files), to, "Text")
    assert size == sum(len(b) for b in files.values())
    assert [row[1] for row in log] == [to + key for key in sorted(files)]
    assert [row[0] for row in log] == [int(key[:4]) for key in sorted(files)]
    assert sum(row[2] for row in log) == 10
    assert [row[3] for row in log] == [len(files[k]) for k in sorted(files)]
    assert all(row[4] for row in log)

    # Another session has its own counters.
    other = connect(emulator, pg_cluster)
    assert last_unload(other) == (0, -1)
    other.close()


def test_failed_unload_resets_count_but_syntax_error_does_not(rs, to, s3_server):
    unload(rs, "select 1", to)
    assert last_unload(rs)[0] == 1
    with pytest.raises(psycopg2.Error) as syntax:
        rs.cursor().execute("UNLOAD ('select 1') TO 's3://x/' IAM_ROLE default PARALLEL SIDEWAYS")
    assert syntax.value.pgcode == "XX000"
    assert last_unload(rs)[0] == 1
    with pytest.raises(psycopg2.Error, match="not empty"):
        unload(rs, "select 1", to)
    count, query_id = last_unload(rs)
    assert count == 0 and query_id > 0


# ---- object names and sizes -------------------------------------------------------------------------


def test_parallel_on_and_off_names(rs, to, s3_server):
    unload(rs, "select g from generate_series(1, 100) g", to + "on_")
    unload(rs, "select g from generate_series(1, 100) g", to + "off_", "PARALLEL OFF")
    names = sorted(data_files(objects(s3_server, to)))
    assert names == ["off_000", "on_0000_part_00", "on_0001_part_00", "on_0002_part_00", "on_0003_part_00"]


def test_split_at_maxfilesize(rs, to, s3_server, pg):
    # ~14.4 MB of text: three files under a 5 MB limit
    select = (
        "select g, md5(g::text) || md5((g + 1)::text) as filler from generate_series(1, 200000) g order by g"
    )
    unload(rs, select, to, "PARALLEL OFF MAXFILESIZE 5 MB MANIFEST VERBOSE")
    found = objects(s3_server, to)
    files = data_files(found)
    assert sorted(files) == ["000", "001", "002"]
    assert all(len(body) <= 5 * 1024 * 1024 for body in files.values())
    assert all(body.endswith(b"\n") for body in files.values())
    lines = b"".join(files[k] for k in sorted(files)).decode().splitlines()
    assert lines == [f"{g}|{f}" for g, f in reference(pg, select)]  # rows intact and in order
    doc = json.loads(found["manifest"])
    assert [e["meta"]["content_length"] for e in doc["entries"]] == [len(files[k]) for k in sorted(files)]
    assert sum(e["meta"]["record_count"] for e in doc["entries"]) == last_unload(rs)[0] == 200000


@pytest.mark.parametrize(
    ("options", "suffix", "fmt"),
    [
        ("GZIP", ".gz", "text"),
        ("BZIP2", ".bz2", "text"),
        ("ZSTD", ".zst", "text"),
        ("FORMAT CSV GZIP", ".gz", "csv"),
        ("FORMAT JSON ZSTD", ".zst", "json"),
        ("FORMAT PARQUET", ".parquet", "parquet"),
        ("CSV", "", "csv"),
        ("JSON", "", "json"),
        ("EXTENSION 'csv' CSV", ".csv", "csv"),
        ("EXTENSION 'csv' CSV GZIP", ".csv.gz", "csv"),
        ("EXTENSION 'csv.gz' CSV GZIP", ".csv.gz", "csv"),
    ],
)
def test_suffixes_and_extension(rs, to, s3_server, options, suffix, fmt):
    unload(rs, "select g as n, 'row ' || g as label from generate_series(1, 50) g", to, options)
    files = data_files(objects(s3_server, to))
    assert files and all(re.fullmatch(rf"\d{{4}}_part_\d{{2}}{re.escape(suffix)}", k) for k in files)
    if fmt == "parquet":
        import pyarrow.parquet as pq

        rows = [r for body in files.values() for r in pq.read_table(io.BytesIO(body)).to_pylist()]
        assert sorted(r["n"] for r in rows) == list(range(1, 51))
        return
    lines = [line for k, body in files.items() for line in plain(k, body).decode().splitlines()]
    assert len(lines) == 50
    if fmt == "json":
        assert sorted(json.loads(line)["n"] for line in lines) == list(range(1, 51))


def test_header_on_every_file(rs, to, s3_server):
    unload(
        rs, "select g as id, 'v' as value from generate_series(1, 40) g", to, "CSV HEADER MANIFEST VERBOSE"
    )
    found = objects(s3_server, to)
    files = data_files(found)
    assert len(files) == 4 and all(b.startswith(b"id,value\n") for b in files.values())
    doc = json.loads(found["manifest"])
    assert doc["meta"]["record_count"] == 40 + len(files)  # header lines count as records


def test_manifest_plain_and_verbose(rs, to, s3_server):
    select = (
        "select g::int as id, ('n' || g)::varchar(60) as name, (g / 3.0)::numeric(12,2) as amount"
        " from generate_series(1, 25) g"
    )
    unload(rs, select, to + "plain/", "MANIFEST")
    unload(rs, select, to + "verbose/", "MANIFEST VERBOSE GZIP")
    client = s3_server.client()
    plain_doc = json.loads(objects(s3_server, to + "plain/")["manifest"])
    assert set(plain_doc) == {"entries"}
    for entry in plain_doc["entries"]:
        assert set(entry) == {"url", "meta"} and set(entry["meta"]) == {"content_length"}
        key = entry["url"][len(f"s3://{s3_server.bucket}/") :]
        assert (
            client.head_object(Bucket=s3_server.bucket, Key=key)["ContentLength"]
            == entry["meta"]["content_length"]
        )
    doc = json.loads(objects(s3_server, to + "verbose/")["manifest"])
    assert doc["author"] == {"name": "Amazon Redshift", "version": "1.0.0"}
    assert doc["schema"]["elements"] == [
        {"name": "id", "type": {"base": "integer"}},
        {"name": "name", "type": {"base": "character varying", "max_length": 60}},
        {"name": "amount", "type": {"base": "numeric", "precision": 12, "scale": 2}},
    ]
    assert sum(e["meta"]["record_count"] for e in doc["entries"]) == doc["meta"]["record_count"] == 25
    assert doc["meta"]["record_count"] == last_unload(rs)[0]
    sizes = {e["url"]: e["meta"]["content_length"] for e in doc["entries"]}
    assert doc["meta"]["content_length"] == sum(sizes.values())
    for url, size in sizes.items():
        key = url[len(f"s3://{s3_server.bucket}/") :]
        assert client.head_object(Bucket=s3_server.bucket, Key=key)["ContentLength"] == size


def test_zero_rows(rs, to, s3_server):
    empty = "select g from generate_series(1, 0) g"
    unload(rs, empty, to + "text_", "MANIFEST")
    unload(rs, empty, to + "csv_", "CSV HEADER PARALLEL OFF MANIFEST")
    unload(rs, empty, to + "json_", "JSON MANIFEST")
    found = objects(s3_server, to)
    assert found["text_0000_part_00"] == b""
    assert found["csv_000"] == b"g\n"
    assert [e["url"] for e in json.loads(found["text_manifest"])["entries"]] == [to + "text_0000_part_00"]
    assert json.loads(found["json_manifest"]) == {"entries": []}
    assert not [k for k in found if k.startswith("json_") and k != "json_manifest"]
    assert rs.notices[-1] == "INFO:  UNLOAD completed, 0 record(s) unloaded successfully.\n"


def test_zero_rows_of_parquet_write_one_file_holding_the_schema(rs, to, s3_server):
    pq = pytest.importorskip("pyarrow.parquet")
    unload(rs, "select g, g::text as t from generate_series(1, 0) g", to + "pq_", "FORMAT PARQUET MANIFEST")
    found = objects(s3_server, to)
    [entry] = json.loads(found["pq_manifest"])["entries"]
    table = pq.read_table(io.BytesIO(found[entry["url"][len(to) :]]))
    assert table.num_rows == 0 and table.schema.names == ["g", "t"]


def test_overwrite_rules(rs, to, s3_server):
    select = "select g from generate_series(1, 20) g"
    unload(rs, select, to)  # four slice files
    with pytest.raises(psycopg2.Error, match="Specified unload destination on S3 is not empty") as refused:
        unload(rs, select, to)
    assert refused.value.pgcode == "XX000"
    unload(rs, select, to, "ALLOWOVERWRITE PARALLEL OFF")
    assert sorted(objects(s3_server, to)) == [
        "000",
        *[f"{s:04d}_part_00" for s in range(4)],
    ]  # stale parts stay
    unload(rs, select, to, "CLEANPATH PARALLEL OFF")
    assert sorted(objects(s3_server, to)) == ["000"]


def test_partition_by(rs, to, s3_server):
    select = (
        "select g as id, case when g % 3 = 0 then null else 'k/' || (g % 3) end as part, g * 2 as v"
        " from generate_series(1, 9) g"
    )
    unload(rs, select, to.rstrip("/") + "/out", "PARTITION BY (part) CSV MANIFEST PARALLEL OFF")
    found = objects(s3_server, to)
    assert sorted(found) == [
        "out/manifest",
        "out/part=__HIVE_DEFAULT_PARTITION__/000",
        "out/part=k%2F1/000",
        "out/part=k%2F2/000",
    ]
    assert found["out/part=k%2F1/000"] == b"1,2\n4,8\n7,14\n"  # the partition column is left out
    unload(rs, select, to + "inc/", "PARTITION BY (part) INCLUDE CSV")
    included = objects(s3_server, to + "inc/")
    rows = sorted(line for k, b in included.items() if "k%2F2" in k for line in b.decode().splitlines())
    assert rows == ["2,k/2,4", "5,k/2,10", "8,k/2,16"]


def test_kms_key_on_every_object(rs, to, s3_server):
    unload(rs, "select 1", to, "ENCRYPTED KMS_KEY_ID 'alias/unload-test' MANIFEST REGION 'us-east-1'")
    client = s3_server.client()
    prefix = to[len(f"s3://{s3_server.bucket}/") :]
    for item in client.list_objects_v2(Bucket=s3_server.bucket, Prefix=prefix)["Contents"]:
        head = client.head_object(Bucket=s3_server.bucket, Key=item["Key"])
        assert (head["ServerSideEncryption"], head["SSEKMSKeyId"]) == ("aws:kms", "alias/unload-test")


# ---- data round trips -------------------------------------------------------------------------------


def test_csv_round_trip(rs, pg, to, s3_server):
    unload(rs, AWKWARD_SELECT, to, "CSV HEADER PARALLEL OFF")
    body = objects(s3_server, to)["000"].decode()
    rows = list(csv.reader(io.StringIO(body, newline="")))
    assert rows[0] == ["id", "txt", "vc", "num", "flt", "d", "ts", "b"]
    assert rows[1:] == [["" if v is None else v for v in row] for row in reference(pg, AWKWARD_TEXT)]
    assert ',"",' in body  # an empty string is quoted, NULL is not


def _split_escaped(text: str, delimiter: str = "|") -> list[list[str]]:
    """Parse Redshift's ESCAPE text output: backslash takes the next character literally."""
    rows, row, field, i = [], [], [], 0
    while i < len(text):
        ch = text[i]
        if ch == "\\":
            field.append(text[i + 1])
            i += 2
            continue
        if ch == delimiter:
            row.append("".join(field))
            field = []
        elif ch == "\n":
            row.append("".join(field))
            rows.append(row)
            row, field = [], []
        else:
            field.append(ch)
        i += 1
    return rows


def test_text_round_trip_with_escape_and_null_as(rs, pg, to, s3_server):
    unload(rs, AWKWARD_SELECT, to, "ESCAPE NULL AS '\\\\N' PARALLEL OFF")
    body = objects(s3_server, to)["000"].decode()
    # NULL AS '\N' is written as is: its backslash is not escaped, so it parses back as "N".
    assert _split_escaped(body) == [
        ["N" if v is None else v for v in row] for row in reference(pg, AWKWARD_TEXT)
    ]


def test_text_default_is_raw_and_addquotes_quotes(rs, to, s3_server):
    select = "select 'a|b' as x, null as y, 'q\"' as z"
    unload(rs, select, to + "raw/", "PARALLEL OFF")
    unload(rs, select, to + "quoted/", "ADDQUOTES PARALLEL OFF")
    assert objects(s3_server, to + "raw/")["000"] == b'a|b||q"\n'
    assert objects(s3_server, to + "quoted/")["000"] == b'"a|b"|""|"q""\n'


def test_json_round_trip(rs, pg, to, s3_server):
    unload(rs, AWKWARD_SELECT, to, "JSON PARALLEL OFF")
    lines = objects(s3_server, to)["000"].decode().splitlines()
    got = [json.loads(line, parse_float=Decimal) for line in lines]
    typed, text = reference(pg, AWKWARD_SELECT), reference(pg, AWKWARD_TEXT)
    for row, ref, ref_text in zip(got, typed, text, strict=True):
        assert list(row) == ["id", "txt", "vc", "num", "flt", "d", "ts", "b"]
        assert [row["id"], row["txt"], row["vc"], row["num"]] == list(ref[:4])  # numbers stay numbers
        assert (row["flt"] is None and ref[4] is None) or float(row["flt"]) == ref[4]
        # dates and timestamps as Redshift prints them; booleans as "t"/"f", NULL as null
        assert [row["d"], row["ts"], row["b"]] == list(ref_text[5:])


def test_parquet_round_trip(rs, pg, to, s3_server):
    import pyarrow.parquet as pq

    unload(rs, AWKWARD_SELECT, to, "PARQUET PARALLEL OFF")
    table = pq.read_table(io.BytesIO(objects(s3_server, to)["000.parquet"]))
    assert [str(t) for t in table.schema.types] == [
        "int32",
        "string",
        "string",
        "decimal128(10, 2)",
        "double",
        "date32[day]",
        "timestamp[us]",
        "bool",
    ]
    assert [tuple(r.values()) for r in table.to_pylist()] == reference(pg, AWKWARD_SELECT)


def test_redshift_functions_and_literals(rs, to, s3_server):
    select = (
        "select nvl(null::int, 7) as a, dateadd(day, 1, '2024-01-31'::date)::date as b,"
        " datediff(day, '2024-01-01'::date, '2024-03-01'::date) as c,"
        " (select listagg(x, ',') within group (order by x desc)"
        "  from (select 'p' as x union all select 'q') s) as d,"
        " getdate() is not null as e, 'c:\\\\tmp' as f, 'it\\'s' as g"
    )
    unload(rs, select, to, "PARALLEL OFF CSV")
    assert objects(s3_server, to)["000"] == b'7,2024-02-01,60,"q,p",t,c:\\tmp,it\'s\n'


def test_literal_rules_without_sqlglot(rs, to, s3_server):
    """PostgreSQL-only syntax sqlglot cannot read runs as written, still with Redshift's backslash rule."""
    unload(
        rs,
        "select 'c:\\\\tmp' as p, x from (values (1)) as v(x) where x operator(pg_catalog.=) 1",
        to,
        "PARALLEL OFF",
    )
    assert objects(s3_server, to)["000"] == b"c:\\tmp|1\n"


def test_runs_in_the_clients_session(rs, to, s3_server):
    rs.autocommit = False
    with rs.cursor() as cur:
        cur.execute("create temp table emu_session_tmp (v text); insert into emu_session_tmp values ('seen')")
        cur.execute("set local search_path = pg_temp, public")
        cur.execute(f"UNLOAD ('select v from emu_session_tmp') TO '{to}' IAM_ROLE default PARALLEL OFF")
        assert rs.get_transaction_status() == psycopg2.extensions.TRANSACTION_STATUS_INTRANS
        cur.execute("show standard_conforming_strings")
        assert cur.fetchone() == ("on",)
    rs.rollback()
    assert objects(s3_server, to)["000"] == b"seen\n"


def test_fixedwidth(rs, to, s3_server):
    unload(
        rs,
        "select 1 as a, 'xy' as b, null::text as c, 'toolong' as d",
        to,
        "FIXEDWIDTH 'a:3,b:4,c:2,d:3' PARALLEL OFF",
    )
    assert objects(s3_server, to)["000"] == b"1  xy    toolong\n"  # padded, never truncated
    with pytest.raises(psycopg2.Error, match="FIXEDWIDTH lists 1 column"):
        unload(rs, "select 1 as a, 2 as b", to + "bad/", "FIXEDWIDTH 'a:3'")


def test_stop_aborts_an_unload_in_flight(pg_cluster, s3_server, to):
    emu = RedshiftEmulator(
        pg_host="127.0.0.1", pg_port=pg_cluster.port, s3_endpoint_url=s3_server.endpoint_url, listen_port=0
    ).start()
    conn = connect(emu, pg_cluster)
    select = (
        "select g, case when g < 60000 then repeat(md5(g::text), 4) else pg_sleep(30)::text end"
        " from generate_series(1, 60000) g"
    )
    failure: list[BaseException] = []

    def run() -> None:
        try:
            unload(conn, select, to, "PARALLEL OFF MAXFILESIZE 5 MB")
        except BaseException as exc:  # noqa: BLE001 - checked below
            failure.append(exc)

    worker = threading.Thread(target=run)
    worker.start()
    deadline = time.monotonic() + 60
    while "000" not in objects(s3_server, to):
        assert time.monotonic() < deadline
        time.sleep(0.1)
    emu.stop()
    worker.join(30)
    assert failure and isinstance(failure[0], psycopg2.OperationalError)  # the connection was closed
    assert objects(s3_server, to) == {}
