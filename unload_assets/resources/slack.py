"""Slack for the notification sensors: `SlackResource` plus a base URL, a channel and bounded retries."""

from __future__ import annotations

import random
from collections.abc import Sequence
from http.client import HTTPException
from typing import Any

from dagster_slack import SlackResource
from pydantic import Field
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
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
MARKER_EVENT = "unload_assets_run"  # message metadata event type; its payload names the run announced
NOTICE_EVENT = "unload_assets_notice"  # the same for notices about no run: {"notices": [ids]}
HISTORY_PAGES = 10  # at most 2,000 recent messages are read when looking for one already posted


class UnloadSlackResource(SlackResource):
    """`dagster_slack.SlackResource` with the API base URL (local stand-in) and the delivery channel.

    `token` may be empty: the sensors then report "slack.token ... not set" as their skip reason
    instead of failing every tick with a configuration error.
    """

    base_url: str = Field(
        default="",
        description="Slack Web API base URL (SLACK_API_URL), only for a local stand-in; empty means Slack.",
    )
    channel: str = Field(default="", description="Channel that receives delivery notices.")
    token_variable: str = Field(
        default="",
        description="The environment variable the token is read from, to name it when it is unset.",
    )
    timeout_seconds: int = Field(default=10, description="Per-request timeout for Slack API calls.")

    def get_client(self) -> WebClient:
        return WebClient(
            token=self.token or None,
            # slack_sdk joins method names with urljoin, which drops a last path segment without "/".
            base_url=(self.base_url or WebClient.BASE_URL).rstrip("/") + "/",
            timeout=self.timeout_seconds,
            retry_handlers=bounded_retry_handlers(),
        )

    def misconfiguration(self) -> str | None:
        """What keeps any message from being sent, named by its attribute and variable (never its value)."""
        token = f"slack.token ({self.token_variable})" if self.token_variable else "slack.token"
        missing = [
            name for name, value in ((token, self.token), ("slack.channel", self.channel)) if not value
        ]
        if missing:
            return f"{' and '.join(missing)} not set in the code location's environment (set, then reload)"
        return None

    def post(
        self,
        text: str,
        blocks: list[dict[str, Any]],
        *,
        run_id: str = "",
        also: Sequence[str] = (),
        notices: Sequence[str] = (),
    ) -> tuple[str, str]:
        """Post to `channel`, marked with `run_id` (message metadata, which `find_posted` reads back),
        and with `also`, the other runs one catch-up message tells of; or, for a message about no one
        run, with the ids of the `notices` it carries. Returns (channel id, message ts). Raises
        NotDelivered with a clear reason."""
        client = self.get_client()
        payload: dict[str, Any] = {"run_id": run_id, **({"run_ids": list(also)} if also else {})}
        marker = {"event_type": MARKER_EVENT, "event_payload": payload}
        if notices:
            marker = {"event_type": NOTICE_EVENT, "event_payload": {"notices": list(notices)}}
        try:
            try:
                response = client.chat_postMessage(
                    channel=self.channel,
                    text=text,
                    blocks=blocks,
                    metadata=marker,
                    unfurl_links=False,
                    unfurl_media=False,
                )
            except SlackApiError as exc:
                if _classify(exc, self.channel)[1] is False:
                    raise
                # Slack refused this message's blocks or size: the plain-text fallback alone still informs.
                response = client.chat_postMessage(
                    channel=self.channel, text=text[:3900], metadata=marker, unfurl_links=False
                )
        except SlackApiError as exc:
            raise _not_delivered(exc, self.channel) from None
        except (OSError, HTTPException) as exc:  # URLError, timeouts, refused or reset connections
            raise _unreachable(exc) from None
        return str(response.get("channel") or ""), str(response.get("ts") or "")

    def find_posted(self, run_ids: set[str], oldest: float) -> dict[str, tuple[str, str]]:
        """Which of `run_ids` (or notice ids) already have a message in the channel posted after `oldest`
        (Unix time), as {id: (channel id, ts)}: read from the channel's history by the marker `post`
        puts on each message. Needs the `channels:history` scope (`groups:history` for a private channel) and,
        for a channel given by name, `channels:read`. Raises NotDelivered when Slack cannot say."""
        client = self.get_client()
        found: dict[str, tuple[str, str]] = {}
        try:
            channel_id = self._channel_id(client)
            cursor = None
            for _ in range(HISTORY_PAGES):
                page = client.conversations_history(
                    channel=channel_id,
                    oldest=f"{oldest:.6f}",
                    limit=200,
                    include_all_metadata=True,
                    cursor=cursor,
                )
                for message in page.get("messages") or []:
                    for run_id in _told(message.get("metadata") or {}):
                        if run_id in run_ids:
                            found.setdefault(run_id, (channel_id, str(message.get("ts") or "")))
                cursor = (page.get("response_metadata") or {}).get("next_cursor")
                if not page.get("has_more") or not cursor or len(found) == len(run_ids):
                    break
        except SlackApiError as exc:
            raise _not_delivered(exc, self.channel, reading=True) from None
        except (OSError, HTTPException) as exc:
            raise _unreachable(exc) from None
        return found

    def _channel_id(self, client: WebClient) -> str:
        """conversations.history takes only a channel ID; a channel given by name is looked up."""
        name = self.channel.lstrip("#")
        if name[:1] in "CGD" and name.isalnum() and name.isupper():
            return name
        cursor = None
        while True:
            page = client.conversations_list(
                types="public_channel,private_channel", exclude_archived=True, limit=1000, cursor=cursor
            )
            for channel in page.get("channels") or []:
                if channel.get("name") == name:
                    return str(channel["id"])
            cursor = (page.get("response_metadata") or {}).get("next_cursor")
            if not cursor:
                raise NotDelivered(
                    f"slack.channel {self.channel!r} is not among the channels the bot can see",
                    cannot_read=True,
                )


