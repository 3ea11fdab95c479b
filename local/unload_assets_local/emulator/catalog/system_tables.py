"""Redshift's UNLOAD and COPY bookkeeping inside PostgreSQL: system tables, session functions, query ids.

Installed with the superuser DSN into every database clients use (once per database, on first use), in
`pg_catalog`, where Redshift keeps its own: `stl_unload_log` (one row per file), `sys_unload_history`
(one row per UNLOAD), `stl_load_errors` (one row per failed COPY), a query-id sequence, and
`pg_last_unload_count()` / `pg_last_unload_id()`, which read session settings the proxy sets on the
client's own backend after each UNLOAD. Being in `pg_catalog`, they are reachable unqualified (it is on
every search_path) and stay out of psql's `\\dt` and of every tool's list of user tables, as on Redshift. The
log rows are written on a separate superuser connection, so, as on Redshift, they survive the client's
transaction rolling back. With them, the Redshift catalog views the tools read (`redshift_views.py`).

Every method blocks; the proxy calls them from worker threads.
"""

from __future__ import annotations

import itertools
import logging
import threading
from typing import Any

from unload_assets_local.emulator.catalog.redshift_views import REDSHIFT_VIEWS, REDSHIFT_VIEWS_VERSION

log = logging.getLogger(__name__)

REDSHIFT_VERSION = (
    "PostgreSQL 8.0.2 on i686-pc-linux-gnu, compiled by GCC gcc (GCC) 3.4.2 20041017 (Red Hat 3.4.2-6.fc3), "
    "Redshift 1.0.77467"
)
COUNT_SETTING = "redshift.last_unload_count"
ID_SETTING = "redshift.last_unload_id"

# The emulator's own objects lived in `public` before; moved (with their rows) on the first install.
_MOVED_FROM_PUBLIC = ("stl_unload_log", "sys_unload_history", "stl_load_errors", "redshift_unload_query_id")
DDL = f"""
SELECT pg_advisory_xact_lock(7226150);
-- Creating objects in pg_catalog is refused unless this is on (superuser only, this transaction only).
SET LOCAL allow_system_table_mods = on;
DO $move$
DECLARE name text;
BEGIN
    FOREACH name IN ARRAY ARRAY{list(_MOVED_FROM_PUBLIC)!r}::text[] LOOP
        IF to_regclass('public.' || name) IS NOT NULL AND to_regclass('pg_catalog.' || name) IS NULL THEN
            EXECUTE format('ALTER %s public.%I SET SCHEMA pg_catalog',
                CASE WHEN name LIKE '%query_id' THEN 'SEQUENCE' ELSE 'TABLE' END, name);
        END IF;
    END LOOP;
END $move$;
DROP FUNCTION IF EXISTS public.pg_last_unload_count();
DROP FUNCTION IF EXISTS public.pg_last_unload_id();
CREATE SEQUENCE IF NOT EXISTS pg_catalog.redshift_unload_query_id;
CREATE TABLE IF NOT EXISTS pg_catalog.stl_unload_log (
    userid integer, query integer, slice integer, pid integer, path character varying(1280),
    start_time timestamp, end_time timestamp, line_count bigint, transfer_size bigint,
    file_format character varying(10)
);
CREATE TABLE IF NOT EXISTS pg_catalog.sys_unload_history (
    user_id integer, query_id bigint, transaction_id bigint, session_id integer, database_name text,
    status text, start_time timestamp, end_time timestamp, duration bigint, file_format text,
    compression_type text, unloaded_location text, unloaded_rows bigint, unloaded_files_count bigint,
    unloaded_files_size bigint, error_message text
);
CREATE TABLE IF NOT EXISTS pg_catalog.stl_load_errors (
    userid integer, slice integer, tbl text, starttime timestamp DEFAULT now(), session integer,
    query integer, filename character(256), line_number bigint, colname character(127), type character(10),
    col_length character(10), position integer, raw_line character(1024), raw_field_value character(1024),
    err_code integer, err_reason character(100)
);
GRANT SELECT ON pg_catalog.stl_unload_log, pg_catalog.sys_unload_history, pg_catalog.stl_load_errors
    TO PUBLIC;
CREATE OR REPLACE FUNCTION pg_catalog.pg_last_unload_count() RETURNS bigint LANGUAGE sql STABLE AS
    $$ SELECT coalesce(nullif(current_setting('{COUNT_SETTING}', true), '')::bigint, 0) $$;
CREATE OR REPLACE FUNCTION pg_catalog.pg_last_unload_id() RETURNS integer LANGUAGE sql STABLE AS
    $$ SELECT coalesce(nullif(current_setting('{ID_SETTING}', true), '')::integer, -1) $$;
-- Not in pg_catalog: it must be found before pg_catalog's own version() (see SEARCH_PATH).
CREATE OR REPLACE FUNCTION public.version() RETURNS text LANGUAGE sql IMMUTABLE AS
    $$ SELECT '{REDSHIFT_VERSION}'::text $$;
"""
# `version()` as Redshift answers it; found before pg_catalog's because the database's search_path
# names pg_catalog last (PostgreSQL only searches it first when the path does not name it).
SEARCH_PATH = 'ALTER DATABASE {} SET search_path = "$user", public, pg_catalog'

