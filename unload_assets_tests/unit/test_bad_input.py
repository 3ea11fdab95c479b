"""Catalogue mistakes and hostile values: each is refused at load with ONE line naming the target and
field, or accepted and then quoted so that Redshift reads back exactly what was meant.

Complements test_catalogue.py, which already covers (and this corpus does not repeat): unknown fields and
typos, bad names/owners/tags, `..`, spaces, quotes, backslashes and control characters in key templates,
unknown template variables, option pairs Redshift refuses, outer LIMIT, `;`, an unterminated literal, a
17 MB statement, an ARN with a quote, duplicate names and fields, broken YAML, a missing file.
"""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import date
from pathlib import Path
from typing import Any

import pytest
import yaml
from unload_assets_local.emulator.unload.parser import parse_unload

from unload_assets.catalogue import CatalogueError, load_catalogue
from unload_assets.statement.auth import UnloadAuth
from unload_assets.statement.build import build_unload, render_select
from unload_assets_tests.support.catalogue_samples import DAILY, ROLE, SNAPSHOT

REPO = Path(__file__).resolve().parents[2]
ALLOWED_VARS = "allowed: {target}, {date}, {yyyy}, {mm}, {dd}"
LAUGHS = "".join(  # nine levels of nine aliases: 9**9 strings if anything expanded them
    f"x-{i}: &l{i} [" + ", ".join([f"*l{i - 1}"] * 9 if i else ["lol"] * 9) + "]\n" for i in range(9)
)
ONE_TARGET = "targets:\n  - {name: a, description: d, sql: %s, key_template: a.csv}\n"
DAILY_ON = {"type": "daily", "start_date": "2026-01-01"}


def snap(**changes: Any) -> dict:
    return {"targets": [SNAPSHOT | changes]}


def daily(**changes: Any) -> dict:
    return {"targets": [DAILY | changes]}


def defaults(**values: Any) -> dict:
    return {"defaults": values, "targets": [SNAPSHOT]}


def located(spec: str) -> str:
    """`snap:sql` -> `target 'snap', field 'sql'`; `#1:name`, `defaults:bucket`; anything else as is."""
    owner, colon, field = spec.rpartition(":")
    if not colon or " " in field:
        return spec
    owner = (
        owner if owner == "defaults" else f"target {owner}" if owner.startswith("#") else f"target {owner!r}"
    )
    return f"{owner}, field {field!r}"


