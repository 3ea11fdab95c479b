"""RunOutcome the catalogue: `unload_targets.yaml` (or a component's inline `defaults` + `targets`) parsed,
defaulted and validated, every problem located by file, line, target and field.

A problem costs only what it touches. `read_catalogue` returns the valid targets with the problems found
beside them: a target with a mistake is not loaded (it is *quarantined*, with its reasons), a bad default
quarantines the targets that inherit it, and every other target loads as usual. `load_catalogue` is the
strict reading: any problem at all raises CatalogueError. A catalogue that cannot be read at all (a
missing file, broken YAML, no targets) raises in both.
"""

from __future__ import annotations

import contextlib
import difflib
import hashlib
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import date, time
from pathlib import Path
from typing import Any, NoReturn

import yaml
from pydantic import ValidationError

from unload_assets.catalogue.model import (
    Catalogue,
    CatalogueError,
    DailyPartitioning,
    NotLoaded,
    Problem,
    UnloadTarget,
    _Overrides,
    problem_report,
)
from unload_assets.deadline import RUN_AT
from unload_assets.statement.lineage import read_select

PACKAGED_CATALOGUE = Path(__file__).parents[1] / "unload_targets.yaml"


def load_catalogue(path: str | Path | None = None, *, run_at: time = RUN_AT) -> Catalogue:
    """The catalogue at `path` (else the packaged one), strictly: any problem raises CatalogueError
    listing every problem, one per line, each naming file, target and field."""
    return _strict(read_catalogue(path, run_at=run_at))


def read_catalogue(
    path: str | Path | None = None,
    *,
    run_at: time = RUN_AT,
    defaults: Mapping[str, Any] | None = None,
) -> Catalogue:
    """The catalogue at `path` (else the packaged one): its valid targets, and its problems with the
    targets they keep from loading. `run_at` is when the morning run starts (deadlines come after it);
    `defaults` are the lowest-priority target defaults (an instance's owners and tags).

    Raises CatalogueError only when the file cannot be read at all."""
    source = Path(path if path is not None else PACKAGED_CATALOGUE).expanduser()
    try:
        text = source.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = "not found" if isinstance(exc, FileNotFoundError) else f"unreadable ({exc})"
        raise CatalogueError(f"unload catalogue {source} {reason}") from None
    report = _Report(source.resolve(), run_at, digest=text)
    loader = _Loader(text)
    loader.report = report
    try:
        data = loader.get_single_data()
    except yaml.MarkedYAMLError as exc:
        mark, opened = exc.problem_mark or exc.context_mark, exc.context_mark
        context = f" ({exc.context} that starts on line {opened.line + 1})" if exc.context and opened else ""
        report.fatal("invalid YAML", f"{exc.problem}{context}", mark.line + 1 if mark else None)
    except yaml.YAMLError as exc:
        report.fatal("invalid YAML", str(exc))
    finally:
        loader.dispose()
    return _build(data, report, defaults or {})


def inline_catalogue(
    defaults: Mapping[str, Any] | None,
    targets: Any,
    *,
    defs_yaml: Path,
    run_at: time = RUN_AT,
    instance_defaults: Mapping[str, Any] | None = None,
) -> Catalogue:
    """A catalogue given inline in a component's `defs.yaml` (`defaults` + `targets`, as Dagster read
    them), located by the lines of that defs.yaml when it can be read again (it is re-read with the
    catalogue's own YAML reader, which keeps every line)."""
    text = ""
    with contextlib.suppress(OSError):
        text = defs_yaml.read_text(encoding="utf-8")
    report = _Report(defs_yaml, run_at, digest=text + repr((defaults, targets)))
    data: dict[str, Any] = {"defaults": defaults or {}, "targets": targets}
    for document in _documents(text, report):
        attributes = document.get("attributes") if isinstance(document, dict) else None
        if not isinstance(attributes, dict):
            continue
        if attributes.get("targets") == targets and attributes.get("defaults") in (defaults, None):
            data = {"defaults": attributes.get("defaults") or {}, "targets": attributes["targets"]}
            break
    return _build(data, report, instance_defaults or {})


