"""Reaching the Redshift emulator from tests, as a client would."""

import psycopg2


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
