"""Slack for the notification sensors: `SlackResource` plus a base URL, a channel and bounded retries."""

from __future__ import annotations

import random
from http.client import HTTPException
from typing import Any

from dagster_slack import SlackResource
from pydantic import Field
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_handlers import (
    ConnectionErrorRetryHandler,
    RateLimitErrorRetryHandler,
    ServerErrorRetryHandler,
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
_TOKEN_ERRORS = {
    "not_authed",
    "invalid_auth",
    "account_inactive",
    "token_revoked",
    "token_expired",
    "missing_scope",
    "not_allowed_token_type",
    "no_permission",
    "ekm_access_denied",
}
_CHANNEL_ERRORS = {"channel_not_found", "not_in_channel", "is_archived", "restricted_action"}


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


def bounded_retry_handlers(backoff_seconds: float = 0.5) -> list[RetryHandler]:
    """At most ~3 s of waiting per message. Read timeouts are deliberately not retried here: Slack may
    already have posted the message, and an immediate re-post is a likely duplicate; the next tick retries."""
    interval = BackoffRetryIntervalCalculator(backoff_factor=backoff_seconds, jitter=_ProportionalJitter())
    return [
        ConnectionErrorRetryHandler(max_retry_count=1, interval_calculator=interval),
        ServerErrorRetryHandler(max_retry_count=2, interval_calculator=interval),
        _ShortRateLimitRetryHandler(max_retry_count=1),
    ]


class UnloadSlackResource(SlackResource):
    """`dagster_slack.SlackResource` with the API base URL (local stand-in) and the delivery channel.

    `token` may be empty: the sensors then report "SLACK_BOT_TOKEN is not set" as their skip reason
    instead of failing every tick with a configuration error.
    """

    base_url: str = Field(
        default="",
        description="Slack Web API base URL (SLACK_API_URL), only for a local stand-in; empty means Slack.",
    )
    channel: str = Field(default="", description="Channel that receives delivery notices (SLACK_CHANNEL).")
    timeout_seconds: int = Field(default=10, description="Per-request timeout for Slack API calls.")
    retry_backoff_seconds: float = Field(default=0.5, description="First pause before retrying a 5xx.")

    def get_client(self) -> WebClient:
        return WebClient(
            token=self.token or None,
            # slack_sdk joins method names with urljoin, which drops a last path segment without "/".
            base_url=(self.base_url or WebClient.BASE_URL).rstrip("/") + "/",
            timeout=self.timeout_seconds,
            retry_handlers=bounded_retry_handlers(self.retry_backoff_seconds),
        )

    def misconfiguration(self) -> str | None:
        """What keeps any message from being sent, named by its environment variable (never its value)."""
        missing = [n for n, v in (("SLACK_BOT_TOKEN", self.token), ("SLACK_CHANNEL", self.channel)) if not v]
        if missing:
            return f"{' and '.join(missing)} not set in the code location's environment (set, then reload)"
        return None

    def post(self, text: str, blocks: list[dict[str, Any]]) -> tuple[str, str]:
        """Post to `channel`; returns (channel id, message ts). Raises NotDelivered with a clear reason."""
        client = self.get_client()
        try:
            try:
                response = client.chat_postMessage(
                    channel=self.channel, text=text, blocks=blocks, unfurl_links=False, unfurl_media=False
                )
            except SlackApiError as exc:
                if _classify(exc, self.channel)[1] is False:
                    raise
                # Slack refused this message's blocks or size: the plain-text fallback alone still informs.
                response = client.chat_postMessage(channel=self.channel, text=text[:3900], unfurl_links=False)
        except SlackApiError as exc:
            reason, only_this = _classify(exc, self.channel)
            wait = retry_after_seconds(exc.response.headers) if exc.response.status_code == 429 else None
            raise NotDelivered(reason, only_this_message=only_this, retry_after=wait) from None
        except (OSError, HTTPException) as exc:  # URLError, timeouts, refused or reset connections
            raise NotDelivered(f"Slack unreachable ({type(exc).__name__}: {exc})") from None
        return str(response.get("channel") or ""), str(response.get("ts") or "")


class NotDelivered(Exception):
    """A post that did not reach the channel; `only_this_message` when the next one may still go through."""

    def __init__(self, reason: str, *, only_this_message: bool = False, retry_after: int | None = None):
        super().__init__(reason)
        self.reason, self.only_this_message, self.retry_after = reason, only_this_message, retry_after


def _classify(exc: SlackApiError, channel: str) -> tuple[str, bool]:
    status, error = exc.response.status_code, str(exc.response.get("error") or "no detail")
    if status == 429:
        wait = retry_after_seconds(exc.response.headers)
        return f"Slack rate-limited us (HTTP 429, Retry-After {wait} s)", False
    if status != 200:
        return f"Slack answered HTTP {status} ({error}) after retries", False
    if error in _TOKEN_ERRORS:
        return f"Slack rejected SLACK_BOT_TOKEN ({error}): set a valid bot token with chat:write", False
    if error in _CHANNEL_ERRORS:
        return f"SLACK_CHANNEL {channel!r} cannot be posted to ({error}): fix it or invite the bot", False
    return f"Slack refused the message ({error})", True
