"""The local stack as one object: PostgreSQL, the Redshift emulator, the S3 server and the Slack stand-in.

`unload-assets-local up` and the test fixtures both start the stack through `LocalStack`, so what the
tests exercise is what a person runs.
"""

from __future__ import annotations

import json
from contextlib import ExitStack, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from unload_assets_local.postgres import PostgresCluster

if TYPE_CHECKING:
    from unload_assets_local.data_api import RedshiftDataStandIn

LOCAL_IAM_ROLE = "arn:aws:iam::123456789012:role/unload-local"
LOCAL_SLACK_TOKEN = "xoxb-local-stand-in-token"
LOCAL_SLACK_CHANNEL = "#data-deliveries"
# The provisioned cluster (in moto) and the Serverless workgroup (in the AWS stand-in) that IAM logins
# name: `REDSHIFT_AUTH=iam` or `serverless` in `.env` mints temporary credentials the emulator accepts.
LOCAL_CLUSTER = "unload-local"
LOCAL_WORKGROUP = "unload-local"
# A secret the Data API stand-in knows (`REDSHIFT_SECRET_ARN` with `REDSHIFT_AUTH=data_api`): the stack's
# own database user and password, as a Secrets Manager secret for Redshift holds them.
LOCAL_SECRET_ARN = "arn:aws:secretsmanager:us-east-1:123456789012:secret:unload-local-redshift-AbCdEf"


@dataclass
class StackConfig:
    workdir: Path = field(default_factory=lambda: Path.cwd() / ".local-stack")
    pg_port: int = 0
    redshift_port: int = 5439
    s3_port: int = 0
    slack_port: int = 0
    bucket: str = "unload-local"
    staging_prefix: str = "_staging"
    rows: int = 100_000
    days: int = 30  # of demo sales, ending yesterday
    slices: int = 4
    seed: bool = True
    timezone: str = "America/Los_Angeles"
    webserver_url: str = "http://127.0.0.1:3000"


