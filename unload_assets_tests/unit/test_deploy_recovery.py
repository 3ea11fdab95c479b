"""The deployment files keep what issue 28 needs for no one to act after a fault: run retries on, with
limits that fit a morning, and Celery's late acknowledgement the same on the workers and the executor."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import yaml

from unload_assets.orchestration.execution import CELERY_RECOVERY
from unload_assets.orchestration.schedules import RETRY_STRATEGY

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"


def test_run_retries_are_on_from_asset_failure_with_limits_that_fit_a_morning() -> None:
    instance = yaml.safe_load((DEPLOY / "dagster.yaml").read_text())
    assert instance["run_retries"] == {
        "enabled": True,
        "max_retries": 2,
        "retry_on_asset_or_op_failure": True,
    }
    monitoring = instance["run_monitoring"]
    assert monitoring["enabled"] and monitoring["start_timeout_seconds"] <= 300
    assert monitoring["max_runtime_seconds"] >= 3 * 3600  # far above a morning's run
    assert RETRY_STRATEGY == {"dagster/retry_strategy": "FROM_ASSET_FAILURE"}
    helm = yaml.safe_load((DEPLOY / "helm" / "values.yaml").read_text())["dagsterDaemon"]
    assert helm["runRetries"] == {"enabled": True, "maxRetries": 2, "retryOnAssetOrOpFailure": True}
    assert helm["runMonitoring"]["startTimeoutSeconds"] == monitoring["start_timeout_seconds"]


def test_celery_workers_and_executor_acknowledge_late_with_the_same_settings() -> None:
    worker = yaml.safe_load((DEPLOY / "celery.yaml").read_text())["execution"]["config"]["config_source"]
    assert worker == CELERY_RECOVERY
    assert worker["task_acks_late"] and worker["task_reject_on_worker_lost"]
    assert worker["broker_transport_options"]["visibility_timeout"] >= 1800


def test_the_celery_executor_accepts_the_settings(monkeypatch) -> None:
    monkeypatch.setenv("UNLOAD_CELERY_BROKER_URL", "redis://127.0.0.1:1/0")
    from unload_assets.orchestration.execution import executor_from_env

    executor = executor_from_env()
    assert isinstance(executor, dg.ExecutorDefinition) and executor.name == "celery"
