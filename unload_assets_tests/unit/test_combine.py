"""The combine planner: pure, so checked on real-size examples and by hypothesis at a small scale."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from unload_assets.rename.combine import (
    MAX_PART,
    MIN_PART,
    CombineImpossible,
    GiB,
    MiB,
    PartSpec,
    Piece,
    Segment,
    plan_combine,
    plan_copy,
    plan_with_opening,
)

GB = 1000**3


def _order(plan: list[PartSpec]) -> list[int]:
    """Pieces in the order their bytes appear in the combined object."""
    seen: list[int] = []
    for part in plan:
        for seg in part.segments:
            if not seen or seen[-1] != seg.piece:
                seen.append(seg.piece)
    return seen


def test_parallel_off_output_is_copied_in_order_in_ranges_of_at_most_5_gib():
    plan = plan_combine([Piece(int(6.2 * GB)), Piece(int(6.2 * GB)), Piece(1 * GB)])
    assert all(p.is_copy for p in plan) and _order(plan) == [0, 1, 2]
    assert [p.segments[0].piece for p in plan] == [0, 0, 1, 1, 2]  # a 6.2 GB piece needs two ranges
    assert max(p.size for p in plan) <= 5 * GiB and sum(p.size for p in plan) == int(13.4 * GB)


def test_small_pieces_between_big_ones_move_to_the_end():
    pieces = [Piece(100), Piece(6 * MiB), Piece(200), Piece(7 * MiB), Piece(300)]
    plan = plan_combine(pieces)
    assert _order(plan) == [1, 3, 0, 2, 4]
    assert [p.is_copy for p in plan] == [True, True, False]


def test_small_runs_of_at_least_5_mib_keep_manifest_order():
    pieces = [Piece(3 * MiB), Piece(3 * MiB), Piece(6 * MiB), Piece(1 * MiB)]
    plan = plan_combine(pieces)
    assert _order(plan) == [0, 1, 2, 3] and [p.size for p in plan] == [6 * MiB, 6 * MiB, 1 * MiB]


def test_header_piece_stays_first_and_borrows_from_a_big_piece_only_when_it_must():
    pieces = [Piece(1000), Piece(6 * MiB, skip=8), Piece(500, skip=8)]
    plan = plan_combine(pieces, pin_first=True)
    first = plan[0]
    assert first.segments[0].piece == 0 and first.segments[0].start == 0
    assert first.size == MIN_PART and first.segments[-1].piece == 1  # topped up from piece 1's head
    assert sum(p.size for p in plan) == 1000 + 6 * MiB - 8 + 500 - 8


def test_empty_pieces_are_left_out_and_nothing_kept_means_no_parts():
    assert plan_combine([Piece(0), Piece(8, skip=8)]) == []
    assert [s.piece for p in plan_combine([Piece(0), Piece(5), Piece(0)]) for s in p.segments] == [1]


def test_too_many_parts_is_refused():
    with pytest.raises(CombineImpossible, match="3 multipart parts"):
        plan_combine([Piece(MIN_PART)] * 3, max_parts=2)


def test_bad_input_is_refused():
    with pytest.raises(ValueError, match="skip"):
        plan_combine([Piece(5, skip=6)])
    with pytest.raises(ValueError, match="3 \\* min_part"):
        plan_combine([Piece(5)], min_part=10, max_part=20)


def test_plan_copy_splits_only_above_the_part_limit():
    assert [p.size for p in plan_copy(MAX_PART)] == [MAX_PART]
    assert [p.size for p in plan_copy(int(6.2 * GB))] == [3_100_000_000, 3_100_000_000]
    assert plan_copy(0) == []


MIN = 100
pieces_st = st.lists(
    st.tuples(st.integers(0, 1500), st.integers(0, 40)).map(lambda t: Piece(t[0], min(t[1], t[0]))),
    max_size=25,
)


@settings(max_examples=400, deadline=None)
@given(
    pieces=pieces_st,
    pin_first=st.booleans(),
    max_part=st.integers(3 * MIN, 1000),
    max_parts=st.integers(1, 40),
)
def test_plan_invariants(pieces, pin_first, max_part, max_parts):
    try:
        plan = plan_combine(pieces, pin_first=pin_first, min_part=MIN, max_part=max_part, max_parts=max_parts)
    except CombineImpossible:
        full = plan_combine(pieces, pin_first=pin_first, min_part=MIN, max_part=max_part, max_parts=10**9)
        assert len(full) > max_parts
        return
    assert len(plan) <= max_parts
    # S3's part rules, and upload buffers stay small.
    assert all(p.size >= MIN for p in plan[:-1]) and all(0 < p.size <= max_part for p in plan)
    assert all(p.is_copy or p.size < 3 * MIN for p in plan)
    # Every piece's kept bytes exactly once, contiguous and in order (compressed members stay whole).
    flat = [s for p in plan for s in p.segments]
    for i, piece in enumerate(pieces):
        mine = [s for s in flat if s.piece == i]
        covered = [(s.start, s.end) for s in mine]
        if piece.size == piece.skip:
            assert covered == []
            continue
        assert covered[0][0] == piece.skip and covered[-1][1] == piece.size
        assert all(a[1] == b[0] for a, b in zip(covered, covered[1:], strict=False))
        assert _order(plan).count(i) == 1
    kept = [i for i, p in enumerate(pieces) if p.size > p.skip]
    if pin_first and kept:
        assert flat[0].piece == kept[0] and flat[0].start == pieces[kept[0]].skip
    big = {i for i in kept if pieces[i].size - pieces[i].skip >= MIN}
    if not pin_first:  # big pieces never pass through the client
        assert all(p.is_copy for p in plan if any(s.piece in big for s in p.segments))
    # Manifest order whenever every small run followed by a big piece reaches MIN on its own.
    run, feasible = 0, True
    for i in kept:
        if i in big:
            feasible &= run == 0 or run >= MIN
            run = 0
        else:
            run += pieces[i].size - pieces[i].skip
    if feasible:
        assert _order(plan) == kept


def test_borrowing_takes_the_whole_big_piece_when_the_rest_could_not_stand_alone():
    plan = plan_combine([Piece(1000), Piece(MIN_PART + 10), Piece(6 * MiB)], pin_first=True)
    assert [[(s.piece, s.start, s.end) for s in p.segments] for p in plan] == [
        [(0, 0, 1000), (1, 0, MIN_PART + 10)],
        [(2, 0, 6 * MiB)],
    ]


@settings(max_examples=300, deadline=None)
@given(
    opening=st.integers(1, 3 * MIN),
    pieces=st.lists(st.builds(Piece, st.integers(0, 60)), max_size=8),
    max_part=st.integers(3 * MIN, 1000),
)
def test_opening_invariants(opening, pieces, max_part):
    """The header member opens the object; the pieces follow whole, in plan_combine's order; S3's rules
    hold; client bytes of the pieces stay under one minimum part, or two when the first copied range
    could not leave a valid rest behind."""
    plan = plan_with_opening(opening, pieces, min_part=MIN, max_part=max_part)
    assert plan[0].segments[0] == Segment(0, 0, opening)
    assert all(p.size >= MIN for p in plan[:-1]) and all(p.size > 0 for p in plan)
    flat = [s for p in plan for s in p.segments]
    assert [s.piece for s in flat].count(0) == 1
    shifted = [Segment(s.piece - 1, s.start, s.end) for s in flat[1:]]
    combined = [s for p in plan_combine(pieces, min_part=MIN, max_part=max_part) for s in p.segments]
    # The same bytes in the same order as without the opening (a copied range may be cut in two).
    assert [(s.piece, b) for s in shifted for b in range(s.start, s.end)] == [
        (s.piece, b) for s in combined for b in range(s.start, s.end)
    ]
    through_client = sum(s.length for p in plan if not p.is_copy for s in p.segments if s.piece != 0)
    uploaded_anyway = sum(
        p.size for p in plan_combine(pieces, min_part=MIN, max_part=max_part) if not p.is_copy
    )
    assert through_client <= uploaded_anyway + 2 * MIN


def test_opening_borrows_the_head_of_a_big_first_file():
    plan = plan_with_opening(100, [Piece(20 * MiB), Piece(6 * MiB)])
    assert [[(s.piece, s.start, s.end) for s in p.segments] for p in plan] == [
        [(0, 0, 100), (1, 0, MIN_PART - 100)],
        [(1, MIN_PART - 100, 20 * MiB)],
        [(2, 0, 6 * MiB)],
    ]


def test_opening_alone_for_zero_rows():
    assert plan_with_opening(9, []) == [PartSpec((Segment(0, 0, 9),))]
    assert plan_with_opening(9, [Piece(0)]) == [PartSpec((Segment(0, 0, 9),))]
