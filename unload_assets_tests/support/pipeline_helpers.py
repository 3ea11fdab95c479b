"""Helpers for tests that materialise unload assets against the local stack."""

from __future__ import annotations

import bz2
import csv
import gzip
import io
import os
import textwrap
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import dagster as dg
import psycopg2
import zstandard

from unload_assets.component import build_definitions
from unload_assets_tests.support.this_project import asset_key_for


@contextmanager
def environment(env: Mapping[str, str]) -> Iterator[None]:
    """`env` set while the block runs, the previous values back after it."""
    saved = {name: os.environ.get(name) for name in env}
    os.environ.update(env)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def job_with_env(module: str, function: str, env: Mapping[str, str]) -> Any:
    """A reconstructable job built by `module.function(env=env)`: each step process gets `env` as an
    argument. (Through the process environment it would not: the warm forkserver that forks the steps
    keeps the environment of the test that started it.)"""
    return dg.build_reconstructable_job(
        module,
        function,
        reconstructable_kwargs={"env": dict(env)},
        reconstructor_working_directory=str(Path(__file__).resolve().parents[2]),  # where the tests import
    )


def write_catalogue(tmp_path: Path, body: str, *, name: str = "catalogue.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(body))
    return path


def materialise(
    catalogue: Path,
    target: str,
    *,
    partition: str | None = None,
    instance: dg.DagsterInstance | None = None,
    raise_on_error: bool = True,
) -> dg.ExecuteInJobResult:
    """Run the asset `s3/<target>` (and its checks) the way the daily job does, in-process."""
    defs = build_definitions(catalogue)
    job = defs.resolve_implicit_job_def_def_for_assets([asset_key_for(target)])
    assert job is not None
    return job.execute_in_process(
        partition_key=partition,
        asset_selection=[asset_key_for(target)],
        instance=instance or dg.DagsterInstance.ephemeral(),
        raise_on_error=raise_on_error,
    )


def materialisation_metadata(result: dg.ExecuteInJobResult, target: str) -> dict[str, Any]:
    events = [
        e.step_materialization_data.materialization
        for e in result.get_asset_materialization_events()
        if e.asset_key == asset_key_for(target)
    ]
    assert len(events) == 1, events
    return {key: value.value for key, value in events[0].metadata.items()}


def connect_redshift(stack_env: dict[str, str]) -> Any:
    """A psycopg2 connection to the stack's Redshift emulator, as a client of the cluster would open it."""
    return psycopg2.connect(
        host="127.0.0.1",
        port=int(stack_env["REDSHIFT_PORT"]),
        user=stack_env["REDSHIFT_USER"],
        password=stack_env["REDSHIFT_PASSWORD"],
        dbname=stack_env["REDSHIFT_DATABASE"],
        sslmode=stack_env["REDSHIFT_SSLMODE"],
        sslrootcert=stack_env["REDSHIFT_SSLROOTCERT"],
    )


def get_bytes(s3: Any, bucket: str, key: str) -> bytes:
    return s3.get_object(Bucket=bucket, Key=key)["Body"].read()


def decompress(data: bytes, compression: str) -> bytes:
    if compression == "gzip":
        return gzip.decompress(data)
    if compression == "bzip2":
        return bz2.decompress(data)
    if compression == "zstd":
        # Concatenated zstd frames: read them all.
        return zstandard.ZstdDecompressor().stream_reader(io.BytesIO(data), read_across_frames=True).read()
    return data


def csv_rows(text: str, *, header: bool) -> tuple[list[str] | None, list[list[str]]]:
    rows = list(csv.reader(io.StringIO(text, newline="")))
    return (rows[0], rows[1:]) if header else (None, rows)


def query_as_text(dsn: str, sql: str) -> list[list[str]]:
    """Rows as the CSV UNLOAD renders them: every value as PostgreSQL's text output, NULL as ''."""
    with psycopg2.connect(dsn) as conn, conn.cursor() as cur:
        cur.execute(f"select * from ({sql}) q")
        names = [d.name for d in cur.description]
        cols = ", ".join('q."' + n.replace('"', '""') + '"::text' for n in names)
        cur.execute(f"select {cols} from ({sql}) q")
        return [["" if v is None else v for v in row] for row in cur.fetchall()]
