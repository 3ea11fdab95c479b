"""A private PostgreSQL cluster for the local stack: initdb once, start on loopback, stop cleanly.

The cluster is what the Redshift emulator executes against. It listens on 127.0.0.1 only, has no
Unix socket (paths under a deep temp dir exceed the 107-byte socket limit), and keeps its data in
the directory it is given so a restart reuses the seeded tables.
"""

from __future__ import annotations

import glob
import hashlib
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

SUPERUSER = "postgres"
# Where root keeps a cluster whose requested data directory the `postgres` user cannot reach.
RELOCATED_BASE = Path(tempfile.gettempdir()) / "unload-assets-pgdata"

INSTALL_HINT = (
    "PostgreSQL server binaries (initdb, pg_ctl, postgres) were not found. Install them: "
    "'apt-get install postgresql' (Debian/Ubuntu), 'brew install postgresql' (macOS), "
    "or put their directory on PATH."
)


class PostgresNotFound(RuntimeError):
    pass


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def find_bindir() -> Path:
    """Where initdb/pg_ctl/postgres live: PATH, then `pg_config --bindir`, then Debian's layout."""
    candidates: list[Path] = []
    on_path = shutil.which("pg_ctl")
    if on_path:
        candidates.append(Path(on_path).resolve().parent)
    pg_config = shutil.which("pg_config")
    if pg_config:
        try:
            out = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True, check=True)
            candidates.append(Path(out.stdout.strip()))
        except (subprocess.CalledProcessError, OSError):
            pass
    versions = glob.glob("/usr/lib/postgresql/*/bin")
    versions.sort(key=lambda p: int(p.split("/")[-2]) if p.split("/")[-2].isdigit() else 0, reverse=True)
    candidates.extend(Path(p) for p in versions)
    for bindir in candidates:
        if all((bindir / tool).exists() for tool in ("initdb", "pg_ctl", "postgres")):
            return bindir
    raise PostgresNotFound(INSTALL_HINT)


def _run_as() -> str | None:
    """initdb refuses to run as root, so root runs the server as the unprivileged `postgres` user."""
    if os.geteuid() != 0:
        return None
    try:
        pwd.getpwnam("postgres")
    except KeyError:
        subprocess.run(
            ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", "postgres"],
            check=True,
        )
    return "postgres"


def _closed_parent(path: Path) -> Path | None:
    """The first folder above `path` that other users cannot enter, or None."""
    for parent in path.parents:
        if not os.access(parent, os.X_OK) or not (parent.stat().st_mode & 0o001):
            return parent
    return None


def relocated_data_dir(requested: Path) -> Path | None:
    """Where a data directory asked for at `requested` really lives when root runs the server as
    `postgres` and a folder above `requested` is closed to others; None when it lives where asked."""
    requested = Path(requested).absolute()
    if _closed_parent(requested) is None:
        return None
    digest = hashlib.sha256(str(requested).encode()).hexdigest()[:16]
    return RELOCATED_BASE / digest / requested.name


def remove_cluster(requested: Path) -> Path | None:
    """Stop the cluster asked for at `requested` if it runs, and delete its data wherever it lives
    (`make clean`); returns the folder deleted, if any."""
    requested = Path(requested).absolute()
    relocated = relocated_data_dir(requested) if os.geteuid() == 0 else None
    data_dir = relocated or requested
    if (data_dir / "postmaster.pid").exists():
        PostgresCluster(requested).stop()
    if not data_dir.exists():
        return None
    shutil.rmtree(relocated.parent if relocated else data_dir, ignore_errors=True)
    return data_dir


