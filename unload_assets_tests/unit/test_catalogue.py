from datetime import date
from pathlib import Path

import pydantic
import pytest
import yaml

from unload_assets.catalogue import PACKAGED_CATALOGUE, CatalogueError, UnloadTarget, load_catalogue
from unload_assets.catalogue.model import DailyPartitioning, NoPartitioning
from unload_assets_tests.support.catalogue_samples import DAILY, ROLE, SNAPSHOT

CATALOGUES = Path(__file__).with_name("catalogues")


def write(tmp_path: Path, targets: list[dict], defaults: dict | None = None) -> Path:
    path = tmp_path / "unload_targets.yaml"
    document: dict = ({"defaults": defaults} if defaults is not None else {}) | {"targets": targets}
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    return path


def problems(path: Path) -> list[str]:
    with pytest.raises(CatalogueError) as caught:
        load_catalogue(path)
    message = str(caught.value)
    # The report is ours, never pydantic's raw rendering.
    assert (
        "validation error" not in message and "errors.pydantic.dev" not in message and "type=" not in message
    )
    *lines, footer = message.splitlines()
    # Each problem on a line of its own, the first one first; then how many, and where.
    assert footer == f"({len(lines)} problem(s) in unload catalogue {path.resolve()})", footer
    assert all(line.startswith(f"{path.name}: ") for line in lines)
    return lines


def test_packaged_catalogue():
    catalogue = load_catalogue()
    assert catalogue.source == PACKAGED_CATALOGUE.resolve()
    assert (catalogue.bucket, catalogue.iam_role) == (None, None)
    sales, customers = catalogue.targets
    assert sales.name == "sales_data" and customers.name == "customers_snapshot"
    assert sales.partitioning == DailyPartitioning(type="daily", start_date=date(2026, 1, 1))
    assert sales.key_template == "exports/sales/{date}/sales_{date}.csv.gz"
    assert customers.partitioning == NoPartitioning()
    for target in catalogue.targets:  # from `defaults`
        assert (target.format, target.compression, target.header) == ("csv", "gzip", True)
        assert target.owners == ["team:data-engineering"]
    assert catalogue.target("customers_snapshot") is customers
    with pytest.raises(KeyError, match="no target 'nope'"):
        catalogue.target("nope")


def test_missing_file_names_the_path(tmp_path):
    missing = tmp_path / "nope.yaml"
    with pytest.raises(CatalogueError, match=f"^unload catalogue {missing} not found$"):
        load_catalogue(missing)


def test_defaults_apply_and_targets_override_them(tmp_path):
    defaults = {"format": "json", "owners": ["a@example.com"], "tags": {"team": "fin", "tier": "1"},
                "bucket": "exports-bucket", "iam_role": ROLE}  # fmt: skip
    own = SNAPSHOT | {"name": "own", "key_template": "exports/own.txt", "format": "text",
                      "owners": ["team:crm"], "tags": {"tier": "2"}}  # fmt: skip
    catalogue = load_catalogue(write(tmp_path, [SNAPSHOT, own], defaults))
    snap, own_target = catalogue.targets
    assert (snap.format, snap.owners, snap.tags) == ("json", ["a@example.com"], {"team": "fin", "tier": "1"})
    assert (own_target.format, own_target.owners) == ("text", ["team:crm"])
    assert own_target.tags == {"team": "fin", "tier": "2"}  # tags merge, other fields replace
    assert (catalogue.bucket, catalogue.iam_role) == ("exports-bucket", ROLE)


def test_x_keys_hold_anchors_for_merge_keys(tmp_path):
    path = tmp_path / "anchors.yaml"
    path.write_text(
        "x-daily: &daily\n"
        "  description: shared\n"
        "  key_template: exports/{target}/{date}.csv\n"
        "  partitioning: {type: daily, start_date: 2026-01-01}\n"
        "targets:\n"
        "  - <<: *daily\n"
        "    name: a\n"
        "    sql: select * from t where d = {{ partition_date }}\n"
        "  - <<: *daily\n"
        "    name: b\n"
        "    description: its own\n"
        "    sql: select * from u where d = {{ partition_date }}\n"
    )
    a, b = load_catalogue(path).targets
    assert (a.description, b.description) == ("shared", "its own")
    assert a.partitioning == b.partitioning == DailyPartitioning(type="daily", start_date=date(2026, 1, 1))


