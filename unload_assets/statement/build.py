"""UNLOAD statement text for one target and one partition: pure functions, no I/O."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date

from unload_assets.catalogue import UnloadTarget
from unload_assets.statement.auth import UnloadAuth
from unload_assets.statement.rules import MAX_STATEMENT_BYTES, bind_placeholders, option_conflicts, too_long
from unload_assets.statement.sqltext import quote_literal


def render_select(target: UnloadTarget, partition_date: date | None) -> str:
    """The target's SELECT for one partition (`None` for a target without partitioning)."""
    daily = target.partitioning.type == "daily"
    if daily and partition_date is None:
        raise ValueError(f"target {target.name!r} is partitioned daily: a partition_date is required")
    if not daily and partition_date is not None:
        raise ValueError(f"target {target.name!r} has no partitioning: partition_date must be None")
    select = target.sql.strip()
    return select if partition_date is None else bind_placeholders(select, partition_date)


@dataclass(frozen=True)
class UnloadStatement:
    """`sql` is what runs; `redacted` is what may be logged, stored as metadata or sent to Slack."""

    sql: str = field(repr=False)
    redacted: str

    def __str__(self) -> str:
        return self.redacted


def _options(target: UnloadTarget) -> list[str]:
    options = [] if target.format == "text" else [f"FORMAT {target.format.upper()}"]
    if target.compression != "none":
        options.append(target.compression.upper())
    # With `combine`, the rename writes the header line once on top of the joined files instead.
    if target.header and not target.header_by_rename:
        options.append("HEADER")
    if target.addquotes:
        options.append("ADDQUOTES")
    if target.delimiter is not None:
        options.append(f"DELIMITER {quote_literal(target.delimiter)}")
    if target.null_as is not None:
        options.append(f"NULL AS {quote_literal(target.null_as)}")
    options.append("PARALLEL ON" if target.parallel else "PARALLEL OFF")  # explicit: Redshift defaults ON
    if target.max_file_size_mb is not None:
        size = f"{target.max_file_size_mb:.6f}".rstrip("0").rstrip(".")  # 100.0 -> 100, no exponent
        options.append(f"MAXFILESIZE {size} MB")
    if target.kms_key_id is not None:  # SSE-KMS with the target's key, manifest included
        options.append(f"ENCRYPTED KMS_KEY_ID {quote_literal(target.kms_key_id)}")
    # The rename op reads the manifest, never a listing. No ALLOWOVERWRITE or CLEANPATH: every attempt
    # writes under its own fresh staging prefix, so a non-empty destination is a bug UNLOAD should refuse.
    options.append("MANIFEST VERBOSE")
    return options


def build_unload(
    target: UnloadTarget, *, partition_date: date | None, location: str, auth: UnloadAuth
) -> UnloadStatement:
    """The UNLOAD of `target`'s partition into `location` (an `s3://` staging prefix ending in `/`)."""
    conflicts = option_conflicts(target)
    if conflicts:
        raise ValueError(f"target {target.name!r}: " + "; ".join(f"{f}: {why}" for f, why in conflicts))
    if not location.startswith("s3://"):
        raise ValueError(f"target {target.name!r}: UNLOAD location must start with s3://, got {location!r}")
    if too_long(target.sql):
        raise ValueError(f"target {target.name!r}: the UNLOAD statement would exceed Redshift's 16 MB limit")
    head = f"UNLOAD ({quote_literal(render_select(target, partition_date))})\nTO {quote_literal(location)}\n"
    tail = "\n" + "\n".join(_options(target))
    sql = head + auth.clause(redacted=False) + tail
    if len(sql.encode()) > MAX_STATEMENT_BYTES:
        raise ValueError(f"target {target.name!r}: the UNLOAD statement would exceed Redshift's 16 MB limit")
    return UnloadStatement(sql=sql, redacted=head + auth.clause(redacted=True) + tail)
