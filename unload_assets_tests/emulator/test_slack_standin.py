"""The Slack stand-in, driven by the real slack_sdk WebClient (what our sensors use)."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_handlers import RateLimitErrorRetryHandler, ServerErrorRetryHandler
from slack_sdk.http_retry.builtin_interval_calculators import FixedValueRetryIntervalCalculator
from unload_assets_local.slack_standin import SlackStandIn

pytestmark = pytest.mark.stack  # the stand-in is a server on loopback

TOKEN = "xoxb-standin-test-token"
BLOCKS = [{"type": "section", "text": {"type": "mrkdwn", "text": "*sales* → `s3://b/k.csv.gz`"}}]


@pytest.fixture
def standin() -> Iterator[SlackStandIn]:
    with SlackStandIn(token=TOKEN) as s:
        yield s


def client(standin: SlackStandIn, token: str | None = TOKEN, **kwargs: Any) -> WebClient:
    return WebClient(token=token, base_url=standin.base_url, **kwargs)


def http(standin: SlackStandIn, path: str, payload: Any = None) -> tuple[int, Any, dict[str, str]]:
    data = None if payload is None else json.dumps(payload).encode()
    req = urllib.request.Request(f"http://127.0.0.1:{standin.port}{path}", data=data)
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, json.loads(resp.read()), dict(resp.headers)
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read()), dict(e.headers)


def test_base_url_is_what_webclient_joins_methods_onto(standin: SlackStandIn) -> None:
    assert standin.base_url == f"http://127.0.0.1:{standin.port}/api/"


def test_auth_test_ok(standin: SlackStandIn) -> None:
    resp = client(standin).auth_test()
    assert resp["ok"] is True
    assert resp["team_id"].startswith("T") and resp["user_id"].startswith("U")


@pytest.mark.parametrize(("token", "error"), [("xoxb-wrong", "invalid_auth"), (None, "not_authed")])
def test_auth_test_rejects_bad_or_missing_token(standin: SlackStandIn, token: str | None, error: str) -> None:
    with pytest.raises(SlackApiError) as exc:
        client(standin, token=token).auth_test()
    assert exc.value.response.status_code == 200  # Slack reports API errors in the body, not the status
    assert exc.value.response["error"] == error


def test_token_in_form_body_is_accepted(standin: SlackStandIn) -> None:
    body = f"token={TOKEN}&channel=%23unloads&text=form+post".encode()
    req = urllib.request.Request(f"{standin.base_url}chat.postMessage", data=body)  # form-encoded
    with urllib.request.urlopen(req, timeout=10) as resp:
        assert json.loads(resp.read())["ok"] is True
    assert [m["text"] for m in standin.messages()] == ["form post"]


def test_post_message_with_blocks_is_recorded(standin: SlackStandIn) -> None:
    resp = client(standin).chat_postMessage(channel="#unloads", text="sales delivered", blocks=BLOCKS)
    assert resp["ok"] is True and resp["channel"].startswith("C")
    assert resp["message"]["blocks"] == BLOCKS
    reply = client(standin).chat_postMessage(channel=resp["channel"], text="detail", thread_ts=resp["ts"])
    first, second = standin.messages()
    assert (first["channel"], first["text"], first["blocks"], first["ts"]) == (
        "#unloads",
        "sales delivered",
        BLOCKS,
        resp["ts"],
    )
    assert second["thread_ts"] == resp["ts"] and second["channel_id"] == resp["channel"]
    assert float(reply["ts"]) > float(resp["ts"])
    assert first["received_at"]


@pytest.mark.parametrize(
    ("args", "error"),
    [({"channel": "", "text": "x"}, "channel_not_found"), ({"channel": "#unloads"}, "no_text")],
)
def test_post_message_validation(standin: SlackStandIn, args: dict[str, str], error: str) -> None:
    with pytest.raises(SlackApiError) as exc:
        client(standin).api_call("chat.postMessage", json=args)
    assert exc.value.response["error"] == error
    assert standin.messages() == []


def test_unknown_method(standin: SlackStandIn) -> None:
    with pytest.raises(SlackApiError) as exc:
        client(standin).api_call("conversations.kick")
    assert exc.value.response["error"] == "unknown_method"


def test_server_outage_without_retries_fails_and_records_nothing(standin: SlackStandIn) -> None:
    standin.fail_next(1)
    with pytest.raises(SlackApiError) as exc:
        client(standin).chat_postMessage(channel="#unloads", text="lost?")
    assert exc.value.response.status_code == 500
    assert standin.messages() == []


def test_server_outage_then_retries_deliver_exactly_once(standin: SlackStandIn) -> None:
    standin.fail_next(3, status=500)
    retry = ServerErrorRetryHandler(
        max_retry_count=3, interval_calculator=FixedValueRetryIntervalCalculator(0.01)
    )
    resp = client(standin, retry_handlers=[retry]).chat_postMessage(channel="#unloads", text="once")
    assert resp["ok"] is True
    assert [m["text"] for m in standin.messages()] == ["once"]


def test_an_outage_and_a_lost_answer_are_counted_and_a_lost_answer_can_pick_its_method(
    standin: SlackStandIn,
) -> None:
    standin.fail_next(2)
    for _ in range(2):
        with pytest.raises(SlackApiError):
            client(standin).auth_test()
    standin.lose_answers(1, method="chat.postMessage")
    assert client(standin).auth_test()["ok"] is True  # another method's answer still arrives
    with pytest.raises(Exception):  # noqa: B017 - the connection closes: whatever the client makes of it
        client(standin, retry_handlers=[]).chat_postMessage(channel="#unloads", text="taken, unanswered")
    assert [m["text"] for m in standin.messages()] == ["taken, unanswered"]
    assert (standin.failed_calls, standin.lost_answers) == (2, 1)


def test_rate_limit_retry_after_is_honoured(standin: SlackStandIn) -> None:
    standin.fail_next(1, status=429, retry_after=1)
    started = time.monotonic()
    web = client(standin, retry_handlers=[RateLimitErrorRetryHandler(max_retry_count=1)])
    web.chat_postMessage(channel="#unloads", text="after the wait", blocks=BLOCKS)
    assert time.monotonic() - started >= 1.0
    assert [m["text"] for m in standin.messages()] == ["after the wait"]


def test_failures_can_be_injected_over_http(standin: SlackStandIn) -> None:
    status, body, _ = http(standin, "/_control/fail", {"count": 2, "status": 429, "retry_after": 7})
    assert (status, body) == (200, {"ok": True})
    for _ in range(2):
        with pytest.raises(SlackApiError) as exc:
            client(standin).auth_test()
        assert exc.value.response.status_code == 429
        assert exc.value.response.headers["Retry-After"] == "7"
        assert exc.value.response["error"] == "ratelimited"
    assert client(standin).auth_test()["ok"] is True
    assert http(standin, "/_control/fail", {"count": "many"})[0] == 400


def test_messages_and_clear_over_http(standin: SlackStandIn) -> None:
    client(standin).chat_postMessage(channel="#unloads", text="Zürich 東京 📦", blocks=BLOCKS)
    status, listed, _ = http(standin, "/messages")
    assert status == 200 and listed == standin.messages()
    assert listed[0]["text"] == "Zürich 東京 📦"
    assert http(standin, "/_control/clear", {})[:2] == (200, {"ok": True})
    assert http(standin, "/messages")[1] == [] and standin.messages() == []
    assert http(standin, "/nowhere")[0] == 404


def test_record_file_round_trip(tmp_path: Any, capfd: pytest.CaptureFixture[str]) -> None:
    record = tmp_path / "state" / "slack" / "messages.jsonl"  # parent dirs do not exist yet
    with SlackStandIn(token=TOKEN, record_file=record) as first:
        client(first).chat_postMessage(channel="#unloads", text="one", blocks=BLOCKS)
        client(first).chat_postMessage(channel="#unloads", text="two")
        with pytest.raises(SlackApiError):
            client(first, token=TOKEN + "-wrong").auth_test()  # an error path must not log tokens either
        before = first.messages()
    lines = record.read_text(encoding="utf-8").splitlines()
    assert [json.loads(line) for line in lines] == before

    with SlackStandIn(token=TOKEN, record_file=record) as restarted:
        assert restarted.messages() == before  # history survives a restart
        resp = client(restarted).chat_postMessage(channel="#unloads", text="three")
        assert float(resp["ts"]) > float(before[-1]["ts"])
        assert [m["text"] for m in restarted.messages()] == ["one", "two", "three"]
    assert len(record.read_text(encoding="utf-8").splitlines()) == 3
    assert TOKEN not in record.read_text(encoding="utf-8")
    out, err = capfd.readouterr()
    assert TOKEN not in out + err


def test_torn_last_line_is_skipped_and_not_glued_onto(tmp_path: Any) -> None:
    record = tmp_path / "messages.jsonl"
    record.write_text('{"channel": "#unloads", "text": "kept", "ts": "1700000000.000001"}\n{"chan', "utf-8")
    with SlackStandIn(token=TOKEN, record_file=record) as s:
        assert [m["text"] for m in s.messages()] == ["kept"]
        client(s).chat_postMessage(channel="#unloads", text="next")
    with SlackStandIn(token=TOKEN, record_file=record) as s:
        assert [m["text"] for m in s.messages()] == ["kept", "next"]
