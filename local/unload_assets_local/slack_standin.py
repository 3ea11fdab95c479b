"""A Slack Web API stand-in on loopback that records what our code posts.

`slack_sdk.WebClient(token=..., base_url=stand_in.base_url)` talks to it unmodified: like Slack it
takes POSTs to `/api/<method>` with a form-encoded body (auth.test) or JSON (chat.postMessage, which
slack_sdk sends as JSON because of blocks), answers HTTP 200 with `{"ok": false, "error": ...}` for
API errors, and answers outages with HTTP 5xx or 429 + `Retry-After`, which is what slack_sdk's retry
handlers react to. Outages are injected for the next N calls from Python or, for a separate process
such as the Dagster daemon under test, over HTTP (`POST /_control/fail`). `lose_answers` makes the
one failure no outage shows: Slack posts the message and the answer never arrives (the connection
closes). `conversations.history` (with message `metadata`) and `conversations.list` answer as Slack's
do, for a caller that looks up what it may already have posted.
"""

from __future__ import annotations

import copy
import hmac
import json
import threading
import time
from collections.abc import Iterable
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

from unload_assets_local.loopback import LoopbackService
from unload_assets_local.postgres import free_port
from unload_assets_local.slack_http import (
    BOT_ID,
    TEAM_ID,
    USER_ID,
    SlackApiError,
    SlackHandler,
    as_message,
    channel_id,
    json_arg,
)

_METHODS = {"auth.test", "chat.postMessage", "conversations.history", "conversations.list"}
HISTORY_PAGE_MAX = 999  # conversations.history: limit is capped at 999
_AUTH_TEST = {"url": "https://standin.slack.local/", "team": "Stand-in", "user": "unload-bot"}
_AUTH_TEST.update(team_id=TEAM_ID, user_id=USER_ID, bot_id=BOT_ID)


