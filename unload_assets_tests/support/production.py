"""The production shape on one machine: PostgreSQL instance storage and separate Dagster processes.

Each process (the gRPC code server, the webserver, the daemon, a Celery worker) starts in an empty
working directory of its own, with a DAGSTER_HOME that holds only `deploy/dagster.yaml`, as pods would.
Nothing passes between them but PostgreSQL and S3.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import struct
import subprocess
import sys
import time
import zoneinfo
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import dagster as dg
import psycopg2
import yaml
from unload_assets_local.devserver import stop_process_group
from unload_assets_local.postgres import free_port
from unload_assets_local.webserver_client import DagsterDevError, WebserverClient

REPO = Path(__file__).resolve().parents[2]
DEPLOY_YAML = REPO / "deploy" / "dagster.yaml"
BIN = Path(sys.executable).parent


def create_database(superuser_dsn: str, name: str, owner: str) -> None:
    conn = psycopg2.connect(superuser_dsn)
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute(f'drop database if exists "{name}"')
        cur.execute(f'create database "{name}" owner "{owner}"')
    conn.close()


def instance_yaml(home: Path, overrides: dict[str, Any] | None = None) -> str:
    """deploy/dagster.yaml with a test's `overrides` merged in (small timeouts: the test instance's, never
    deploy/'s); a string value's `{home}` is the service's DAGSTER_HOME."""

    def merge(base: Any, extra: Any) -> Any:
        if isinstance(base, dict) and isinstance(extra, dict):
            return {**base, **{k: merge(base.get(k), v) for k, v in extra.items()}}
        return extra.replace("{home}", str(home)) if isinstance(extra, str) else extra

    if not overrides:
        return DEPLOY_YAML.read_text()
    return yaml.safe_dump(merge(yaml.safe_load(DEPLOY_YAML.read_text()), overrides), sort_keys=False)


class Service:
    """One long-running process in its own empty folder and process group."""

    def __init__(
        self,
        name: str,
        root: Path,
        args: list[str],
        env: dict[str, str],
        instance: dict[str, Any] | None = None,
    ) -> None:
        self.name, self.args = name, args
        self.dir = root / name
        self.dir.mkdir(parents=True)
        self.home = self.dir / ".dagster_home"  # inside the folder, so deleting the folder deletes all
        self.home.mkdir()
        (self.home / "dagster.yaml").write_text(instance_yaml(self.home, instance))
        self.log_file = root / f"{name}.log"
        self.env = {**env, "DAGSTER_HOME": str(self.home)}
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Service:
        with self.log_file.open("ab") as log:
            self.proc = subprocess.Popen(
                self.args, cwd=self.dir, env=self.env, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True,
            )  # fmt: skip
        return self

    def tail(self, chars: int = 3000) -> str:
        """The end of the service's log, for an error to show what the process said."""
        try:
            return self.log_file.read_text(errors="replace")[-chars:]
        except OSError:
            return "(no log)"

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self) -> None:
        if self.proc is not None:
            stop_process_group(self.proc)
            self.proc = None

    def kill(self) -> None:
        """SIGKILL the whole process group: a pod or a machine gone at once."""
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, 9)
            self.proc.wait()
        self.proc = None

    def files_written(self) -> list[Path]:
        """Every file in the folder except the dagster.yaml it was given."""
        return [p for p in self.dir.rglob("*") if p.is_file() and p != self.home / "dagster.yaml"]

    def descendants(self) -> list[int]:
        """The pids of every process the service started, and theirs (read from /proc)."""
        if self.proc is None:
            return []
        return descendants_of(self.proc.pid)