# (id, document, where the one problem line says it is (None: the file itself), what it says)
BAD: list[tuple[str, Any, str | None, str]] = [
    ("name_not_a_string", snap(name=123), "#1:name", "valid string (got 123)"),
    ("name_sql_injection", snap(name="x'; drop table t"), "x'; drop table t:name", "must be a-z first"),
    ("name_path_traversal", snap(name="../etc"), "../etc:name", "must be a-z first"),
    ("name_64_chars", snap(name="a" * 64), "a" * 64 + ":name", "at most 63 characters"),
    ("description_missing", {"targets": [{k: v for k, v in SNAPSHOT.items() if k != "description"}]},
     "snap:description", "is required"),
    ("sql_is_a_list", snap(sql=["select 1"]), "snap:sql", "valid string"),
    ("sql_not_a_select", snap(sql="delete from public.sales"), "snap:sql", "must be a SELECT"),
    ("sql_open_dollar_quote", snap(sql="select $$never closed"), "snap:sql", "unterminated dollar-quoted"),
    ("sql_open_comment", snap(sql="select 1 /* never closed"), "snap:sql", "unterminated /* comment"),
    ("sql_open_identifier", snap(sql='select 1 as "x'), "snap:sql", "unterminated quoted identifier"),
    ("sql_outer_fetch_first", snap(sql="select * from t fetch first 9 rows only"), "snap:sql", "outer LIMIT"),
    ("sql_stray_brace", snap(sql="select { 1"), "snap:sql", "stray brace"),
    ("sql_nul_character", snap(sql="select 'a\0b' as s"), "snap:sql", "NUL character"),
    ("sql_lone_surrogate", snap(sql="select '\ud800' as s"), "invalid YAML", "invalid Unicode character"),
    ("header_maybe", snap(header="maybe"), "snap:header", "valid boolean, unable to interpret input"),
    ("parallel_two", snap(parallel=2), "snap:parallel", "valid boolean"),
    ("max_file_size_with_unit", snap(max_file_size_mb="6.2 GB"), "snap:max_file_size_mb", "valid number"),
    ("max_file_size_nan", snap(max_file_size_mb=float("nan")), "snap:max_file_size_mb", "(got nan)"),
    ("max_file_size_true", snap(max_file_size_mb=True), "snap:max_file_size_mb", "greater than or equal"),
    ("owners_not_a_list", snap(owners="team:x"), "snap:owners", "valid list (got 'team:x')"),
    ("tags_a_list", snap(tags=["a"]), "snap:tags", "valid dictionary"),
    ("tag_value_a_number", snap(tags={"n": 1}), "snap:tags.n", "valid string (got 1)"),
    ("partitioning_a_string", daily(partitioning="daily"), "daily_t:partitioning", "valid dictionary"),
    ("partitioning_unknown_key", daily(partitioning=DAILY_ON | {"timezone": "UTC"}),
     "daily_t:partitioning.timezone", "unknown field; allowed: type, start_date, end_offset"),
    ("end_offset_a_word", daily(partitioning=DAILY_ON | {"end_offset": "one"}),
     "daily_t:partitioning.end_offset", "valid integer"),
    ("format_upper_case", snap(format="CSV"), "snap:format", "(got 'CSV')"),
    ("compression_gz", snap(compression="gz"), "snap:compression", "(got 'gz')"),
    ("on_split_null", snap(on_split=None), "snap:on_split", "(got None)"),
    ("delimiter_newline", snap(delimiter="\n"), "snap:delimiter", "a line break or NUL"),
    ("delimiter_csv_quote", snap(delimiter='"'), "snap:delimiter", "CSV quote character"),
    ("delimiter_not_ascii", snap(delimiter="€"), "snap:delimiter", "one ASCII character"),
    ("null_as_nul", snap(null_as="\0"), "snap:null_as", "NUL character"),
    ("key_dot_segment", snap(key_template="./x.csv"), "snap:key_template", "'.' or '..' path segment"),
    ("key_double_slash", snap(key_template="x//y.csv"), "snap:key_template", "contains '//'"),
    ("key_s3_url", snap(key_template="s3://bucket/x.csv"), "snap:key_template", "contains '//'"),
    ("key_open_brace", daily(key_template="x/{date.csv"), "daily_t:key_template", "unbalanced braces"),
    ("key_empty_variable", snap(key_template="x/{}.csv"), "snap:key_template", f"{{}}; {ALLOWED_VARS}"),
    ("key_attribute", daily(key_template="x/{date.year}.csv"), "daily_t:key_template", "{date.year}"),
    ("key_percent_encoded", snap(key_template="x%20y.csv"), "snap:key_template", "contains '%'"),
    ("key_2000_bytes", snap(key_template="x/" + "a" * 2000 + ".csv"), "snap:key_template", "longer than 992"),
    ("two_targets_one_key", {"targets": [SNAPSHOT, SNAPSHOT | {"name": "snap2"}]}, "snap2:key_template",
     "target 'snap' writes the same object (exports/customers.csv)"),
    ("two_daily_targets_one_key",
     {"targets": [DAILY, DAILY | {"name": "d2", "key_template": "exports/daily_t/{yyyy}-{mm}-{dd}.csv"}]},
     "d2:key_template", "target 'daily_t' writes the same object"),
    ("bucket_with_quote", defaults(bucket="my'bucket"), "defaults:bucket", "invalid S3 bucket name \"my'bu"),
    ("bucket_as_url", defaults(bucket="s3://my-bucket"), "defaults:bucket", "no 's3://'"),
    ("bucket_ip_address", defaults(bucket="192.168.1.1"), "defaults:bucket", "must not look like an IP"),
    ("bucket_double_dot", defaults(bucket="a..b"), "defaults:bucket", "'..'"),
    ("arn_newline_clause", defaults(iam_role=f"{ROLE}\nMANIFEST"), "defaults:iam_role", "invalid IAM role"),
    ("arn_with_semicolon", defaults(iam_role=f"{ROLE};drop table"), "defaults:iam_role", "invalid IAM role"),
    ("arn_chain_of_11", defaults(iam_role=",".join([ROLE] * 11)), "defaults:iam_role", "chains at most 10"),
    ("defaults_unknown_option", defaults(allowoverwrite=True), "defaults:allowoverwrite", "unknown field"),
    ("defaults_owner_a_number", defaults(owners=[1]), "defaults:owners[0]", "valid string (got 1)"),
    ("targets_a_mapping", "targets:\n  a: {name: a}\n", "targets", "expected a non-empty list of targets"),
    ("yaml_tab_indent", "targets:\n\t- name: a\n", "invalid YAML", "cannot start any token"),
    ("yaml_undefined_alias", "targets:\n  - *nope\n", "invalid YAML", "found undefined alias"),
    ("yaml_python_object", "targets:\n  - !!python/object/apply:os.system ['touch /tmp/pwned']\n",
     "invalid YAML", "could not determine a constructor for the tag"),
    ("yaml_billion_laughs", LAUGHS + ONE_TARGET % "*l8", "a:sql", "valid string"),
    ("not_utf8", b"\xff\xfetargets: []\n", None, "unreadable ('utf-8' codec can't decode byte 0xff"),
    ("a_directory", "<dir>", None, "unreadable ([Errno 21] Is a directory"),
]  # fmt: skip


