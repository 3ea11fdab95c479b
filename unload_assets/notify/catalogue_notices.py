"""The catalogue's problems told in Slack by the failure sensor: one message per problem, once per version
of the catalogue.

A problem's id (`Problem.notice_id`) is derived from the catalogue's content, the problem's place and its
text: the same mistake in the same file is told once, however often the code location reloads or the
daemon restarts, and told again once the file has changed and the mistake is still there. The ids told are
kept in the failure sensor's cursor; each message carries its id in its Slack metadata, and before posting,
the channel's recent history is read for it, so a tick that died after Slack took a message (before the
cursor was saved) does not post it twice.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

from unload_assets.catalogue import Problem
from unload_assets.notify import messages
from unload_assets.notify.tick import SensorCursor
from unload_assets.resources.slack import NotDelivered, UnloadSlackResource

HISTORY_LOOKBACK_SECONDS = 7 * 86_400  # how far back the channel is searched for a problem told already


def tell_problems(
    slack: UnloadSlackResource,
    cursor: SensorCursor,
    problems: Sequence[Problem],
    secrets: tuple[str, ...],
    *,
    kept_from_loading: Mapping[str, Sequence[str]],
    instance: str,
    clock: Callable[[], float],
) -> str:
    """Post each of `problems` not told yet, with the targets each keeps from loading (by notice id);
    what was done, for the tick's summary ("" when nothing was)."""
    current = {problem.notice_id for problem in problems}
    cursor.notices = [notice for notice in cursor.notices if notice in current]  # fixed ones are forgotten
    pending = [problem for problem in problems if problem.notice_id not in cursor.notices]
    if not pending:
        return ""
    unique = list({problem.notice_id: problem for problem in pending}.values())
    try:
        found = slack.find_posted({p.notice_id for p in unique}, oldest=clock() - HISTORY_LOOKBACK_SECONDS)
    except NotDelivered as exc:
        if not exc.cannot_read:
            return f"Catalogue problems not told yet ({len(unique)}): {exc.reason}; retried next tick."
        found = {}
    told = 0
    for problem in unique:
        if problem.notice_id not in found:
            kept = kept_from_loading.get(problem.notice_id, ())
            message = messages.catalogue_message(instance, problem.located, kept, secrets)
            try:
                slack.post(message.text, message.blocks, notices=[problem.notice_id])
            except NotDelivered as exc:
                return f"Told {told} of {len(unique)} catalogue problem(s); stopped: {exc.reason}."
            told += 1
        cursor.notices.append(problem.notice_id)
    return (
        f"Told {told} catalogue problem(s) in Slack"
        + (f" ({len(unique) - told} found already in the channel)" if told < len(unique) else "")
        + "."
    )
