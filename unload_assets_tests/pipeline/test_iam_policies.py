"""The policies in deploy/iam/ under IAM enforcement: the pipeline works with exactly them, and without any
one statement the step that needs it fails naming the action and the resource.

A moto server of its own (a child process on loopback, so that its authorisation switch does not touch
the session's S3) holds the bucket, a KMS key and three IAM users: the worker (deploy/iam/worker-policy.json),
"Redshift" (deploy/iam/redshift-unload-role-policy.json: the emulator's UNLOAD writes with its keys, as
Redshift writes with the role it assumes) and an admin for the test's own reading. Then
`/moto-api/reset-auth` turns enforcement on: every request is checked against the caller's policies.

What moto does not enforce, and what stands in for it here:
- Conditions (`s3:prefix`, `kms:ViaService`): moto denies any statement whose condition it cannot
  evaluate, so the statements are loaded without them; the request shape they rely on (every listing
  under a prefix) is what the code does (`check_bucket_owner`, `list_keys`, `stale_parts`).
- KMS: moto's S3 never calls KMS, so the KMS statements cannot fail a request; the key on every write
  is shown by test_kms.py (HeadObject of every object).
- DeleteObjects: AWS authorises s3:DeleteObject per key; moto against the bucket's ARN (and then
  reports every key refused), so the DeleteObject statement gets the bucket's ARN added for moto.
- Bucket policies, the key policy, and the role's trust policy: not evaluated by moto.
"""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import boto3
import dagster as dg
import psycopg2
import pytest
from unload_assets_local.emulator.server import RedshiftEmulator
from unload_assets_local.postgres import free_port
from unload_assets_local.s3server import REGION

from unload_assets.component import build_definitions
from unload_assets_tests.support.pipeline_helpers import write_catalogue
from unload_assets_tests.support.this_project import asset_key_for

pytestmark = pytest.mark.stack

IAM = Path(__file__).resolve().parents[2] / "deploy" / "iam"
BUCKET, STAGING, FINAL = "unload-iam", "_staging", "exports"
CATALOGUE = """
defaults:
  kms_key_id: {key}
targets:
  - name: iam_combine
    description: two staged files, one object (server-side multipart)
    sql: select id, payload from public.iam_rows where id <= {{{{ nrows }}}} order by id
    key_template: exports/iam/combined.csv
    max_file_size_mb: 6
  - name: iam_parts
    description: two staged files, parts and a manifest
    sql: select id, payload from public.iam_rows order by id
    key_template: exports/iam/parts.csv
    max_file_size_mb: 6
    on_split: parts
  - name: iam_empty
    description: a day without rows
    sql: select id, payload from public.iam_rows where id < 0
    key_template: exports/iam/empty.csv
"""
TARGETS = ("iam_combine", "iam_parts", "iam_empty")


def _policy(name: str, key_arn: str) -> dict:
    text = (IAM / name).read_text()
    for placeholder, value in {
        "${Bucket}": BUCKET, "${StagingPrefix}": STAGING, "${FinalPrefix}": FINAL,
        "${KmsKeyArn}": key_arn, "${Region}": REGION,
    }.items():  # fmt: skip
        text = text.replace(placeholder, value)
    document = json.loads(text)
    for statement in document["Statement"]:
        statement.pop("Condition", None)  # moto cannot evaluate them (see the module's docstring)
        if statement["Action"] == "s3:DeleteObject":  # moto authorises DeleteObjects on the bucket's ARN
            statement["Resource"] = [*statement["Resource"], f"arn:aws:s3:::{BUCKET}"]
    return document


def _without(document: dict, sid: str) -> dict:
    reduced = copy.deepcopy(document)
    reduced["Statement"] = [s for s in reduced["Statement"] if s["Sid"] != sid]
    return reduced


class EnforcingMoto:
    """A moto server in a child process on loopback, IAM enforcement switched on after setup."""

    def __init__(self, workdir: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        log = (workdir / "moto.log").open("w")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
            stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        for _ in range(300):
            try:
                urllib.request.urlopen(f"{self.url}/moto-api/", timeout=1)
                return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError(f"moto did not start; see {workdir / 'moto.log'}")

    def client(self, service: str, keys: tuple[str, str] | None = None):
        auth = {"aws_access_key_id": keys[0], "aws_secret_access_key": keys[1]} if keys else {}
        return boto3.client(service, endpoint_url=self.url, region_name=REGION, **auth)

    def enforce(self) -> None:
        # Not form-encoded: moto reads the raw body as the number of requests still let through unchecked.
        headers = {"Content-Type": "text/plain"}
        urllib.request.urlopen(urllib.request.Request(f"{self.url}/moto-api/reset-auth", b"0", headers))

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=30)


