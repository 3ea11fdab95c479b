"""The local stack as one object: PostgreSQL, the Redshift emulator, the S3 server and the Slack stand-in.

`unload-assets-local up` and the test fixtures both start the stack through `LocalStack`, so what the
tests exercise is what a person runs.
"""

from __future__ import annotations

import json
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

from .postgres import PostgresCluster

LOCAL_IAM_ROLE = "arn:aws:iam::123456789012:role/unload-local"
LOCAL_SLACK_TOKEN = "xoxb-local-stand-in-token"
LOCAL_SLACK_CHANNEL = "#data-deliveries"


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
        from .emulator.proxy import RedshiftEmulator
        from .s3server import S3Server
        from .seed import seed_demo_data
        from .slack_standin import SlackStandIn

        cfg = self.config
        cfg.workdir.mkdir(parents=True, exist_ok=True)
        try:
            self.postgres = PostgresCluster(cfg.workdir / "pgdata", port=cfg.pg_port).start()
            self._exit.callback(self.postgres.stop)
            if cfg.seed:
                self.seed_summary = str(seed_demo_data(self.postgres.dsn(), rows=cfg.rows))
            self.s3 = S3Server(port=cfg.s3_port, bucket=cfg.bucket).start()
            self._exit.callback(self.s3.stop)
            self.emulator = RedshiftEmulator(
                pg_host="127.0.0.1",
                pg_port=self.postgres.port,
                s3_endpoint_url=self.s3.endpoint_url,
                listen_port=cfg.redshift_port,
                slices=cfg.slices,
                superuser_dsn=self.postgres.dsn(superuser=True),
            ).start()
            self._exit.callback(self.emulator.stop)
            self.slack = SlackStandIn(
                token=LOCAL_SLACK_TOKEN, port=cfg.slack_port, record_file=cfg.workdir / "slack-messages.jsonl"
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
        from .s3server import LOCAL_KEY_ID, LOCAL_SECRET, REGION

        return {
            "REDSHIFT_HOST": "127.0.0.1",
            "REDSHIFT_PORT": str(self.emulator.port),
            "REDSHIFT_USER": self.postgres.user,
            "REDSHIFT_PASSWORD": self.postgres.password,
            "REDSHIFT_DATABASE": self.postgres.database,
            # The emulator speaks plain TCP only; a real cluster wants `require` or stricter.
            "REDSHIFT_SSLMODE": "disable",
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
        }

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
                f"Slack stand-in   {env['SLACK_API_URL']}  messages: {env['SLACK_API_URL'][:-5]}/messages",
            ]
        )
