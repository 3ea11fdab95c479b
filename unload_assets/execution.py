"""Which executor runs the steps of every job: Dagster's default, or Celery when a broker is set.

With `UNLOAD_CELERY_BROKER_URL` (e.g. `redis://redis:6379/0`) the steps of every run are queued on that
broker and run by `dagster-celery worker start` processes on any number of machines (deploy/celery.yaml).
The `redshift` pool is still enforced by the run's orchestrator against the instance, so the cap on
concurrent UNLOADs holds across all workers. Nothing passes between steps but PostgreSQL and S3.
"""

from __future__ import annotations

import os

import dagster as dg

CELERY_BROKER_ENV = "UNLOAD_CELERY_BROKER_URL"


def executor_from_env() -> dg.ExecutorDefinition | None:
    """The Celery executor when `UNLOAD_CELERY_BROKER_URL` is set, else None (Dagster's default)."""
    if not os.getenv(CELERY_BROKER_ENV):
        return None
    try:
        from dagster_celery import celery_executor
    except ImportError:
        raise dg.DagsterInvariantViolationError(
            f"{CELERY_BROKER_ENV} is set but dagster-celery is not installed: "
            "pip install 'unload_assets[celery]'"
        ) from None
    # The broker doubles as the result backend: one Redis is all a Celery deployment needs.
    broker = {"env": CELERY_BROKER_ENV}
    return celery_executor.configured({"broker": broker, "backend": broker}, name="celery")