def catalogue_from_mapping(data: Any, source: str | Path, *, run_at: time = RUN_AT) -> Catalogue:
    """Validate a catalogue given as data (`{"defaults": ..., "targets": [...]}`), strictly (any problem
    raises CatalogueError); `source` names it in every error."""
    return _strict(_build(data, _Report(Path(source), run_at, digest=repr(data)), {}))


def _strict(catalogue: Catalogue) -> Catalogue:
    if catalogue.problems:
        raise CatalogueError(problem_report(catalogue.problems, catalogue.source))
    return catalogue


def _documents(text: str, report: _Report) -> Iterator[Any]:
    if not text:
        return
    loader = _Loader(text)
    loader.report = report
    try:
        while loader.check_data():
            yield loader.get_data()
    except yaml.YAMLError:
        return
    finally:
        loader.dispose()


@dataclass
class _Report:
    source: Path
    run_at: time
    digest: str
    problems: list[Problem] = field(default_factory=list)
    # Filled while the YAML is constructed: id(mapping) -> its line, {key: line}, duplicate keys, and
    # {key: (line where the value starts, whether it is a block scalar)}.
    positions: dict[int, _Position] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.version = hashlib.sha256(self.digest.encode("utf-8", "surrogatepass")).hexdigest()[:12]

    def add(self, where: str, message: str, line: int | None = None, **about: Any) -> Problem:
        problem = Problem(self.source, where, message, line, version=self.version, **about)
        self.problems.append(problem)
        return problem

    def fatal(self, where: str, message: str, line: int | None = None) -> NoReturn:
        """A problem that leaves nothing to load: raised with every problem found so far."""
        self.add(where, message, line)
        raise CatalogueError(problem_report(self.problems, self.source))

    def line(self, mapping: object, field: str | None = None) -> int | None:
        position = self.positions.get(id(mapping))
        if position is None:
            return None
        return position.line if field is None else position.keys.get(re.split(r"[.\[]", field)[0])

    def value_start(self, mapping: object, field: str) -> tuple[int, bool] | None:
        position = self.positions.get(id(mapping))
        return position.values.get(field) if position else None

    def flush_duplicates(self, mapping: object, where: str, **about: Any) -> list[Problem]:
        """Report the keys given twice in `mapping`."""
        # PyYAML silently keeps the last of two equal keys; losing half of a target that way is a bug.
        position = self.positions.get(id(mapping))
        found = [
            self.add(f"{where}, field {key!r}", f"given twice (first on line {first})", line, **about)
            for key, line, first in (position.duplicates if position else [])
        ]
        if position:
            position.duplicates.clear()
        return found


@dataclass
class _Position:
    line: int
    keys: dict[str, int]
    duplicates: list[tuple[str, int, int]]
    values: dict[str, tuple[int, bool]]


class _Loader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # type: ignore[misc]  # libyaml: much faster
    report: _Report


def _construct_mapping(loader: _Loader, node: yaml.MappingNode) -> Iterator[dict[Any, Any]]:
    data: dict[Any, Any] = {}
    yield data  # first, as PyYAML does, so that aliases resolve
    keys: dict[str, int] = {}
    values: dict[str, tuple[int, bool]] = {}
    duplicates: list[tuple[str, int, int]] = []
    for key_node, value_node in node.value:
        if isinstance(key_node, yaml.ScalarNode) and key_node.tag != "tag:yaml.org,2002:merge":
            line = key_node.start_mark.line + 1
            if key_node.value in keys:
                duplicates.append((key_node.value, line, keys[key_node.value]))
            keys.setdefault(key_node.value, line)
            block = isinstance(value_node, yaml.ScalarNode) and value_node.style in ("|", ">")
            values.setdefault(key_node.value, (value_node.start_mark.line + 1, block))
    data.update(loader.construct_mapping(node))
    loader.report.positions[id(data)] = _Position(node.start_mark.line + 1, keys, duplicates, values)


