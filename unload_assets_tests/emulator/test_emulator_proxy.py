"""The emulator as a PostgreSQL proxy: relaying, errors, concurrency, psql, vanished clients."""

from __future__ import annotations

import hashlib
import os
import signal
import socket
import struct
import subprocess
import threading
import time
import uuid

import psycopg2
import psycopg2.errors
import pytest

from unload_assets.statement.sqltext import quote_literal
from unload_assets_tests.support.emulator_helpers import PSQL, connect


@pytest.fixture
def rs(emulator, pg_cluster):
    conn = connect(emulator, pg_cluster)
    yield conn
    conn.close()


@pytest.fixture
def to(s3_server):
    return f"s3://{s3_server.bucket}/proxy/{uuid.uuid4().hex}/"


def unload_sql(select: str, to: str, options: str = "") -> str:
    return f"UNLOAD ({quote_literal(select)}) TO '{to}' IAM_ROLE default {options}"


def keys(s3_server, to: str) -> list[str]:
    prefix = to[len(f"s3://{s3_server.bucket}/") :]
    listing = s3_server.client().list_objects_v2(Bucket=s3_server.bucket, Prefix=prefix)
    return sorted(o["Key"][len(prefix) :] for o in listing.get("Contents", []))


def one(conn, sql: str):
    with conn.cursor() as cur:
        cur.execute(sql)
        return cur.fetchone()


# ---- plain PostgreSQL traffic passes through -----------------------------------------------------


def test_queries_copy_and_notices_pass_through(rs):
    with rs.cursor() as cur:
        cur.execute("select g, repeat('x', 50) from generate_series(1, 50000) g")
        assert len(cur.fetchall()) == 50000
        cur.execute("create temp table relay_copy (a int, b text)")
        import io

        cur.copy_expert(
            "copy relay_copy from stdin", io.StringIO("".join(f"{i}\tv{i}\n" for i in range(1000)))
        )
        cur.execute("select count(*), max(b) from relay_copy")
        assert cur.fetchone() == (1000, "v999")
        cur.execute("do $$ begin raise notice 'hello from plpgsql'; end $$")
    assert any("hello from plpgsql" in n for n in rs.notices)


def test_cancel_request_reaches_the_backend(emulator, pg_cluster):
    # psql, not psycopg2: psycopg2's cancel() holds the GIL while it waits for the server, which would
    # deadlock against an emulator running in this same process.
    proc = _psql(emulator, pg_cluster, "select pg_sleep(20)")
    time.sleep(1.0)
    proc.send_signal(signal.SIGINT)  # psql sends a CancelRequest on a new connection
    _, err = proc.communicate(timeout=10)  # well before the 20 s sleep could end by itself
    assert "canceling statement due to user request" in err


def _raw_session(port: int, user: str, password: str, database: str) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port))
    params = f"user\0{user}\0database\0{database}\0\0".encode()
    sock.sendall(struct.pack("!ii", 8 + len(params), 196608) + params)
    while (message := _read(sock))[0] != b"Z":
        kind, payload = message
        if kind == b"R" and struct.unpack("!i", payload[:4])[0] == 5:  # MD5, as Redshift asks
            inner = hashlib.md5((password + user).encode()).hexdigest()
            answer = "md5" + hashlib.md5(inner.encode() + payload[4:8]).hexdigest()
            sock.sendall(_msg(b"p", answer.encode() + b"\0"))
        assert kind != b"E", payload
    return sock


def _read(sock: socket.socket) -> tuple[bytes, bytes]:
    def exactly(n: int) -> bytes:
        data = b""
        while len(data) < n:
            chunk = sock.recv(n - len(data))
            assert chunk, "connection closed"
            data += chunk
        return data

    head = exactly(5)
    return head[:1], exactly(struct.unpack("!i", head[1:])[0] - 4)


def _msg(kind: bytes, payload: bytes = b"") -> bytes:
    return kind + struct.pack("!i", len(payload) + 4) + payload


