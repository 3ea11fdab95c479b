"""What one export is: `UnloadTarget` and its fields' rules, and the `Catalogue` of them."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationInfo,
    model_validator,
)
from pydantic_core import PydanticCustomError

from unload_assets.deadline import RUN_AT, deliver_by_problem
from unload_assets.encryption import Encryption, check_kms_key_id
from unload_assets.s3_naming import (
    DATE_VARIABLES,
    check_bucket_name,
    check_key_template,
    render_key,
    template_variables,
)
from unload_assets.statement.auth import check_iam_role
from unload_assets.statement.rules import option_conflicts, placeholder_names, sql_problems

_NAME = re.compile(r"[a-z][a-z0-9_]{0,62}")
# Dagster's own rules for owners' e-mails and for tags, checked here so that a
# bad value is reported against its catalogue line instead of failing later inside the asset factory.
_EMAIL = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,7}")
_TAG_KEY = re.compile(r"(?:[A-Za-z0-9_.-]{1,63}/)?[A-Za-z0-9_.-]{1,63}")
_TAG_VALUE = re.compile(r"[A-Za-z0-9_.-]{0,63}")
_COMPRESSED_SUFFIX = {"gzip": ".gz", "bzip2": ".bz2", "zstd": ".zst"}


class CatalogueError(ValueError):
    """The catalogue can't be used; the message lists every problem found, one per line."""


def _problems(problems: list[tuple[str, str]]) -> PydanticCustomError:
    # ctx carries the (field, problem) pairs so that load_catalogue reports each on its own line.
    summary = "; ".join(f"field {field!r}: {why}" for field, why in problems)
    return PydanticCustomError("problems", "{summary}", {"summary": summary, "problems": problems})


def _check(check: Any) -> AfterValidator:
    def run(value: Any) -> Any:
        check(value)
        return value

    return AfterValidator(run)


def _name(value: str) -> None:
    if not _NAME.fullmatch(value):
        raise ValueError("must be a-z first, then a-z, 0-9 or _ (at most 63 characters)")


def _nonblank(value: str) -> None:
    if not value.strip():
        raise ValueError("must not be empty")


def _sql(value: str) -> None:
    _nonblank(value)
    if problems := sql_problems(value):
        raise _problems([("sql", problem) for problem in problems])


def _owner(value: str) -> None:
    if not (_EMAIL.fullmatch(value) or (value.startswith("team:") and len(value) > 5)):
        raise ValueError(f"owner {value!r} must be an email address or 'team:<name>'")


def _tags(tags: dict[str, str]) -> None:
    for key, value in tags.items():
        if not _TAG_KEY.fullmatch(key) or key.startswith("dagster/"):
            raise ValueError(f"tag key {key!r}: up to 63 of A-Za-z0-9_.- (one 'prefix/', not dagster/)")
        if not _TAG_VALUE.fullmatch(value):
            raise ValueError(f"tag {key!r}: value {value!r} must be up to 63 of A-Za-z0-9_.-")


def _deliver_by_text(value: Any) -> Any:
    # YAML 1.1 reads an unquoted 10:30 as the sexagesimal number 630 (and 09:30 as text).
    if isinstance(value, int) and not isinstance(value, bool):
        hours, minutes = divmod(value, 60)
        raise ValueError(
            f'write the time in quotes, "{hours:02d}:{minutes:02d}": YAML reads it unquoted as {value}'
        )
    return value


def _deliver_by(value: str, info: ValidationInfo) -> str:
    # The instance's morning run time, given by the loader; a deadline must come after it.
    run_at = (info.context or {}).get("run_at", RUN_AT)
    if problem := deliver_by_problem(value, run_at):
        raise ValueError(problem)
    return value


_CONFIG = ConfigDict(extra="forbid", frozen=True)


class DailyPartitioning(BaseModel):
    model_config = _CONFIG
    type: Literal["daily"]
    start_date: date
    end_offset: int = 0  # as in dagster.DailyPartitionsDefinition


class NoPartitioning(BaseModel):
    model_config = _CONFIG
    type: Literal["none"] = "none"


