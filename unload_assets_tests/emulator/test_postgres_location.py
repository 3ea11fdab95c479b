"""`make run` as root from a clone in a folder only root can enter (root's home, `mktemp -d`)."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import psycopg2
import pytest
from unload_assets_local.postgres import RELOCATED_BASE, PostgresCluster, relocated_data_dir, remove_cluster

pytestmark = [
    pytest.mark.stack,  # starts a PostgreSQL server of its own
    pytest.mark.skipif(
        os.geteuid() != 0, reason="as another user the server runs as that user, who can enter the folder"
    ),
]


def test_a_data_directory_the_postgres_user_cannot_reach_is_kept_where_it_can():
    private = Path(tempfile.mkdtemp(prefix="unload-private-"))  # 0700, owned by root
    requested = private / "clone" / ".local-stack" / "pgdata"
    cluster = PostgresCluster(requested)
    try:
        assert cluster.data_dir.parent.parent == RELOCATED_BASE
        assert cluster.data_dir.name == "pgdata"
        cluster.start()
        with psycopg2.connect(cluster.dsn()) as conn, conn.cursor() as cur:
            cur.execute("create table kept (n int); insert into kept values (42)")
        cluster.stop()
        # A second `make run` from the same clone finds the same cluster, data included.
        again = PostgresCluster(requested, port=cluster.port)
        assert again.data_dir == cluster.data_dir
        again.start()
        with psycopg2.connect(again.dsn()) as conn, conn.cursor() as cur:
            cur.execute("select n from kept")
            assert cur.fetchall() == [(42,)]
        again.stop()
    finally:
        cluster.stop()
        shutil.rmtree(cluster.data_dir.parent, ignore_errors=True)
        shutil.rmtree(private, ignore_errors=True)


def test_make_clean_stops_and_removes_a_relocated_cluster():
    private = Path(tempfile.mkdtemp(prefix="unload-private-"))  # 0700, owned by root
    requested = private / "clone" / ".local-stack" / "pgdata"
    cluster = PostgresCluster(requested).start()  # left running, as a killed `make run` leaves it
    try:
        assert relocated_data_dir(requested) == cluster.data_dir
        assert (cluster.data_dir / "postmaster.pid").exists()
        assert remove_cluster(requested) == cluster.data_dir
        assert not cluster.data_dir.parent.exists()  # the per-clone folder under RELOCATED_BASE too
        with pytest.raises(psycopg2.OperationalError):
            psycopg2.connect(cluster.dsn(), connect_timeout=2)  # stopped, not just deleted under it
        assert remove_cluster(requested) is None  # a second `make clean` has nothing to do
    finally:
        cluster.stop()
        shutil.rmtree(cluster.data_dir.parent, ignore_errors=True)
        shutil.rmtree(private, ignore_errors=True)