class ProductionShape:
    """A gRPC code server, a webserver and a daemon sharing one PostgreSQL database (deploy/dagster.yaml)."""

    LOCATION = "unload_assets"

    def __init__(
        self,
        root: Path,
        env: dict[str, str],
        *,
        instance: dict[str, Any] | None = None,
        daemon_code_server_port: int | None = None,
    ) -> None:
        """`instance`: overrides of deploy/dagster.yaml for every process (see `instance_yaml`);
        `daemon_code_server_port`: where the daemon finds the code server (a proxy in front of it), when
        not the code server's own port."""
        self.grpc_port, self.web_port = free_port(), free_port()
        self.overrides = instance
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        self.env = {**env, "DAGSTER_WEBSERVER_URL": f"http://127.0.0.1:{self.web_port}"}
        env = self.env
        self.workspace = root / "workspace.yaml"
        self.workspace.write_text(
            "load_from:\n  - grpc_server:\n      host: 127.0.0.1\n"
            f"      port: {self.grpc_port}\n      location_name: {self.LOCATION}\n"
        )
        daemon_workspace = self.workspace
        if daemon_code_server_port is not None:
            daemon_workspace = root / "workspace-daemon.yaml"
            daemon_workspace.write_text(
                self.workspace.read_text().replace(
                    f"port: {self.grpc_port}", f"port: {daemon_code_server_port}"
                )
            )
        self.code_servers: list[Service] = []
        self.daemon_started: datetime | None = None
        workspace = ["-w", str(self.workspace)]
        self.webserver = Service(
            "webserver", root,
            [str(BIN / "dagster-webserver"), "-h", "127.0.0.1", "-p", str(self.web_port), *workspace], env,
            instance,
        )  # fmt: skip
        self.daemon = Service(
            "daemon", root, [str(BIN / "dagster-daemon"), "run", "-w", str(daemon_workspace)], env, instance
        )
        self.client = WebserverClient(f"http://127.0.0.1:{self.web_port}", self.webserver.log_file)

    @property
    def code_server(self) -> Service:
        return self.code_servers[-1]

    def start_code_server(self) -> Service:
        """A code server in a fresh folder (the n-th one is `code-server-n`), on the same port."""
        server = Service(
            f"code-server-{len(self.code_servers) + 1}", self.root,
            [str(BIN / "dagster"), "code-server", "start", "-h", "127.0.0.1", "-p", str(self.grpc_port),
             "-m", "unload_assets.definitions", "--location-name", self.LOCATION],
            self.env, self.overrides,
        )  # fmt: skip
        self.code_servers.append(server.start())
        return server

    def start(self, timeout: float = 180) -> ProductionShape:
        # In order, as a deployment's readiness checks would have it: the webserver starts once the code
        # server listens (a first load that finds no server waits on Dagster's reconnect watch, which a
        # busy machine has been seen to sit on for minutes), and the daemon comes last, once the
        # location loads: its scheduler's first look then finds the schedules (a schedule first seen at
        # its tick's minute would skip that tick).
        deadline = time.monotonic() + timeout
        self.start_code_server()
        self.wait_until_listening(deadline - time.monotonic())
        self.webserver.start()
        self.wait_until_loaded(deadline - time.monotonic())
        self.daemon.start()
        self.daemon_started = datetime.now(timezone.utc)
        return self

    def _check_alive(self) -> None:
        for service in (self.code_server, self.webserver, self.daemon):
            if service.proc is not None and not service.alive():
                raise DagsterDevError(f"{service.name} exited:\n{service.tail()}")

    def wait_until_listening(self, timeout: float = 180) -> None:
        """Until the code server accepts connections on its port (it binds once the code has loaded)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self._check_alive()
            try:
                with socket.create_connection(("127.0.0.1", self.grpc_port), timeout=1):
                    return
            except OSError:
                time.sleep(0.25)
        raise DagsterDevError(
            f"the code server did not listen on {self.grpc_port} within {timeout:.0f}s:\n"
            f"{self.code_server.tail()}"
        )

    def wait_until_loaded(self, timeout: float = 180) -> None:
        """Until the webserver shows the location loaded. Where a load has failed on an unreachable
        server and the watch has not recovered it within 30 s, the location is reloaded, as an
        operator would from the UI."""
        deadline = time.monotonic() + timeout
        nudge = time.monotonic() + 30
        while time.monotonic() < deadline:
            self._check_alive()
            try:
                if self.client.ping() and self.client.location_loaded():
                    return
            except (DagsterDevError, OSError):
                pass  # the code server restarts: the webserver reloads the location
            if time.monotonic() > nudge:
                nudge = time.monotonic() + 30
                with contextlib.suppress(DagsterDevError, OSError):
                    self.reload_location()
            time.sleep(0.5)
        tails = "\n".join(f"--- {s.name}:\n{s.tail(1500)}" for s in (self.code_server, self.webserver))
        raise DagsterDevError(f"the code location did not load within {timeout:.0f}s:\n{tails}")

    def reload_location(self) -> None:
        self.client.graphql(
            "mutation($name: String!) { reloadRepositoryLocation(repositoryLocationName: $name) "
            "{ __typename } }",
            {"name": self.LOCATION},
        )

    def instance(self) -> dg.DagsterInstance:
        """The deployment's instance opened in this process, to read its runs, logs and tags: the same
        deploy/dagster.yaml on the same PostgreSQL database. The caller disposes of it."""
        home = self.root / "reader"
        home.mkdir(exist_ok=True)
        (home / "dagster.yaml").write_text(instance_yaml(home, self.overrides))
        saved = dict(os.environ)
        os.environ.update(self.env)  # the file reads DAGSTER_PG_* and UNLOAD_BUCKET when it is loaded
        try:
            return dg.DagsterInstance.from_config(str(home))
        finally:
            os.environ.clear()
            os.environ.update(saved)

    def stop(self) -> None:
        for service in (self.daemon, self.webserver, *self.code_servers):
            service.stop()


class RedisServer:
    """A throwaway Redis on loopback (no persistence): the Celery broker and result backend."""

    def __init__(self, workdir: Path) -> None:
        self.port = free_port()
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 20) -> RedisServer:
        server = shutil.which("redis-server") or "/usr/bin/redis-server"
        args = [server, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                "--dir", str(self.workdir)]  # fmt: skip
        with (self.workdir / "redis.log").open("ab") as log:
            self.proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1) as conn:
                    conn.sendall(b"PING\r\n")
                    if conn.recv(16).startswith(b"+PONG"):
                        return self
            except OSError:
                time.sleep(0.1)
        raise RuntimeError(f"redis-server did not answer on port {self.port}")

    def stop(self) -> None:
        if self.proc is not None:
            stop_process_group(self.proc)
            self.proc = None


def celery_workers(
    shape: ProductionShape,
    folder: Path,
    *,
    visibility_timeout: int,
    names: tuple[str, ...] = ("worker1", "worker2"),
) -> list[Service]:
    """`dagster-celery worker start` services (not started), one per name, reading deploy/celery.yaml
    with a test's own visibility timeout (deploy/'s 1800 s is for real steps), swept every 5 s."""
    config = yaml.safe_load((REPO / "deploy" / "celery.yaml").read_text())
    transport = config["execution"]["config"]["config_source"]["broker_transport_options"]
    transport.update(
        visibility_timeout=visibility_timeout, unacked_restore_interval=5, unacked_restore_throttle=1
    )
    path = folder / "celery.yaml"
    path.write_text(yaml.safe_dump(config))
    return [celery_worker(shape, path, name) for name in names]


def celery_worker(shape: ProductionShape, config: Path, name: str, suffix: str = "") -> Service:
    """One Celery worker service named `name` (its folder `celery-<name><suffix>`), 3 processes."""
    args = [str(BIN / "dagster-celery"), "worker", "start", "-A", "dagster_celery.app", "-y", str(config),
            "-n", name, "--", "--concurrency=3"]  # fmt: skip
    return Service(f"celery-{name}{suffix}", shape.root, args, shape.env, shape.overrides)


def wait_until_ready(worker: Service, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while "ready." not in worker.log_file.read_text(errors="replace"):
        if time.monotonic() > deadline or not worker.alive():
            raise DagsterDevError(f"{worker.name} not ready within {timeout:.0f}s:\n{worker.tail()}")
        time.sleep(0.5)


def descendants_of(pid: int) -> list[int]:
    """Every process below `pid` (children, theirs...), read from /proc's parent links."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            fields = stat.read_text().rsplit(")", 1)[1].split()
            children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def kill_tree(pid: int) -> None:
    """SIGKILL a process and everything below it (a pod or a node gone): the tree is read first, so
    the children are found before their parent's death hands them to init."""
    for victim in [pid, *descendants_of(pid)]:
        with contextlib.suppress(ProcessLookupError):
            os.kill(victim, 9)


