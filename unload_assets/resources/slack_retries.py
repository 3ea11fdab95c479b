"""Slack's retries, bounded: inline only where Slack cannot have acted, and never past a sensor tick."""

from __future__ import annotations

import random

from slack_sdk.http_retry.builtin_handlers import (
    ConnectionErrorRetryHandler,
    RateLimitErrorRetryHandler,
)
from slack_sdk.http_retry.builtin_interval_calculators import BackoffRetryIntervalCalculator
from slack_sdk.http_retry.handler import RetryHandler
from slack_sdk.http_retry.jitter import Jitter
from slack_sdk.http_retry.request import HttpRequest
from slack_sdk.http_retry.response import HttpResponse
from slack_sdk.http_retry.state import RetryState

# A sensor tick must end well inside Dagster's 60 s evaluation timeout; whatever does not get through
# quickly is left for the next tick (30 s later) instead of being retried here.
MAX_INLINE_RETRY_AFTER = 5


def retry_after_seconds(headers: dict[str, str | list[str]] | None) -> int | None:
    """Slack's Retry-After header as whole seconds (None when missing or unreadable)."""
    for name, value in (headers or {}).items():
        if name.lower() == "retry-after":
            raw = value[0] if isinstance(value, list) else value
            try:
                return max(0, int(float(raw)))
            except (TypeError, ValueError):
                return None
    return None


class _ShortRateLimitRetryHandler(RateLimitErrorRetryHandler):
    """Waits out a 429 only when Slack asks for a short pause; a longer one ends the tick instead."""

    def _can_retry(
        self,
        *,
        state: RetryState,
        request: HttpRequest,
        response: HttpResponse | None = None,
        error: Exception | None = None,
    ) -> bool:
        if not super()._can_retry(state=state, request=request, response=response, error=error):
            return False
        wait = retry_after_seconds(response.headers if response is not None else None)  # type: ignore[arg-type]
        return wait is not None and wait <= MAX_INLINE_RETRY_AFTER


class _ProportionalJitter(Jitter):
    # slack_sdk's default jitter adds up to a whole second whatever the base; scale it with the base.
    def recalculate(self, duration: float) -> float:
        return duration * (1 + random.random())


def bounded_retry_handlers() -> list[RetryHandler]:
    """Inline retries only where Slack cannot have acted: a refused connection (nothing was sent) and a
    short 429. A 5xx, a reset connection or a timeout may come after Slack posted the message; those end
    the attempt, and the sensor looks in the channel's history before it posts again."""
    interval = BackoffRetryIntervalCalculator(backoff_factor=0.5, jitter=_ProportionalJitter())
    return [
        _RefusedConnectionRetryHandler(max_retry_count=1, interval_calculator=interval),
        _ShortRateLimitRetryHandler(max_retry_count=1),
    ]


class _RefusedConnectionRetryHandler(ConnectionErrorRetryHandler):
    def _can_retry(
        self,
        *,
        state: RetryState,
        request: HttpRequest,
        response: HttpResponse | None = None,
        error: Exception | None = None,
    ) -> bool:
        reason = getattr(error, "reason", error)
        return response is None and isinstance(reason, ConnectionRefusedError)
