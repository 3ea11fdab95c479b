"""The Slack stand-in's HTTP side: Slack's Web API paths and answers, and the test controls (`/_control/...`,
`GET /messages`) that a separate process under test (the Dagster daemon) is driven with."""

from __future__ import annotations

import hashlib
import json
import socket
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qs, urlsplit

TEAM_ID, USER_ID, BOT_ID = "T0STANDIN", "U0STANDIN", "B0STANDIN"


class SlackApiError(Exception):
    """An API-level error: Slack reports these with HTTP 200 and `ok: false`."""


class SlackHandler(BaseHTTPRequestHandler):
    standin: Any  # the SlackStandIn, set on the per-server subclass
    server_version = "SlackStandIn/1"

    def log_message(self, format: str, *args: Any) -> None:
        pass  # quiet: test output stays readable, and nothing here can ever print a token

    def _dispatch(self) -> None:
        url = urlsplit(self.path)
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if url.path.startswith("/api/"):
            self._api(url.path[len("/api/") :], url.query, body)
        elif url.path == "/messages" and self.command == "GET":
            self._send(200, self.standin.messages())
        elif url.path == "/_control/health":
            self._send(200, {"ok": True})
        elif url.path == "/_control/clear" and self.command == "POST":
            self.standin.clear()
            self._send(200, {"ok": True})
        elif url.path == "/_control/lose" and self.command == "POST":
            try:
                spec = json.loads(body or b"{}")
                self.standin.lose_answers(int(spec.get("count", 1)), str(spec.get("method") or ""))
            except (ValueError, TypeError, AttributeError) as e:
                self._send(400, {"ok": False, "error": f"bad lose spec: {e}"})
                return
            self._send(200, {"ok": True})
        elif url.path == "/_control/fail" and self.command == "POST":
            try:
                spec = json.loads(body or b"{}")
                retry_after = None if spec.get("retry_after") is None else int(spec["retry_after"])
                count, status = int(spec.get("count", 1)), int(spec.get("status", 500))
                self.standin.fail_next(count, status=status, retry_after=retry_after)
            except (ValueError, TypeError, AttributeError) as e:
                self._send(400, {"ok": False, "error": f"bad failure spec: {e}"})
                return
            self._send(200, {"ok": True})
        else:
            self._send(404, {"ok": False, "error": "not_found"})

    do_GET = do_POST = _dispatch  # Slack takes every method both ways; slack_sdk always POSTs

    def _api(self, method: str, query: str, body: bytes) -> None:
        failure = self.standin._take_failure()
        if failure is not None:
            status, retry_after = failure
            headers = {"Retry-After": str(retry_after)} if retry_after is not None else {}
            error = "ratelimited" if status == 429 else "fatal_error"
            self._send(status, {"ok": False, "error": error}, headers)
            return
        try:
            args = _parse_args(self.headers.get("Content-Type") or "", query, body)
            result = self.standin._call(method, args, self.headers.get("Authorization"))
        except SlackApiError as e:
            self._send(200, {"ok": False, "error": str(e)})
            return
        if self.standin._take_lost_answer(method):
            self.close_connection = True  # done, and no answer: the caller cannot tell it was
            self.connection.shutdown(socket.SHUT_RDWR)
            return
        self._send(200, {"ok": True, **result})

    def _send(self, status: int, payload: Any, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(payload, ensure_ascii=False).encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)


def _parse_args(content_type: str, query: str, body: bytes) -> dict[str, Any]:
    args: dict[str, Any] = {k: v[0] for k, v in parse_qs(query, keep_blank_values=True).items()}
    if not body:
        return args
    if content_type.split(";")[0].strip().lower() == "application/json":
        try:
            parsed = json.loads(body)
        except ValueError:
            raise SlackApiError("invalid_json") from None
        if not isinstance(parsed, dict):
            raise SlackApiError("invalid_json")
        return {**args, **parsed}
    form = parse_qs(body.decode("utf-8"), keep_blank_values=True)
    return {**args, **{k: v[0] for k, v in form.items()}}


def json_arg(args: dict[str, Any], name: str, error: str) -> Any:
    """Argument `name`, decoded when a form-encoded caller sent it as a JSON string; `error` if unreadable."""
    value = args.get(name)
    if not isinstance(value, str):
        return value
    try:
        return json.loads(value)
    except ValueError:
        raise SlackApiError(error) from None


def as_message(record: dict[str, Any], with_metadata: bool) -> dict[str, Any]:
    message = {"type": "message", "user": USER_ID, "bot_id": BOT_ID, "text": record.get("text") or ""}
    message["ts"] = record["ts"]
    for name in ("blocks", "thread_ts") + (("metadata",) if with_metadata else ()):
        if record.get(name):
            message[name] = record[name]
    return message


def channel_id(channel: str) -> str:
    """Slack answers with the channel's ID even when posting by name; derive a stable fake one."""
    if channel[:1] in "CGD" and channel.isalnum() and channel.isupper():
        return channel
    return "C" + hashlib.sha1(channel.lstrip("#").encode()).hexdigest()[:10].upper()
