"""Reading the catalogue: `unload_targets.yaml` parsed, defaulted and validated, every problem reported
with its file, line, target and field."""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from unload_assets import environment
from unload_assets.catalogue.model import (
    Catalogue,
    CatalogueError,
    DailyPartitioning,
    UnloadTarget,
    _Overrides,
)
from unload_assets.s3_naming import (
    render_key,
)

ENV_VAR = environment.TARGETS_FILE
PACKAGED_CATALOGUE = Path(__file__).parents[1] / "unload_targets.yaml"


def load_catalogue(path: str | Path | None = None) -> Catalogue:
    """Read and validate the catalogue at `path`, else `$UNLOAD_TARGETS_FILE`, else the packaged one.

    Raises CatalogueError listing every problem, one per line, each naming file, target and field.
    """
    from_env = environment.catalogue_file()
    source = Path(path if path is not None else from_env or PACKAGED_CATALOGUE).expanduser()
    try:
        text = source.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        origin = f"from {ENV_VAR}" if path is None and from_env else f"set {ENV_VAR} to use another file"
        reason = "not found" if isinstance(exc, FileNotFoundError) else f"unreadable ({exc})"
        raise CatalogueError(f"unload catalogue {source} {reason} ({origin})") from None
    report = _Report(source.name)
    catalogue: Catalogue | None = None
    loader = _Loader(text)
    loader.report = report
    try:
        catalogue = _build(loader.get_single_data(), report, source.resolve())
    except yaml.MarkedYAMLError as exc:
        mark, opened = exc.problem_mark or exc.context_mark, exc.context_mark
        context = f" ({exc.context} that starts on line {opened.line + 1})" if exc.context and opened else ""
        report.add("invalid YAML", f"{exc.problem}{context}", mark.line + 1 if mark else None)
    except yaml.YAMLError as exc:
        report.add("invalid YAML", str(exc))
    finally:
        loader.dispose()
    report.flush_duplicates()
    return report.checked(catalogue, source)


def catalogue_from_mapping(data: Any, source: str | Path) -> Catalogue:
    """Validate a catalogue given as data (`{"defaults": ..., "targets": [...]}`, e.g. inline in a
    component's `defs.yaml`); `source` names it in every error. Raises CatalogueError like
    `load_catalogue`."""
    where = Path(source)
    report = _Report(where.name)
    catalogue = _build(data, report, where)
    return report.checked(catalogue, source)


class _Report:
    def __init__(self, file_name: str) -> None:
        self.file_name = file_name
        self.lines: list[str] = []
        # Filled while the YAML is constructed: id(mapping) -> (its line, {key: line}, [duplicate keys]).
        self.positions: dict[int, tuple[int, dict[str, int], list[tuple[str, int, int]]]] = {}

    def checked(self, catalogue: Catalogue | None, source: str | Path) -> Catalogue:
        """`catalogue` if nothing was reported, else a CatalogueError listing every problem (every path
        that leaves the catalogue None reports why)."""
        if self.lines or catalogue is None:
            count = len(self.lines)
            raise CatalogueError(
                f"{count} problem(s) in unload catalogue {source}:\n" + "\n".join(self.lines)
            )
        return catalogue

    def add(self, where: str, message: str, line: int | None = None) -> None:
        self.lines.append(f"{self.file_name}: {where}: {message}" + (f" (line {line})" if line else ""))

    def line(self, mapping: object, field: str | None = None) -> int | None:
        start, keys, _ = self.positions.get(id(mapping), (None, {}, []))
        return start if field is None else keys.get(re.split(r"[.\[]", field)[0])

    def flush_duplicates(self, mapping: object = None, where: str = "mapping") -> None:
        """Report the keys given twice in `mapping` (default: in every mapping not reported yet)."""
        # PyYAML silently keeps the last of two equal keys; losing half of a target that way is a bug.
        for ident in [id(mapping)] if mapping is not None else list(self.positions):
            duplicates = self.positions[ident][2] if ident in self.positions else []
            for key, line, first in duplicates:
                self.add(f"{where}, field {key!r}", f"given twice (first on line {first})", line)
            duplicates.clear()


class _Loader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # type: ignore[misc]  # libyaml: much faster
    report: _Report


def _construct_mapping(loader: _Loader, node: yaml.MappingNode) -> Iterator[dict[Any, Any]]:
    data: dict[Any, Any] = {}
    yield data  # first, as PyYAML does, so that aliases resolve
    keys: dict[str, int] = {}
    duplicates: list[tuple[str, int, int]] = []
    for key_node, _ in node.value:
        if isinstance(key_node, yaml.ScalarNode) and key_node.tag != "tag:yaml.org,2002:merge":
            line = key_node.start_mark.line + 1
            if key_node.value in keys:
                duplicates.append((key_node.value, line, keys[key_node.value]))
            keys.setdefault(key_node.value, line)
    data.update(loader.construct_mapping(node))
    loader.report.positions[id(data)] = (node.start_mark.line + 1, keys, duplicates)