_Loader.add_constructor("tag:yaml.org,2002:map", _construct_mapping)

_TOP_LEVEL = ("defaults", "targets")
_NOT_DEFAULTABLE = ("name", "sql", "key_template")
_FIELDS = tuple(UnloadTarget.model_fields)
_NESTED_FIELDS = {"partitioning": tuple(DailyPartitioning.model_fields)}  # what a nested field may be
_SAMPLE_DAY = date(2026, 12, 31)
_NAME = re.compile(r"[a-z][a-z0-9_]{0,62}")


def _build(data: Any, report: _Report, instance_defaults: Mapping[str, Any]) -> Catalogue:
    if not isinstance(data, dict):
        report.fatal("top level", "expected a mapping with 'targets' (and optionally 'defaults')")
    report.flush_duplicates(data, "top level")
    # `x-...` keys are free for YAML anchors shared through `<<: *name` (the docker-compose convention).
    for key in [key for key in data if key not in _TOP_LEVEL and not str(key).startswith("x-")]:
        report.add(
            "top level",
            f"unknown key {key!r}; allowed: defaults, targets, x-<anchors>",
            report.line(data, str(key)),
        )
    defaults = data.get("defaults") or {}
    if not isinstance(defaults, dict):
        report.add("defaults", "expected a mapping of target fields", report.line(data, "defaults"))
        defaults = {}
    report.flush_duplicates(defaults, "defaults")
    overrides, valid_defaults, bad_defaults = _check_defaults(defaults, report)
    raw_targets = data.get("targets")
    if not isinstance(raw_targets, list) or not raw_targets:
        report.fatal("targets", "expected a non-empty list of targets", report.line(data, "targets"))
    base = dict(instance_defaults)
    if isinstance(base.get("tags"), dict) and isinstance(valid_defaults.get("tags"), dict):
        valid_defaults["tags"] = {**base["tags"], **valid_defaults["tags"]}
    valid_defaults = {**base, **valid_defaults}
    entries: list[_Entry] = []
    first_seen: dict[str, int | None] = {}
    for number, raw in enumerate(raw_targets, start=1):  # each entry's problems in the file's order
        entry = _Entry.read(number, raw, report)
        entries.append(entry)
        name, line = entry.name, report.line(raw, "name")
        if name is not None and name in first_seen:
            duplicate = f"duplicate (first on line {first_seen[name]})"
            entry.fail(report, f"target {name!r}, field 'name'", duplicate, line)
        elif name is not None:
            first_seen[name] = line
        entry.validate(valid_defaults, defaults, bad_defaults, report)
    _check_distinct_keys(entries, report)
    loaded = [e for e in entries if e.target is not None and not e.problems]
    not_loaded = tuple(
        NotLoaded(
            name=e.key_name,
            entry=e.number,
            line=e.line,
            description=e.description,
            problems=tuple(e.problems),
        )
        for e in entries
        if e.problems and not _shadowed(e, loaded)
    )
    return Catalogue(
        targets=[e.target for e in loaded if e.target is not None],
        source=report.source,
        bucket=overrides.bucket,
        iam_role=overrides.iam_role,
        expected_bucket_owner=overrides.expected_bucket_owner,
        problems=tuple(report.problems),
        not_loaded=not_loaded,
        version=report.version,
        lineage_notes={e.name: e.lineage_note for e in loaded if e.name and e.lineage_note},
    )


def _shadowed(entry: _Entry, loaded: list[_Entry]) -> bool:
    """A second entry of a name that loaded (a duplicate): the name's asset is the first entry's."""
    return any(other.key_name == entry.key_name for other in loaded)


