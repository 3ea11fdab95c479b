"""Names of the final objects when one UNLOAD result is delivered as several parts.

`exports/s/sales_2026-11-22.csv.gz` -> `exports/s/sales_2026-11-22.part-001.csv.gz`, and the manifest that
`COPY ... MANIFEST` loads sits next to it at `exports/s/sales_2026-11-22.csv.gz.manifest`.
"""

from __future__ import annotations

import re

# Up to two trailing extensions that start with a letter (`.csv.gz`, `.parquet`, `.json.zst`): dots inside
# the stem that are part of a date or a version (`sales_2026.11.22`, `report.v2`) stay in the stem when
# they are followed by a digit or are further left than the format+compression pair.
_NAME = re.compile(r"^(?P<stem>.+?)(?P<suffixes>(?:\.[A-Za-z][A-Za-z0-9]{0,7}){0,2})$", re.DOTALL)

MANIFEST_SUFFIX = ".manifest"


def split_final_key(final_key: str) -> tuple[str, str, str]:
    """`(directory incl. trailing '/', stem, suffixes)` of a final key."""
    directory, _, name = final_key.rpartition("/")
    if not name:
        raise ValueError(f"final key {final_key!r} names a folder, not an object")
    match = _NAME.match(name)
    assert match is not None  # `.+?` matches any non-empty name
    return (directory + "/" if directory else ""), match["stem"], match["suffixes"]


def part_key(final_key: str, n: int) -> str:
    """Key of part `n` (1-based, manifest order) of `final_key`; >= 3 digits so parts sort by name."""
    if n < 1:
        raise ValueError(f"part numbers start at 1, got {n}")
    directory, stem, suffixes = split_final_key(final_key)
    return f"{directory}{stem}.part-{n:03d}{suffixes}"


def part_listing_prefix(final_key: str) -> str:
    """Prefix under which every part of `final_key` (from any run) is listed."""
    directory, stem, _ = split_final_key(final_key)
    return f"{directory}{stem}.part-"


def part_number(final_key: str, key: str) -> int | None:
    """The part number if `key` is a part of `final_key` (any run, any digit count), else None."""
    directory, stem, suffixes = split_final_key(final_key)
    pattern = re.escape(directory + stem) + r"\.part-(\d{3,})" + re.escape(suffixes)
    match = re.fullmatch(pattern, key, re.DOTALL)
    return int(match.group(1)) if match else None


def manifest_key_for(final_key: str) -> str:
    return final_key + MANIFEST_SUFFIX
