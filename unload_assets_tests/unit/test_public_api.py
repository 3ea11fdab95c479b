"""The package uses Dagster's public API only: nothing under `dagster._...` and no private attributes,
so that a Dagster upgrade cannot break it without a deprecation first. Needs no server."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PACKAGES = (REPO / "unload_assets", REPO / "local" / "unload_assets_local")
PRIVATE = ("dagster._", "original_resource_dict", "dagster_aws._", "dagster_slack._")


@pytest.mark.parametrize(
    "path",
    sorted(p for package in PACKAGES for p in package.rglob("*.py")),
    ids=lambda p: str(p.relative_to(REPO)),
)
def test_no_private_dagster_api(path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    found = [
        f"line {n}: {line.strip()}"
        for n, line in enumerate(text.splitlines(), 1)
        if any(p in line for p in PRIVATE)
    ]
    assert not found, f"{path.name} reaches into Dagster's private API:\n" + "\n".join(found)