class SlackStandIn(LoopbackService):
    bound_as, thread_name = "standin", "slack"

    def handler_class(self) -> type[BaseHTTPRequestHandler]:
        return SlackHandler

    def __init__(
        self,
        *,
        token: str,
        port: int = 0,
        record_file: str | Path | None = None,
        channels: Iterable[str] = (),
    ) -> None:
        self._token = token
        self._workspace = {name.lstrip("#"): channel_id(name) for name in channels}  # the workspace's
        # Chosen now (not at bind time) so base_url can go into .env before the server starts.
        self.port = port or free_port()
        self.record_file = Path(record_file) if record_file else None
        self._lock = threading.Lock()
        self._messages: list[dict[str, Any]] = []
        self._last_ts_us = 0
        self._fail_count, self._fail_status = 0, 500
        self._fail_retry_after: int | None = None
        self._lose_count, self._lose_method = 0, ""
        # What the controls did, for a test's report: calls answered with an outage, answers dropped.
        self.failed_calls = self.lost_answers = 0
        self._refusals: dict[str, str] = {}  # method -> Slack error code, for every call until cleared
        self._load_history()

    @property
    def base_url(self) -> str:
        # The trailing slash matters: slack_sdk joins with urljoin, which drops a last segment without one.
        return f"http://127.0.0.1:{self.port}/api/"

    # ---- test controls -------------------------------------------------------------------
    def messages(self) -> list[dict[str, Any]]:
        with self._lock:
            return copy.deepcopy(self._messages)

    def fail_next(self, n: int, *, status: int = 500, retry_after: int | None = None) -> None:
        if n < 0 or not 400 <= status <= 599:
            raise ValueError(f"fail_next needs n >= 0 and an HTTP error status, got n={n}, status={status}")
        if status == 429 and retry_after is None:
            retry_after = 1  # Slack always says how long to wait when it rate-limits
        with self._lock:
            self._fail_count, self._fail_status, self._fail_retry_after = n, status, retry_after

    def lose_answers(self, n: int, method: str = "") -> None:
        """The next `n` successful API calls (of `method` only, when given) take effect, then the
        connection closes with no answer."""
        with self._lock:
            self._lose_count, self._lose_method = max(0, n), method

    def refuse(self, method: str, error: str | None) -> None:
        """Answer every call of `method` with `ok: false, error` (None: answer normally again)."""
        with self._lock:
            if error is None:
                self._refusals.pop(method, None)
            else:
                self._refusals[method] = error

    def clear(self) -> None:
        """Forget recorded messages, in memory and in the record file (else a restart would reload them)."""
        with self._lock:
            self._messages.clear()
            if self.record_file and self.record_file.exists():
                self.record_file.write_text("")

    # ---- request handling (called from handler threads) ----------------------------------
    def _take_failure(self) -> tuple[int, int | None] | None:
        with self._lock:
            if self._fail_count <= 0:
                return None
            self._fail_count -= 1
            self.failed_calls += 1
            return self._fail_status, self._fail_retry_after

    def _take_lost_answer(self, method: str) -> bool:
        with self._lock:
            if self._lose_count <= 0 or self._lose_method not in ("", method):
                return False
            self._lose_count -= 1
            self.lost_answers += 1
            return True

    def _call(self, method: str, args: dict[str, Any], authorization: str | None) -> dict[str, Any]:
        if method not in _METHODS:
            raise SlackApiError("unknown_method")
        bearer = authorization[7:] if authorization and authorization.startswith("Bearer ") else None
        token = bearer or args.get("token")  # Slack also takes the token as a form field
        if not token:
            raise SlackApiError("not_authed")
        if not hmac.compare_digest(str(token).encode(), self._token.encode()):
            raise SlackApiError("invalid_auth")
        with self._lock:
            refusal = self._refusals.get(method)
        if refusal:
            raise SlackApiError(refusal)
        if method == "auth.test":
            return dict(_AUTH_TEST)
        if method == "conversations.history":
            return self._history(args)
        if method == "conversations.list":
            return self._list_channels(args)
        return self._post_message(args)

    def _history(self, args: dict[str, Any]) -> dict[str, Any]:
        """Newest first, `oldest`/`latest` exclusive bounds, `limit` and `cursor` paging, `metadata`
        only with `include_all_metadata`; the channel must be an ID, as in Slack."""
        channel = str(args.get("channel") or "")
        if channel_id(channel) != channel:
            raise SlackApiError("channel_not_found")  # a name, not an ID: Slack finds no such channel
        with self._lock:
            found = [m for m in self._messages if m["channel_id"] == channel]
        try:
            oldest = float(args.get("oldest") or 0)
            latest = float(args.get("latest") or "inf")
            limit = min(max(int(args.get("limit") or 100), 1), HISTORY_PAGE_MAX)
            start = int(str(args.get("cursor") or "0") or 0)
        except ValueError:
            raise SlackApiError("invalid_arguments") from None
        with_metadata = str(args.get("include_all_metadata", "")).lower() in ("1", "true")
        chosen = sorted(
            (m for m in found if oldest < float(m["ts"]) < latest), key=lambda m: float(m["ts"]), reverse=True
        )
        page = chosen[start : start + limit]
        more = start + limit < len(chosen)
        return {
            "messages": [as_message(m, with_metadata) for m in page],
            "has_more": more,
            "response_metadata": {"next_cursor": str(start + limit) if more else ""},
        }

    def _list_channels(self, args: dict[str, Any]) -> dict[str, Any]:
        """The workspace's channels (given at start, and any posted to by name), as Slack lists them."""
        with self._lock:
            names = dict(self._workspace)
            names.update(
                (m["channel"].lstrip("#"), m["channel_id"]) for m in self._messages if m["channel"][:1] == "#"
            )
        channels = [{"id": cid, "name": name, "is_channel": True} for name, cid in sorted(names.items())]
        return {"channels": channels, "response_metadata": {"next_cursor": ""}}

    def _post_message(self, args: dict[str, Any]) -> dict[str, Any]:
        channel = str(args.get("channel") or "")
        if not channel:
            raise SlackApiError("channel_not_found")
        blocks = json_arg(args, "blocks", "invalid_blocks")
        if blocks is not None and not isinstance(blocks, list):
            raise SlackApiError("invalid_blocks")
        text = args.get("text")
        if not text and not blocks:
            raise SlackApiError("no_text")
        metadata = json_arg(args, "metadata", "invalid_metadata_format")
        if metadata is not None and not (
            isinstance(metadata, dict)
            and metadata.get("event_type")
            and isinstance(metadata.get("event_payload"), dict)
        ):
            raise SlackApiError("invalid_metadata_format")
        posted_to = channel_id(channel)
        with self._lock:
            ts = self._next_ts()
            record = {
                "channel": channel,
                "channel_id": posted_to,
                "text": text,
                "blocks": blocks,
                "ts": ts,
                "thread_ts": args.get("thread_ts"),
                "metadata": metadata,
                "received_at": datetime.now(timezone.utc).isoformat(),
            }
            self._messages.append(record)
            if self.record_file:
                self.record_file.parent.mkdir(parents=True, exist_ok=True)
                with self.record_file.open("a", encoding="utf-8") as f:
                    f.write(json.dumps(record, ensure_ascii=False) + "\n")
        return {"channel": posted_to, "ts": ts, "message": as_message(record, with_metadata=True)}

    def _next_ts(self) -> str:
        # Slack's ts is "<seconds>.<microseconds>" and unique per channel; keep ours strictly increasing.
        self._last_ts_us = max(time.time_ns() // 1000, self._last_ts_us + 1)
        return f"{self._last_ts_us // 1_000_000}.{self._last_ts_us % 1_000_000:06d}"

    def _load_history(self) -> None:
        if not self.record_file or not self.record_file.exists():
            return
        raw = self.record_file.read_text(encoding="utf-8")
        for line in raw.splitlines():
            try:
                record = json.loads(line)
            except ValueError:
                continue  # a line torn by a crash mid-write; the rest of the history is still good
            self._messages.append(record)
            self._last_ts_us = max(self._last_ts_us, round(float(record.get("ts") or 0) * 1_000_000))
        if raw and not raw.endswith("\n"):
            with self.record_file.open("a", encoding="utf-8") as f:
                f.write("\n")  # so the next record does not glue onto a torn line