class LocalStack:
    def __init__(self, config: StackConfig | None = None) -> None:
        self.config = config or StackConfig()
        self._exit = ExitStack()
        self.seed_summary: str | None = None

    # ---- lifecycle -----------------------------------------------------------------------
    def start(self) -> LocalStack:
        from unload_assets_local.aws_standin import RedshiftCredentialsStandIn
        from unload_assets_local.emulator.login.credentials import CredentialRegistry
        from unload_assets_local.emulator.server import RedshiftEmulator
        from unload_assets_local.s3server import S3Server
        from unload_assets_local.seed import seed_demo_data
        from unload_assets_local.slack_standin import SlackStandIn
        from unload_assets_local.tls import local_tls_files

        cfg = self.config
        cfg.workdir.mkdir(parents=True, exist_ok=True)
        try:
            self.postgres = PostgresCluster(cfg.workdir / "pgdata", port=cfg.pg_port).start()
            self._exit.callback(self.postgres.stop)
            if cfg.seed:
                self.seed_summary = str(seed_demo_data(self.postgres.dsn(), rows=cfg.rows, days=cfg.days))
            self.s3 = S3Server(port=cfg.s3_port, bucket=cfg.bucket).start()
            self._exit.callback(self.s3.stop)
            self.tls = local_tls_files(cfg.workdir / "tls")
            self.credentials = CredentialRegistry()
            self.emulator = RedshiftEmulator(
                pg_host="127.0.0.1",
                pg_port=self.postgres.port,
                s3_endpoint_url=self.s3.endpoint_url,
                listen_port=cfg.redshift_port,
                slices=cfg.slices,
                superuser_dsn=self.postgres.dsn(superuser=True),
                tls=self.tls.server_context(),
                credentials=self.credentials,
                backend_login=(self.postgres.user, self.postgres.password),
                logins={self.postgres.user: self.postgres.password},
            ).start()
            self._exit.callback(self.emulator.stop)
            self.aws = RedshiftCredentialsStandIn(self.s3.endpoint_url, self.credentials).start()
            self._exit.callback(self.aws.stop)
            self.aws.workgroups.add(LOCAL_WORKGROUP)
            self.aws.data_api = self._data_api()
            self._exit.callback(self.aws.data_api.stop)
            self._create_cluster()
            self.slack = SlackStandIn(
                token=LOCAL_SLACK_TOKEN,
                port=cfg.slack_port,
                record_file=cfg.workdir / "slack-messages.jsonl",
                channels=[LOCAL_SLACK_CHANNEL],
            ).start()
            self._exit.callback(self.slack.stop)
        except BaseException:
            self._exit.close()
            raise
        (cfg.workdir / "stack.json").write_text(json.dumps(self.env(), indent=2) + "\n")
        return self

    def stop(self) -> None:
        self._exit.close()
        (self.config.workdir / "stack.json").unlink(missing_ok=True)

    def __enter__(self) -> LocalStack:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ---- what the project needs to reach it ----------------------------------------------
    def env(self) -> dict[str, str]:
        """Every variable from DESIGN.md, pointing at this stack."""
        cfg = self.config
        from unload_assets_local.s3server import LOCAL_KEY_ID, LOCAL_SECRET, REGION

        return {
            "REDSHIFT_HOST": "127.0.0.1",
            "REDSHIFT_PORT": str(self.emulator.port),
            "REDSHIFT_USER": self.postgres.user,
            "REDSHIFT_PASSWORD": self.postgres.password,
            "REDSHIFT_DATABASE": self.postgres.database,
            # As production connects: TLS, and the server's certificate checked against the stack's CA.
            "REDSHIFT_SSLMODE": "verify-full",
            "REDSHIFT_SSLROOTCERT": str(self.tls.ca_cert),
            # REDSHIFT_AUTH=iam or serverless logs in with temporary credentials from these stand-ins.
            "REDSHIFT_CLUSTER_IDENTIFIER": LOCAL_CLUSTER,
            "REDSHIFT_WORKGROUP": LOCAL_WORKGROUP,
            "AWS_ENDPOINT_URL_REDSHIFT": self.aws.endpoint_url,
            "AWS_ENDPOINT_URL_REDSHIFT_SERVERLESS": self.aws.endpoint_url,
            # REDSHIFT_AUTH=data_api runs the statements through this stand-in's Redshift Data API.
            "AWS_ENDPOINT_URL_REDSHIFT_DATA": self.aws.endpoint_url,
            "UNLOAD_IAM_ROLE": LOCAL_IAM_ROLE,
            "UNLOAD_BUCKET": cfg.bucket,
            "UNLOAD_STAGING_PREFIX": cfg.staging_prefix,
            "AWS_ENDPOINT_URL_S3": self.s3.endpoint_url,
            "AWS_ACCESS_KEY_ID": LOCAL_KEY_ID,
            "AWS_SECRET_ACCESS_KEY": LOCAL_SECRET,
            "AWS_DEFAULT_REGION": REGION,
            "SLACK_BOT_TOKEN": LOCAL_SLACK_TOKEN,
            "SLACK_CHANNEL": LOCAL_SLACK_CHANNEL,
            "SLACK_API_URL": self.slack.base_url,
            "DAGSTER_WEBSERVER_URL": cfg.webserver_url,
            "UNLOAD_TIMEZONE": cfg.timezone,
            # Slack confirmations within seconds of a run's end, not within the production default's 30 s.
            "UNLOAD_SENSOR_INTERVAL_SECONDS": "5",
        }

    def _data_api(self) -> RedshiftDataStandIn:
        """The Data API stand-in: statements on the emulator, over TLS checked as a client checks it."""
        import psycopg2

        from unload_assets_local.data_api import RedshiftDataStandIn

        def connect(user: str, password: str, database: str) -> Any:
            return psycopg2.connect(
                host="127.0.0.1", port=self.emulator.port, user=user, password=password, dbname=database,
                sslmode="verify-full", sslrootcert=str(self.tls.ca_cert), connect_timeout=10,
                application_name="redshift-data",
            )  # fmt: skip

        return RedshiftDataStandIn(
            connect,
            self.credentials,
            clusters=[LOCAL_CLUSTER],
            workgroups=[LOCAL_WORKGROUP],
            secrets={LOCAL_SECRET_ARN: (self.postgres.user, self.postgres.password)},
        )

    def _create_cluster(self) -> None:
        """The provisioned cluster `get_cluster_credentials` names, in moto (through the stand-in)."""
        import boto3

        from unload_assets_local.s3server import LOCAL_KEY_ID, LOCAL_SECRET, REGION

        redshift = boto3.client(
            "redshift",
            endpoint_url=self.aws.endpoint_url,
            region_name=REGION,
            aws_access_key_id=LOCAL_KEY_ID,
            aws_secret_access_key=LOCAL_SECRET,
        )
        # moto keeps its state per process, not per server: in a process that has run another moto
        # (a test module's, an earlier stack's) the cluster may exist already, which is as good.
        with suppress(redshift.exceptions.ClusterAlreadyExistsFault):
            redshift.create_cluster(
                ClusterIdentifier=LOCAL_CLUSTER,
                NodeType="ra3.xlplus",
                ClusterType="single-node",
                MasterUsername=self.postgres.user,
                MasterUserPassword="Local-Redshift-1",
                DBName=self.postgres.database,
            )

    def write_env_file(self, path: Path) -> None:
        lines = [
            "# Written by `unload-assets-local up`: points the project at the local stack.",
            "# UNLOAD_TARGETS_FILE is left unset so the packaged unload_assets/unload_targets.yaml is used.",
        ]
        lines += [f"{key}={value}" for key, value in self.env().items()]
        path.write_text("\n".join(lines) + "\n")

    def describe(self) -> str:
        env = self.env()
        return "\n".join(
            [
                f"PostgreSQL       127.0.0.1:{self.postgres.port}  (data in {self.postgres.data_dir})",
                f"Redshift (emul.) 127.0.0.1:{env['REDSHIFT_PORT']}  user={env['REDSHIFT_USER']} "
                f"db={env['REDSHIFT_DATABASE']}  slices={self.config.slices}",
                f"S3 (moto)        {env['AWS_ENDPOINT_URL_S3']}  bucket={env['UNLOAD_BUCKET']}",
                f"IAM credentials  {env['AWS_ENDPOINT_URL_REDSHIFT']}  cluster={LOCAL_CLUSTER} "
                f"workgroup={LOCAL_WORKGROUP}  TLS CA: {env['REDSHIFT_SSLROOTCERT']}",
                f"Slack stand-in   {env['SLACK_API_URL']}  messages: {env['SLACK_API_URL'][:-5]}/messages",
            ]
        )