def test_field_defaults():
    target = UnloadTarget.model_validate(SNAPSHOT)
    assert (target.format, target.compression, target.header, target.parallel) == (
        "csv",
        "none",
        False,
        False,
    )
    assert (target.delimiter, target.null_as, target.max_file_size_mb) == (None, None, None)
    assert (target.on_split, target.partitioning, target.owners, target.tags) == (
        "combine",
        NoPartitioning(),
        [],
        {},
    )


def test_targets_are_immutable():
    target = UnloadTarget.model_validate(SNAPSHOT)
    with pytest.raises(pydantic.ValidationError):
        target.sql = "select 2"  # type: ignore[misc]


@pytest.mark.parametrize(
    ("base", "change", "field", "message"),
    [
        (SNAPSHOT, {"colour": "red"}, "colour", "unknown field"),
        (SNAPSHOT, {"key_templat": "x"}, "key_templat", "did you mean 'key_template'?"),
        (SNAPSHOT, {"name": "Sales-Data"}, "name", "must be a-z first"),
        (SNAPSHOT, {"description": "  "}, "description", "must not be empty"),
        (SNAPSHOT, {"sql": ""}, "sql", "must not be empty"),
        (SNAPSHOT, {"format": "xml"}, "format", "(got 'xml')"),
        (SNAPSHOT, {"delimiter": "||"}, "delimiter", "at most 1 character"),
        (SNAPSHOT, {"max_file_size_mb": 4}, "max_file_size_mb", "greater than or equal to 5"),
        (SNAPSHOT, {"max_file_size_mb": 7000}, "max_file_size_mb", "less than or equal to 6348.8"),
        (SNAPSHOT, {"on_split": "merge"}, "on_split", "'combine', 'parts' or 'fail'"),
        (SNAPSHOT, {"owners": ["bob"]}, "owners[0]", "must be an email address or 'team:<name>'"),
        (SNAPSHOT, {"owners": ["team:"]}, "owners[0]", "must be an email address"),
        (SNAPSHOT, {"tags": {"dagster/kind": "x"}}, "tags", "tag key 'dagster/kind'"),
        (SNAPSHOT, {"tags": {"ok": "has space"}}, "tags", "value 'has space'"),
        (SNAPSHOT, {"partitioning": {"type": "weekly"}}, "partitioning", "'daily', 'none'"),
        (DAILY, {"partitioning": {"type": "daily"}}, "partitioning.start_date", "is required"),
        (DAILY, {"partitioning": {"type": "daily", "start_date": "2026-13-01"}}, "partitioning.start_date",
         "month value is outside expected range"),
        (DAILY, {"key_template": "x/{day}.csv"}, "key_template",
         "unknown variable {day}; allowed: {target}, {date}, {yyyy}, {mm}, {dd}"),
        (DAILY, {"key_template": "x/{date:%Y}.csv"}, "key_template", "format specs"),
        (SNAPSHOT, {"key_template": ""}, "key_template", "key is empty"),
        (SNAPSHOT, {"key_template": "/x.csv"}, "key_template", "starts with '/'"),
        (SNAPSHOT, {"key_template": "x/"}, "key_template", "ends with '/'"),
        (SNAPSHOT, {"key_template": "a/../x.csv"}, "key_template", "'..' path segment"),
        (SNAPSHOT, {"key_template": "a b.csv"}, "key_template", "contains ' '"),
        (SNAPSHOT, {"key_template": "o'b.csv"}, "key_template", "contains \"'\""),
        (SNAPSHOT, {"key_template": "a\\b.csv"}, "key_template", "contains '\\\\'"),
        (SNAPSHOT, {"key_template": "a\x07b.csv"}, "key_template", "contains '\\x07'"),
        (SNAPSHOT, {"format": "parquet", "header": True}, "header",
         "FORMAT PARQUET can't be combined with HEADER"),
        (SNAPSHOT, {"format": "parquet", "delimiter": ","}, "delimiter", "FORMAT PARQUET"),
        (SNAPSHOT, {"format": "parquet", "null_as": ""}, "null_as", "FORMAT PARQUET"),
        (SNAPSHOT, {"format": "parquet", "compression": "zstd", "key_template": "x.zst"}, "compression",
         "compressed internally"),
        (SNAPSHOT, {"format": "json", "header": True}, "header", "FORMAT JSON can't be combined with HEADER"),
        (SNAPSHOT, {"format": "json", "delimiter": "|"}, "delimiter", "FORMAT JSON"),
        (SNAPSHOT, {"format": "json", "null_as": "x"}, "null_as", "FORMAT JSON"),
        (SNAPSHOT, {"sql": "select * from t limit 10"}, "sql", "outer LIMIT"),
        (SNAPSHOT, {"sql": "select 1;"}, "sql", "contains ';'"),
        (SNAPSHOT, {"sql": "select 'x"}, "sql", "unterminated quoted string"),
        (SNAPSHOT, {"sql": "select {{ partition_date }}"}, "sql", "needs partitioning"),
        (SNAPSHOT, {"sql": "select {{ today }}"}, "sql", "unknown placeholder {{ today }}"),
        (SNAPSHOT, {"key_template": "x/{date}.csv"}, "key_template", "{date} needs daily partitioning"),
        (DAILY, {"sql": "select * from public.sales"}, "sql", "a daily target must select its day"),
        (DAILY, {"sql": "select '{{ partition_date }}'"}, "sql", "inside a literal or comment"),
        (DAILY, {"key_template": "exports/{target}.csv"}, "key_template", "every day overwrites"),
        (DAILY, {"key_template": "exports/{yyyy}/{mm}.csv"}, "key_template", "every day overwrites"),
        (SNAPSHOT, {"compression": "gzip"}, "key_template", "compression gzip needs a key ending in .gz"),
        (SNAPSHOT, {"key_template": "x.csv.gz"}, "key_template", "compression is none"),
    ],
)  # fmt: skip
def test_each_problem_names_file_target_and_field(tmp_path, base, change, field, message):
    target = base | change
    lines = problems(write(tmp_path, [target]))
    prefix = f"unload_targets.yaml: target {target['name']!r}, field {field!r}: "
    assert any(line.startswith(prefix) and message in line for line in lines), lines


