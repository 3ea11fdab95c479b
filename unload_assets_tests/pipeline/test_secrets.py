"""With key-based UNLOAD authorization and a Slack token, no secret shows up anywhere a person or a log
shipper could look: after successful and failing runs and the Slack sensors' ticks, the whole
DAGSTER_HOME (SQLite event log and run storage, compute logs, pickled step outputs), the process's
stdout and stderr, the Slack stand-in's messages and record file, materialisation metadata, exception
texts and sensor skip reasons hold none of them, raw or URL- or base64-encoded.

In-process (a persistent instance under a temporary DAGSTER_HOME, in-process executor with compute-log
capture, ticks via `build_sensor_context`) rather than through `dagster dev`: the same code paths, in
seconds instead of minutes; test_e2e.py proves the daemon path itself.
"""

from __future__ import annotations

import base64
import binascii
import os
from urllib.parse import quote, quote_plus

import dagster as dg
import pytest

from unload_assets.component import build_definitions
from unload_assets.resources.redshift_auth import CREDENTIALS
from unload_assets_tests.support.this_project import NAMES, asset_key_for

pytestmark = pytest.mark.stack

KEYS = {  # distinctive fakes, with the characters that URL- and base64-encoding change
    "UNLOAD_ACCESS_KEY_ID": "AKIAZZLEAKCANARY0001",
    "UNLOAD_SECRET_ACCESS_KEY": "zZleak/Canary+Secret=Key/0123456789abcdefXYZ",
    "UNLOAD_SESSION_TOKEN": "IQoJleakCanarySessionToken//////////wEaCanary+Token=0042",
}
CATALOGUE = """
defaults: {format: csv, compression: gzip, header: true}
targets:
  - name: leak_ok
    description: delivered with key-based authorization
    sql: select customer_id, name from public.customers order by customer_id
    key_template: exports/leak/ok.csv.gz
  - name: leak_broken
    description: reads a table that is not there
    sql: select id from public.leak_no_such_table
    key_template: exports/leak/broken.csv.gz
  - name: leak_divzero
    description: fails while the UNLOAD runs
    sql: select customer_id / (customer_id - customer_id) as boom from public.customers
    key_template: exports/leak/divzero.csv.gz
"""


def leak_job() -> dg.JobDefinition:
    """Module level for `reconstructable`; one target per run, in-process with compute-log capture."""
    defs = build_definitions(os.environ["LEAK_CATALOGUE"])
    target = os.environ["LEAK_TARGET"]
    job = dg.define_asset_job(target, selection=[asset_key_for(target)], executor_def=dg.in_process_executor)
    defs = dg.Definitions(
        assets=defs.assets, asset_checks=defs.asset_checks, resources=defs.resources, jobs=[job]
    )
    return defs.resolve_job_def(target)


