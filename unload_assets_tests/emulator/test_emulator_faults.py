"""The emulator's Redshift faults, as a client sees them: a dropped connection, a statement timeout.

Each test runs a real UNLOAD through psycopg2 and the emulator, with a fault the test injected.
"""

from __future__ import annotations

import threading
import uuid

import psycopg2
import psycopg2.errors
import pytest
from unload_assets_local.emulator.protocol import session

from unload_assets_tests.support.emulator_helpers import connect, last_unload, objects, unload

SELECT = "select g, md5(g::text) from generate_series(1, 2000) g"
OPTIONS = "MANIFEST"  # one data file per slice (4), then the manifest
FILES = ["0000_part_00", "0001_part_00", "0002_part_00", "0003_part_00"]
CANCELED = r"Query \(\d+\) canceled on user's request"  # Redshift's words for a statement_timeout


@pytest.fixture
def to(s3_server):
    return f"s3://{s3_server.bucket}/emu-faults/{uuid.uuid4().hex}/"


@pytest.fixture
def rs(emulator, pg_cluster):
    emulator.faults.clear()
    conn = connect(emulator, pg_cluster)
    yield conn
    conn.close()
    emulator.faults.clear()


def query_one(conn, sql: str):
    with conn.cursor() as cur:
        cur.execute(sql)
        return cur.fetchone()


def test_a_dropped_connection_leaves_data_files_and_no_manifest(emulator, pg_cluster, rs, to, s3_server):
    fault = emulator.faults.inject("drop", to_contains=to)
    with pytest.raises(psycopg2.OperationalError) as caught:
        unload(rs, SELECT, to, OPTIONS)
    assert caught.value.pgcode is None  # no answer at all: the socket just closed
    assert rs.closed and fault.fired == 1
    assert sorted(objects(s3_server, to)) == FILES  # partial: no manifest
    with connect(emulator, pg_cluster) as again:  # the fault is spent; a new session works
        unload(again, SELECT, to + "retry/", OPTIONS)
        assert last_unload(again)[0] == 2000
        assert sorted(objects(s3_server, to + "retry/")) == [*FILES, "manifest"]


def test_a_drop_can_also_take_its_files_with_it(emulator, rs, to, s3_server):
    emulator.faults.inject("drop", to_contains=to, leave_files=False)
    with pytest.raises(psycopg2.OperationalError):
        unload(rs, SELECT, to, OPTIONS)
    assert objects(s3_server, to) == {}


def test_faults_only_hit_the_location_they_name(emulator, rs, to, s3_server):
    fault = emulator.faults.inject("drop", to_contains=to + "elsewhere/", times=5)
    unload(rs, SELECT, to, OPTIONS)
    assert fault.fired == 0 and "manifest" in objects(s3_server, to)


def test_statement_timeout_cancels_a_stalled_unload_as_redshift_does(emulator, rs, to, s3_server):
    emulator.faults.inject("stall", seconds=30, to_contains=to)
    with rs.cursor() as cur:
        cur.execute("SET statement_timeout TO 500")
    with pytest.raises(psycopg2.errors.QueryCanceled, match=CANCELED) as caught:
        unload(rs, SELECT, to, OPTIONS)
    assert caught.value.pgcode == "57014"
    assert sorted(objects(s3_server, to)) == FILES  # left behind, without a manifest
    # The session goes on, with its own settings and a zero count for the cancelled UNLOAD.
    assert query_one(rs, "select 1") == (1,)
    assert query_one(rs, "show statement_timeout") == ("500ms",)
    assert last_unload(rs)[0] == 0
    assert query_one(rs, "select current_setting('standard_conforming_strings')") == ("on",)