@pytest.fixture(scope="module")
def enforced(local_stack, stack_env, tmp_path_factory):
    workdir = tmp_path_factory.mktemp("iam")
    with psycopg2.connect(local_stack.postgres.dsn()) as conn, conn.cursor() as cur:
        cur.execute("drop table if exists public.iam_rows")
        cur.execute(
            "create table public.iam_rows as"
            " select g as id, repeat(md5(g::text), 8) as payload from generate_series(1, 25000) g"
        )
    moto = EnforcingMoto(workdir)
    try:
        setup = moto.client("s3", ("setup", "setup"))
        setup.create_bucket(Bucket=BUCKET)
        key_arn = moto.client("kms", ("setup", "setup")).create_key()["KeyMetadata"]["Arn"]
        iam = moto.client("iam", ("setup", "setup"))
        keys = {}
        for user in ("worker", "redshift", "admin"):
            iam.create_user(UserName=user)
            made = iam.create_access_key(UserName=user)["AccessKey"]
            keys[user] = (made["AccessKeyId"], made["SecretAccessKey"])
        admin_policy = {
            "Version": "2012-10-17",
            "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}],
        }
        iam.put_user_policy(UserName="admin", PolicyName="all", PolicyDocument=json.dumps(admin_policy))
        policies = {
            "worker": _policy("worker-policy.json", key_arn),
            "redshift": _policy("redshift-unload-role-policy.json", key_arn),
        }
        moto.enforce()
        admin_iam = moto.client("iam", keys["admin"])

        def grant(user: str, document: dict) -> None:
            admin_iam.put_user_policy(UserName=user, PolicyName="unload", PolicyDocument=json.dumps(document))

        for user, document in policies.items():
            grant(user, document)
        catalogue = write_catalogue(workdir, CATALOGUE.format(key=key_arn).replace("{{ nrows }}", "25000"))
        with (
            RedshiftEmulator(
                pg_host="127.0.0.1",
                pg_port=local_stack.postgres.port,
                s3_endpoint_url=moto.url,
                listen_port=0,
                superuser_dsn=local_stack.postgres.dsn(superuser=True),
                tls=local_stack.tls.server_context(),
                logins={local_stack.postgres.user: local_stack.postgres.password},
                s3_credentials=keys["redshift"],
            ) as emulator,
            pytest.MonkeyPatch.context() as env,
            dg.instance_for_test(temp_dir=str(workdir)) as instance,
        ):
            env.setenv("AWS_ENDPOINT_URL_S3", moto.url)
            env.setenv("UNLOAD_BUCKET", BUCKET)
            env.setenv("REDSHIFT_PORT", str(emulator.port))
            env.setenv("AWS_ACCESS_KEY_ID", keys["worker"][0])
            env.setenv("AWS_SECRET_ACCESS_KEY", keys["worker"][1])
            env.setenv("IAM_CATALOGUE", str(catalogue))
            yield moto, keys, policies, grant, catalogue, instance
    finally:
        moto.stop()


def _job() -> dg.JobDefinition:
    defs = build_definitions(os.environ["IAM_CATALOGUE"])
    job = dg.define_asset_job("iam_morning", selection=[asset_key_for(t) for t in TARGETS],
                              executor_def=dg.in_process_executor)  # fmt: skip
    return dg.Definitions(
        assets=defs.assets, asset_checks=defs.asset_checks, resources=defs.resources, jobs=[job]
    ).resolve_job_def("iam_morning")


def iam_morning() -> dg.JobDefinition:  # module level: `reconstructable` rebuilds it to re-execute
    return _job()


def _run(catalogue, instance, targets=TARGETS) -> dg.ExecuteInJobResult:
    keys = [asset_key_for(t) for t in targets]
    return _job().execute_in_process(instance=instance, raise_on_error=False, asset_selection=keys)


def _reexecute(run_id: str, instance) -> dg.ExecuteJobResult:
    options = dg.ReexecutionOptions.from_failure(run_id, instance)
    with dg.execute_job(
        dg.reconstructable(iam_morning), instance=instance, reexecution_options=options
    ) as result:
        return result


def _failure_line(result: dg.ExecuteInJobResult) -> tuple[str, str]:
    """The failed step and its error: the Failure's description, or the error and its causes (a step
    Dagster retried whole ends in "Exceeded max_retries", caused by the step's own error)."""
    for event in result.all_events:
        if event.is_step_failure:
            data = event.step_failure_data
            if data.user_failure_data and data.user_failure_data.description:
                return event.step_key or "", data.user_failure_data.description
            lines, error = [], data.error
            while error is not None:
                lines.append(error.message.strip())
                error = error.cause
            return event.step_key or "", " <- ".join(lines)
    failed = [c for c in result.get_asset_check_evaluations() if not c.passed]
    return "checks", "; ".join(f"{c.check_name}: {dict(c.metadata)}" for c in failed)