def _write(tmp_path: Path, document: Any) -> Path:
    path = tmp_path / "unload_targets.yaml"
    if document == "<dir>":
        path.mkdir()
    elif isinstance(document, bytes):
        path.write_bytes(document)
    else:
        path.write_text(document if isinstance(document, str) else yaml.safe_dump(document, sort_keys=False))
    return path


@pytest.mark.parametrize(("document", "spec", "message"), [c[1:] for c in BAD], ids=[c[0] for c in BAD])
def test_each_bad_catalogue_fails_with_one_line_naming_target_and_field(tmp_path, document, spec, message):
    where = None if spec is None else located(spec)
    path = _write(tmp_path, document)
    with pytest.raises(CatalogueError) as caught:
        load_catalogue(path)
    first, *rest = str(caught.value).splitlines()
    if where is None:  # the file itself: the one line names it
        assert not rest and str(path) in first and message in first, first
        return
    assert rest == [f"(1 problem(s) in unload catalogue {path.resolve()})"], rest
    assert first.startswith(f"unload_targets.yaml: {where}: ") and message in first, first


HOSTILE_SQL = "select 'O''Brien' as a, '\\\\' as b, '$$x$$' as c, 'é -- /* ' as d -- it's\n, '}}' as e"
GOOD: list[tuple[str, Any]] = [  # accepted, and must reach Redshift exactly as written
    ("delimiter_single_quote", snap(delimiter="'", format="text")),
    ("delimiter_backslash", snap(delimiter="\\", format="text")),
    ("delimiter_tab", snap(delimiter="\t")),
    ("null_as_quote_and_backslash", snap(null_as="O'Brien\\N")),
    ("hostile_literals_in_sql", snap(sql=HOSTILE_SQL)),
    ("placeholder_without_spaces", daily(sql="select * from public.sales where d = {{partition_date}}")),
    ("nested_limit", snap(sql="select * from (select * from public.sales limit 10) q")),
    ("non_ascii_key", snap(key_template="exports/zürich/{target}.csv")),
    ("quoted_description", snap(description="it's \"fine\"; drop table t --")),
    ("header_yes_string", snap(header="yes")),
    ("utf8_bom_and_crlf", "\ufeff" + (ONE_TARGET % "select 1").replace("\n", "\r\n")),
]  # fmt: skip


@pytest.mark.parametrize("document", [c[1] for c in GOOD], ids=[c[0] for c in GOOD])
def test_hostile_values_that_load_reach_redshift_exactly_as_written(tmp_path, document):
    [target] = load_catalogue(_write(tmp_path, document)).targets
    day = date(2026, 3, 7) if target.partitioning.type == "daily" else None
    location = "s3://unload-local/_staging/snap/2026-03-07/run/"
    statement = build_unload(target, partition_date=day, location=location, auth=UnloadAuth(iam_role=ROLE))
    # The emulator's parser reads the statement by Redshift's rules: every value comes back unchanged.
    command = parse_unload(statement.sql)
    assert command.select == render_select(target, day)
    assert (command.to, command.delimiter, command.null_as) == (location, target.delimiter, target.null_as)
    # With combine (the default) the rename writes the header line, so UNLOAD carries no HEADER.
    by_rename = target.header_by_rename
    assert command.header is (target.header and not by_rename)
    assert "drop table" not in statement.sql  # the description is metadata, never statement text


@pytest.mark.cli
@pytest.mark.parametrize("case_id", ["bucket_with_quote", "two_targets_one_key"])
def test_strict_dagster_definitions_validate_exits_non_zero_with_the_line(tmp_path, case_id):
    _, document, spec, message = next(c for c in BAD if c[0] == case_id)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DAGSTER_", "PYTEST_"))}
    proc = subprocess.run(
        [str(Path(sys.executable).parent / "dagster"), "definitions", "validate", "-w", "workspace.yaml"],
        cwd=REPO,
        env={**env, "UNLOAD_TARGETS_FILE": str(_write(tmp_path, document)), "UNLOAD_STRICT": "1"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode != 0
    assert f"unload_targets.yaml: {located(spec)}: " in proc.stdout + proc.stderr
    assert message in proc.stdout + proc.stderr