@dataclass
class PostgresCluster:
    data_dir: Path
    port: int = 0
    user: str = "unload"
    password: str = "local-redshift-secret"
    database: str = "dev"

    def __post_init__(self) -> None:
        self.data_dir = Path(self.data_dir).absolute()
        self.bindir = find_bindir()
        self.os_user = _run_as()
        relocated = relocated_data_dir(self.data_dir) if self.os_user else None
        if relocated is not None:
            # Root with a clone in a folder only root can enter (its home, `mktemp -d`): the server runs
            # as `postgres`, which cannot reach that path, so its data lives in a place it can reach,
            # one per requested path, so that a second `make run` finds the same cluster.
            relocated.parent.mkdir(parents=True, exist_ok=True)
            for folder in (RELOCATED_BASE, relocated.parent):
                folder.chmod(0o755)
            self.data_dir = relocated
        if not self.port:
            self.port = free_port()

    # ---- lifecycle -----------------------------------------------------------------------
    def start(self) -> PostgresCluster:
        fresh = not (self.data_dir / "PG_VERSION").exists()
        if fresh:
            self._initdb()
        self._ctl("stop", "-m", "fast", check=False)  # a server left by a killed session
        self._ctl(
            "start",
            "-w",
            "-t",
            "60",
            "-l",
            str(self.data_dir / "server.log"),
            "-o",
            f"-p {self.port} -c listen_addresses=127.0.0.1 -c unix_socket_directories=''"
            " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
            " -c max_connections=200",
        )
        self._bootstrap()  # also on restart: the configured password may have changed
        return self

    def stop(self) -> None:
        if (self.data_dir / "postmaster.pid").exists():
            self._ctl("stop", "-w", "-m", "fast", check=False)

    def __enter__(self) -> PostgresCluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ---- connection facts ----------------------------------------------------------------
    def dsn(self, *, superuser: bool = False, database: str | None = None) -> str:
        user, password = (SUPERUSER, "") if superuser else (self.user, self.password)
        auth = f" password={password}" if password else ""
        return f"host=127.0.0.1 port={self.port} dbname={database or self.database} user={user}{auth}"

    # ---- internals -----------------------------------------------------------------------
    def _initdb(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.data_dir.chmod(0o700)
        if self.os_user:
            shutil.chown(self.data_dir, self.os_user, self.os_user)
            closed = _closed_parent(self.data_dir)
            if closed is not None:
                raise PermissionError(
                    f"The PostgreSQL data directory {self.data_dir} is under {closed}, which the "
                    f"'{self.os_user}' user cannot enter. Use a data directory under a world-readable "
                    "path (e.g. the repository or /tmp)."
                )
        self._run(
            [
                str(self.bindir / "initdb"),
                "-D",
                str(self.data_dir),
                "-U",
                SUPERUSER,
                "--auth=trust",
                "--encoding=UTF8",
                "--locale=C.UTF-8",
                "--no-sync",
            ]
        )
        # The superuser is trusted on loopback (the stack's own maintenance); everyone else gives a
        # password, as on a real cluster.
        (self.data_dir / "pg_hba.conf").write_text(
            f"host all {SUPERUSER} 127.0.0.1/32 trust\nhost all all 127.0.0.1/32 scram-sha-256\n"
        )

    def _bootstrap(self) -> None:
        import psycopg2

        conn = psycopg2.connect(self.dsn(superuser=True, database="postgres"))
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute("select 1 from pg_roles where rolname = %s", (self.user,))
            verb = "alter" if cur.fetchone() else "create"
            cur.execute(f'{verb} role "{self.user}" login password %s', (self.password,))
            cur.execute("select 1 from pg_database where datname = %s", (self.database,))
            if not cur.fetchone():
                cur.execute(f'create database "{self.database}" owner "{self.user}"')
        conn.close()

    def _ctl(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return self._run([str(self.bindir / "pg_ctl"), "-D", str(self.data_dir), *args], check=check)

    def _run(self, cmd: list[str], check: bool = True) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(cmd, capture_output=True, text=True, user=self.os_user, cwd="/")
        if check and proc.returncode != 0:
            log = self.data_dir / "server.log"
            tail = log.read_text(errors="replace")[-2000:] if log.exists() and os.access(log, os.R_OK) else ""
            raise RuntimeError(
                f"{Path(cmd[0]).name} {' '.join(cmd[1:3])} failed ({proc.returncode}): "
                f"{proc.stderr.strip() or proc.stdout.strip()}\n{tail}"
            )
        return proc