def forms(secret: str) -> set[bytes]:
    """The secret as raw, URL-encoded, hex and base64 text (all three alignments inside a longer blob)."""
    raw = secret.encode()
    found = {raw, quote(secret).encode(), quote(secret, safe="").encode(), quote_plus(secret).encode()}
    found.add(binascii.hexlify(raw))
    for pad in range(3):
        for encode in (base64.b64encode, base64.urlsafe_b64encode):
            text = encode(b"\0" * pad + raw)
            found.add(text[(4 * pad + 2) // 3 : -4])  # leave out the characters mixed with neighbours
    return found


def leaks(blobs: dict[str, bytes], secrets: dict[str, str]) -> list[str]:
    return [
        f"{name} in {where} as {form[:12]!r}..."
        for where, data in blobs.items()
        for name, value in secrets.items()
        for form in forms(value)
        if form in data
    ]


def test_the_scanner_finds_what_it_looks_for():
    secret = KEYS["UNLOAD_SECRET_ACCESS_KEY"]
    for wrapped in (b"x" + base64.b64encode(b"ab" + secret.encode() + b"cd"), quote(secret).encode()):
        assert leaks({"blob": b"..." + wrapped + b"..."}, {"key": secret})


@pytest.mark.parametrize("auth", ["password", "iam", "serverless", "data_api"])
def test_no_secret_reaches_logs_storage_slack_metadata_or_errors(
    auth, local_stack, stack_env, tmp_path, monkeypatch, capfd
):
    for name, value in KEYS.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("REDSHIFT_AUTH", auth)  # iam, serverless, data_api: temporary passwords, minted
    CREDENTIALS.clear()
    already_minted = len(local_stack.credentials.minted())
    monkeypatch.delenv("UNLOAD_IAM_ROLE")  # key-based authorization only
    (tmp_path / "catalogue.yaml").write_text(CATALOGUE)
    monkeypatch.setenv("LEAK_CATALOGUE", str(tmp_path / "catalogue.yaml"))
    home = tmp_path / "dagster_home"
    home.mkdir()
    secrets = {**KEYS, **{n: stack_env[n] for n in ("SLACK_BOT_TOKEN", "REDSHIFT_PASSWORD")}}
    texts: dict[str, str] = {}

    with dg.instance_for_test(temp_dir=str(home)) as instance:
        results = []
        for target in ("leak_ok", "leak_broken", "leak_divzero"):
            monkeypatch.setenv("LEAK_TARGET", target)
            results.append(dg.execute_job(dg.reconstructable(leak_job), instance=instance))
        ok, broken, divzero = results
        assert ok.success and not broken.success and not divzero.success
        meta = {
            k: v.value for k, v in ok.get_asset_materialization_events()[0].materialization.metadata.items()
        }
        assert "SECRET_ACCESS_KEY '***'" in meta["statement"]  # the UNLOAD really used the keys
        texts["metadata"] = repr(meta)
        texts["errors"] = "\n".join(
            repr(e.step_failure_data.error) + repr(e.step_failure_data.user_failure_data)
            for r in (broken, divzero)
            for e in r.all_events
            if e.is_step_failure
        )
        assert "leak_no_such_table" in texts["errors"] and "division by zero" in texts["errors"]
        texts["ticks"] = _ticks(instance, local_stack)
    minted = {f"minted password {i}": m.password for i, m in enumerate(local_stack.credentials.minted())}
    assert (len(minted) > already_minted) is (auth != "password")
    secrets |= minted
    texts["slack"] = repr(local_stack.slack.messages())
    assert "leak_ok" in texts["slack"] and "leak_no_such_table" in texts["slack"]
    out, err = capfd.readouterr()
    texts["stdout"], texts["stderr"] = out, err
    blobs = {where: text.encode() for where, text in texts.items()}
    files = [p for p in [*home.rglob("*"), local_stack.slack.record_file] if p and p.is_file()]
    blobs |= {str(p): p.read_bytes() for p in files}
    assert any("compute_logs" in str(p) for p in files)
    # Control: the statements that held the keys were logged into the event log, redacted.
    assert any(b"SESSION_TOKEN '***'" in blobs[str(p)] for p in files if p.suffix == ".db")
    assert leaks(blobs, secrets) == []
    print(f"\nsecrets scan: {len(secrets)} secrets x {len(forms(KEYS['UNLOAD_SESSION_TOKEN']))} forms "
          f"over {len(blobs)} texts/files ({sum(map(len, blobs.values())):,} bytes): 0 found")  # fmt: skip


def _ticks(instance: dg.DagsterInstance, local_stack) -> str:
    """Both Slack sensors, a tick failing on a Slack outage first; every skip reason, for the scan."""
    defs = build_definitions(os.environ["LEAK_CATALOGUE"])
    slack = defs.get_repository_def().get_top_level_resources()[NAMES.slack]
    reasons = []
    local_stack.slack.fail_next(10, status=500)
    for name in (NAMES.failure_sensor, NAMES.failure_sensor, NAMES.success_sensor):
        context = dg.build_sensor_context(instance=instance, resources={NAMES.slack: slack})
        reasons.append(defs.resolve_sensor_def(name).evaluate_tick(context).skip_message or "")
        local_stack.slack.fail_next(0)
    assert "Slack answered HTTP 500" in reasons[0] and reasons[1].startswith("Announced 2 of 2")
    assert reasons[2].startswith("Announced 1 of 1")
    return "\n".join(reasons)