def _extended(sock: socket.socket, sql: str, params: list[bytes]) -> list[tuple[bytes, bytes]]:
    bind_params = b"".join(struct.pack("!i", len(p)) + p for p in params)
    sock.sendall(
        _msg(b"P", b"\0" + sql.encode() + b"\0" + struct.pack("!h", 0))
        + _msg(b"B", b"\0\0" + struct.pack("!hh", 0, len(params)) + bind_params + struct.pack("!h", 0))
        + _msg(b"E", b"\0" + struct.pack("!i", 0))
        + _msg(b"S")
    )
    replies = []
    while True:
        kind, payload = _read(sock)
        replies.append((kind, payload))
        if kind == b"Z":
            return replies


def test_extended_protocol_runs_unload_as_the_simple_path_does(emulator, pg_cluster, s3_server, to):
    sock = _raw_session(emulator.port, pg_cluster.user, pg_cluster.password, pg_cluster.database)
    try:
        replies = _extended(sock, "select $1::int + 1", [b"41"])
        assert [k for k, _ in replies] == [b"1", b"2", b"D", b"C", b"Z"]
        assert replies[2][1].endswith(b"42")
        # Parse/Bind/Execute/Sync of an UNLOAD: ParseComplete, BindComplete, the notice, tag UNLOAD.
        replies = _extended(sock, unload_sql("select g from generate_series(1, 5) g", to), [])
        assert [k for k, _ in replies] == [b"1", b"2", b"N", b"C", b"Z"]
        assert b"5 record(s) unloaded" in replies[2][1] and replies[3][1] == b"UNLOAD\0"
        assert replies[-1] == (b"Z", b"I")
        assert keys(s3_server, to) == [f"000{n}_part_00" for n in range(4)]
        replies = _extended(sock, "select pg_last_unload_count()", [])
        assert replies[2] == (b"D", struct.pack("!hi", 1, 1) + b"5")
        # A failing UNLOAD reads like Redshift's error (no PL/pgSQL); the session goes on.
        replies = _extended(sock, unload_sql("select * from no_such_table_ext", to + "x/"), [])
        error = next(p for k, p in replies if k == b"E")
        assert b"42P01" in error and b"no_such_table_ext" in error and b"PL/pgSQL" not in error
        assert replies[-1] == (b"Z", b"I")
        sock.sendall(_msg(b"Q", b"select 7\0"))
        kinds = []
        while not kinds or kinds[-1] != b"Z":
            kinds.append(_read(sock)[0])
        assert kinds == [b"T", b"D", b"C", b"Z"]
    finally:
        sock.close()


def _exchange(sock: socket.socket, *messages: bytes) -> list[tuple[bytes, bytes]]:
    """Send `messages` (ending with a Sync); every reply up to ReadyForQuery."""
    sock.sendall(b"".join(messages))
    replies = []
    while not replies or replies[-1][0] != b"Z":
        replies.append(_read(sock))
    return replies


def _parse(statement: bytes, sql: str, param_types: int = 0) -> bytes:
    return _msg(
        b"P",
        statement + b"\0" + sql.encode() + b"\0" + struct.pack("!h", param_types) + b"\0\0\0\0" * param_types,
    )


def _bind(portal: bytes, statement: bytes, params: list[bytes] = []) -> bytes:  # noqa: B006 - read only
    values = b"".join(struct.pack("!i", len(v)) + v for v in params)
    return _msg(
        b"B",
        portal
        + b"\0"
        + statement
        + b"\0"
        + struct.pack("!hh", 0, len(params))
        + values
        + struct.pack("!h", 0),
    )