_Loader.add_constructor("tag:yaml.org,2002:map", _construct_mapping)

_TOP_LEVEL = ("defaults", "targets")
_NOT_DEFAULTABLE = ("name", "sql", "key_template")
_FIELDS = tuple(UnloadTarget.model_fields)
_NESTED_FIELDS = {"partitioning": tuple(DailyPartitioning.model_fields)}  # what a nested field may be


def _build(data: Any, report: _Report, source: Path) -> Catalogue | None:
    if not isinstance(data, dict):
        report.add("top level", "expected a mapping with 'targets' (and optionally 'defaults')")
        return None
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
    overrides, valid_defaults = _check_defaults(defaults, report)
    raw_targets = data.get("targets")
    if not isinstance(raw_targets, list) or not raw_targets:
        report.add("targets", "expected a non-empty list of targets", report.line(data, "targets"))
        return None
    targets: list[UnloadTarget] = []
    raws: list[dict[Any, Any]] = []  # each valid target's own mapping, for line numbers
    first_seen: dict[str, int | None] = {}
    for number, raw in enumerate(raw_targets, start=1):
        if not isinstance(raw, dict):
            report.add(f"target #{number}", "expected a mapping of fields")
            continue
        name = raw.get("name")
        where = f"target {name!r}" if isinstance(name, str) else f"target #{number}"
        report.flush_duplicates(raw, where)
        if isinstance(name, str) and name in first_seen:
            report.add(
                f"{where}, field 'name'",
                f"duplicate (first on line {first_seen[name]})",
                report.line(raw, "name"),
            )
        elif isinstance(name, str):
            first_seen[name] = report.line(raw, "name")
        merged = {**valid_defaults, **raw}
        if isinstance(valid_defaults.get("tags"), dict) and isinstance(raw.get("tags"), dict):
            merged["tags"] = {**valid_defaults["tags"], **raw["tags"]}  # tags merge; other fields replace
        try:
            targets.append(UnloadTarget.model_validate(merged))
            raws.append(raw)
        except ValidationError as exc:
            for field, message in _translate(exc):
                line = report.line(raw, field) or report.line(defaults, field) or report.line(raw)
                report.add(f"{where}, field {field!r}" if field else where, message, line)
    _check_distinct_keys(targets, raws, report)
    return Catalogue(targets=targets, source=source, bucket=overrides.bucket, iam_role=overrides.iam_role)


_SAMPLE_DAY = date(2026, 12, 31)


def _check_distinct_keys(targets: list[UnloadTarget], raws: list[dict[Any, Any]], report: _Report) -> None:
    # Two targets on one final key overwrite each other every morning, and each run's clean-up of an
    # earlier run's parts would delete the other target's output.
    first: dict[str, str] = {}
    for target, raw in zip(targets, raws, strict=True):
        day = _SAMPLE_DAY if target.partitioning.type == "daily" else None
        key = render_key(target.key_template, target=target.name, partition_date=day)
        if key in first and first[key] != target.name:
            why = f"target {first[key]!r} writes the same object ({key}); give each target its own key"
            report.add(f"target {target.name!r}, field 'key_template'", why, report.line(raw, "key_template"))
        first.setdefault(key, target.name)


def _check_defaults(defaults: dict[Any, Any], report: _Report) -> tuple[_Overrides, dict[Any, Any]]:
    """The bucket/role overrides and the valid target defaults; each bad default is reported once, here."""
    valid = {key: value for key, value in defaults.items() if key not in _Overrides.model_fields}
    for key in valid.keys() & set(_NOT_DEFAULTABLE):
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
            checked = model.model_validate(values)
            overrides = checked if isinstance(checked, _Overrides) else overrides
        except ValidationError as exc:
            for field, message in _translate(exc, cross_field=False):
                report.add(f"defaults, field {field!r}", message, report.line(defaults, field))
                valid.pop(re.split(r"[.\[]", field or "")[0], None)  # so each target doesn't repeat it
    return overrides, valid


def _translate(exc: ValidationError, *, cross_field: bool = True) -> list[tuple[str | None, str]]:
    """pydantic's errors as (field path, message) pairs in the catalogue's own words."""
    found: list[tuple[str | None, str]] = []
    for error in exc.errors(include_url=False):
        kind, loc = error["type"], list(error["loc"])
        if kind == "problems":
            found += error["ctx"]["problems"] if (loc or cross_field) else []
            continue
        if loc[:1] == ["partitioning"] and len(loc) > 1 and loc[1] in ("daily", "none"):
            del loc[1]  # the union member pydantic tried, not a key the user wrote
        field = "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in loc).lstrip(".")
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
        found.append((field or None, message))
    return found