def test_sql_over_16_mb_is_refused(tmp_path):
    # Quoting doubles every backslash: 8.5 MB of them make a 17 MB statement.
    path = tmp_path / "huge.yaml"
    sql = "select '" + "\\" * 8_500_000 + "' as x"
    path.write_text(f"targets:\n- name: huge\n  description: d\n  key_template: x.csv\n  sql: |\n    {sql}\n")
    assert problems(path) == [
        "huge.yaml: target 'huge', field 'sql': is too long: the UNLOAD statement would exceed Redshift's"
        " 16 MB limit (line 5)"
    ]


def test_every_problem_is_listed_with_its_line(tmp_path):
    lines = problems(CATALOGUES / "many_problems.yaml")
    assert lines == [
        "many_problems.yaml: defaults, field 'sql': differs per target; set it there (line 6)",
        "many_problems.yaml: defaults, field 'bucket': invalid S3 bucket name 'My_Bucket': 3-63 characters of"
        " a-z, 0-9, '.', '-', starting and ending with a letter or digit (no 's3://', no '/') (line 3)",
        "many_problems.yaml: defaults, field 'iam_role': invalid IAM role 'arn:aws:iam::123:role/x':"
        " expected 'default' or arn:aws:iam::<12-digit account>:role/<name> (chain roles with commas,"
        " no spaces) (line 4)",
        "many_problems.yaml: defaults, field 'format': Input should be 'text', 'csv', 'json' or 'parquet'"
        " (got 'xml') (line 5)",
        "many_problems.yaml: target 'sales_data', field 'key_template': unknown variable {day}; allowed:"
        " {target}, {date}, {yyyy}, {mm}, {dd} (line 11)",
        "many_problems.yaml: target 'sales_data', field 'colour': unknown field; allowed: name, description,"
        " sql, key_template, format, compression, header, delimiter, null_as, addquotes, parallel,"
        " max_file_size_mb, on_split, on_schema_change, partitioning, owners, tags, deliver_by,"
        " kms_key_id, bucket_key (line 13)",
        "many_problems.yaml: target 'sales_data', field 'name': duplicate (first on line 8) (line 15)",
        "many_problems.yaml: target 'sales_data', field 'sql': unknown placeholder {{ foo }}; allowed:"
        " {{ partition_date }}, {{ partition_start }}, {{ partition_end }} (line 17)",
        "many_problems.yaml: target 'sales_data', field 'sql': contains ';': UNLOAD takes one SELECT, without"
        " a trailing semicolon (line 17)",
        "many_problems.yaml: target 'sales_data', field 'partitioning.start_date': Input should be a valid"
        " date or datetime, month value is outside expected range of 1-12 (got '2026-13-01') (line 18)",
        "many_problems.yaml: target 'q', field 'sql': given twice (first on line 22) (line 23)",
        "many_problems.yaml: target 'q', field 'header': FORMAT PARQUET can't be combined with HEADER"
        " (line 25)",
        "many_problems.yaml: target #4, field 'name': is required (line 27)",
        "many_problems.yaml: target #5: expected a mapping of fields",
    ]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("targets:\n  - name: a\n    sql: [unclosed\n",
         "cat.yaml: invalid YAML: did not find expected ',' or ']' (while parsing a flow sequence that"
         " starts on line 3) (line 4)"),
        ("targets:\n  - name: a\n   bad_indent: 1\n", "cat.yaml: invalid YAML: did not find expected '-'"),
        ("", "top level: expected a mapping with 'targets'"),
        ("- 1\n- 2\n", "top level: expected a mapping with 'targets'"),
        ("targets: []\n", "targets: expected a non-empty list of targets"),
        ("defaults: {}\n", "targets: expected a non-empty list of targets"),
        ("target: []\n", "top level: unknown key 'target'; allowed: defaults, targets, x-<anchors> (line 1)"),
        ("defaults: [1]\ntargets: []\n", "defaults: expected a mapping of target fields (line 1)"),
        ("defaults: {name: x, key_template: y}\ntargets: []\n", "defaults, field 'name': differs per target"),
        ("targets:\n- {name: a, name: b}\n",
         "target 'b', field 'name': given twice (first on line 2) (line 2)"),
    ],
)  # fmt: skip
def test_file_level_problems(tmp_path, text, expected):
    path = tmp_path / "cat.yaml"
    path.write_text(text)
    lines = problems(path)
    assert any(expected in line for line in lines), lines