def zone_where_it_is_9_pm() -> str:
    """A time zone whose 09:00 (when the schedules fire) is about 12 hours away: no scheduled run
    interleaves with the runs a test launches."""
    offset = (datetime.now(timezone.utc).hour - 21) % 24  # Etc/GMT+N is N hours behind UTC
    offset = offset - 24 if offset > 12 else offset
    return f"Etc/GMT{offset:+d}" if offset else "Etc/GMT"


def zone_where_9_am_is(when: datetime, folder: Path) -> tuple[str, str]:
    """A time zone of our own whose 09:00 falls at `when` (UTC, on a whole minute): for a test to watch
    the daemon fire the real 09:00 schedule. Written as a TZif file (RFC 8536: one fixed offset, no
    transitions) under `folder`; returns the zone's name and the PYTHONTZPATH that finds it (ours first,
    then the system's), which every process, the daemon above all, must get."""
    nine = when.replace(hour=9, minute=0, second=0, microsecond=0)
    offset = int((nine - when).total_seconds()) % 86400
    offset = offset - 86400 if offset > 43200 else offset
    sign, (hours, rest) = ("+" if offset >= 0 else "-"), divmod(abs(offset), 3600)
    abbreviation = f"{sign}{hours:02d}{rest // 60:02d}"
    chars = abbreviation.encode() + b"\0"

    def block() -> bytes:  # version 2 repeats the (here identical) data block after the version-1 one
        counts = struct.pack(">6l", 0, 0, 0, 0, 1, len(chars))  # one local time type, no transitions
        return b"TZif2" + bytes(15) + counts + struct.pack(">lBB", offset, 0, 0) + chars

    posix = f"<{abbreviation}>{'-' if sign == '+' else '+'}{hours}:{rest // 60:02d}"  # POSIX flips the sign
    name = f"UnloadTest/NineAt{when:%H%M}UTC"
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(block() + block() + f"\n{posix}\n".encode())
    return name, os.pathsep.join([str(folder), *zoneinfo.TZPATH])


