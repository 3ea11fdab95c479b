"""Each target of a batched step on its own: a bounded pool of workers, and retries with backoff per target.

One step serves every target of a run (see assets.py), so Dagster's per-step RetryPolicy would retry all
of them for one target's hiccup. Here each target is attempted, waited for and retried on its own,
with the schedule RetryPolicy(delay, EXPONENTIAL, PLUS_MINUS jitter) would give: waits of
delay x (2^n - 1) seconds, each +- delay. A `Failure(allow_retries=False)` (the statement's fault, a
refused split) or an AWS refusal (AccessDenied: a policy, a key, a bucket owner) stops that target at
once. A target that still fails is reported, not raised: the other targets' work goes on.
"""

from __future__ import annotations

import random
import re
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import Generic, TypeVar

import dagster as dg

T = TypeVar("T")
R = TypeVar("R")


@dataclass(frozen=True)
class Backoff:
    attempts: int  # 1 + retries
    delay: float  # seconds; the first wait is delay +- delay, then 3 x delay +- delay, 7 x delay, ...

    def wait(self, retry: int) -> float:
        """Seconds before retry number `retry` (1 for the first retry)."""
        return max(0.0, self.delay * (2**retry - 1) + random.uniform(-self.delay, self.delay))


UNLOAD_BACKOFF = Backoff(attempts=4, delay=2.0)
RENAME_BACKOFF = Backoff(attempts=4, delay=1.0)
_ERROR_CHARS = 1000
# The line each retry logs (at WARNING, in the run's event log); `retries_logged` reads it back.
_RETRY_LOG = "{what}: attempt {number} of {attempts} failed ({error}); retrying in {wait:.1f} s"
_RETRY_LINE = re.compile(
    r"(?P<what>.+): attempt (?P<number>\d+) of \d+ failed \((?P<error>.*)\); retrying in (?P<wait>[\d.]+) s"
)


@dataclass(frozen=True)
class Retry:
    what: str  # "UNLOAD of 'sales'", "rename of 'sales'"
    attempt: int  # the attempt that failed (1 for the first)
    error: str
    wait: float


def retries_logged(messages: Iterable[str]) -> list[Retry]:
    """The retries among a run's log messages, in order."""
    found = (_RETRY_LINE.fullmatch(m) for m in messages)
    return [Retry(m["what"], int(m["number"]), m["error"], float(m["wait"])) for m in found if m]


@dataclass(frozen=True)
class Outcome(Generic[T, R]):
    """What became of one item: its result, or the one-line error it failed with for good."""

    item: T
    result: R | None
    error: str | None


# S3 refusing the request for good: a policy, a key or a bucket owner, not a hiccup another try can pass.
_REFUSALS = ("AccessDenied", "AllAccessDisabled", "InvalidAccessKeyId", "SignatureDoesNotMatch", "403")


def refused(exc: Exception) -> bool:
    """Whether `exc` is an AWS refusal (403 and its kind), which no retry changes."""
    response = getattr(exc, "response", None)
    code = str((response or {}).get("Error", {}).get("Code", "")) if isinstance(response, dict) else ""
    return code in _REFUSALS


def with_retries(
    fn: Callable[[int], R],
    *,
    backoff: Backoff,
    what: str,
    log: Callable[[str], None],
    sleep: Callable[[float], None] = time.sleep,
) -> R:
    """`fn(attempt_number)` until it returns; raises the last error when retries are spent or refused."""
    for number in range(backoff.attempts):
        try:
            return fn(number)
        except Exception as exc:
            final = (isinstance(exc, dg.Failure) and not exc.allow_retries) or refused(exc)
            if final or number + 1 == backoff.attempts:
                raise
            pause = backoff.wait(number + 1)
            error = describe(exc)
            log(
                _RETRY_LOG.format(
                    what=what, number=number + 1, attempts=backoff.attempts, error=error, wait=pause
                )
            )
            sleep(pause)
    raise AssertionError("unreachable")  # pragma: no cover


def concurrently(
    items: Iterable[T],
    fn: Callable[[T], R],
    *,
    workers: int,
    name: Callable[[T], str],
    describe_error: Callable[[Exception], str],
    stop: threading.Event | None = None,
) -> Iterator[Outcome[T, R]]:
    """`fn(item)` for every item, at most `workers` at once, yielding outcomes as they finish (in this
    thread, so the caller may yield Dagster events). An exception becomes an outcome with its error.

    Dagster interrupts a terminated run's op in this thread (KeyboardInterrupt or
    DagsterExecutionInterruptedError, raised while it waits here): items not started are dropped, `stop` is
    set so that the running ones cancel their work and return, and once they have the interrupt goes on."""
    items = list(items)
    if not items:
        return
    with ThreadPoolExecutor(max_workers=max(1, min(workers, len(items)))) as pool:
        pending: dict[Future[R], T] = {pool.submit(fn, item): item for item in items}
        try:
            while pending:
                done, _ = wait(pending, return_when=FIRST_COMPLETED)
                for future in sorted(done, key=lambda f: name(pending[f])):
                    item = pending.pop(future)
                    try:
                        yield Outcome(item, future.result(), None)
                    except Exception as exc:
                        yield Outcome(item, None, describe_error(exc))
        except BaseException:
            if stop is not None:
                stop.set()
            pool.shutdown(wait=False, cancel_futures=True)  # the `with` then waits for the running ones
            raise


def describe(exc: BaseException) -> str:
    """One line: a Failure's description, else the error's class and message, lines joined."""
    text = (
        exc.description if isinstance(exc, dg.Failure) and exc.description else f"{type(exc).__name__}: {exc}"
    )
    line = " ".join(text.split()) or type(exc).__name__
    return line if len(line) <= _ERROR_CHARS else line[: _ERROR_CHARS - 1] + "…"
