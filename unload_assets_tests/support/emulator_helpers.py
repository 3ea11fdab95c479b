"""Starting the Redshift emulator for tests, and reaching it as a client would."""

from __future__ import annotations

from typing import Any

import psycopg2
import psycopg2.errors
from unload_assets_local.emulator.server import RedshiftEmulator
from unload_assets_local.postgres import PostgresCluster
from unload_assets_local.s3server import S3Server

from unload_assets.statement.sqltext import quote_literal


def emulator_for(pg_cluster: PostgresCluster, s3_server: S3Server, **options: Any) -> RedshiftEmulator:
    """A Redshift emulator (4 slices, a free port) in front of `pg_cluster`, writing to `s3_server`; not
    started. `options` go to RedshiftEmulator (logins, credentials, backend_login, ...)."""
    return RedshiftEmulator(
        pg_host="127.0.0.1",
        pg_port=pg_cluster.port,
        s3_endpoint_url=s3_server.endpoint_url,
        listen_port=0,
        slices=4,
        superuser_dsn=pg_cluster.dsn(superuser=True),
        **options,
    )


def connect(emulator, pg_cluster, autocommit: bool = True):
    conn = psycopg2.connect(
        host="127.0.0.1",
        port=emulator.port,
        dbname=pg_cluster.database,
        user=pg_cluster.user,
        password=pg_cluster.password,
    )
    conn.autocommit = autocommit
    return conn


def redshift_connector_to(emulator, pg_cluster, *, autocommit: bool = True):
    """Amazon's driver, connected to `emulator` as the cluster's user (no TLS)."""
    import redshift_connector

    conn = redshift_connector.connect(
        host="127.0.0.1",
        port=emulator.port,
        database=pg_cluster.database,
        user=pg_cluster.user,
        password=pg_cluster.password,
        ssl=False,
        timeout=30,
    )
    conn.autocommit = autocommit
    return conn


def psycopg3_to(emulator, pg_cluster):
    """psycopg 3, connected to `emulator` as the cluster's user (no TLS, autocommit)."""
    import psycopg

    return psycopg.connect(
        host="127.0.0.1",
        port=emulator.port,
        dbname=pg_cluster.database,
        user=pg_cluster.user,
        password=pg_cluster.password,
        sslmode="disable",
        autocommit=True,
    )


def unload(conn, select: str, to: str, options: str = "") -> None:
    with conn.cursor() as cur:
        cur.execute(f"UNLOAD ({quote_literal(select)}) TO '{to}' IAM_ROLE default {options}")
        assert cur.rowcount == -1
        assert cur.description is None


def objects(s3_server, to: str) -> dict[str, bytes]:
    """Key (relative to `to`) -> object bytes."""
    client, prefix = s3_server.client(), to[len(f"s3://{s3_server.bucket}/") :]
    listing = client.list_objects_v2(Bucket=s3_server.bucket, Prefix=prefix).get("Contents", [])
    return {
        o["Key"][len(prefix) :]: client.get_object(Bucket=s3_server.bucket, Key=o["Key"])["Body"].read()
        for o in listing
    }


def last_unload(conn) -> tuple[int, int]:
    with conn.cursor() as cur:
        cur.execute("select pg_last_unload_count(), pg_last_unload_id()")
        return cur.fetchone()


PSQL = "/usr/bin/psql"