@dataclass
class _Entry:
    """One item of `targets`, as far as it could be read."""

    number: int
    raw: Any
    line: int | None = None  # where the entry starts
    problems: list[Problem] = field(default_factory=list)
    target: UnloadTarget | None = None
    lineage_note: str | None = None

    @classmethod
    def read(cls, number: int, raw: Any, report: _Report) -> _Entry:
        entry = cls(number, raw, report.line(raw))
        if not isinstance(raw, dict):
            entry.fail(report, f"target #{number}", "expected a mapping of fields")
            return entry
        entry.problems += report.flush_duplicates(raw, entry.where, **entry.about)
        return entry

    @property
    def name(self) -> str | None:
        name = self.raw.get("name") if isinstance(self.raw, dict) else None
        return name if isinstance(name, str) else None

    @property
    def key_name(self) -> str:
        """The name its asset goes by: its own when it is one, else `catalogue_entry_<n>`."""
        name = self.name
        return name if name and _NAME.fullmatch(name) else f"catalogue_entry_{self.number}"

    @property
    def description(self) -> str | None:
        text = self.raw.get("description") if isinstance(self.raw, dict) else None
        return text if isinstance(text, str) and text.strip() else None

    @property
    def where(self) -> str:
        return f"target {self.name!r}" if self.name is not None else f"target #{self.number}"

    @property
    def about(self) -> dict[str, Any]:
        return {"target": self.key_name, "description": self.description}

    def fail(self, report: _Report, where: str, message: str, line: int | None = None) -> None:
        self.problems.append(report.add(where, message, line, **self.about))

    def validate(
        self,
        valid_defaults: dict[Any, Any],
        defaults: dict[Any, Any],
        bad_defaults: dict[str, Problem],
        report: _Report,
    ) -> None:
        raw = self.raw
        if not isinstance(raw, dict):
            return
        inherited = {key for key in defaults if key not in raw}
        for key, problem in bad_defaults.items():
            if key in inherited:  # the target relies on a default that is wrong
                self.problems.append(problem)
        merged = {**valid_defaults, **raw}
        if isinstance(valid_defaults.get("tags"), dict) and isinstance(raw.get("tags"), dict):
            merged["tags"] = {**valid_defaults["tags"], **raw["tags"]}  # tags merge; other fields replace
        try:
            target = UnloadTarget.model_validate(merged, context={"run_at": report.run_at})
        except ValidationError as exc:
            for field_path, message, rule in _translate(exc):
                self._report(
                    report, raw, defaults, inherited if rule else set(), field_path, message, inherited
                )
            return
        self._check_select(target, report)
        if not self.problems:
            self.target = target

    def _report(
        self,
        report: _Report,
        raw: dict[Any, Any],
        defaults: dict[Any, Any],
        related: set[Any],
        field_path: str | None,
        message: str,
        inherited: set[Any],
    ) -> None:
        top = re.split(r"[.\[]", field_path or "")[0]
        where = f"{self.where}, field {field_path!r}" if field_path else self.where
        if top and top in inherited:
            where += f" (inherited from defaults, line {report.line(defaults, top)})"
        # A rule that reads another field the target inherits says where that one comes from.
        for other in sorted(related - {top}):
            if isinstance(other, str) and re.search(rf"\b{re.escape(other)}\b", message, re.IGNORECASE):
                message += f" ({other}: inherited from defaults, line {report.line(defaults, other)})"
        own = report.line(raw, top) if top and top not in inherited else None
        line = own or report.line(raw)
        self.fail(report, where, message, line)

    def _check_select(self, target: UnloadTarget, report: _Report) -> None:
        """The SELECT parsed with Redshift's grammar (sqlglot): a syntax error is a problem located by
        the SQL's own line and column and by the catalogue's line; no source table is a lineage note."""
        reading = read_select(target.sql)
        if reading.error is None:
            if not reading.tables:
                self.lineage_note = (
                    "no source table could be read from the SQL: the asset has no upstream lineage"
                )
            return
        error = reading.error
        line = None
        start = report.value_start(self.raw, "sql") if isinstance(self.raw, dict) else None
        if start is not None:
            line = start[0] + error.line - (0 if start[1] else 1)
        message = f"syntax error at line {error.line}, column {error.column} of the SQL: {error.message}"
        self.fail(report, f"{self.where}, field 'sql'", message, line)