def production_env(
    local_stack, stack_env: dict[str, str], *, database: str, catalogue: Path, zone: str | None = None
) -> dict[str, str]:
    """What every process of the production shape gets: the stack's variables, the instance's own
    PostgreSQL database (created empty), the catalogue, and `BIN` on PATH; no DAGSTER_* of ours.
    The schedules' zone is one where 09:00 is 12 hours away unless the test names one."""
    pg = local_stack.postgres
    create_database(pg.dsn(superuser=True, database="postgres"), database, pg.user)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DAGSTER_", "PYTEST_"))}
    env.update(stack_env)
    env.update(
        PATH=f"{BIN}{os.pathsep}{env.get('PATH', '')}",
        UNLOAD_TIMEZONE=zone or zone_where_it_is_9_pm(),
        DAGSTER_PG_HOST="127.0.0.1", DAGSTER_PG_PORT=str(pg.port), DAGSTER_PG_USERNAME=pg.user,
        DAGSTER_PG_PASSWORD=pg.password, DAGSTER_PG_DB=database, UNLOAD_TARGETS_FILE=str(catalogue),
    )  # fmt: skip
    return env


def keep_logs(folder: Path, prefix: str) -> None:
    """The services' logs into test-artifacts/, for a failure to be read after the temp folder is gone."""
    artifacts = REPO / "test-artifacts"
    artifacts.mkdir(exist_ok=True)
    for log in folder.glob("*.log"):
        shutil.copy(log, artifacts / f"{prefix}-{log.name}")