def test_extended_protocol_runs_copy_named_and_unnamed(emulator, pg_cluster, s3_server, to):
    """COPY from S3 through Parse/Bind/Describe/Execute, as redshift_connector and psycopg 3 send it:
    the unnamed statement, a named statement and portal, and the named statement executed again."""
    sock = _raw_session(emulator.port, pg_cluster.user, pg_cluster.password, pg_cluster.database)
    table = f"ext_copy_{uuid.uuid4().hex[:8]}"
    copy = f"COPY {table} FROM '{to}' IAM_ROLE default CSV"
    try:
        _extended(
            sock, unload_sql("select g, 'n' || g from generate_series(1, 3) g", to, "CSV PARALLEL OFF"), []
        )
        assert (
            _exchange(sock, _msg(b"Q", f"create table {table} (id int, name text)\0".encode()))[-1][0] == b"Z"
        )
        execute = _msg(b"E", b"\0" + struct.pack("!i", 0))
        for name in (b"", b"copy_statement"):
            replies = _exchange(
                sock,
                _parse(name, copy),
                _msg(b"D", b"S" + name + b"\0"),
                _bind(name, name),
                _msg(b"E", name + b"\0" + struct.pack("!i", 0)),
                _msg(b"S"),
            )
            # ParseComplete, no parameters and NoData (no rows, as Redshift describes COPY), BindComplete,
            # the notice, COPY
            assert [k for k, _ in replies] == [b"1", b"t", b"n", b"2", b"N", b"C", b"Z"], replies
            assert b"3 record(s) loaded successfully" in replies[4][1] and replies[5][1] == b"COPY\0"
        replies = _exchange(
            sock, _bind(b"", b"copy_statement"), execute, _msg(b"S")
        )  # prepared once, run again
        assert [k for k, _ in replies] == [b"2", b"N", b"C", b"Z"]
        replies = _extended(sock, f"select count(*) from {table}", [])
        assert replies[2] == (b"D", struct.pack("!hi", 1, 1) + b"9")
    finally:
        sock.close()


@pytest.mark.parametrize(
    "sql",
    ["COPY t FROM $1 IAM_ROLE default CSV", "UNLOAD ($1) TO 's3://b/p/' IAM_ROLE default"],
    ids=["copy", "unload"],
)
def test_a_bind_parameter_in_copy_or_unload_is_refused_as_redshift_refuses_it(emulator, pg_cluster, sql):
    sock = _raw_session(emulator.port, pg_cluster.user, pg_cluster.password, pg_cluster.database)
    try:
        replies = _exchange(
            sock,
            _parse(b"", sql, param_types=1),
            _bind(b"", b"", [b"x"]),
            _msg(b"E", b"\0\0\0\0\0"),
            _msg(b"S"),
        )
        # The Parse fails; the rest is skipped up to the Sync, as PostgreSQL does.
        assert [k for k, _ in replies] == [b"E", b"Z"]
        fields = dict((f[:1], f[1:]) for f in replies[0][1].split(b"\0") if f)
        assert fields[b"C"] == b"42601" and fields[b"M"] == b'syntax error at or near "$1"'
        assert fields[b"P"] == str(sql.index("$1") + 1).encode()
        assert replies[-1] == (b"Z", b"I")
    finally:
        sock.close()


# ---- errors ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("statement", "code", "message"),
    [
        ("UNLOAD ('select 1') TO 's3://b/p/' IAM_ROLE default PARALLEL SIDEWAYS", "XX000", "UNLOAD: "),
        ("UNLOAD ('select * from no_such_table') TO '{to}' IAM_ROLE default", "42P01", "no_such_table"),
        ("UNLOAD ('select 1') TO 's3://no-such-bucket-emu/p/' IAM_ROLE default", "XX000", "NoSuchBucket"),
        # fails while writing (no emptiness check first): the lanes are cleaned up
        ("UNLOAD ('select 1') TO 's3://nobucket-emu/q/' IAM_ROLE default ALLOWOVERWRITE", "XX000", "S3"),
        ("UNLOAD ('insert into x values (1)') TO '{to}' IAM_ROLE default", None, None),
    ],
)
def test_bad_unload_leaves_connection_usable(rs, to, statement, code, message):
    with pytest.raises(psycopg2.Error) as failed, rs.cursor() as cur:
        cur.execute(statement.format(to=to))
    if code is not None:
        assert failed.value.pgcode == code
        assert message in str(failed.value)
    assert "LINE 1" not in str(failed.value)  # no caret pointing into the wrong statement
    assert rs.get_transaction_status() == psycopg2.extensions.TRANSACTION_STATUS_IDLE
    assert one(rs, "select 'still usable'") == ("still usable",)
    assert one(rs, "show standard_conforming_strings") == ("on",)


def test_failed_unload_aborts_the_open_transaction(emulator, pg_cluster, to, s3_server):
    conn = connect(emulator, pg_cluster, autocommit=False)
    try:
        with conn.cursor() as cur:
            cur.execute(unload_sql("select 1", to))
            with pytest.raises(psycopg2.Error, match="not empty"):
                cur.execute(unload_sql("select 1", to))
        assert conn.get_transaction_status() == psycopg2.extensions.TRANSACTION_STATUS_INERROR
        with pytest.raises(psycopg2.errors.InFailedSqlTransaction), conn.cursor() as cur:
            cur.execute("select 1")
        conn.rollback()
        assert one(conn, "show standard_conforming_strings") == ("on",)
        assert keys(s3_server, to)  # files of the first, successful UNLOAD stay: S3 is not transactional
    finally:
        conn.close()


