"""What the two ops share: the step retry policy, the targets a run selected, and an error line without
secrets. (The S3 handoff between them is the instance's IO manager, `Names.handoff`.)"""

from collections.abc import Sequence
from typing import Any

import dagster as dg

from unload_assets.catalogue import UnloadTarget
from unload_assets.delivery import FAILED_TARGETS
from unload_assets.names import Names
from unload_assets.orchestration.handoff import TargetDay
from unload_assets.orchestration.retries import describe
from unload_assets.secrets import scrub

# A step that dies (killed, out of memory) is retried whole by Dagster; each target's own errors are
# retried inside the step (retries.py) and never reach this policy.
STEP_RETRY = dg.RetryPolicy(max_retries=3, delay=1, backoff=dg.Backoff.EXPONENTIAL)


def error_line(exc: Exception, settings: Any) -> str:
    """One line of `exc` for the log, the failure and Slack, without the UNLOAD secrets."""
    return scrub(describe(exc), settings.secrets())


def selected(
    context: dg.OpExecutionContext, names: Names, targets: Sequence[UnloadTarget]
) -> list[UnloadTarget]:
    """The targets this run materialises (a subset when one target is materialised from the UI)."""
    keys = context.selected_asset_keys
    return [t for t in targets if names.asset_key(t.name) in keys]


def failure_entry(item: TargetDay, stage: str, error: str) -> dict[str, str]:
    """What `failed_targets` says of one (target, day): its stage and error; in a run of several days
    also the target and the day, as the entry is named `<target> <day>`."""
    entry = {"stage": stage, "error": error}
    if item.ranged and item.day is not None:
        entry.update(target=item.target.name, partition=item.day.isoformat())
    return entry


def not_delivered(failed: dict[str, dict[str, str]]) -> dg.Failure:
    """The step's failure naming every target not delivered (in a run of several days every
    `<target> <day>`), with its stage and error (the `failed_targets` metadata is what the Slack
    sensors read)."""
    lines = [f"{t} ({f['stage']}): {f['error']}" for t, f in sorted(failed.items())]
    return dg.Failure(
        description=f"{len(failed)} target(s) not delivered: " + "; ".join(lines),
        metadata={FAILED_TARGETS: dg.MetadataValue.json(failed)},
        allow_retries=False,
    )