@pytest.mark.parametrize(
    "role",
    [
        "default",
        ROLE,
        f"{ROLE},arn:aws:iam::210987654321:role/path/to/Chained",
        "arn:aws-cn:iam::123456789012:role/R",
        "arn:aws-us-gov:iam::123456789012:role/R",
    ],
)
def test_iam_role_overrides_accepted(tmp_path, role):
    assert load_catalogue(write(tmp_path, [SNAPSHOT], {"iam_role": role})).iam_role == role


@pytest.mark.parametrize(
    ("role", "message"),
    [
        ("arn:aws:iam::12345:role/R", "invalid IAM role"),
        ("arn:aws:iam::123456789012:user/R", "invalid IAM role"),
        (f"{ROLE}, {ROLE}", "invalid IAM role"),
        (f"{ROLE}' --", "must not contain quotes"),
        ('"default"', "must not contain quotes"),
    ],
)
def test_iam_role_overrides_refused(tmp_path, role, message):
    lines = problems(write(tmp_path, [SNAPSHOT], {"iam_role": role}))
    assert any(
        line.startswith("unload_targets.yaml: defaults, field 'iam_role': ") and message in line
        for line in lines
    )


def test_a_bad_default_is_reported_once_not_per_target(tmp_path):
    targets = [SNAPSHOT | {"name": f"t{i}", "key_template": f"exports/t{i}.csv"} for i in range(5)]
    assert problems(write(tmp_path, targets, {"compression": "rar"})) == [
        "unload_targets.yaml: defaults, field 'compression': Input should be 'none', 'gzip', 'bzip2' or"
        " 'zstd' (got 'rar') (line 2)"
    ]


def test_cross_field_problem_from_a_default_is_reported_on_the_target(tmp_path):
    lines = problems(write(tmp_path, [SNAPSHOT | {"format": "json"}], {"header": True}))
    assert lines == [  # the target's own line, and where the field it inherits is written
        "unload_targets.yaml: target 'snap', field 'header' (inherited from defaults, line 2): FORMAT JSON"
        " can't be combined with HEADER (line 4)"
    ]


def test_thousand_targets_load(tmp_path):
    targets = [
        DAILY | {
            "name": f"t_{i}",
            "sql": "with r as (select * from public.sales where sale_date = {{ partition_date }})\n"
                   "select r.*, 'O''Brien' as n from r join public.customers c using (customer_id)\n"
                   "where r.note like '%x%' and r.amount::int > 0 -- comment\norder by 1",
        }
        for i in range(1000)
    ]  # fmt: skip
    path = write(tmp_path, targets, {"format": "csv", "owners": ["team:data-engineering"]})
    # How fast is measured by benchmarks/bench_load.py; here: all of them load, in order.
    catalogue = load_catalogue(path)
    assert [t.name for t in catalogue.targets] == [f"t_{i}" for i in range(1000)]
