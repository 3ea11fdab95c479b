"""Crash at every S3 call of the rename, then call it again: the end state is always exactly right.

A `CallWatch` 'crashes' before the N-th S3 call (and every call after it, like a dead process) for each
N from 0 to the number of calls a clean run makes; N = that number is "crash after everything". At
each crash point the state readers can see must be sane, and a second `rename_unload` must finish the job.
"""

from __future__ import annotations

import gzip
import json
import random
import uuid
from collections.abc import Callable
from typing import Any

import pytest

from unload_assets.rename.header import HeaderStyle
from unload_assets_tests.support.rename_helpers import (
    CallWatch,
    Crash,
    MiB,
    body,
    csv_rows,
    keys_under,
    run,
    sized,
    stage,
)

HEAD = b"id,name\n"


def _combine_pieces() -> list[bytes]:
    return [HEAD + sized(5 * MiB + 10, 1), HEAD + csv_rows(0, 20), HEAD + csv_rows(20, 5)]


def _gzip_pieces() -> list[bytes]:
    # Headerless gzip members as UNLOAD without HEADER writes them; the first is above 5 MiB, so the
    # header member borrows its head and the rest is copied server-side.
    noise = random.Random(7).randbytes(5 * MiB + 10)
    return [gzip.compress(noise, 1, mtime=0), gzip.compress(csv_rows(0, 20), mtime=0)]


# name -> (pieces of the earlier run, its on_split, new pieces, new options, the new final bytes)
SCENARIOS: dict[str, tuple[list[bytes], str, Callable[[], list[bytes]], dict[str, Any]]] = {
    "combine with header over old parts": (
        [b"o1\n", b"o2\n", b"o3\n"],
        "parts",
        _combine_pieces,
        {"header": True},
    ),
    "gzip, header written by the rename, over old parts": (
        [b"o1\n", b"o2\n", b"o3\n"],
        "parts",
        _gzip_pieces,
        {"compression": "gzip", "header_style": HeaderStyle("csv")},
    ),
    "header written by the rename over an old object": (
        [b"o1\n", b"o2\n"],
        "combine",
        lambda: [csv_rows(0, 20), csv_rows(20, 5)],
        {"header_style": HeaderStyle("csv")},
    ),
    "parts over more old parts": (
        [b"o1\n", b"o2\n", b"o3\n", b"o4\n"],
        "parts",
        lambda: [b"n1\n", b"n2\n"],
        {"on_split": "parts"},
    ),
    "single over an old combined object": (
        [b"o1\n", b"o2\n"],
        "combine",
        lambda: [b"n1\nn2\n"],
        {},
    ),
}


def _setup(s3: Any, bucket: str, old: list[bytes], old_split: str, new: list[bytes]) -> tuple[str, Any]:
    final = f"exports/{uuid.uuid4().hex}/sales.csv"
    run(s3, bucket, stage(s3, bucket, old), final, on_split=old_split)
    return final, stage(s3, bucket, new, verbose=True)  # as the product always unloads


def _output(s3: Any, bucket: str, final: str) -> dict[str, bytes]:
    folder = final.rsplit("/", 1)[0] + "/"
    return {k: body(s3, bucket, k) for k in keys_under(s3, bucket, folder)}


def _check_readable_state(
    s3: Any, bucket: str, final: str, staged: Any, old_out: dict, new_out: dict
) -> None:
    """What a reader may see mid-crash: whole old or whole new output, never a mix behind a manifest."""
    now = _output(s3, bucket, final)
    manifest = final + ".manifest"
    if manifest in now:
        listed = [e["url"].split("/", 3)[3] for e in json.loads(now[manifest])["entries"]]
        candidates = [o for o in (old_out, new_out) if o.get(manifest) == now[manifest]]
        assert candidates, "a .manifest that is neither the old nor the new one"
        assert all(now.get(k) == candidates[0][k] for k in listed), "manifest points at foreign parts"
    if final in now:
        assert now[final] in (old_out.get(final), new_out.get(final)), "a half-written final object"
    if set(staged.keys) - set(keys_under(s3, bucket, staged.prefix)):
        assert now == new_out, "staging was deleted before the new output was complete"


def _norm(key: str, final: str) -> str:
    return key.replace(final.rsplit("/", 1)[0], "{out}")


def _normed(output: dict[str, bytes], final: str) -> dict[str, bytes]:
    """Output with this iteration's folder name abstracted (it also appears inside the .manifest)."""
    folder = final.rsplit("/", 1)[0]
    return {_norm(k, final): v.replace(folder.encode(), b"{out}") for k, v in output.items()}


def _unnormed(output: dict[str, bytes], final: str) -> dict[str, bytes]:
    folder = final.rsplit("/", 1)[0]
    return {k.replace("{out}", folder): v.replace(b"{out}", folder.encode()) for k, v in output.items()}


@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_crash_at_every_call_then_rerun(s3_server, scenario):
    bucket = s3_server.bucket
    old, old_split, new_pieces, options = SCENARIOS[scenario]
    opts = {**options, "workers": 1}  # one call order, so "the N-th call" is well defined
    clean = s3_server.client()

    final, staged = _setup(clean, bucket, old, old_split, new_pieces())
    watch = CallWatch()
    expected = run(watch.attach(s3_server.client()), bucket, staged, final, **opts)
    new_out = _normed(_output(clean, bucket, final), final)
    new_objects = [(_norm(o.key, final), o.size) for o in expected.objects]
    n_calls = len(watch.calls)
    assert n_calls > 8

    for crash_at in range(n_calls + 1):
        final, staged = _setup(clean, bucket, old, old_split, new_pieces())
        old_out = _output(clean, bucket, final)
        want = _unnormed(new_out, final)
        where = f"crash before call #{crash_at} ({(watch.names() + ['none: after everything'])[crash_at]})"
        if crash_at < n_calls:
            with pytest.raises(Crash):
                run(CallWatch(crash_at=crash_at).attach(s3_server.client()), bucket, staged, final, **opts)
        else:
            run(s3_server.client(), bucket, staged, final, **opts)
        try:
            _check_readable_state(clean, bucket, final, staged, old_out, want)
            result = run(s3_server.client(), bucket, staged, final, **opts)
            assert _output(clean, bucket, final) == want
            assert keys_under(clean, bucket, staged.prefix) == [] and result.staging_cleaned
            assert (result.mode, result.fallback_reason) == (expected.mode, expected.fallback_reason)
            assert [(_norm(o.key, final), o.size) for o in result.objects] == new_objects
        except AssertionError as exc:
            raise AssertionError(f"{scenario}, {where}: {exc}") from exc