def test_a_morning_and_its_re_execution_work_with_exactly_the_policies(enforced):
    moto, keys, policies, grant, catalogue, instance = enforced
    result = _run(catalogue, instance)
    assert result.success, _failure_line(result)
    # Every delivery checks out; the empty day's only warns that it has no rows.
    assert all(
        c.passed or str(c.metadata["problems"].value) == "the UNLOAD wrote no rows"
        for c in result.get_asset_check_evaluations()
    )
    # The rename step refused (no s3:GetObject: it cannot read the handoff), then the run re-executed
    # from failure with the policy back: the rename runs again from the S3 handoff, replacing the first
    # output (stale parts, the other layout, the lock).
    grant("worker", _without(policies["worker"], "ReadStagedAndFinalObjects"))
    try:
        failed = _run(catalogue, instance)
    finally:
        grant("worker", policies["worker"])
    assert not failed.success
    again = _reexecute(failed.run_id, instance)
    assert again.success, _failure_line(again)
    listed = moto.client("s3", keys["admin"]).list_objects_v2(Bucket=BUCKET, Prefix="exports/iam/")
    assert sorted(o["Key"] for o in listed["Contents"]) == [
        "exports/iam/combined.csv", "exports/iam/empty.csv", "exports/iam/parts.csv.manifest",
        "exports/iam/parts.part-001.csv", "exports/iam/parts.part-002.csv",
    ]  # fmt: skip


# statement removed -> the action and resource its absence is named by (None: moto cannot show it)
WORKER = {
    "ListTheBucket": ("s3:ListBucket", f"arn:aws:s3:::{BUCKET}"),
    "ReadStagedAndFinalObjects": ("s3:GetObject", f"arn:aws:s3:::{BUCKET}/"),
    "WriteFinalObjectsLocksAndHandoff": ("s3:PutObject", f"arn:aws:s3:::{BUCKET}/"),
    "DeleteStagingAndStaleFinalObjects": ("s3:DeleteObject", f"arn:aws:s3:::{BUCKET}/"),
    "ListUnfinishedUploads": None,  # only to abort strays, best effort: nothing fails without it
    "AbortUnfinishedUploads": None,  # only on a failed or stray upload
    "UseTheExportKey": None,  # moto's S3 does not call KMS
}
REDSHIFT = {
    "WriteStagedFiles": ("s3:PutObject", f"arn:aws:s3:::{BUCKET}/{STAGING}/"),
    "SeeTheStagingPrefix": ("s3:ListBucket", f"arn:aws:s3:::{BUCKET}"),
    "EncryptWithTheExportKey": None,
}


@pytest.mark.parametrize(
    ("user", "sid"), [("worker", sid) for sid in WORKER] + [("redshift", sid) for sid in REDSHIFT]
)
def test_each_statement_is_needed_by_the_step_that_fails_without_it(enforced, user, sid):
    moto, keys, policies, grant, catalogue, instance = enforced
    if (WORKER if user == "worker" else REDSHIFT)[sid] is None:
        pytest.skip(f"{sid}: nothing moto enforces needs it (see WORKER/REDSHIFT)")
    # Without s3:DeleteObject no lock can be released, and the checks would wait out its lease (2 min):
    # the parts target alone, whose rename fails at once (withdrawing the previous manifest), shows it.
    # That needs a previous delivery of it, made here with every statement rather than left to the
    # order in which the other tests ran.
    targets = ("iam_parts",) if sid.startswith("Delete") else ("iam_combine", "iam_parts")
    if sid.startswith("Delete"):
        assert _run(catalogue, instance, targets=targets).success
    grant(user, _without(policies[user], sid))
    try:
        result = _run(catalogue, instance, targets=targets)
    finally:
        grant(user, policies[user])
    expected = (WORKER if user == "worker" else REDSHIFT)[sid]
    step, line = _failure_line(result)
    print(f"\n{user}/{sid}: {'ok' if result.success else 'FAILED'} {step}: {line[:400]}")
    secrets = [secret for _, secret in keys.values()] + [key_id for key_id, _ in keys.values()]
    assert not any(secret in line for secret in secrets)
    assert expected is not None
    action, resource = expected
    assert not result.success
    assert action in line and resource in line, line
