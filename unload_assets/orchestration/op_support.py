"""What the two ops share: the step retry policy, the targets a run selected, an error line without
secrets, and the S3 handoff between them."""

from collections.abc import Sequence
from typing import Any

import dagster as dg

from unload_assets.catalogue import UnloadTarget
from unload_assets.orchestration.names import asset_key_for
from unload_assets.orchestration.retries import describe
from unload_assets.secrets import scrub

# A step that dies (killed, out of memory) is retried whole by Dagster; each target's own errors are
# retried inside the step (retries.py) and never reach this policy.
STEP_RETRY = dg.RetryPolicy(max_retries=3, delay=1, backoff=dg.Backoff.EXPONENTIAL)
# The unload op's output (what the rename op needs) is pickled to S3 under the staging prefix, never to
# a worker's disk; the assets' own outputs are Nothing (their value is the metadata): no IO manager runs.
HANDOFF_IO_MANAGER = "handoff_io_manager"


def said(exc: Exception, settings: Any) -> str:
    """One line of `exc` for the log, the failure and Slack, without the UNLOAD secrets."""
    return scrub(describe(exc), settings.secrets())


def selected(context: dg.OpExecutionContext, targets: Sequence[UnloadTarget]) -> list[UnloadTarget]:
    """The targets this run materialises (a subset when one target is materialised from the UI)."""
    keys = context.selected_asset_keys
    return [t for t in targets if asset_key_for(t.name) in keys]
