"""The Slack sensors' test bench: a real Slack stand-in, a real DagsterInstance, and small stand-in assets
keyed `s3/<target>` in group `unloads` that record the same metadata as the real rename op. Ticks are
evaluated as the daemon does (`Daemon`): one after the other, each with the cursor the previous one
returned. Used by `pipeline/test_sensors_messages.py` and `pipeline/test_sensors_exactly_once.py`.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from typing import Any

import dagster as dg
import pytest
from unload_assets_local.slack_standin import SlackStandIn

from unload_assets.delivery import FAILED_TARGETS, Delivery
from unload_assets.notify import run_sensors as sensors
from unload_assets.rename import FinalObject
from unload_assets.resources.slack import UnloadSlackResource
from unload_assets_tests.support.sensor_daemon import SensorDaemon
from unload_assets_tests.support.this_project import configuration

TOKEN = "xoxb-sensor-test-token-0123456789"


CHANNEL = "#unload-deliveries"


BUCKET = "unload-test"


DAY = dg.DailyPartitionsDefinition(start_date="2020-01-01", timezone="America/Los_Angeles")


def metadata(target: str, partition: str, rows: int) -> dict[str, Any]:
    """What the real rename op records for a delivery of one 1000-byte object."""
    key = f"exports/{target}/{partition}/{target}.csv.gz"
    delivery = Delivery(
        target=target,
        partition=partition,
        bucket=BUCKET,
        primary_key=key,
        final_key=key,
        objects=(FinalObject(key, 1000),),
        rows=rows,
        bytes=1000,
        delivered_as="single",
        staged_files=1,
    )
    return dict(delivery.to_metadata())


def daily(target: str, rows: int = 10, *, error: str | None = None) -> dg.AssetsDefinition:
    @dg.asset(key=["s3", target], group_name="unloads", partitions_def=DAY)
    def _asset(context) -> dg.MaterializeResult:  # type: ignore[no-untyped-def]
        if error:
            raise dg.Failure(description=error, allow_retries=False)
        return dg.MaterializeResult(metadata=metadata(target, context.partition_key, rows))

    return _asset


def batch_with_failures(delivered: str, failed: dict[str, dict[str, str]]) -> dg.AssetsDefinition:
    """Shaped like the real rename step: delivers one target, then fails naming the others
    (assets.FAILED_TARGETS: {target: {stage, error}})."""
    names = [delivered, *failed]

    @dg.multi_asset(
        specs=[dg.AssetSpec(["s3", n], group_name="unloads", skippable=True) for n in names],
        partitions_def=DAY,
        name="rename_daily",
    )
    def _batch(context):  # type: ignore[no-untyped-def]
        yield dg.MaterializeResult(
            asset_key=["s3", delivered], metadata=metadata(delivered, context.partition_key, 10)
        )
        raise dg.Failure(
            description=f"{len(failed)} target(s) not delivered",
            metadata={FAILED_TARGETS: dg.MetadataValue.json(failed)},
            allow_retries=False,
        )

    return _batch


class Daemon(SensorDaemon):
    """The success (or failure) Slack sensor, evaluated as the daemon does."""

    def __init__(
        self, instance: dg.DagsterInstance, status: str = "success", cursor: str | None = None
    ) -> None:
        watch = sensors.Watch(configuration(), target_names=None)
        super().__init__(
            instance, next(s for s in sensors.notification_sensors(watch) if status in s.name), cursor
        )


@pytest.fixture
def standin() -> Iterator[SlackStandIn]:
    with SlackStandIn(token=TOKEN, channels=[CHANNEL]) as stand_in:
        yield stand_in


@pytest.fixture
def instance() -> Iterator[dg.DagsterInstance]:
    with dg.instance_for_test() as inst:
        yield inst


@pytest.fixture
def slack(standin: SlackStandIn) -> UnloadSlackResource:
    return slack_at(standin.base_url)


def slack_at(base_url: str, token: str = TOKEN, channel: str = CHANNEL) -> UnloadSlackResource:
    return UnloadSlackResource(token=token, channel=channel, base_url=base_url)


@pytest.fixture
def webserver(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DAGSTER_WEBSERVER_URL", "http://dagster.test:3000/")


def materialize(instance: dg.DagsterInstance, assets: list, partition: str | None = "2025-11-22") -> str:
    result = dg.materialize(assets, partition_key=partition, instance=instance, raise_on_error=False)
    return result.run_id


def texts(standin: SlackStandIn) -> list[str]:
    return [m["text"] + json.dumps(m["blocks"]) for m in standin.messages()]


def flaky_job() -> dg.JobDefinition:
    """Module level, for re-execution: fails while the flag file exists."""

    @dg.asset(key=["s3", "sales"], group_name="unloads", partitions_def=DAY)
    def sales(context) -> dg.MaterializeResult:  # type: ignore[no-untyped-def]
        if os.path.exists(os.environ["SENSOR_TEST_FAIL_FLAG"]):
            raise dg.Failure(description="connection reset", allow_retries=False)
        return dg.MaterializeResult(metadata=metadata("sales", context.partition_key, 10))

    flaky = dg.define_asset_job("flaky", selection=[sales.key])
    return dg.Definitions(assets=[sales], jobs=[flaky]).resolve_job_def("flaky")


def materialize_tagged(instance: dg.DagsterInstance, partition: str, tags: dict[str, str]) -> str:
    result = dg.materialize([daily("sales")], partition_key=partition, instance=instance, tags=tags)
    return result.run_id
