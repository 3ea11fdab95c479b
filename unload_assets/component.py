"""`UnloadTargets`: the exports as a Dagster Component, for this project's `defs.yaml` and any other's.

In a project made by `create-dagster project`, `dg scaffold defs unload_assets.UnloadTargets exports`
writes `src/<project>/defs/exports/defs.yaml` and an example catalogue beside it:

    type: unload_assets.UnloadTargets
    attributes:
      name: exports                     # scopes everything this instance creates
      catalogue: exports.yaml           # a file beside this defs.yaml (or `defaults:` + `targets:` inline)
      redshift:
        host: "{{ env.REDSHIFT_HOST }}"
        database: dev
        user: unload
        password: "{{ env.REDSHIFT_PASSWORD }}"
      s3: {bucket: my-exports, iam_role: "arn:aws:iam::123456789012:role/RedshiftUnload"}
      slack: {channel: "#data-deliveries", token: "{{ env.SLACK_BOT_TOKEN }}"}
      schedule: {at: "09:00", timezone: America/Los_Angeles}

Every attribute may be `{{ env.VAR }}`. Secrets (passwords, keys, tokens) must be: they are kept as the
variable's name and read when a run or a sensor needs them, never when the definitions load, so
`dg check defs` needs no credentials. The connection's host, database and user and the bucket, written as
`{{ env.VAR }}`, are read at run time too; every other attribute is read when the definitions load.

The instance builds the assets `<asset_key_prefix>/<target>` (default `s3/<target>`) and their checks, the
Redshift tables upstream, the morning jobs and schedules, the Slack sensors and the resources they use,
each named after the instance (names.py). The SQL keeps its `{{ partition_date }}`
placeholders: an inline catalogue is passed through untouched, not rendered as a component template.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Annotated, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import dagster as dg
import yaml
from pydantic import BaseModel, ConfigDict, Field

from unload_assets import environment
from unload_assets.assembly import build_instance, read_instance_catalogue
from unload_assets.catalogue import PACKAGED_CATALOGUE, CatalogueError
from unload_assets.catalogue.model import check_account_id, problem_report
from unload_assets.configuration import (
    DEFAULT_BACKFILL_DAYS_PER_RUN,
    DEFAULT_BATCH_SIZE,
    DEFAULT_SENSOR_INTERVAL_SECONDS,
    DEFAULT_STAGING_PREFIX,
    DEFAULT_TIMEZONE,
    DEFAULT_WEBSERVER_URL,
    SSL_MODES,
    CatalogueChoice,
    Configuration,
    RunTime,
    env_reference,
)
from unload_assets.deadline import RUN_AT, parse_time_of_day
from unload_assets.encryption import check_kms_key_id
from unload_assets.names import DEFAULT_KEY_PREFIX, DEFAULT_POOL, DEFAULT_UPSTREAM_PREFIX, Names
from unload_assets.resources import RedshiftUnloadResource, UnloadSettings
from unload_assets.resources.redshift_auth import AUTH_MODES
from unload_assets.resources.s3 import UnloadS3Resource
from unload_assets.resources.slack import UnloadSlackResource
from unload_assets.scaffold import UnloadTargetsScaffolder

# --- resolvers: what a YAML value becomes -------------------------------------------------------------


def _kept(context: dg.ResolutionContext, value: Any) -> Any:
    """`{{ env.VAR }}` kept as the variable (read at run time); anything else rendered now."""
    if isinstance(value, str) and (ref := env_reference(value)) is not None:
        return RunTime(variable=ref[0], default=ref[1])
    return context.resolve_value(value)


def _secret(context: dg.ResolutionContext, value: Any) -> Any:
    if value is None:
        return None
    ref = env_reference(value) if isinstance(value, str) else None
    if ref is None:
        raise ValueError(
            f"{'.'.join(map(str, context.path))}: write the secret as {{{{ env.NAME }}}}; a value written in "
            "defs.yaml would be stored in the definitions and shown in the UI"
        )
    return RunTime(variable=ref[0], default=ref[1])


def _timezone(context: dg.ResolutionContext, value: Any) -> Any:
    try:
        ZoneInfo(str(value))
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(
            f"unknown time zone {value!r}; use an IANA name such as America/Los_Angeles"
        ) from None
    return value


def _time_of_day(context: dg.ResolutionContext, value: Any) -> Any:
    if isinstance(value, int) and not isinstance(value, bool):  # YAML 1.1 reads 10:30 unquoted as 630
        hours, minutes = divmod(value, 60)
        raise ValueError(f'write the time in quotes, "{hours:02d}:{minutes:02d}": YAML reads it as {value}')
    if parse_time_of_day(str(value)) is None:
        raise ValueError(f'{value!r} is not a time HH:MM (24-hour, e.g. "09:00")')
    return value


def _one_of(*allowed: str) -> Any:
    def check(context: dg.ResolutionContext, value: Any) -> Any:
        if value not in allowed:
            raise ValueError(f"{value!r} is not one of {', '.join(allowed)}")
        return value

    return check


def _whole(low: int, high: int | None = None) -> Any:
    def check(context: dg.ResolutionContext, value: Any) -> Any:
        text = str(value).strip()
        if not text.isdigit() or int(text) < low or (high is not None and int(text) > high):
            bounds = f"from {low} to {high}" if high is not None else f"of at least {low}"
            raise ValueError(f"{value!r} is not a whole number {bounds}")
        return int(text)

    return check


def _flag(context: dg.ResolutionContext, value: Any) -> Any:
    text = str(value).strip().lower()
    if isinstance(value, bool) or text in ("true", "false", "1", "0", "yes", "no", ""):
        return value if isinstance(value, bool) else text in ("true", "1", "yes")
    raise ValueError(f"{value!r} is not true or false")


def _kms_key(context: dg.ResolutionContext, value: Any) -> Any:
    return check_kms_key_id(str(value).strip())


def _account_id(context: dg.ResolutionContext, value: Any) -> Any:
    return check_account_id(str(value).strip())


def _passthrough(context: dg.ResolutionContext, value: Any) -> Any:
    return value


def _field(check: Any, model_type: Any, description: str) -> dg.Resolver:
    """A value read as the definitions load: rendered (`{{ env.VAR }}`), then checked by `check`, which
    raises ValueError to have Dagster name the defs.yaml, the attribute and its line. Unset or empty: None
    (the attribute's default)."""

    def resolve(context: dg.ResolutionContext, value: Any) -> Any:
        rendered = context.resolve_value(value) if isinstance(value, str) else value
        if rendered is None or (isinstance(rendered, str) and not rendered.strip()):
            return None
        return check(context, rendered)

    return dg.Resolver(
        resolve, model_field_type=model_type, description=description, inject_before_resolve=False
    )


# `{{ env.VAR }}` kept for run time: a string (or a port) as written in YAML.
KEPT = dg.Resolver(_kept, model_field_type=str | None, inject_before_resolve=False)
KEPT_PORT = dg.Resolver(_kept, model_field_type=int | str | None, inject_before_resolve=False)
SECRET = dg.Resolver(_secret, model_field_type=str | None, inject_before_resolve=False)


def _sections_as_objects(extra: dict[str, Any], schema: dict[str, Any]) -> None:
    """Dagster lets every attribute be a template string; a section (`redshift:`, ...) written as one would
    be refused anyway. Without that alternative, a wrong key inside a section is reported as itself
    ("'databse' was unexpected"), not as "not valid under any of the given schemas" for the section."""
    schema.update(extra)
    for definition in [schema, *schema.get("$defs", {}).values()]:
        for prop in definition.get("properties", {}).values():
            choices = prop.get("anyOf")
            if choices and any("$ref" in choice for choice in choices):
                kept = [choice for choice in choices if choice.get("type") != "string"]
                if len(kept) == 1:  # an anyOf of one still says only "not valid under any"
                    del prop["anyOf"]
                    prop.update(kept[0])
                else:
                    prop["anyOf"] = kept


# --- the attributes ------------------------------------------------------------------------------------


class RedshiftAttributes(dg.Model, dg.Resolvable):
    """How this instance reaches Redshift (a provisioned cluster, or a Serverless workgroup)."""

    host: Annotated[Any, KEPT] = Field(
        default=None,
        description="The cluster's or workgroup's endpoint (read at run time when written {{ env.VAR }}).",
    )
    port: Annotated[Any, KEPT_PORT] = Field(default=None, description="Port (5439).")
    database: Annotated[Any, KEPT] = Field(default=None, description="Database the queries run in.")
    user: Annotated[Any, KEPT] = Field(
        default=None, description="Database user (auth password); the default database user for auth iam."
    )
    password: Annotated[Any, SECRET] = Field(
        default=None, description="Password for auth password: write {{ env.VAR }}."
    )
    auth: Annotated[
        str | None,
        _field(
            _one_of(*AUTH_MODES),
            str | None,
            "password (user and password), iam (temporary credentials from redshift:GetClusterCredentials), "
            "serverless (redshift-serverless:GetCredentials) or data_api (no connection: statements through "
            "the Redshift Data API, to cluster_identifier with db_user or secret_arn, or to workgroup). "
            "Default: password.",
        ),
    ] = None
    cluster_identifier: str | None = Field(
        default=None,
        description="auth iam, data_api: the cluster's identifier (for data_api it wins over workgroup).",
    )
    workgroup: str | None = Field(
        default=None, description="auth serverless, data_api: the Serverless workgroup's name."
    )
    db_user: str | None = Field(
        default=None, description="auth iam, data_api: the database user (default: user)."
    )
    secret_arn: Annotated[Any, KEPT] = Field(
        default=None,
        description="auth data_api: a Secrets Manager secret with the database user's name and password, "
        "instead of db_user (read at run time when written {{ env.VAR }}).",
    )
    region: str | None = Field(
        default=None, description="auth data_api: the Data API's region (boto3's default chain)."
    )
    endpoint_url: str | None = Field(
        default=None, description="auth data_api: a Data API endpoint (the local stack's stand-in only)."
    )
    db_groups: str | list[str] | None = Field(
        default=None, description="auth iam: database groups the user joins (a list, or comma-separated)."
    )
    auto_create: Annotated[bool | None, _field(_flag, bool | str | None, "auth iam: create the user.")] = None
    iam_identity: Annotated[
        bool | None,
        _field(_flag, bool | str | None, "auth iam: the database user is the caller's IAM identity."),
    ] = None
    credentials_duration_seconds: Annotated[
        int | None,
        _field(_whole(900, 3600), int | str | None, "auth iam/serverless: lifetime asked for (900-3600 s)."),
    ] = None
    sslmode: Annotated[
        str | None, _field(_one_of(*SSL_MODES), str | None, f"TLS: one of {', '.join(SSL_MODES)} (require).")
    ] = None
    sslrootcert: str | None = Field(
        default=None, description="The CA bundle that signs the server's certificate (verify-ca/verify-full)."
    )
    statement_timeout_seconds: Annotated[
        int | None,
        _field(_whole(1), int | str | None, "Cancel an UNLOAD that runs longer; it is then retried."),
    ] = None
    max_concurrent_unloads: Annotated[
        int | None,
        _field(_whole(1, 50), int | str | None, "UNLOADs one unload step runs at once (4)."),
    ] = None
    pool: str | None = Field(
        default=None,
        description=f"The Dagster concurrency pool of the unload steps ({DEFAULT_POOL!r}). Instances on one "
        "cluster share it (its limit is the cluster's cap); an instance on another cluster names its own.",
    )


class S3Attributes(dg.Model, dg.Resolvable):
    """Where the files land, and how Redshift is allowed to write there."""

    bucket: Annotated[Any, KEPT] = Field(
        default=None,
        description="The bucket of the staged and the final objects (a catalogue's defaults.bucket wins).",
    )
    staging_prefix: str | None = Field(
        default=None, description="Key prefix of UNLOAD's raw output and the rename's locks (_staging)."
    )
    region: str | None = Field(default=None, description="The bucket's region (boto3's default chain).")
    endpoint_url: str | None = Field(
        default=None, description="An S3-compatible endpoint (local stack only)."
    )
    iam_role: Annotated[Any, KEPT] = Field(
        default=None,
        description="IAM_ROLE for UNLOAD: an ARN, a comma-separated chain, or 'default' (a catalogue's "
        "defaults.iam_role "
        "wins). Or the access keys below instead.",
    )
    access_key_id: Annotated[Any, SECRET] = Field(
        default=None, description="Key-based UNLOAD authorization: write {{ env.VAR }}."
    )
    secret_access_key: Annotated[Any, SECRET] = Field(
        default=None, description="Key-based UNLOAD authorization: write {{ env.VAR }}."
    )
    session_token: Annotated[Any, SECRET] = Field(
        default=None, description="Key-based UNLOAD authorization, temporary keys: write {{ env.VAR }}."
    )
    kms_key_id: Annotated[
        str | None,
        _field(
            _kms_key,
            str | None,
            "SSE-KMS for every target that names no key of its own (a catalogue's defaults.kms_key_id and "
            "a target's kms_key_id win): the key's ARN or id. UNLOAD writes with it (ENCRYPTED "
            "KMS_KEY_ID), so does the rename, and the checks verify it on every final object.",
        ),
    ] = None
    bucket_key: Annotated[
        bool | None,
        _field(_flag, bool | str | None, "With kms_key_id: the rename's writes use an S3 bucket key."),
    ] = None
    expected_bucket_owner: Annotated[
        str | None,
        _field(
            _account_id,
            str | None,
            "The 12-digit account id that must own the bucket (a catalogue's "
            "defaults.expected_bucket_owner wins): every S3 request carries it as ExpectedBucketOwner, "
            "and each unload step checks it before any UNLOAD.",
        ),
    ] = None


class SlackAttributes(dg.Model, dg.Resolvable):
    """Where deliveries, failures, late targets and catalogue problems are announced."""

    channel: str | None = Field(default=None, description="The channel (#name or ID).")
    token: Annotated[Any, SECRET] = Field(
        default=None,
        description="The bot token (chat:write, channels:history, channels:read): write {{ env.VAR }}.",
    )
    api_url: str | None = Field(default=None, description="A Slack Web API stand-in's base URL (local only).")
    webserver_url: str | None = Field(
        default=None, description="Where links to runs point: the Dagster UI (http://localhost:3000)."
    )
    sensor_interval_seconds: Annotated[
        int | None,
        _field(_whole(5, 3600), int | str | None, "How often the Slack sensors look (30 s)."),
    ] = None


class ScheduleAttributes(dg.Model, dg.Resolvable):
    """When the morning run starts, in which time zone."""

    at: Annotated[str | None, _field(_time_of_day, str | None, 'The local time of the run ("09:00").')] = None
    timezone: Annotated[
        str | None,
        _field(
            _timezone, str | None, "An IANA time zone (America/Los_Angeles): where 09:00 is, and yesterday."
        ),
    ] = None


class _TargetFields(BaseModel):
    """The catalogue's target fields, for `dg`'s schema and documentation. Their values are not checked here
    but by the catalogue's own rules, which locate each problem and cost only the target it is in."""

    model_config = ConfigDict(extra="allow")
    name: Any = Field(
        default=None, description="The target's name (a-z, 0-9, _): its asset is <prefix>/<name>."
    )
    description: Any = Field(default=None, description="What the export is, for people (required).")
    sql: Any = Field(default=None, description="The SELECT; daily targets use {{ partition_date }}.")
    key_template: Any = Field(default=None, description="The final key: {target} {date} {yyyy} {mm} {dd}.")


def _inline(context: dg.ResolutionContext, value: Any) -> Any:
    """The inline catalogue as written (Dagster's model hands the targets over as models)."""
    if isinstance(value, list):
        return [
            item.model_dump(exclude_unset=True) if isinstance(item, BaseModel) else item for item in value
        ]
    return value


_IDENTIFIER = r"^[a-z][a-z0-9_]{0,39}$"


@dg.scaffold_with(UnloadTargetsScaffolder)
class UnloadTargets(dg.Component, dg.Model, dg.Resolvable):
    """Redshift query results UNLOADed to S3 under clean names, every morning, confirmed in Slack."""

    name: str = Field(
        pattern=_IDENTIFIER,
        description="The instance's name (a-z, 0-9, _; at most 40): its jobs, schedules, sensors, resource "
        "keys and ops are named after it, so instances never collide.",
    )
    catalogue: Annotated[
        Any, dg.Resolver(_passthrough, model_field_type=str | None, inject_before_resolve=False)
    ] = Field(
        default=None,
        description="A catalogue file, relative to this defs.yaml (or absolute); or give `targets` inline. "
        "`{{ env('VAR', 'default.yaml') }}` names a variable that may choose another file.",
    )
    defaults: Annotated[
        Any, dg.Resolver(_passthrough, model_field_type=dict[str, Any] | None, inject_before_resolve=False)
    ] = Field(default=None, description="Inline catalogue: fields every target gets unless it sets its own.")
    targets: Annotated[
        Any,
        dg.Resolver(_inline, model_field_type=list[_TargetFields] | None, inject_before_resolve=False),
    ] = Field(default=None, description="Inline catalogue: the targets, exactly as in a catalogue file.")
    redshift: RedshiftAttributes = Field(default_factory=RedshiftAttributes)
    s3: S3Attributes = Field(default_factory=S3Attributes)
    slack: SlackAttributes | None = Field(default=None, description="Leave out for no Slack at all.")
    schedule: ScheduleAttributes = Field(default_factory=ScheduleAttributes)
    asset_key_prefix: list[str] | None = Field(default=None, description='The assets\' key prefix (["s3"]).')
    upstream_key_prefix: list[str] | None = Field(
        default=None,
        description='The key prefix of the Redshift tables the SQL reads (["redshift"]): a prefix per '
        "cluster keeps two clusters' tables apart.",
    )
    declare_upstream_tables: bool = Field(
        default=True,
        description="Declare the Redshift tables the SQL reads as external assets (with their full name). "
        "False when another instance or the host project declares the same ones: Dagster allows one "
        "definition per asset; the lineage is drawn either way.",
    )
    group_name: str | None = Field(default=None, description="The assets' group (the instance's name).")
    owners: list[str] | None = Field(default=None, description="Owners of every target that names none.")
    tags: dict[str, str] | None = Field(default=None, description="Tags every target gets (its own win).")
    strict: Annotated[
        bool | None,
        _field(
            _flag,
            bool | str | None,
            "Any catalogue problem fails the load (for CI), instead of costing only the targets it touches. "
            "UNLOAD_STRICT=1 in the environment does the same.",
        ),
    ] = None
    batch_size: Annotated[
        int | None,
        _field(
            _whole(0),
            int | str | None,
            f"Targets per pair of ops, one subsettable multi-asset each ({DEFAULT_BATCH_SIZE}; 0: every "
            "target of a partitioning in one pair). A run of one target pays only for its own batch.",
        ),
    ] = None
    backfill_days_per_run: Annotated[
        int | None,
        _field(
            _whole(1, 3660),
            int | str | None,
            "Days of a daily target one backfill run serves at most (30): a backfill of N days is "
            "ceil(N / this) runs, each day still its own partition (Dagster's BackfillPolicy.multi_run).",
        ),
    ] = None
    executor: bool = Field(
        default=False,
        description="Set the project's executor (warm forked steps, or Celery with "
        "UNLOAD_CELERY_BROKER_URL). Leave false in a project that has its own, or more than one instance.",
    )

    @classmethod
    def get_model_cls(cls) -> type[BaseModel]:
        """Dagster's model of these attributes, whose JSON schema (what `dg check yaml` validates and `dg`
        documents) names a misspelt field inside a section instead of refusing the whole section."""
        model = super().get_model_cls()
        assert model is not None
        extra = model.model_config.get("json_schema_extra")
        if not callable(extra):
            model.model_config["json_schema_extra"] = functools.partial(
                _sections_as_objects, dict(extra or {})
            )
            model.model_rebuild(force=True)
        return model

    def configuration(self, folder: Path) -> Configuration:
        """This instance's settings, resolved (secrets still by name), for the assembly."""
        return configuration_from(self, folder)

    def build_defs(self, context: dg.ComponentLoadContext) -> dg.Definitions:
        return build_instance(self.configuration(context.path))


# --- from attributes to the instance's configuration -----------------------------------------------


def configuration_from(component: UnloadTargets, folder: Path) -> Configuration:
    """The settings of `component`, whose defs.yaml is in `folder`."""
    names = Names(
        component.name,
        tuple(component.asset_key_prefix or DEFAULT_KEY_PREFIX),
        tuple(component.upstream_key_prefix or DEFAULT_UPSTREAM_PREFIX),
    )
    redshift, s3, slack, schedule = component.redshift, component.s3, component.slack, component.schedule
    secrets: list[str] = []

    def secret(value: Any) -> dg.EnvVar | None:
        if isinstance(value, RunTime):
            secrets.append(value.variable)
            found = value.optional()
            return found if isinstance(found, dg.EnvVar) else None
        return None

    run_at = parse_time_of_day(schedule.at) if schedule.at else RUN_AT
    assert run_at is not None  # checked by the attribute's resolver
    auth = redshift.auth or "password"
    _check_login(component, folder / "defs.yaml", auth)
    data_api = auth == "data_api"  # no connection: neither host nor port is needed
    resource = RedshiftUnloadResource(
        host=(_optional(redshift.host) or "") if data_api else _required(redshift.host, "redshift.host"),
        port=_port(redshift.port),
        user=_optional(redshift.user),
        password=secret(redshift.password),
        database=_required(redshift.database, "redshift.database"),
        sslmode=redshift.sslmode or "require",
        sslrootcert=_blank_to_none(redshift.sslrootcert),
        statement_timeout_seconds=redshift.statement_timeout_seconds,
        auth=auth,
        cluster_identifier=_blank_to_none(redshift.cluster_identifier),
        db_user=_blank_to_none(redshift.db_user),
        db_groups=_groups(redshift.db_groups),
        auto_create=bool(redshift.auto_create),
        iam_identity=bool(redshift.iam_identity),
        workgroup=_blank_to_none(redshift.workgroup),
        credentials_duration_seconds=redshift.credentials_duration_seconds or 900,
        secret_arn=_optional(redshift.secret_arn),
        region=_blank_to_none(redshift.region),
        endpoint_url=_blank_to_none(redshift.endpoint_url),
    )
    catalogue = _catalogue_choice(component, folder)
    staging = _blank_to_none(s3.staging_prefix) or DEFAULT_STAGING_PREFIX
    storage = UnloadSettings(
        bucket=_required(s3.bucket, "s3.bucket"),
        staging_prefix=staging,
        iam_role=_optional(s3.iam_role),
        access_key_id=secret(s3.access_key_id),
        secret_access_key=secret(s3.secret_access_key),
        session_token=secret(s3.session_token),
        max_concurrent_unloads=redshift.max_concurrent_unloads or 4,
        expected_bucket_owner=s3.expected_bucket_owner,
    )
    slack_resource = None
    if slack is not None:
        token = secret(slack.token)
        slack_resource = UnloadSlackResource(
            token=token or "",
            token_variable=slack.token.variable if isinstance(slack.token, RunTime) else "",
            channel=_blank_to_none(slack.channel) or "",
            base_url=_blank_to_none(slack.api_url) or "",
        )
    owners, tags = component.owners, component.tags
    encryption: dict[str, Any] = {"kms_key_id": s3.kms_key_id} if _blank_to_none(s3.kms_key_id) else {}
    if encryption and s3.bucket_key:
        encryption["bucket_key"] = True
    return Configuration(
        names=names,
        catalogue=catalogue,
        group_name=component.group_name or component.name,
        run_at=run_at,
        timezone=schedule.timezone or DEFAULT_TIMEZONE,
        pool=_blank_to_none(redshift.pool) or DEFAULT_POOL,
        redshift=resource,
        storage=storage,
        s3=UnloadS3Resource(
            region_name=_blank_to_none(s3.region),
            endpoint_url=_blank_to_none(s3.endpoint_url),
            expected_bucket_owner=s3.expected_bucket_owner,
        ),
        slack=slack_resource,
        database=_known(redshift.database),
        target_defaults={
            **({"owners": owners} if owners else {}),
            **({"tags": tags} if tags else {}),
            **encryption,
        },
        webserver_url=(_blank_to_none(slack.webserver_url) if slack else None) or DEFAULT_WEBSERVER_URL,
        sensor_interval_seconds=(slack.sensor_interval_seconds if slack else None)
        or DEFAULT_SENSOR_INTERVAL_SECONDS,
        batch_size=DEFAULT_BATCH_SIZE if component.batch_size is None else component.batch_size,
        backfill_days_per_run=component.backfill_days_per_run or DEFAULT_BACKFILL_DAYS_PER_RUN,
        strict=bool(component.strict) or environment.strict(),
        executor=component.executor,
        declare_upstream_tables=component.declare_upstream_tables,
        secret_variables=tuple(secrets),
    )


def _check_login(component: UnloadTargets, defs_yaml: Path, auth: str) -> None:
    """What each login mode needs, among the attributes read as the definitions load."""
    redshift = component.redshift

    def refuse(problem: str) -> None:
        raise dg.DagsterInvalidDefinitionError(f"UnloadTargets {component.name!r} in {defs_yaml}: {problem}")

    if auth == "iam" and not _blank_to_none(redshift.cluster_identifier):
        refuse("redshift.auth iam needs redshift.cluster_identifier")
    if auth == "iam" and not (redshift.iam_identity or _blank_to_none(redshift.db_user) or redshift.user):
        refuse("redshift.auth iam needs redshift.db_user (or redshift.user, or redshift.iam_identity: true)")
    if auth == "serverless" and not _blank_to_none(redshift.workgroup):
        refuse("redshift.auth serverless needs redshift.workgroup")
    if auth == "data_api":
        cluster, workgroup = _blank_to_none(redshift.cluster_identifier), _blank_to_none(redshift.workgroup)
        if not (cluster or workgroup):
            refuse("redshift.auth data_api needs redshift.cluster_identifier or redshift.workgroup")
        who = _blank_to_none(redshift.secret_arn) or _blank_to_none(redshift.db_user) or redshift.user
        if cluster and not who:
            refuse("redshift.auth data_api with a cluster needs redshift.db_user (or redshift.user) or "
                   "redshift.secret_arn")  # fmt: skip
    cert = _blank_to_none(redshift.sslrootcert)
    if cert and not Path(cert).expanduser().is_file():
        refuse(f"redshift.sslrootcert names no readable file: {cert}")


def _catalogue_choice(component: UnloadTargets, folder: Path) -> CatalogueChoice:
    defs_yaml = folder / "defs.yaml"
    if component.targets is not None:
        if component.catalogue is not None:
            raise dg.DagsterInvalidDefinitionError(
                f"UnloadTargets {component.name!r} in {defs_yaml}: give `catalogue` (a file) or `targets` "
                "(inline), not both"
            )
        return CatalogueChoice(
            inline_defaults=component.defaults,
            inline_targets=component.targets,
            defs_yaml=defs_yaml,
            origin=f"inline in {defs_yaml}",
        )
    if component.defaults is not None:
        raise dg.DagsterInvalidDefinitionError(
            f"UnloadTargets {component.name!r} in {defs_yaml}: `defaults` go with inline `targets` "
            "(a catalogue file has its own)"
        )
    written = component.catalogue
    if written is None:
        return CatalogueChoice(path=PACKAGED_CATALOGUE, origin="the catalogue packaged with unload_assets")
    reference = env_reference(written) if isinstance(written, str) else None
    if reference is None:
        return CatalogueChoice(path=folder / str(written), origin=f"`catalogue` in {defs_yaml}")
    variable, default = reference
    value = environment.value_of(variable)
    if value:
        return CatalogueChoice(path=folder / value, origin=environment.origin_of(variable))
    if default:
        where = f"the default of `catalogue` in {defs_yaml} ({variable} is not set)"
        return CatalogueChoice(path=folder / default, origin=where)
    return CatalogueChoice(
        path=PACKAGED_CATALOGUE,
        origin=f"the packaged catalogue ({variable}, named in {defs_yaml}, is not set)",
    )


def _blank_to_none(value: Any) -> Any:
    return None if value is None or (isinstance(value, str) and not value.strip()) else value


def _required(value: Any, attribute: str) -> Any:
    if isinstance(value, RunTime):
        return value.required()
    if _blank_to_none(value) is None:
        raise dg.DagsterInvalidDefinitionError(f"UnloadTargets: `{attribute}` is required")
    return value


def _optional(value: Any) -> Any:
    return value.optional() if isinstance(value, RunTime) else _blank_to_none(value)


def _known(value: Any) -> str | None:
    """The value as the definitions load (an environment variable's current value), for display only."""
    if isinstance(value, RunTime):
        return environment.value_of(value.variable) or value.default
    return _blank_to_none(value)


def _port(value: Any) -> Any:
    if isinstance(value, RunTime):
        found = value.optional()
        return dg.EnvVar.int(value.variable) if isinstance(found, dg.EnvVar) else int(found or 5439)
    return int(value) if _blank_to_none(value) is not None else 5439


def _groups(value: Any) -> list[str]:
    if value is None:
        return []
    items = value if isinstance(value, list) else str(value).split(",")
    return [str(item).strip() for item in items if str(item).strip()]


THIS_PROJECT_DEFS_YAML = Path(__file__).parent / "defs" / "unload_targets" / "defs.yaml"


def this_project(catalogue_path: str | Path | None = None) -> Configuration:
    """This repository's instance, configured from the environment exactly as its defs.yaml says; with
    `catalogue_path`, on that catalogue instead. (For tests and benchmarks, which build it in-process.)"""
    attributes = yaml.safe_load(THIS_PROJECT_DEFS_YAML.read_text(encoding="utf-8"))["attributes"]
    component = UnloadTargets.from_attributes_dict(attributes=attributes)
    if catalogue_path is not None:
        component = component.model_copy(update={"catalogue": str(Path(catalogue_path).resolve())})
    return component.configuration(THIS_PROJECT_DEFS_YAML.parent)


def build_definitions(catalogue_path: str | Path | None = None) -> dg.Definitions:
    """This repository's definitions (its defs.yaml, from the environment); with `catalogue_path`, on
    that catalogue. Strict: a catalogue problem raises, as tests and benchmarks want."""
    config = this_project(catalogue_path)
    catalogue = read_instance_catalogue(config)
    if catalogue.problems:
        raise CatalogueError(problem_report(catalogue.problems, catalogue.source))
    return build_instance(config, catalogue)