def test_statement_timeout_mid_copy_cancels_the_backend_query(emulator, rs, to, s3_server):
    # The last row sleeps: the timeout fires while COPY is still running on the backend.
    slow = (
        "select g, case when g < 2000 then md5(g::text) else pg_sleep(30)::text end"
        " from generate_series(1, 2000) g"
    )
    with rs.cursor() as cur:
        cur.execute("SET statement_timeout TO 1000")
    with pytest.raises(psycopg2.errors.QueryCanceled, match=CANCELED):
        unload(rs, slow, to, OPTIONS)
    assert objects(s3_server, to) == {}  # no fault asked to leave files: cleaned up as for any failure
    assert query_one(rs, "select 2") == (2,)


def test_the_proxys_own_timer_cancels_the_copy_in_flight(emulator, rs, to, s3_server, monkeypatch):
    # PostgreSQL applies the same statement_timeout to the COPY it runs; here the proxy's clock, which
    # counts the whole UNLOAD, is made to run out first, so the proxy must cancel the backend's COPY
    # itself and read the backend back to ReadyForQuery before the session can go on.
    save = session.Settings.save

    async def save_with_a_shorter_unload_clock(self):
        await save(self)
        self.statement_timeout = 0.3

    monkeypatch.setattr(session.Settings, "save", save_with_a_shorter_unload_clock)
    test_statement_timeout_mid_copy_cancels_the_backend_query(emulator, rs, to, s3_server)
    assert query_one(rs, "show statement_timeout") == ("1s",)


def test_a_timeout_inside_a_transaction_aborts_it(emulator, pg_cluster, to):
    conn = connect(emulator, pg_cluster, autocommit=False)
    try:
        emulator.faults.inject("stall", seconds=30, to_contains=to)
        with conn.cursor() as cur:
            cur.execute("SET statement_timeout TO 300")
        with pytest.raises(psycopg2.errors.QueryCanceled):
            unload(conn, SELECT, to, OPTIONS)
        with pytest.raises(psycopg2.errors.InFailedSqlTransaction):
            query_one(conn, "select 1")
        conn.rollback()
        assert query_one(conn, "select 3") == (3,)
    finally:
        conn.close()
        emulator.faults.clear()


def test_a_stall_without_a_timeout_is_just_slow_and_counts_as_in_flight(emulator, pg_cluster, to, s3_server):
    emulator.reset_peak()
    emulator.faults.inject("stall", seconds=0.5, to_contains=to, times=3)
    errors: list[BaseException] = []

    def one(n: int) -> None:
        try:
            with connect(emulator, pg_cluster) as conn:
                unload(conn, SELECT, f"{to}{n}/", OPTIONS)
        except BaseException as exc:  # noqa: BLE001 - checked below
            errors.append(exc)

    threads = [threading.Thread(target=one, args=(n,)) for n in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert errors == []
    assert all("manifest" in objects(s3_server, f"{to}{n}/") for n in range(3))
    assert emulator.peak_concurrent_unloads == 3  # all three were stalled at once


def test_a_cancel_while_the_manifest_is_being_written_leaves_no_manifest(
    emulator, rs, to, s3_server, monkeypatch
):
    # The manifest's PUT is slow (a thread the cancel cannot stop), and the statement_timeout fires in
    # the middle of it: once the PUT is over, the cleanup must have taken the manifest away again.
    from unload_assets_local.emulator.unload import uploads

    real_put, writing = uploads.S3Target.put, threading.Event()

    def slow_put(self, key: str, body: bytes) -> None:
        if key.endswith("manifest") and key.startswith(to.split("/", 3)[3]):
            writing.set()
            threading.Event().wait(1.5)
        real_put(self, key, body)

    monkeypatch.setattr(uploads.S3Target, "put", slow_put)
    with rs.cursor() as cur:
        cur.execute("SET statement_timeout TO 1000")
    emulator.faults.inject("stall", seconds=0.8, to_contains=to)  # so that the timeout falls in the PUT
    with pytest.raises(psycopg2.errors.QueryCanceled, match=CANCELED):
        unload(rs, SELECT, to, OPTIONS)
    assert writing.is_set()
    threading.Event().wait(1.0)  # nothing arrives late either
    assert "manifest" not in objects(s3_server, to)
    assert query_one(rs, "select 3") == (3,)
