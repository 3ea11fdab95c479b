"""Connecting to Redshift as production does, against the local stack: TLS with the server's certificate
checked, and IAM temporary credentials minted by AWS (moto's `get_cluster_credentials`, the stand-in's
Serverless `get_credentials`) that the emulator accepts only while they are valid."""

from __future__ import annotations

import dagster as dg
import psycopg2
import pytest
from unload_assets_local.tls import local_tls_files

from unload_assets.component import build_definitions
from unload_assets.resources.redshift_auth import CREDENTIALS
from unload_assets_tests.support.pipeline_helpers import (
    csv_rows,
    decompress,
    get_bytes,
    materialise,
    write_catalogue,
)
from unload_assets_tests.support.this_project import redshift_resource

pytestmark = pytest.mark.stack

BUCKET = "unload-local"
CATALOGUE = """
targets:
  - name: login_{n}
    description: one small export per login test
    sql: select customer_id, name from public.customers where customer_id <= 20 order by customer_id
    key_template: exports/login/{n}.csv
    format: csv
    header: true
"""
SLOW = """
targets:
""" + "".join(
    f"""
  - name: slow_{i}
    description: each UNLOAD takes a second, so the run outlives a 2-second credential
    sql: select customer_id, pg_sleep(1)::text as slept from public.customers where customer_id = {i}
    key_template: exports/login/slow_{i}.csv
    format: csv
"""
    for i in range(1, 4)
)


def _connect(stack_env, **options):
    return psycopg2.connect(
        host=options.pop("host", "127.0.0.1"), port=int(stack_env["REDSHIFT_PORT"]),
        user=stack_env["REDSHIFT_USER"], password=stack_env["REDSHIFT_PASSWORD"],
        dbname=stack_env["REDSHIFT_DATABASE"], connect_timeout=10, **options,
    )  # fmt: skip


@pytest.mark.parametrize(
    ("options", "tls"),
    [
        ({"sslmode": "disable"}, False),
        ({"sslmode": "require"}, True),
        ({"sslmode": "verify-full", "sslrootcert": "CA"}, True),
        ({"sslmode": "verify-full", "sslrootcert": "CA", "host": "localhost"}, True),
    ],
)
def test_the_emulator_speaks_plain_tcp_and_tls(stack_env, options, tls):
    options = {k: stack_env["REDSHIFT_SSLROOTCERT"] if v == "CA" else v for k, v in options.items()}
    conn = _connect(stack_env, **options)
    try:
        assert conn.info.ssl_in_use is tls
        with conn.cursor() as cur:
            cur.execute("select count(*) from public.customers where customer_id <= 3")
            assert cur.fetchone() == (3,)
    finally:
        conn.close()


def test_verify_full_against_another_ca_is_refused_clearly(stack_env, tmp_path, monkeypatch):
    other = local_tls_files(tmp_path / "other", common_name="some other CA").ca_cert
    with pytest.raises(psycopg2.OperationalError, match="certificate verify failed"):
        _connect(stack_env, sslmode="verify-full", sslrootcert=str(other))
    monkeypatch.setenv("REDSHIFT_SSLROOTCERT", str(other))
    resource = redshift_resource().process_config_and_initialize()
    with pytest.raises(dg.Failure) as failure:
        resource.connect()
    assert not failure.value.allow_retries
    assert "certificate verify failed" in str(failure.value.description)
    assert "redshift.sslrootcert" in str(failure.value.description)


@pytest.fixture()
def auth(monkeypatch, local_stack, stack_env):
    """Switch the environment to an IAM mode; the process's credential cache starts empty."""

    def use(mode: str) -> None:
        monkeypatch.setenv("REDSHIFT_AUTH", mode)
        monkeypatch.delenv("REDSHIFT_PASSWORD")  # not needed, so not given

    CREDENTIALS.clear()
    yield use
    CREDENTIALS.clear()
    local_stack.aws.lifetime_seconds = None


