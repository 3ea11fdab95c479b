"""Part names (`part_key`): examples from the design and properties checked by hypothesis."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from unload_assets.rename.step import part_key
from unload_assets.s3_naming import manifest_key_for, part_listing_prefix, part_number, split_final_key


@pytest.mark.parametrize(
    ("final_key", "n", "expected"),
    [
        ("exports/s/sales_2026-11-22.csv.gz", 1, "exports/s/sales_2026-11-22.part-001.csv.gz"),
        ("exports/s/sales_2026-11-22.csv.gz", 12, "exports/s/sales_2026-11-22.part-012.csv.gz"),
        ("sales.parquet", 3, "sales.part-003.parquet"),
        ("a/b/events", 1, "a/b/events.part-001"),
        ("d/sales_2026.11.22.csv", 2, "d/sales_2026.11.22.part-002.csv"),  # dots of a date stay in the stem
        ("d/report.v2.final.json.zst", 1, "d/report.v2.final.part-001.json.zst"),
        ("x.csv", 1000, "x.part-1000.csv"),
        ("dir.d/x", 1, "dir.d/x.part-001"),
    ],
)
def test_part_key_examples(final_key, n, expected):
    assert part_key(final_key, n) == expected


def test_bad_part_numbers_and_folder_keys_are_refused():
    with pytest.raises(ValueError, match="start at 1"):
        part_key("a.csv", 0)
    with pytest.raises(ValueError, match="folder"):
        part_key("exports/s/", 1)


keys = st.builds(
    lambda d, name: d + name,
    st.sampled_from(["", "exports/", "a/b.c/", "x/2026-11-22/"]),
    st.text(st.sampled_from("abz09_-.=é "), min_size=1, max_size=20),
)


@given(final_key=keys, n=st.integers(1, 20_000), m=st.integers(1, 20_000))
def test_part_key_properties(final_key, n, m):
    key = part_key(final_key, n)
    directory, _, _ = split_final_key(final_key)
    assert key.startswith(directory) and "/" not in key[len(directory) :]  # same folder
    assert key != final_key and key != manifest_key_for(final_key)
    assert key.startswith(part_listing_prefix(final_key))  # stale parts are found by this listing
    assert part_number(final_key, key) == n  # ... and recognised as parts of this final key
    assert (
        part_number(final_key, final_key) is None
        and part_number(final_key, manifest_key_for(final_key)) is None
    )
    assert (part_key(final_key, m) == key) == (m == n)
    if n < 1000 and m < 1000:  # zero padding: name order is part order
        assert (part_key(final_key, m) < key) == (m < n)