_HISTORY_START = """
INSERT INTO pg_catalog.sys_unload_history (user_id, query_id, session_id, database_name, status, start_time,
    file_format, compression_type, unloaded_location)
VALUES (%(user_id)s, %(query_id)s, %(session_id)s, %(database)s, 'running', %(start)s, %(file_format)s,
    %(compression)s, %(location)s)
"""
_HISTORY_END = """
UPDATE pg_catalog.sys_unload_history SET status = %(status)s, end_time = %(end)s,
    duration = (extract(epoch FROM %(end)s - start_time) * 1000000)::bigint, unloaded_rows = %(rows)s,
    unloaded_files_count = %(files)s, unloaded_files_size = %(size)s, error_message = %(error)s
WHERE query_id = %(query_id)s
"""
_LOAD_ERROR = """
INSERT INTO pg_catalog.stl_load_errors (session, filename, line_number, colname, err_code, err_reason,
    raw_field_value, tbl)
VALUES (%(session)s, %(filename)s, %(line_number)s, %(colname)s, %(err_code)s, %(err_reason)s,
    %(raw_field_value)s, %(tbl)s)
"""
_FILE_ROW = """
INSERT INTO pg_catalog.stl_unload_log (userid, query, slice, pid, path, start_time, end_time, line_count,
    transfer_size, file_format)
VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
"""


class Catalog:
    def __init__(self, superuser_dsn: str | None) -> None:
        self.dsn = superuser_dsn
        self._lock = threading.Lock()
        self._conns: dict[str, Any] = {}
        self._local_ids = itertools.count(1)  # query ids when there is no catalog
        self._settings: frozenset[str] | None = None

    @property
    def enabled(self) -> bool:
        return self.dsn is not None

    def install(self, database: str | None = None) -> None:
        """Create the catalog objects in `database` (the DSN's own by default) unless already done."""
        if self.dsn is None:
            return
        with self._lock:
            self._connection(database)

    def startup_parameters(self) -> frozenset[str] | None:
        """PostgreSQL's setting names (lower case): what a startup packet may carry. None without a DSN."""
        if self.dsn is None:
            return None
        if self._settings is None:
            with self._lock, self._connection(None).cursor() as cur:
                cur.execute("SELECT lower(name) FROM pg_settings")
                self._settings = frozenset(row[0] for row in cur.fetchall())
        return self._settings

    def next_query_id(self, database: str) -> int:
        if self.dsn is None:
            return next(self._local_ids)
        rows = self._run(database, "SELECT nextval('pg_catalog.redshift_unload_query_id')", ())
        return int(rows[0][0]) if rows else next(self._local_ids)

    def started(self, database: str, **fields: Any) -> None:
        self._run(database, _HISTORY_START, {"database": database, **fields})

    def ended(self, database: str, **fields: Any) -> None:
        self._run(database, _HISTORY_END, fields)

    def load_error(self, database: str, row: dict[str, Any]) -> None:
        """One `stl_load_errors` row for a failed COPY (kept when the client's transaction rolls back)."""
        self._run(database, _LOAD_ERROR, row)

    def file_written(self, database: str, rows: list[tuple[Any, ...]]) -> None:
        for row in rows:
            self._run(database, _FILE_ROW, row)

    def close(self) -> None:
        with self._lock:
            for conn in self._conns.values():
                conn.close()
            self._conns.clear()

    def _run(self, database: str, sql: str, params: Any) -> list[tuple[Any, ...]]:
        if self.dsn is None:
            return []
        with self._lock:
            try:
                with self._connection(database).cursor() as cur:
                    cur.execute(sql, params)
                    return cur.fetchall() if cur.description else []
            except Exception as exc:  # noqa: BLE001 - bookkeeping must not fail an UNLOAD
                log.warning("Redshift emulator could not record UNLOAD bookkeeping in %s: %s", database, exc)
                self._conns.pop(database, None)
                return []

    def _connection(self, database: str | None) -> Any:
        import psycopg2
        from psycopg2 import sql
        from psycopg2.extensions import make_dsn, parse_dsn

        assert self.dsn is not None
        name = database or parse_dsn(self.dsn).get("dbname", "postgres")
        conn = self._conns.get(name)
        if conn is None or conn.closed:
            conn = psycopg2.connect(make_dsn(self.dsn, dbname=name))
            with conn, conn.cursor() as cur:
                cur.execute(DDL)
                # The views are made again only when their definition changed: dropping them takes a
                # lock that would wait for every session still reading them.
                cur.execute("SELECT obj_description(to_regclass('pg_catalog.pg_table_def'), 'pg_class')")
                if cur.fetchone()[0] != REDSHIFT_VIEWS_VERSION:
                    cur.execute("SET LOCAL allow_system_table_mods = on")
                    cur.execute(REDSHIFT_VIEWS)
                    cur.execute(
                        sql.SQL("COMMENT ON VIEW pg_catalog.pg_table_def IS {}").format(
                            sql.Literal(REDSHIFT_VIEWS_VERSION)
                        )
                    )
                cur.execute(sql.SQL(SEARCH_PATH).format(sql.Identifier(name)))
            conn.autocommit = True
            self._conns[name] = conn
        return conn
