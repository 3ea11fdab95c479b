"""awswrangler (AWS SDK for pandas), unmodified, against the emulator and the S3 server: `redshift.copy`
(a DataFrame as Parquet on S3, then COPY through redshift_connector's extended protocol),
`copy_from_files`, `to_sql`, `read_sql_query`, `unload` (UNLOAD to Parquet, read back); every round
trip gives back the DataFrame it started from."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterator

import awswrangler as wr
import boto3
import pandas as pd
import pytest
import redshift_connector

from unload_assets_tests.support.emulator_helpers import redshift_connector_to

pytestmark = pytest.mark.stack

ROLE = "arn:aws:iam::123456789012:role/unload-local"
FRAME = pd.DataFrame(
    {
        "id": [1, 2, 3],
        "name": ["ada", 'comma, and "quotes"', None],
        "amount": [10.5, -3.25, 0.0],
        "day": [dt.date(2026, 1, 2), dt.date(2026, 2, 3), None],
        "ok": [True, False, None],
    }
)


@pytest.fixture(scope="module")
def session(s3_server) -> Iterator[boto3.Session]:
    saved = wr.config.s3_endpoint_url
    wr.config.s3_endpoint_url = s3_server.endpoint_url
    yield boto3.Session(region_name="us-east-1")  # keys: the S3 server's, from the environment
    wr.config.s3_endpoint_url = saved


@pytest.fixture()
def con(emulator, pg_cluster) -> Iterator[redshift_connector.Connection]:
    conn = redshift_connector_to(emulator, pg_cluster)
    yield conn
    conn.close()


def _path(s3_server, what: str) -> str:
    return f"s3://{s3_server.bucket}/wrangler/{what}/{uuid.uuid4().hex}/"


def _table() -> str:
    return f"wr_{uuid.uuid4().hex[:8]}"


def _rows(frame: pd.DataFrame) -> list[tuple]:
    """The frame's rows as plain values (NULL as None, dates as dates), in id order."""

    def plain(value: object) -> object:
        if value is None or (not isinstance(value, str) and pd.isna(value)):  # type: ignore[call-overload]
            return None
        if isinstance(value, pd.Timestamp | dt.datetime):
            return value.date()
        return value.item() if hasattr(value, "item") else value

    rows = [tuple(plain(v) for v in row) for row in frame[list(FRAME.columns)].itertuples(index=False)]
    return sorted(rows, key=lambda row: row[0])  # type: ignore[arg-type,return-value]


def _same(frame: pd.DataFrame) -> None:
    assert _rows(frame) == _rows(FRAME)


def test_copy_a_dataframe_through_parquet_on_s3(con, session, s3_server):
    """Overwrite, then append the same frame: a second COPY into the existing table doubles the rows."""
    table = _table()
    for mode, rows in (("overwrite", 3), ("append", 6)):
        wr.redshift.copy(
            df=FRAME,
            path=_path(s3_server, "copy"),
            con=con,
            table=table,
            schema="public",
            iam_role=ROLE,
            boto3_session=session,
            mode=mode,
        )
        frame = wr.redshift.read_sql_query(f"select * from public.{table}", con=con)
        assert len(frame) == rows
    _same(frame.drop_duplicates())


def test_copy_from_files(con, session, s3_server):
    table, path = _table(), _path(s3_server, "files")
    wr.s3.to_parquet(FRAME, path, dataset=True, boto3_session=session)
    with con.cursor() as cursor:
        cursor.execute(
            f"create table public.{table} (id bigint, name varchar(256), amount double precision, "
            "day date, ok boolean)"
        )
    wr.redshift.copy_from_files(
        path=path, con=con, table=table, schema="public", iam_role=ROLE, boto3_session=session
    )
    _same(wr.redshift.read_sql_query(f"select * from public.{table}", con=con))


def test_to_sql_and_read_sql_query(con):
    table = _table()
    wr.redshift.to_sql(df=FRAME, con=con, table=table, schema="public", mode="overwrite", primary_keys=["id"])
    _same(wr.redshift.read_sql_query(f"select * from public.{table}", con=con))
    _same(wr.redshift.read_sql_table(table, con=con, schema="public"))


def test_unload_round_trip(con, session, s3_server):
    table = _table()
    wr.redshift.to_sql(df=FRAME, con=con, table=table, schema="public", mode="overwrite")
    frame = wr.redshift.unload(
        sql=f"select * from public.{table}",
        path=_path(s3_server, "unload"),
        con=con,
        iam_role=ROLE,
        boto3_session=session,
        keep_files=False,
    )
    _same(frame)