def _check_distinct_keys(entries: list[_Entry], report: _Report) -> None:
    # Two targets on one final key overwrite each other every morning, and each run's clean-up of an
    # earlier run's parts would delete the other target's output.
    first: dict[str, str] = {}
    for entry in entries:
        target = entry.target
        if target is None or entry.problems:
            continue
        day = _SAMPLE_DAY if target.partitioning.type == "daily" else None
        key = target.final_key(day)
        if key in first and first[key] != target.name:
            why = f"target {first[key]!r} writes the same object ({key}); give each target its own key"
            entry.fail(
                report,
                f"target {target.name!r}, field 'key_template'",
                why,
                report.line(entry.raw, "key_template"),
            )
            continue
        first.setdefault(key, target.name)


def _check_defaults(
    defaults: dict[Any, Any], report: _Report
) -> tuple[_Overrides, dict[Any, Any], dict[str, Problem]]:
    """The bucket/role overrides, the valid target defaults, and the problem of each bad default (reported
    once, here; it keeps the targets that inherit it from loading)."""
    valid = {key: value for key, value in defaults.items() if key not in _Overrides.model_fields}
    bad: dict[str, Problem] = {}
    for key in sorted(valid.keys() & set(_NOT_DEFAULTABLE)):
        report.add(f"defaults, field {key!r}", "differs per target; set it there", report.line(defaults, key))
        del valid[key]
    overrides = _Overrides()
    stand_in = {"name": "x", "description": "x", "sql": "select 1", "key_template": "x", **valid}
    # The stand-in target checks the defaults by exactly the rules the real targets will meet.
    for model, values in (
        (_Overrides, {k: defaults[k] for k in defaults.keys() & _Overrides.model_fields}),
        (UnloadTarget, stand_in),
    ):
        try:
            checked = model.model_validate(values, context={"run_at": report.run_at})
            overrides = checked if isinstance(checked, _Overrides) else overrides
        except ValidationError as exc:
            for field_path, message, _ in _translate(exc, cross_field=False):
                problem = report.add(
                    f"defaults, field {field_path!r}", message, report.line(defaults, field_path)
                )
                top = re.split(r"[.\[]", field_path or "")[0]
                valid.pop(top, None)  # so each target doesn't repeat it
                bad.setdefault(top, problem)
    return overrides, valid, bad


def _translate(exc: ValidationError, *, cross_field: bool = True) -> list[tuple[str | None, str, bool]]:
    """pydantic's errors as (field path, message, from one of our rules that reads other fields) in the
    catalogue's own words."""
    found: list[tuple[str | None, str, bool]] = []
    for error in exc.errors(include_url=False):
        kind, loc = error["type"], list(error["loc"])
        if kind == "problems":
            if loc or cross_field:
                found += [(path, message, True) for path, message in error["ctx"]["problems"]]
            continue
        if loc[:1] == ["partitioning"] and len(loc) > 1 and loc[1] in ("daily", "none"):
            del loc[1]  # the union member pydantic tried, not a key the user wrote
        field_path = "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in loc).lstrip(".")
        message = error["msg"].removeprefix("Value error, ")
        if kind == "extra_forbidden":
            allowed = _NESTED_FIELDS.get(str(loc[0]), _FIELDS) if len(loc) > 1 else _FIELDS
            close = difflib.get_close_matches(str(loc[-1]), allowed, n=1)
            message = f"did you mean {close[0]!r}?" if close else f"allowed: {', '.join(allowed)}"
            message = f"unknown field; {message}"
        elif kind == "missing":
            message = "is required"
        elif kind != "value_error" and not isinstance(error["input"], (dict, list)):
            message += f" (got {error['input']!r})"
        found.append((field_path or None, message, False))
    return found
