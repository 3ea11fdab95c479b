"""Which executor runs the steps of every job: forked from a warm server, or Celery when a broker is set.

By default each step still runs in a process of its own (a crash, a kill or a memory blow-up stays in
its step, and retries and re-execution work per step), but the process is forked from a forkserver
that has imported the package and built the code location once per run
(`unload_assets.orchestration.preload`), instead of a fresh interpreter importing Dagster and
rebuilding every target for each step. Measured with benchmarks/bench_morning.py: 1.4 s per target
instead of 3.9 s for a 40-target morning.

With `UNLOAD_CELERY_BROKER_URL` (e.g. `redis://redis:6379/0`) the steps of every run are queued on that
broker and run by `dagster-celery worker start` processes on any number of machines (deploy/celery.yaml).
The `redshift` pool is still enforced by the run's orchestrator against the instance, so the cap on
concurrent UNLOADs holds across all workers. Nothing passes between steps but PostgreSQL and S3.
"""

from __future__ import annotations

import dagster as dg

from unload_assets import environment

CELERY_BROKER_ENV = environment.CELERY_BROKER


# Late acknowledgement: a step's task is acknowledged when the step ends, so a task whose worker died
# is handed to another worker (at once when a pool process died under a living worker; after Redis's
# visibility timeout when the whole worker vanished) instead of lost with it. The workers read the
# same settings from deploy/celery.yaml; the visibility timeout must exceed the longest step, or Redis
# hands a long step's task to a second worker while the first still runs it (README, "Celery").
CELERY_RECOVERY: dict[str, object] = {
    "task_acks_late": True,
    "task_reject_on_worker_lost": True,
    "worker_prefetch_multiplier": 1,
    "broker_transport_options": {
        "visibility_timeout": 1800,
        "unacked_restore_interval": 30,
        "unacked_restore_throttle": 1,
    },
}


PRELOAD_MODULE = "unload_assets.orchestration.preload"
WARM_MULTIPROCESS = dg.multiprocess_executor.configured(
    {"start_method": {"forkserver": {"preload_modules": [PRELOAD_MODULE]}}}, name="warm_multiprocess"
)


def executor_from_env() -> dg.ExecutorDefinition:
    """The Celery executor when `UNLOAD_CELERY_BROKER_URL` is set, else the warm multiprocess one."""
    if not environment.celery_broker_set():
        return WARM_MULTIPROCESS
    try:
        from dagster_celery import celery_executor
    except ImportError:
        raise dg.DagsterInvariantViolationError(
            f"{CELERY_BROKER_ENV} is set but dagster-celery is not installed: "
            "pip install 'unload_assets[celery]'"
        ) from None
    # The broker doubles as the result backend: one Redis is all a Celery deployment needs.
    broker = {"env": CELERY_BROKER_ENV}
    return celery_executor.configured(
        {"broker": broker, "backend": broker, "config_source": CELERY_RECOVERY}, name="celery"
    )