Partitioning = Annotated[DailyPartitioning | NoPartitioning, Field(discriminator="type")]


class UnloadTarget(BaseModel):
    """One catalogue entry: a query, where its output lands, and how UNLOAD writes it."""

    model_config = _CONFIG
    name: Annotated[str, _check(_name)]
    description: Annotated[str, _check(_nonblank)]
    sql: Annotated[str, _check(_sql)]
    key_template: Annotated[str, _check(check_key_template)]
    format: Literal["text", "csv", "json", "parquet"] = "csv"
    compression: Literal["none", "gzip", "bzip2", "zstd"] = "none"
    header: bool = False
    delimiter: Annotated[str, Field(min_length=1, max_length=1)] | None = None
    null_as: str | None = None
    addquotes: bool = False  # text only: every field in double quotes
    parallel: bool = False
    max_file_size_mb: Annotated[float, Field(ge=5, le=6348.8)] | None = None  # 6348.8 MB = 6.2 GB
    on_split: Literal["combine", "parts", "fail"] = "combine"
    # A change of columns against the previous delivery: deliver and say so, or deliver nothing.
    on_schema_change: Literal["warn", "fail"] = "warn"
    partitioning: Partitioning = NoPartitioning()
    owners: list[Annotated[str, _check(_owner)]] = []
    tags: Annotated[dict[str, str], _check(_tags)] = {}
    # "HH:MM" in the instance's time zone, after its morning run: a Slack alert when a day is late.
    deliver_by: Annotated[str, BeforeValidator(_deliver_by_text), AfterValidator(_deliver_by)] | None = None
    # SSE-KMS: UNLOAD and every write of the rename use this key; the checks verify it (encryption.py).
    kms_key_id: Annotated[str, _check(check_kms_key_id)] | None = None
    bucket_key: bool = False  # the rename's writes ask for an S3 bucket key (needs kms_key_id)

    @property
    def encryption(self) -> Encryption:
        return Encryption(self.kms_key_id, self.bucket_key)

    @property
    def header_by_rename(self) -> bool:
        """True when UNLOAD runs without HEADER and the rename writes the header line once, on top.

        CSV and text with `on_split: combine`, whatever the compression: then one split output becomes one
        object with exactly one header line. With `parts` (or `fail`) every file keeps its own header,
        which is what `COPY ... IGNOREHEADER 1` expects of each part.
        """
        return self.header and self.on_split == "combine" and self.format in ("csv", "text")

    def final_key(self, day: date | None) -> str:
        """The target's final S3 key for `day` (None: unpartitioned), rendered from its key template:
        computed once per run, by the unload op, and carried from there (handoff, Delivery)."""
        return render_key(self.key_template, target=self.name, partition_date=day)

    @model_validator(mode="after")
    def _consistent(self) -> UnloadTarget:
        if problems := option_conflicts(self) + _cross_field_problems(self):
            raise _problems(problems)
        return self


def _cross_field_problems(target: UnloadTarget) -> list[tuple[str, str]]:
    problems: list[tuple[str, str]] = []
    placeholders = placeholder_names(target.sql)
    key_vars = template_variables(target.key_template)
    if target.partitioning.type == "daily":
        if not placeholders:
            hidden = " (the one written is inside a literal or comment)" if "{{" in target.sql else ""
            why = "a daily target must select its day with {{ partition_date }} or {{ partition_start }}"
            problems.append(("sql", f"{why} / {{{{ partition_end }}}}{hidden}"))
        if "date" not in key_vars and not {"yyyy", "mm", "dd"} <= key_vars:
            why = "a daily target's key needs {date} (or {yyyy}, {mm} and {dd})"
            problems.append(("key_template", f"{why}, else every day overwrites the same object"))
    else:
        if placeholders:
            problems.append(("sql", f"{{{{ {min(placeholders)} }}}} needs partitioning: {{type: daily}}"))
        if key_vars & DATE_VARIABLES:
            problems.append(
                ("key_template", f"{{{min(key_vars & DATE_VARIABLES)}}} needs daily partitioning")
            )
    if target.bucket_key and not target.kms_key_id:
        problems.append(("bucket_key", "an S3 bucket key is for SSE-KMS: set kms_key_id too"))
    # Consumers pick a decoder by suffix; a gzip stream named .csv breaks them long after the export ran.
    suffix = _COMPRESSED_SUFFIX.get(target.compression)
    if suffix and not target.key_template.endswith(suffix):
        problems.append(("key_template", f"compression {target.compression} needs a key ending in {suffix}"))
    elif not suffix and target.key_template.endswith(tuple(_COMPRESSED_SUFFIX.values())):
        problems.append(("key_template", "ends in a compression suffix but compression is none"))
    return problems