# ---- concurrency, psql, vanished clients ---------------------------------------------------------


def test_two_clients_unload_at_once_while_a_third_queries(emulator, pg_cluster, to, s3_server):
    slow = "select g from generate_series(1, 3) g where pg_sleep(0.4) is not null"
    errors: list[BaseException] = []

    def run(name: str) -> None:
        try:
            conn = connect(emulator, pg_cluster)
            with conn.cursor() as cur:
                cur.execute(unload_sql(slow, to + name + "/", "PARALLEL OFF"))
            conn.close()
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(n,)) for n in ("a", "b")]
    for t in threads:
        t.start()
    third = connect(emulator, pg_cluster)
    time.sleep(0.2)
    assert one(third, "select 5") == (5,)
    # Answered while the UNLOADs (1.2 s of pg_sleep each) are still running: the loop is not blocked.
    assert all(t.is_alive() for t in threads)
    for t in threads:
        t.join()
    third.close()
    assert not errors
    assert emulator.peak_concurrent_unloads >= 2
    assert keys(s3_server, to) == ["a/000", "b/000"]


def _psql(emulator, pg_cluster, *commands: str, **kwargs) -> subprocess.Popen:
    args = [
        PSQL,
        "-X",
        "-h",
        "127.0.0.1",
        "-p",
        str(emulator.port),
        "-U",
        pg_cluster.user,
        "-d",
        pg_cluster.database,
    ]
    for command in commands:
        args += ["-c", command]
    env = {**os.environ, "PGPASSWORD": pg_cluster.password}
    return subprocess.Popen(
        args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kwargs
    )


def test_psql_prints_the_info_line(emulator, pg_cluster, to, s3_server):
    proc = _psql(
        emulator, pg_cluster, "select 40 + 2", unload_sql("select g from generate_series(1, 3) g", to)
    )
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert "INFO:  UNLOAD completed, 3 record(s) unloaded successfully." in err
    assert "42" in out and out.rstrip().endswith("UNLOAD")
    assert keys(s3_server, to)


def test_client_killed_mid_unload_leaves_nothing(emulator, pg_cluster, to, s3_server):
    # ~30 MB streams out, then the query blocks: files 000 and 001 (10 MB each) are complete and 002 is
    # an open multipart upload when the client is killed.
    select = (
        "select g, case when g < 230000 then repeat(md5(g::text), 4) else pg_sleep(30)::text end as filler"
        " from generate_series(1, 230000) g"
    )
    proc = _psql(emulator, pg_cluster, unload_sql(select, to, "PARALLEL OFF MAXFILESIZE 10 MB MANIFEST"))
    client, bucket = s3_server.client(), s3_server.bucket
    prefix = to[len(f"s3://{bucket}/") :]

    def uploads() -> list:
        return client.list_multipart_uploads(Bucket=bucket, Prefix=prefix).get("Uploads", [])

    deadline = time.monotonic() + 60
    while not ("001" in keys(s3_server, to) and uploads()):
        assert time.monotonic() < deadline, "the UNLOAD never got going"
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.1)
    proc.kill()
    proc.wait()

    deadline = time.monotonic() + 30
    while keys(s3_server, to) or uploads():
        assert time.monotonic() < deadline, f"left behind: {keys(s3_server, to)} {uploads()}"
        time.sleep(0.1)
    direct = psycopg2.connect(pg_cluster.dsn())
    direct.autocommit = True
    try:
        while one(
            direct,
            "select count(*) from pg_stat_activity where query like '%pg_sleep(30)%'"
            " and pid <> pg_backend_pid()",
        )[0]:
            assert time.monotonic() < deadline, "the backend query was not cancelled"
            time.sleep(0.1)
        status = one(
            direct, f"select status, error_message from sys_unload_history where unloaded_location = '{to}'"
        )
        assert status[0] == "aborted" and "disconnected" in status[1]
    finally:
        direct.close()
