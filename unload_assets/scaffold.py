"""`dg scaffold defs unload_assets.UnloadTargets <folder>`: a defs.yaml and an example catalogue beside
it, which `dg check defs` accepts as written (secrets and the connection as `{{ env.VAR }}`)."""

from __future__ import annotations

import re

import dagster as dg

DEFS_YAML = """\
# An UnloadTargets instance: Redshift query results UNLOADed to S3 under clean names every morning,
# confirmed in Slack. Every attribute is described by `dg utils inspect-component unload_assets.UnloadTargets`
# and in unload_assets' README ("Configuration"). Secrets must be {{{{ env.VAR }}}}: they are read when a run
# or a sensor needs them, never when the definitions load.
type: unload_assets.UnloadTargets

attributes:
  name: {name}                        # scopes the jobs, schedules, sensors and resources it creates
  catalogue: exports.yaml             # the exports, beside this file
  redshift:
    host: "{{{{ env.REDSHIFT_HOST }}}}"
    port: "{{{{ env.REDSHIFT_PORT }}}}"       # 5439 when unset
    database: "{{{{ env.REDSHIFT_DATABASE }}}}"
    user: "{{{{ env.REDSHIFT_USER }}}}"
    password: "{{{{ env.REDSHIFT_PASSWORD }}}}"
  s3:
    bucket: "{{{{ env.UNLOAD_BUCKET }}}}"
    iam_role: "{{{{ env.UNLOAD_IAM_ROLE }}}}"   # the role Redshift assumes to write to the bucket
  slack:                              # leave out for no Slack at all
    channel: "#data-deliveries"
    token: "{{{{ env.SLACK_BOT_TOKEN }}}}"
  schedule:
    at: "09:00"
    timezone: America/Los_Angeles
"""

CATALOGUE = """\
# The exports of this instance: one entry per target, each the asset s3/<name>.
# The full reference: unload_assets' docs/catalogue.md.
defaults:
  format: csv
  compression: gzip
  header: true
  owners: ["team:data-engineering"]

targets:
  - name: {name}_daily_sales
    description: Yesterday's sales, one gzipped CSV a day.
    sql: |
      select sale_id, customer_id, amount, sale_date
      from public.sales
      where sale_date = {{{{ partition_date }}}}
    key_template: "exports/sales/{{date}}/sales_{{date}}.csv.gz"
    partitioning: {{type: daily, start_date: "2026-01-01"}}
"""


class UnloadTargetsScaffolder(dg.Scaffolder):
    def scaffold(self, request: dg.ScaffoldRequest) -> None:
        folder = request.target_path
        folder.mkdir(parents=True, exist_ok=True)
        name = re.sub(r"[^a-z0-9_]", "_", folder.name.lower()).strip("_") or "exports"
        name = name if name[0].isalpha() else f"exports_{name}"
        (folder / "defs.yaml").write_text(DEFS_YAML.format(name=name[:40]))
        catalogue = folder / "exports.yaml"
        if not catalogue.exists():
            catalogue.write_text(CATALOGUE.format(name=name[:40]))
