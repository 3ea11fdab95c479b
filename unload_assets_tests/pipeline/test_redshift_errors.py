"""Which Redshift errors the unload op retries: every SQLSTATE class the code calls transient, read from a
real server (the stack's emulator relays PostgreSQL's error, SQLSTATE included), and one that it is not."""

from __future__ import annotations

import dagster as dg
import psycopg2
import pytest

from unload_assets.resources.redshift import TransientRedshiftError
from unload_assets_tests.support.this_project import redshift_resource

pytestmark = pytest.mark.stack


@pytest.fixture(scope="module")
def raises(local_stack, stack_env) -> str:
    """`public.raise_sqlstate(code)`: a function whose call fails with that SQLSTATE."""
    with psycopg2.connect(local_stack.postgres.dsn()) as conn, conn.cursor() as cur:
        cur.execute(
            "create or replace function public.raise_sqlstate(code text) returns int language plpgsql as "
            "$$ begin raise exception 'injected failure %', code using errcode = code; end $$"
        )
        cur.execute(
            "create or replace function public.raise_with(code text, message text) returns int"
            " language plpgsql as $$ begin raise exception '%', message using errcode = code; end $$"
        )
    return "public.raise_sqlstate"


def _unload(select: str, secrets: tuple[str, ...] = ()) -> None:
    sql = f"UNLOAD ('{select}') TO 's3://unload-local/_staging/errors/' IAM_ROLE default PARALLEL OFF"
    with dg.build_resources({"redshift": redshift_resource()}) as resources:  # EnvVars resolved
        redacted = sql  # as the statement builder redacts credentials in what it logs
        for secret in secrets:
            redacted = redacted.replace(secret, "***")
        resources.redshift.unload(sql, redacted=redacted, secrets=secrets)


@pytest.mark.parametrize(
    "code",
    [
        "53100",  # disk full: insufficient resources (class 53)
        "53300",  # too many connections (class 53)
        "40001",  # serialization failure (class 40)
        "40P01",  # deadlock detected (class 40)
        "57014",  # query cancelled (class 57)
        "08006",  # connection failure (class 08)
    ],
)
def test_transient_sqlstate_classes_are_retried(raises, code):
    with pytest.raises(TransientRedshiftError, match=f"out of capacity \\({code}\\): ERROR: "):
        _unload(f"select {raises}(''{code}'')")


@pytest.mark.parametrize("code", ["42601", "22012", "XX000"])
def test_other_sqlstates_fail_at_once_naming_the_code(raises, code):
    with pytest.raises(dg.Failure) as failed:
        _unload(f"select {raises}(''{code}'')")
    assert failed.value.allow_retries is False
    assert f"Redshift refused the UNLOAD ({code}): " in str(failed.value.description)
    assert failed.value.metadata["sqlstate"].value == code


@pytest.mark.parametrize("code", ["42000", "53300"])  # refused (Failure) and transient (retried)
def test_a_secret_that_redshift_echoes_in_its_error_never_reaches_the_exception(raises, code):
    # A cluster may quote what it was given (credentials in a failed statement, say): the error the op
    # raises, which Dagster records and Slack may show, holds the secret's place, never its value.
    secret = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYzz0SECRET"
    select = f"select public.raise_with(''{code}'', ''credentials {secret} refused'')"
    with pytest.raises((dg.Failure, TransientRedshiftError)) as raised:
        _unload(select, secrets=(secret,))
    error = raised.value
    text = str(error) + str(getattr(error, "description", "")) + repr(getattr(error, "metadata", {}))
    assert secret not in text and "credentials *** refused" in text


@pytest.mark.parametrize(
    ("message", "transient"),
    [
        ("S3ServiceException:Please reduce your request rate.,Status 503,Error SlowDown,Rid X", True),
        ("S3ServiceException:We encountered an internal error.,Status 500,Error InternalError,Rid X", True),
        ("S3ServiceException:Access Denied,Status 403,Error AccessDenied,Rid X", False),
        ("S3ServiceException:The specified bucket does not exist,Status 404,Error NoSuchBucket,Rid X", False),
    ],
)
def test_s3_trouble_inside_unload_is_retried_only_when_s3_says_so(raises, message, transient):
    # Redshift reports S3's failures inside UNLOAD as XX000 with S3's own status and code.
    expected = TransientRedshiftError if transient else dg.Failure
    with pytest.raises(expected):
        _unload(f"select public.raise_with(''XX000'', ''{message}'')")
