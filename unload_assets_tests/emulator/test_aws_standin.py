"""The AWS credentials stand-in, driven by real boto3 clients, with moto behind it.

No pytestmark: like test_smoke_servers.py and test_slack_standin.py, this needs only in-process servers on
loopback (moto and the stand-in), not the local stack's PostgreSQL and emulator.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError
from unload_assets_local.aws_standin import ROLE_DB_USER, RedshiftCredentialsStandIn
from unload_assets_local.emulator.login.credentials import CredentialRegistry, Minted
from unload_assets_local.s3server import LOCAL_KEY_ID, LOCAL_SECRET, REGION, S3Server

CLUSTER = "unload-local"
WORKGROUP = "unload-wg"


@pytest.fixture(scope="module")
def moto() -> Iterator[S3Server]:
    with S3Server(port=0, bucket="aws-standin-test") as server:
        yield server


@pytest.fixture
def registry() -> CredentialRegistry:
    return CredentialRegistry()


@pytest.fixture
def standin(moto: S3Server, registry: CredentialRegistry) -> Iterator[RedshiftCredentialsStandIn]:
    with RedshiftCredentialsStandIn(moto.endpoint_url, registry, port=0) as s:
        s.workgroups.add(WORKGROUP)
        yield s


def client(service: str, endpoint_url: str | None) -> Any:
    return boto3.client(
        service,  # type: ignore[call-overload]
        endpoint_url=endpoint_url,
        region_name=REGION,
        aws_access_key_id=LOCAL_KEY_ID,
        aws_secret_access_key=LOCAL_SECRET,
        config=Config(retries={"max_attempts": 1}),  # an error is the answer, not a reason to retry
    )


@pytest.fixture
def redshift(standin: RedshiftCredentialsStandIn) -> Any:
    rs = client("redshift", standin.endpoint_url)
    existing = {c["ClusterIdentifier"] for c in rs.describe_clusters()["Clusters"]}
    if CLUSTER not in existing:  # moto (and so the cluster) lives for the module
        rs.create_cluster(
            ClusterIdentifier=CLUSTER,
            ClusterType="single-node",
            NodeType="ra3.xlplus",
            MasterUsername="admin",
            MasterUserPassword="Admin-Passw0rd",
            DBName="dev",
        )
    standin.calls.clear()
    return rs


@pytest.fixture
def serverless(standin: RedshiftCredentialsStandIn) -> Any:
    return client("redshift-serverless", standin.endpoint_url)


def error_code(excinfo: pytest.ExceptionInfo[ClientError]) -> str:
    return str(excinfo.value.response["Error"]["Code"])


def assert_recorded(registry: CredentialRegistry, user: str, password: str, expiration: datetime) -> Minted:
    assert isinstance(expiration, datetime) and expiration.tzinfo is not None
    [minted] = registry.minted()
    assert (minted.user, minted.password) == (user, password)
    assert minted.expires_at == pytest.approx(expiration.timestamp(), abs=1e-6)
    return minted


# ---- provisioned clusters: moto, forwarded -------------------------------------------------------------


def test_requests_reach_moto_through_the_standin(standin, redshift):
    clusters = redshift.describe_clusters(ClusterIdentifier=CLUSTER)["Clusters"]
    assert [c["ClusterIdentifier"] for c in clusters] == [CLUSTER]
    assert clusters[0]["NodeType"] == "ra3.xlplus"
    assert standin.calls["DescribeClusters"] == 1


def test_get_cluster_credentials_is_forwarded_and_recorded(standin, registry, redshift):
    before = time.time()
    creds = redshift.get_cluster_credentials(
        ClusterIdentifier=CLUSTER, DbUser="alice", DurationSeconds=900, AutoCreate=False
    )
    assert creds["DbUser"] == "IAM:alice"
    assert len(creds["DbPassword"]) >= 32
    minted = assert_recorded(registry, "IAM:alice", creds["DbPassword"], creds["Expiration"])
    assert before + 900 - 1 <= minted.expires_at <= time.time() + 900 + 1
    assert standin.calls["GetClusterCredentials"] == 1

    again = redshift.get_cluster_credentials(ClusterIdentifier=CLUSTER, DbUser="alice", AutoCreate=True)
    assert again["DbUser"] == "IAMA:alice" and again["DbPassword"] != creds["DbPassword"]
    assert [m.user for m in registry.minted()] == ["IAM:alice", "IAMA:alice"]
    assert standin.calls["GetClusterCredentials"] == 2


def test_the_endpoint_variable_reaches_the_standin(standin, registry, redshift, monkeypatch):
    monkeypatch.setenv("AWS_ENDPOINT_URL_REDSHIFT", standin.endpoint_url)
    creds = client("redshift", None).get_cluster_credentials(ClusterIdentifier=CLUSTER, DbUser="bob")
    assert creds["DbUser"] == "IAM:bob"
    assert_recorded(registry, "IAM:bob", creds["DbPassword"], creds["Expiration"])


def test_lifetime_override_shortens_provisioned_credentials(standin, registry, redshift):
    standin.lifetime_seconds = 2
    before = time.time()
    creds = redshift.get_cluster_credentials(ClusterIdentifier=CLUSTER, DbUser="alice", DurationSeconds=900)
    minted = assert_recorded(registry, "IAM:alice", creds["DbPassword"], creds["Expiration"])
    assert before + 2 - 0.01 <= minted.expires_at <= time.time() + 2 + 0.01
    valid, expired = registry.candidates("IAM:alice")
    assert (valid, expired) == ([minted], [])
    time.sleep(max(0.0, minted.expires_at - time.time()) + 0.05)
    assert registry.candidates("IAM:alice") == ([], [minted])


def test_unknown_cluster_is_motos_cluster_not_found(standin, registry, redshift):
    with pytest.raises(ClientError) as excinfo:
        redshift.get_cluster_credentials(ClusterIdentifier="no-such-cluster", DbUser="alice")
    assert error_code(excinfo) == "ClusterNotFound"
    assert excinfo.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404
    assert registry.minted() == []
    assert standin.calls["GetClusterCredentials"] == 1


def test_duration_outside_aws_limits_is_refused_by_moto(registry, redshift):
    with pytest.raises(ClientError) as excinfo:
        redshift.get_cluster_credentials(ClusterIdentifier=CLUSTER, DbUser="alice", DurationSeconds=60)
    assert error_code(excinfo) == "InvalidParameterValue"
    assert registry.minted() == []


def test_get_cluster_credentials_with_iam_is_answered_by_the_standin(standin, registry, redshift):
    before = time.time()
    creds = redshift.get_cluster_credentials_with_iam(ClusterIdentifier=CLUSTER, DurationSeconds=1800)
    assert creds["DbUser"] == ROLE_DB_USER
    assert isinstance(creds["NextRefreshTime"], datetime)
    minted = assert_recorded(registry, ROLE_DB_USER, creds["DbPassword"], creds["Expiration"])
    assert before + 1800 - 1 <= minted.expires_at <= time.time() + 1800 + 1
    assert standin.calls["GetClusterCredentialsWithIAM"] == 1
    assert standin.calls["DescribeClusters"] == 0  # the stand-in's own question to moto is not counted

    standin.lifetime_seconds = 5
    short = redshift.get_cluster_credentials_with_iam(ClusterIdentifier=CLUSTER)
    assert short["Expiration"].timestamp() == pytest.approx(time.time() + 5, abs=1)
    assert registry.minted()[-1].expires_at == pytest.approx(short["Expiration"].timestamp(), abs=1e-6)

    with pytest.raises(ClientError) as excinfo:
        redshift.get_cluster_credentials_with_iam(ClusterIdentifier="no-such-cluster")
    assert error_code(excinfo) == "ClusterNotFound"
    with pytest.raises(ClientError) as excinfo:
        redshift.get_cluster_credentials_with_iam(ClusterIdentifier=CLUSTER, DurationSeconds=3601)
    assert error_code(excinfo) == "InvalidParameterValue"
    assert len(registry.minted()) == 2


def test_other_services_pass_through_verbatim(standin, moto):
    s3 = client("s3", standin.endpoint_url)
    s3.put_object(Bucket=moto.bucket, Key="through/standin", Body=b"hello")
    assert s3.head_object(Bucket=moto.bucket, Key="through/standin")["ContentLength"] == 5
    assert s3.get_object(Bucket=moto.bucket, Key="through/standin")["Body"].read() == b"hello"
    assert moto.client().get_object(Bucket=moto.bucket, Key="through/standin")["Body"].read() == b"hello"


# ---- Redshift Serverless: answered by the stand-in -----------------------------------------------------


def test_serverless_get_credentials(standin, registry, serverless):
    before = time.time()
    creds = serverless.get_credentials(workgroupName=WORKGROUP, dbName="dev")
    assert creds["dbUser"] == ROLE_DB_USER
    assert len(creds["dbPassword"]) >= 32
    assert isinstance(creds["nextRefreshTime"], datetime)
    assert creds["ResponseMetadata"]["HTTPHeaders"]["content-type"] == "application/x-amz-json-1.1"
    minted = assert_recorded(registry, ROLE_DB_USER, creds["dbPassword"], creds["expiration"])
    assert before + 3600 - 1 <= minted.expires_at <= time.time() + 3600 + 1  # the default duration
    assert standin.calls["GetCredentials"] == 1

    short = serverless.get_credentials(workgroupName=WORKGROUP, durationSeconds=900)
    assert short["expiration"].timestamp() == pytest.approx(time.time() + 900, abs=1)
    assert short["dbPassword"] != creds["dbPassword"]
    assert len(registry.minted()) == 2 and standin.calls["GetCredentials"] == 2


def test_lifetime_override_shortens_serverless_credentials(standin, registry, serverless):
    standin.lifetime_seconds = 1.5
    creds = serverless.get_credentials(workgroupName=WORKGROUP, durationSeconds=900)
    minted = assert_recorded(registry, ROLE_DB_USER, creds["dbPassword"], creds["expiration"])
    assert minted.expires_at == pytest.approx(time.time() + 1.5, abs=0.5)


@pytest.mark.parametrize("duration", [899, 3601, 0])
def test_serverless_refuses_durations_outside_aws_limits(registry, serverless, duration):
    with pytest.raises(ClientError) as excinfo:
        serverless.get_credentials(workgroupName=WORKGROUP, durationSeconds=duration)
    assert error_code(excinfo) == "ValidationException"
    assert excinfo.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    assert registry.minted() == []


def test_serverless_unknown_workgroup(standin, registry, serverless):
    with pytest.raises(ClientError) as excinfo:
        serverless.get_credentials(workgroupName="no-such-workgroup")
    assert error_code(excinfo) == "ResourceNotFoundException"
    assert excinfo.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    with pytest.raises(ClientError) as excinfo:
        serverless.get_credentials(customDomainName="db.example.com")  # no workgroup named
    assert error_code(excinfo) == "ValidationException"
    assert registry.minted() == []
    assert standin.calls["GetCredentials"] == 2

    standin.workgroups.add("no-such-workgroup")  # the stack adds its workgroups the same way
    assert serverless.get_credentials(workgroupName="no-such-workgroup")["dbUser"] == ROLE_DB_USER


# ---- logging -------------------------------------------------------------------------------------------


def test_passwords_never_logged(caplog, standin, registry, redshift, serverless):
    caplog.set_level(logging.DEBUG)  # every logger: the stand-in's, moto's, werkzeug's
    redshift.get_cluster_credentials(ClusterIdentifier=CLUSTER, DbUser="alice")
    redshift.get_cluster_credentials_with_iam(ClusterIdentifier=CLUSTER)
    serverless.get_credentials(workgroupName=WORKGROUP)
    passwords = [m.password for m in registry.minted()]
    assert len(passwords) == 3
    ours = [r.getMessage() for r in caplog.records if r.name.startswith("unload_assets")]
    assert any("GetClusterCredentials" in line and "IAM:alice" in line for line in ours)
    assert any("GetClusterCredentialsWithIAM" in line and ROLE_DB_USER in line for line in ours)
    assert any("GetCredentials" in line and ROLE_DB_USER in line for line in ours)
    # botocore, the client, logs whole response bodies at DEBUG; everything on the server side must not.
    server_side = [r for r in caplog.records if not r.name.startswith("botocore")]
    for password in passwords:
        assert not [r.name for r in server_side if password in r.getMessage()]
