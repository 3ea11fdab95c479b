"""The documentation stays true: every relative link resolves (file and heading), and the catalogue
reference names every field a target or `defaults` accepts."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from unload_assets.catalogue.model import UnloadTarget

REPO = Path(__file__).resolve().parents[2]
PAGES = [REPO / "README.md", REPO / "ARCHITECTURE.md", *sorted((REPO / "docs").glob("*.md"))]
LINK = re.compile(r"\]\(([^)\s]+)\)")


def _anchor(heading: str) -> str:
    """GitHub's anchor of a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[`*_]", "", heading.strip().lower())
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def _anchors(page: Path) -> set[str]:
    body = re.sub(r"```.*?```", "", page.read_text(), flags=re.S)
    return {_anchor(line.lstrip("#")) for line in body.splitlines() if line.startswith("#")}


def _broken_links(page: Path) -> list[str]:
    broken = []
    for target in LINK.findall(page.read_text()):
        if re.match(r"[a-z]+:", target):  # http:, https:, mailto:
            continue
        path, _, anchor = target.partition("#")
        file = (page.parent / path).resolve() if path else page
        if not file.exists():
            broken.append(f"{target}: no such file")
        elif anchor and file.suffix == ".md" and anchor not in _anchors(file):
            broken.append(f"{target}: no heading #{anchor} in {file.name}")
    return broken


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(REPO)))
def test_every_relative_link_resolves(page: Path) -> None:
    broken = _broken_links(page)
    assert not broken, f"{page.relative_to(REPO)}: " + "; ".join(broken)


def test_the_readme_links_every_page_of_docs() -> None:
    readme = (REPO / "README.md").read_text()
    unlinked = [p.name for p in (REPO / "docs").glob("*.md") if f"](docs/{p.name}" not in readme]
    assert not unlinked, unlinked


def test_the_catalogue_reference_names_every_field() -> None:
    reference = (REPO / "docs" / "catalogue.md").read_text()
    missing = [name for name in UnloadTarget.model_fields if f"`{name}`" not in reference]
    assert not missing, f"docs/catalogue.md does not describe {missing}"


def test_the_link_checker_sees_a_broken_link(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text("# Title\n\n[ok](#title) [gone](missing.md) [no heading](#nowhere)\n")
    assert _broken_links(page) == ["missing.md: no such file", "#nowhere: no heading #nowhere in page.md"]


# A file of the repository named by its path (a run tag like unload_assets/accept_schema_change has no
# extension; s3://unload-local/... is not a path of ours).
PATH_NAMED = re.compile(
    r"(?<![\w/-])((?:unload_assets_tests|unload_assets|benchmarks|deploy|local|scripts)/[\w./-]*"
    r"\.(?:py|yaml|yml|json|md|toml|sh|txt|cfg))\b"
)


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(REPO)))
def test_every_path_a_page_names_exists(page: Path) -> None:
    """A stale reference (a module renamed, a test split) is caught where a reader would follow it."""
    named = set(PATH_NAMED.findall(page.read_text()))
    missing = sorted(p for p in named if "<" not in p and "*" not in p and not (REPO / p).exists())
    assert not missing, f"{page.relative_to(REPO)} names {missing}"


def test_the_path_finder_takes_files_not_tags_or_s3_keys() -> None:
    text = "see `unload_assets/gone.py`, tag `unload_assets/accept_schema_change`, s3://unload-local/exports/x.csv"
    assert PATH_NAMED.findall(text) == ["unload_assets/gone.py"]
