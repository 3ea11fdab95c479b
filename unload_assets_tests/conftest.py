"""Session fixtures: real servers on loopback, started once per test session."""

from __future__ import annotations

import os
import shutil
import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from unload_assets_local.emulator.server import RedshiftEmulator
from unload_assets_local.postgres import PostgresCluster
from unload_assets_local.s3server import LOCAL_KEY_ID, LOCAL_SECRET, REGION, S3Server
from unload_assets_local.stack import LocalStack

from unload_assets_tests.support.emulator_helpers import emulator_for

# `make test` runs the suite on two pytest-xdist workers (`-n 2 --dist loadgroup`), each with its own
# servers. A module stays on one worker (its module-scoped servers start once), and the modules that
# start whole Dagster deployments share one worker, so that no two of them compete for the two cores.
DEPLOYMENTS = {"test_production_shape", "test_celery", "test_e2e", "test_chaos_soak"}


# A test is `unit` (the quick tier: `make test-unit`) unless it is marked as needing servers (or as running
# Dagster's CLI, `cli`) or uses a fixture that starts one. A unit test runs with loopback TCP refused
# (`_no_network`), so a test that
# claims the quick tier and still reaches for a server fails at once instead of slowing the tier.
SERVER_MARKS = ("stack", "e2e", "production", "soak", "cli")
SERVER_FIXTURES = {"local_stack", "stack_env", "pg_cluster", "s3_server", "emulator", "standin", "moto"}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if item.get_closest_marker("xdist_group") is None:
            module = item.module.__name__.rsplit(".", 1)[-1] if item.module else item.nodeid
            item.add_marker(pytest.mark.xdist_group("deployments" if module in DEPLOYMENTS else module))
        servers = any(item.get_closest_marker(m) for m in SERVER_MARKS)
        if servers or SERVER_FIXTURES & set(getattr(item, "fixturenames", ())):
            if not servers:
                item.add_marker(pytest.mark.stack)
        else:
            item.add_marker(pytest.mark.unit)


@pytest.fixture(autouse=True)
def _no_network(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    if request.node.get_closest_marker("unit") is None:
        return
    real_connect, real_bind = socket.socket.connect, socket.socket.bind

    def refuse(kind: str, real: Any) -> Any:
        def guarded(self: socket.socket, address: Any) -> Any:
            if self.family in (socket.AF_INET, socket.AF_INET6):
                raise AssertionError(
                    f"a unit test ({request.node.nodeid}) opened a network socket ({kind} {address}): "
                    "use a server fixture, or mark the test `stack`"
                )
            return real(self, address)  # Unix sockets (multiprocessing's forkserver) are fine

        return guarded

    monkeypatch.setattr(socket.socket, "connect", refuse("connect", real_connect))
    monkeypatch.setattr(socket.socket, "bind", refuse("bind", real_bind))


def _world_enterable_tmpdir(prefix: str) -> Path:
    # pytest's tmp dirs are 0700; the `postgres` user (used when running as root) must enter ours.
    path = Path(tempfile.mkdtemp(prefix=prefix))
    path.chmod(0o755)
    return path


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[PostgresCluster]:
    folder = _world_enterable_tmpdir("unload-pg-")
    cluster = PostgresCluster(folder / "data").start()
    yield cluster
    cluster.stop()
    shutil.rmtree(folder, ignore_errors=True)  # tens of MB of cluster files per session otherwise


@pytest.fixture(scope="session")
def s3_server() -> Iterator[S3Server]:
    os.environ.setdefault("AWS_ACCESS_KEY_ID", LOCAL_KEY_ID)
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", LOCAL_SECRET)
    os.environ.setdefault("AWS_DEFAULT_REGION", REGION)
    server = S3Server(bucket="unload-test").start()
    yield server
    server.stop()


@pytest.fixture()
def s3(s3_server):
    """A client of the session's S3 server."""
    return s3_server.client()


@pytest.fixture()
def bucket(s3_server) -> str:
    return s3_server.bucket


@pytest.fixture(scope="module")
def emulator(pg_cluster, s3_server) -> Iterator[RedshiftEmulator]:
    """A Redshift emulator in front of the session's PostgreSQL, logging clients in itself (MD5)."""
    emu = emulator_for(pg_cluster, s3_server, logins={pg_cluster.user: pg_cluster.password}).start()
    yield emu
    emu.stop()


@pytest.fixture(scope="session")
def local_stack() -> Iterator[LocalStack]:
    """The whole local stack, exactly as `unload-assets-local up` starts it (free ports, small data)."""
    from unload_assets_local.stack import StackConfig

    config = StackConfig(
        workdir=_world_enterable_tmpdir("unload-stack-"), redshift_port=0, rows=20_000, slices=4
    )
    stack = LocalStack(config).start()
    yield stack
    stack.stop()
    shutil.rmtree(config.workdir, ignore_errors=True)


@pytest.fixture(scope="session")
def stack_env(local_stack: LocalStack) -> Iterator[dict[str, str]]:
    """The stack's variables in os.environ, as `dagster dev` would load them from `.env`."""
    env = local_stack.env()
    saved = {key: os.environ.get(key) for key in env}
    os.environ.update(env)
    yield env
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
