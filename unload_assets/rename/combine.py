"""The combine plan: which byte ranges of which staged pieces become which part of ONE multipart upload.

Pure: sizes in, part specs out. S3's rules: every part but the last is >= 5 MiB, no part is > 5 GiB,
at most 10,000 parts, and a server-side part (UploadPartCopy) reads one range of ONE source object.
So a piece whose kept bytes are >= 5 MiB ("big") is copied server-side in ranges of <= 5 GiB, and
pieces below 5 MiB ("small") are downloaded and glued together into uploaded parts of >= 5 MiB.

Ordering rule (`plan_combine`):
1. Manifest order if it needs no client bytes of big pieces: every run of small pieces that is followed
   by a big piece must total >= 5 MiB by itself. This is always so for PARALLEL OFF output (every piece
   but the last is at MAXFILESIZE) and for output with no small pieces; then ORDER BY survives.
2. Otherwise big pieces in manifest order, then all small pieces in manifest order at the end. Row
   order across pieces only matters for PARALLEL OFF, which never gets here; PARALLEL ON files are one
   per slice and their order is arbitrary anyway.
3. With `pin_first` (the first kept piece carries the CSV header and must open the object) and that
   piece small: small pieces go first as one group; if they total < 5 MiB, the group borrows the head
   of the first big piece (the only case where big-piece bytes pass through the client: < 10 MiB).
A piece's bytes always stay contiguous and in order, so compressed members are never interleaved.

`plan_with_opening` puts a small piece the client holds (the header member the rename writes) in front
of such a plan: it joins the first uploaded part, or borrows the head of the first copied range so that
the opening part still reaches 5 MiB. Client bytes stay below one minimum part, or below two when the
first copied range is shorter than 10 MiB and is not the last (its rest could not stand alone).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

MiB = 1024 * 1024
GiB = 1024 * MiB
MIN_PART = 5 * MiB
MAX_PART = 5 * GiB
MAX_PARTS = 10_000


@dataclass(frozen=True)
class Piece:
    size: int
    skip: int = 0  # leading bytes to leave out (a repeated CSV header line)


@dataclass(frozen=True)
class Segment:
    piece: int  # index into the pieces given to the planner
    start: int
    end: int  # exclusive

    @property
    def length(self) -> int:
        return self.end - self.start


@dataclass(frozen=True)
class PartSpec:
    segments: tuple[Segment, ...]

    @property
    def size(self) -> int:
        return sum(s.length for s in self.segments)

    @property
    def is_copy(self) -> bool:
        """One range of one object: UploadPartCopy, no bytes through the client."""
        return len(self.segments) == 1


class CombineImpossible(ValueError):
    """No valid multipart layout exists (more than MAX_PARTS parts would be needed)."""


def _ranges(seg: Segment, max_part: int) -> list[PartSpec]:
    """`seg` cut into near-equal ranges <= max_part (each >= max_part/2 >= min_part when cut)."""
    n = -(-seg.length // max_part)
    bounds = [seg.start + seg.length * i // n for i in range(n + 1)]
    return [PartSpec((Segment(seg.piece, a, b),)) for a, b in zip(bounds, bounds[1:], strict=False)]


def _groups(run: list[Segment], min_part: int, trailing: bool) -> list[PartSpec] | None:
    """Small segments glued into parts >= min_part, in order; the last may be short only if `trailing`."""
    parts: list[list[Segment]] = []
    current: list[Segment] = []
    for seg in run:
        current.append(seg)
        if sum(s.length for s in current) >= min_part:
            parts.append(current)
            current = []
    if current and trailing:
        parts.append(current)
    elif current and parts:
        parts[-1].extend(current)  # < 3 * min_part in all: keeps upload buffers small
    elif current:
        return None  # the whole run is < min_part and a big piece follows it
    return [PartSpec(tuple(p)) for p in parts]


def _layout(order: list[Segment], min_part: int, max_part: int) -> list[PartSpec] | None:
    """Parts for segments in exactly this order without splitting small runs across big pieces."""
    plan: list[PartSpec] = []
    run: list[Segment] = []
    for seg in order:
        if seg.length < min_part:
            run.append(seg)
            continue
        if run:
            groups = _groups(run, min_part, trailing=False)
            if groups is None:
                return None
            plan += groups
            run = []
        plan += _ranges(seg, max_part)
    if run:
        plan += _groups(run, min_part, trailing=True) or []
    return plan


def _borrowing(small: list[Segment], big: list[Segment], min_part: int, max_part: int) -> list[PartSpec]:
    """Rule 3: the small group (< min_part) first, topped up with the head of the first big piece."""
    head, rest = big[0], big[1:]
    take = min_part - sum(s.length for s in small)
    if head.length - take < min_part and rest:
        take = head.length  # what would remain is too short to stand alone as a middle part
    first = PartSpec((*small, Segment(head.piece, head.start, head.start + take)))
    plan = [first]
    if take < head.length:
        plan += _ranges(Segment(head.piece, head.start + take, head.end), max_part)
    for seg in rest:
        plan += _ranges(seg, max_part)
    return plan


def plan_combine(
    pieces: Sequence[Piece],
    *,
    pin_first: bool = False,
    min_part: int = MIN_PART,
    max_part: int = MAX_PART,
    max_parts: int = MAX_PARTS,
) -> list[PartSpec]:
    """Parts that concatenate the kept bytes of `pieces` (see the module docstring for the order).

    Empty pieces (nothing kept) are left out; all empty -> no parts (the caller writes an empty object).
    """
    if max_part < 3 * min_part:
        raise ValueError("max_part must be at least 3 * min_part (upload groups reach < 3 * min_part)")
    for i, p in enumerate(pieces):
        if not 0 <= p.skip <= p.size:
            raise ValueError(f"piece {i}: skip {p.skip} outside 0..{p.size}")
    segs = [Segment(i, p.skip, p.size) for i, p in enumerate(pieces) if p.size > p.skip]
    plan = _layout(segs, min_part, max_part)
    if plan is None:
        small = [s for s in segs if s.length < min_part]
        big = [s for s in segs if s.length >= min_part]
        if pin_first and segs[0].length < min_part:
            if sum(s.length for s in small) >= min_part:
                plan = _layout(small + big, min_part, max_part)
            else:
                plan = _borrowing(small, big, min_part, max_part)
        else:
            plan = _layout(big + small, min_part, max_part)
        assert plan is not None  # a trailing small run always fits; a leading one is >= min_part here
    if len(plan) > max_parts:
        raise CombineImpossible(f"combining needs {len(plan)} multipart parts, S3 allows {max_parts}")
    return plan


def plan_copy(size: int, *, max_part: int = MAX_PART) -> list[PartSpec]:
    """Ranges for copying one object of `size` bytes with UploadPartCopy (piece index 0)."""
    return _ranges(Segment(0, 0, size), max_part) if size else []


def plan_with_opening(
    opening: int,
    pieces: Sequence[Piece],
    *,
    min_part: int = MIN_PART,
    max_part: int = MAX_PART,
    max_parts: int = MAX_PARTS,
) -> list[PartSpec]:
    """Parts for `opening` bytes (piece 0, held by the client) followed by `pieces` (pieces 1..n).

    The pieces keep the order `plan_combine` gives them; the opening always comes first.
    """
    if opening <= 0:
        raise ValueError("the opening must hold at least one byte")
    head = Segment(0, 0, opening)
    plan = [
        PartSpec(tuple(Segment(s.piece + 1, s.start, s.end) for s in part.segments))
        for part in plan_combine(pieces, min_part=min_part, max_part=max_part, max_parts=max_parts)
    ]
    if not plan:
        return [PartSpec((head,))]
    first, rest = plan[0], plan[1:]
    if not first.is_copy:  # an uploaded part takes the opening in
        opened = [PartSpec((head, *first.segments)), *rest]
    elif opening >= min_part:  # an opening of a full part stands alone
        opened = [PartSpec((head,)), *plan]
    else:
        seg = first.segments[0]
        take = min_part - opening
        if take >= seg.length or (rest and seg.length - take < min_part):
            take = seg.length  # what would remain is too short to stand alone as a middle part
        opened = [PartSpec((head, Segment(seg.piece, seg.start, seg.start + take)))]
        if take < seg.length:
            opened.append(PartSpec((Segment(seg.piece, seg.start + take, seg.end),)))
        opened += rest
    if len(opened) > max_parts:
        raise CombineImpossible(f"combining needs {len(opened)} multipart parts, S3 allows {max_parts}")
    return opened