@pytest.mark.parametrize(
    ("mode", "action", "user"),
    [
        ("iam", "GetClusterCredentials", "IAM:unload"),
        ("iam_identity", "GetClusterCredentialsWithIAM", "IAMR:"),
        ("serverless", "GetCredentials", "IAMR:"),
    ],
)
def test_a_materialisation_in_each_iam_mode(auth, mode, action, user, local_stack, tmp_path, s3, monkeypatch):
    auth("iam" if mode == "iam_identity" else mode)
    monkeypatch.setenv("REDSHIFT_IAM_IDENTITY", str(mode == "iam_identity").lower())
    before, calls = len(local_stack.credentials.minted()), local_stack.aws.calls[action]
    catalogue = write_catalogue(tmp_path, CATALOGUE.format(n=mode))
    result = materialise(catalogue, f"login_{mode}")
    assert result.success
    text = decompress(get_bytes(s3, BUCKET, f"exports/login/{mode}.csv"), "none").decode()
    header, rows = csv_rows(text, header=True)
    assert header == ["customer_id", "name"] and [r[0] for r in rows] == [str(i) for i in range(1, 21)]
    minted = local_stack.credentials.minted()[before:]
    assert local_stack.aws.calls[action] == calls + 1 and len(minted) == 1
    assert minted[0].user.startswith(user)


@pytest.mark.parametrize("mode", ["iam", "serverless"])
def test_expired_credentials_fail_at_once_with_a_clear_error(auth, mode, local_stack, tmp_path):
    auth(mode)
    local_stack.aws.lifetime_seconds = 0  # AWS answers with a set that has already expired
    catalogue = write_catalogue(tmp_path, CATALOGUE.format(n=f"expired_{mode}"))
    result = materialise(catalogue, f"login_expired_{mode}", raise_on_error=False)
    assert not result.success
    failures = [e for e in result.all_events if e.is_step_failure]
    assert len(failures) == 1  # refused logins are not retried
    error = failures[0].step_failure_data.user_failure_data.description  # type: ignore[union-attr]
    assert (
        "password authentication failed for user" in error and "temporary credentials were refused" in error
    )
    assert all(m.password not in repr(result.all_events) for m in local_stack.credentials.minted())


def test_a_wrong_password_for_a_temporary_user_is_refused(auth, local_stack, stack_env):
    auth("iam")
    login = redshift_resource().process_config_and_initialize().login()
    with pytest.raises(
        psycopg2.OperationalError, match=f'password authentication failed for user "{login.user}"'
    ):
        psycopg2.connect(
            host="127.0.0.1", port=int(stack_env["REDSHIFT_PORT"]), user=login.user,
            password=login.password[::-1], dbname=stack_env["REDSHIFT_DATABASE"], sslmode="disable",
        )  # fmt: skip


@pytest.mark.parametrize("mode", ["iam", "serverless"])
def test_a_run_that_outlives_its_credentials_keeps_working(
    auth, mode, local_stack, tmp_path, s3, monkeypatch
):
    auth(mode)
    monkeypatch.setenv("UNLOAD_MAX_CONCURRENT", "1")  # the three UNLOADs one after the other
    local_stack.aws.lifetime_seconds = 2
    before = len(local_stack.credentials.minted())
    catalogue = write_catalogue(tmp_path, SLOW)
    defs = build_definitions(catalogue)
    job = defs.resolve_implicit_job_def_def_for_assets(
        [dg.AssetKey(["s3", f"slow_{i}"]) for i in range(1, 4)]
    )
    assert job is not None
    result = job.execute_in_process(instance=dg.DagsterInstance.ephemeral())
    assert result.success
    for i in range(1, 4):
        assert get_bytes(s3, BUCKET, f"exports/login/slow_{i}.csv").startswith(f"{i},".encode())
    # Three UNLOADs of a second each, one after the other, on 2-second credentials: minted more than once.
    assert len(local_stack.credentials.minted()) - before >= 2
