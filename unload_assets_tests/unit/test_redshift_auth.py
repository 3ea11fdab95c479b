"""Settings checked without servers: how the Redshift resource logs in (the credential cache and the
variables' checks) and the Slack sensors' interval. The login paths run against the emulator and the AWS
stand-ins in `test_redshift_login.py`.
"""

from __future__ import annotations

import pytest

from unload_assets.environment import redshift_from_env
from unload_assets.resources.redshift_auth import CredentialCache, CredentialRequest, Login

BASE = {"REDSHIFT_HOST": "cluster.example", "REDSHIFT_DATABASE": "dev"}
IAM = CredentialRequest(mode="iam", database="dev", cluster_identifier="c1", db_user="alice")


class FakeAws:
    """Mints numbered passwords that live `lifetime` seconds on a clock the test moves."""

    def __init__(self, lifetime: float) -> None:
        self.now, self.lifetime, self.calls = 1000.0, lifetime, 0

    def mint(self, request: CredentialRequest) -> Login:
        self.calls += 1
        return Login(
            f"IAM:{request.db_user}", f"pw{self.calls}", self.now + self.lifetime, minted_at=self.now
        )


def test_the_cache_reuses_a_set_until_shortly_before_it_expires_then_mints_again():
    aws = FakeAws(lifetime=900)
    cache = CredentialCache(aws.mint, clock=lambda: aws.now)
    assert cache.login(IAM).password == "pw1"
    aws.now += 674  # 226 s left: more than the margin (a quarter of 900 s, at most 5 minutes)
    assert cache.login(IAM).password == "pw1"
    aws.now += 1
    assert cache.login(IAM).password == "pw2"
    aws.now += 599
    assert cache.login(IAM).password == "pw2"
    assert aws.calls == 2
    aws = FakeAws(lifetime=3600)
    cache = CredentialCache(aws.mint, clock=lambda: aws.now)
    cache.login(IAM)
    aws.now += 3300  # 300 s left of an hour: the margin is 5 minutes at most
    assert cache.login(IAM).password == "pw2"


def test_short_lived_sets_refresh_at_a_quarter_of_their_lifetime():
    aws = FakeAws(lifetime=20)
    cache = CredentialCache(aws.mint, clock=lambda: aws.now)
    cache.login(IAM)
    aws.now += 14
    assert cache.login(IAM).password == "pw1"  # 6 s left, more than a quarter (5 s)
    aws.now += 1
    assert cache.login(IAM).password == "pw2"


def test_each_distinct_request_has_its_own_set_and_a_refused_set_is_forgotten():
    aws = FakeAws(lifetime=900)
    cache = CredentialCache(aws.mint, clock=lambda: aws.now)
    bob = CredentialRequest(mode="iam", database="dev", cluster_identifier="c1", db_user="bob")
    assert (cache.login(IAM).user, cache.login(bob).user) == ("IAM:alice", "IAM:bob")
    cache.forget(IAM)
    assert cache.login(IAM).password == "pw3"
    assert aws.calls == 3


def _env(**extra: str) -> dict[str, str]:
    return {**BASE, **extra}


@pytest.mark.parametrize(
    ("env", "names"),
    [
        (_env(REDSHIFT_AUTH="kerberos"), "REDSHIFT_AUTH must be one of password, iam, serverless"),
        (_env(REDSHIFT_USER="u"), "REDSHIFT_AUTH=password needs REDSHIFT_PASSWORD"),
        (_env(REDSHIFT_AUTH="iam", REDSHIFT_USER="u"), "REDSHIFT_AUTH=iam needs REDSHIFT_CLUSTER_IDENTIFIER"),
        (
            _env(REDSHIFT_AUTH="iam", REDSHIFT_CLUSTER_IDENTIFIER="c1"),
            "REDSHIFT_AUTH=iam needs REDSHIFT_DB_USER",
        ),
        (_env(REDSHIFT_AUTH="serverless"), "REDSHIFT_AUTH=serverless needs REDSHIFT_WORKGROUP"),
        (
            _env(
                REDSHIFT_AUTH="serverless", REDSHIFT_WORKGROUP="w", REDSHIFT_CREDENTIALS_DURATION_SECONDS="60"
            ),
            "REDSHIFT_CREDENTIALS_DURATION_SECONDS must be a whole number from 900 to 3600, not '60'",
        ),
        (
            _env(REDSHIFT_USER="u", REDSHIFT_PASSWORD="p", REDSHIFT_SSLMODE="on"),
            "REDSHIFT_SSLMODE must be one",
        ),
        (
            _env(REDSHIFT_USER="u", REDSHIFT_PASSWORD="p", REDSHIFT_SSLROOTCERT="/nonexistent/ca.pem"),
            "REDSHIFT_SSLROOTCERT names no readable file: /nonexistent/ca.pem",
        ),
        (
            _env(
                REDSHIFT_AUTH="iam",
                REDSHIFT_CLUSTER_IDENTIFIER="c",
                REDSHIFT_USER="u",
                REDSHIFT_AUTO_CREATE="1",
            ),
            "REDSHIFT_AUTO_CREATE must be true or false",
        ),
        (
            _env(REDSHIFT_AUTH="iam", REDSHIFT_CLUSTER_IDENTIFIER="c", REDSHIFT_IAM_IDENTITY="yes"),
            "REDSHIFT_IAM_IDENTITY must be true or false, not 'yes'",
        ),
    ],
)
def test_each_mistake_in_the_variables_is_named_at_load(env, names):
    with pytest.raises(ValueError, match=names.replace("(", r"\(")):
        redshift_from_env(env)


def test_the_variables_select_each_mode():
    iam = redshift_from_env(
        _env(REDSHIFT_AUTH="iam", REDSHIFT_CLUSTER_IDENTIFIER="c1", REDSHIFT_DB_USER="alice",
             REDSHIFT_DB_GROUPS="finance, readers", REDSHIFT_AUTO_CREATE="true")
    )  # fmt: skip
    assert (iam.auth, iam.cluster_identifier, iam.db_user, iam.db_groups, iam.auto_create) == (
        "iam", "c1", "alice", ["finance", "readers"], True
    )  # fmt: skip
    assert iam.password is None and iam.credentials_duration_seconds == 900
    serverless = redshift_from_env(
        _env(
            REDSHIFT_AUTH="serverless", REDSHIFT_WORKGROUP="w1", REDSHIFT_CREDENTIALS_DURATION_SECONDS="3600"
        )
    )
    assert (serverless.auth, serverless.workgroup, serverless.credentials_duration_seconds) == (
        "serverless", "w1", 3600
    )  # fmt: skip


@pytest.mark.parametrize(("raw", "interval"), [("", 30), ("5", 5), ("600", 600), ("4", None), ("30s", None)])
def test_the_slack_sensors_interval_is_checked_at_load(monkeypatch, raw, interval):
    from unload_assets.environment import sensor_interval_seconds

    monkeypatch.setenv("UNLOAD_SENSOR_INTERVAL_SECONDS", raw)
    if interval is None:
        with pytest.raises(ValueError, match="UNLOAD_SENSOR_INTERVAL_SECONDS must be a whole number from 5"):
            sensor_interval_seconds()
    else:
        assert sensor_interval_seconds() == interval
