"""Settings checked without servers: how the Redshift resource logs in (the credential cache and the
variables' checks) and the Slack sensors' interval. The login paths run against the emulator and the AWS
stand-ins in `test_redshift_login.py`.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import dagster as dg
import pytest

from unload_assets.component import UnloadTargets
from unload_assets.resources import RedshiftUnloadResource
from unload_assets.resources.redshift_auth import CredentialCache, CredentialRequest, Login

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


def _redshift(**attributes: object) -> RedshiftUnloadResource:
    """The Redshift resource an instance with these `redshift` attributes builds (as its defs.yaml says)."""
    redshift = {"host": "cluster.example", "database": "dev", **attributes}
    component = UnloadTargets.from_attributes_dict(
        attributes={"name": "t", "redshift": redshift, "s3": {"bucket": "b"}}
    )
    return component.configuration(Path.cwd()).redshift


@pytest.mark.parametrize(
    ("attributes", "names"),
    [
        ({"auth": "kerberos"}, "'kerberos' is not one of password, iam, serverless, data_api"),
        (
            {"auth": "data_api"},
            "redshift.auth data_api needs redshift.cluster_identifier or redshift.workgroup",
        ),
        (
            {"auth": "data_api", "cluster_identifier": "c1"},
            "data_api with a cluster needs redshift.db_user (or redshift.user) or redshift.secret_arn",
        ),
        ({"auth": "iam", "user": "u"}, "redshift.auth iam needs redshift.cluster_identifier"),
        ({"auth": "iam", "cluster_identifier": "c1"}, "redshift.auth iam needs redshift.db_user"),
        ({"auth": "serverless"}, "redshift.auth serverless needs redshift.workgroup"),
        (
            {"auth": "serverless", "workgroup": "w", "credentials_duration_seconds": 60},
            "60 is not a whole number from 900 to 3600",
        ),
        ({"user": "u", "sslmode": "on"}, "'on' is not one of disable, allow"),
        ({"user": "u", "sslrootcert": "/nonexistent/ca.pem"}, "names no readable file: /nonexistent/ca.pem"),
        (
            {"auth": "iam", "cluster_identifier": "c", "user": "u", "auto_create": "maybe"},
            "is not true or false",
        ),
        ({"auth": "iam", "cluster_identifier": "c", "iam_identity": 2}, "iam_identity"),
        ({"user": "u", "password": "hunter2"}, "write the secret as {{ env.NAME }}"),
    ],
)
def test_each_mistake_in_the_connection_is_named_at_load(attributes, names):
    with pytest.raises(Exception, match=re.escape(names)) as caught:
        _redshift(**attributes)
    assert "hunter2" not in str(caught.value)


def test_the_attributes_select_each_mode(monkeypatch):
    monkeypatch.setenv("A_PASSWORD", "secret")
    password = _redshift(user="u", password="{{ env.A_PASSWORD }}")
    assert (password.auth, password.user, password.password) == ("password", "u", dg.EnvVar("A_PASSWORD"))
    iam = _redshift(
        auth="iam", cluster_identifier="c1", db_user="alice", db_groups="finance, readers", auto_create=True
    )
    assert (iam.auth, iam.cluster_identifier, iam.db_user, iam.db_groups, iam.auto_create) == (
        "iam", "c1", "alice", ["finance", "readers"], True
    )  # fmt: skip
    assert iam.password is None and iam.credentials_duration_seconds == 900
    serverless = _redshift(auth="serverless", workgroup="w1", credentials_duration_seconds="3600")
    assert (serverless.auth, serverless.workgroup, serverless.credentials_duration_seconds) == (
        "serverless", "w1", 3600
    )  # fmt: skip


def test_the_data_api_needs_no_host_and_reads_its_secret_arn_at_run_time(monkeypatch):
    monkeypatch.setenv("A_SECRET_ARN", "arn:aws:secretsmanager:us-east-1:123456789012:secret:rs-AbCdEf")
    api = _redshift(
        host=None, auth="data_api", cluster_identifier="c1", secret_arn="{{ env.A_SECRET_ARN }}",
        workgroup="w1", region="eu-west-1", endpoint_url="http://127.0.0.1:9",
    )  # fmt: skip
    assert (api.host, api.secret_arn, api.region) == ("", dg.EnvVar("A_SECRET_ARN"), "eu-west-1")
    target = api.process_config_and_initialize().data_api_target()
    # The cluster wins over the workgroup; the secret over the database user.
    assert target.parameters() == {
        "Database": "dev", "ClusterIdentifier": "c1", "SecretArn": os.environ["A_SECRET_ARN"]
    }  # fmt: skip
    serverless = _redshift(host=None, auth="data_api", workgroup="w1").data_api_target()
    assert serverless.parameters() == {"Database": "dev", "WorkgroupName": "w1"}
    by_user = _redshift(host=None, auth="data_api", cluster_identifier="c1", user="u").data_api_target()
    assert by_user.parameters() == {"Database": "dev", "ClusterIdentifier": "c1", "DbUser": "u"}


@pytest.mark.parametrize(("raw", "interval"), [(None, 30), ("5", 5), (600, 600), ("4", None), ("30s", None)])
def test_the_slack_sensors_interval_is_checked_at_load(raw, interval):
    slack = {"channel": "#c"} | ({"sensor_interval_seconds": raw} if raw is not None else {})
    attributes = {
        "name": "t",
        "redshift": {"host": "h", "database": "d"},
        "s3": {"bucket": "b"},
        "slack": slack,
    }
    if interval is None:
        with pytest.raises(Exception, match="is not a whole number from 5 to 3600"):
            UnloadTargets.from_attributes_dict(attributes=attributes)
    else:
        component = UnloadTargets.from_attributes_dict(attributes=attributes)
        assert component.configuration(Path.cwd()).sensor_interval_seconds == interval