class _Overrides(BaseModel):
    model_config = _CONFIG
    bucket: Annotated[str, _check(check_bucket_name)] | None = None
    iam_role: Annotated[str, _check(check_iam_role)] | None = None
    expected_bucket_owner: Annotated[str, _check(check_account_id)] | None = None


def check_account_id(value: str) -> str:
    """`value` if it is a 12-digit AWS account id (S3's ExpectedBucketOwner)."""
    if not re.fullmatch(r"\d{12}", value, re.ASCII):
        raise ValueError(f"{value!r} is not a 12-digit AWS account id")
    return value


@dataclass(frozen=True)
class Problem:
    """One mistake in a catalogue, located: its file, where in it (`target 'x', field 'y'`), what is
    wrong, and its line. `target`: the asset name of the entry it keeps from loading (None: a problem of
    the file or of its defaults); `version`: the catalogue's content, so that a problem is told once per
    version of the file."""

    source: Path
    where: str
    message: str
    line: int | None = None
    target: str | None = None
    description: str | None = None
    version: str = ""

    def __str__(self) -> str:
        return f"{self.source.name}: {self.where}: {self.message}" + (
            f" (line {self.line})" if self.line else ""
        )

    @property
    def located(self) -> str:
        """The problem with its full path and line first, as editors and terminals link them."""
        at = f"{self.source}:{self.line}" if self.line else str(self.source)
        return f"{at}: {self.where}: {self.message}"

    @property
    def notice_id(self) -> str:
        """Stable for this problem in this version of the catalogue (Slack tells it once)."""
        text = f"{self.version}|{self.source}|{self.where}|{self.message}"
        return "catalogue/" + hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:16]


@dataclass(frozen=True)
class NotLoaded:
    """A catalogue entry that is not loaded, and why: its asset stays visible, marked so."""

    name: str  # the asset's name: the entry's own, or `catalogue_entry_<n>` when it has none usable
    entry: int  # its position in `targets`, from 1
    line: int | None
    description: str | None
    problems: tuple[Problem, ...]

    @property
    def reason(self) -> str:
        return "; ".join(str(problem) for problem in self.problems)


def problem_report(problems: Iterable[Problem], source: Path) -> str:
    """Every problem on its own line, the first problem first; then how many, and the file's path."""
    lines = [str(problem) for problem in problems]
    return "\n".join([*lines, f"({len(lines)} problem(s) in unload catalogue {source})"])


@dataclass(frozen=True)
class Catalogue:
    """The targets that load; the problems found beside them and the entries they keep from loading."""

    targets: list[UnloadTarget]
    source: Path
    bucket: str | None = None  # when set, overrides the instance's bucket
    iam_role: str | None = None  # when set, overrides the instance's IAM role
    expected_bucket_owner: str | None = None  # when set, overrides the instance's (an account id)
    problems: tuple[Problem, ...] = ()
    not_loaded: tuple[NotLoaded, ...] = ()
    version: str = ""  # a digest of the file's content
    lineage_notes: Mapping[str, str] = field(default_factory=dict)  # target -> why it has no lineage

    def target(self, name: str) -> UnloadTarget:
        for target in self.targets:
            if target.name == name:
                return target
        raise KeyError(f"no target {name!r} in {self.source}")

    def problems_of(self, name: str) -> tuple[Problem, ...]:
        """The problems that name target `name` although it loaded (a second entry of its name)."""
        return tuple(p for p in self.problems if p.target == name)