def _told(meta: dict[str, Any]) -> list[Any]:
    """The runs (or notices) a message's metadata says it tells of."""
    payload = meta.get("event_payload") or {}
    if meta.get("event_type") == MARKER_EVENT:
        return [payload.get("run_id"), *(payload.get("run_ids") or [])]
    return list(payload.get("notices") or []) if meta.get("event_type") == NOTICE_EVENT else []


class NotDelivered(Exception):
    """A call that did not get through. `only_this_message`: the next message may still go through.
    `maybe_posted`: Slack may have acted although we have no answer (5xx, reset, timeout).
    `cannot_read`: the bot may not read the channel's history (a scope), so no lookup will ever work."""

    def __init__(
        self,
        reason: str,
        *,
        only_this_message: bool = False,
        retry_after: int | None = None,
        maybe_posted: bool = False,
        cannot_read: bool = False,
    ):
        super().__init__(reason)
        self.reason, self.only_this_message, self.retry_after = reason, only_this_message, retry_after
        self.maybe_posted, self.cannot_read = maybe_posted, cannot_read


def _not_delivered(exc: SlackApiError, channel: str, *, reading: bool = False) -> NotDelivered:
    reason, only_this = _classify(exc, channel, reading=reading)
    status, error = exc.response.status_code, str(exc.response.get("error") or "")
    return NotDelivered(
        reason,
        only_this_message=only_this and not reading,
        retry_after=retry_after_seconds(exc.response.headers) if status == 429 else None,
        maybe_posted=status >= 500 and not reading,
        cannot_read=reading and status == 200 and (error in _TOKEN_ERRORS or error in _CHANNEL_ERRORS),
    )


def _unreachable(exc: Exception) -> NotDelivered:
    # A refused connection sent nothing; anything later (a reset, a timeout) may follow Slack's action.
    refused = isinstance(getattr(exc, "reason", exc), ConnectionRefusedError)
    return NotDelivered(f"Slack unreachable ({type(exc).__name__}: {exc})", maybe_posted=not refused)


def _classify(exc: SlackApiError, channel: str, *, reading: bool = False) -> tuple[str, bool]:
    status, error = exc.response.status_code, str(exc.response.get("error") or "no detail")
    if status == 429:
        wait = retry_after_seconds(exc.response.headers)
        return f"Slack rate-limited us (HTTP 429, Retry-After {wait} s)", False
    if status != 200:
        return f"Slack answered HTTP {status} ({error})", False
    if reading and error in _TOKEN_ERRORS:
        return f"Slack refused to show the channel's history ({error}): give the bot channels:history", False
    if error in _TOKEN_ERRORS:
        return f"Slack rejected slack.token ({error}): set a valid bot token with chat:write", False
    if error in _CHANNEL_ERRORS or (reading and error == "channel_not_found"):
        return f"slack.channel {channel!r} cannot be posted to ({error}): fix it or invite the bot", False
    return f"Slack refused the {'history lookup' if reading else 'message'} ({error})", True


# Retries inside one call: short ones only (a sensor tick must end well inside its 60 s)

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
