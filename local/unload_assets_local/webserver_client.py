"""The GraphQL calls the Dagster UI makes, against a webserver (`dagster dev` or `dagster-webserver`):
launch, re-execute and terminate runs, follow their steps, find the runs a schedule launched, and tell
when the code location has loaded.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

_RUN_QUERY = """
query Run($runId: ID!) {
  runOrError(runId: $runId) {
    __typename
    ... on Run { status stepStats { stepKey status } }
    ... on PythonError { message }
  }
}"""
_RUNS_TAGGED = """
query Runs($tags: [ExecutionTag!]) {
  runsOrError(filter: {tags: $tags}) { ... on Runs { results { runId status } } }
}"""
_WORKSPACE_QUERY = """
{ workspaceOrError { __typename ... on Workspace { locationEntries { name loadStatus
    locationOrLoadError { __typename ... on PythonError { message } } } } } }"""
_LAUNCH = """
mutation Launch($params: ExecutionParams!) {
  launchRun(executionParams: $params) {
    __typename
    ... on LaunchRunSuccess { run { runId } }
    ... on PythonError { message }
    ... on RunConfigValidationInvalid { errors { message } }
    ... on InvalidSubsetError { message }
    ... on PipelineNotFoundError { message }
  }
}"""
_REEXECUTE = """
mutation Reexecute($params: ReexecutionParams!) {
  launchRunReexecution(reexecutionParams: $params) {
    __typename
    ... on LaunchRunSuccess { run { runId } }
    ... on PythonError { message }
  }
}"""
_BACKFILL = """
mutation Backfill($params: LaunchBackfillParams!) {
  launchPartitionBackfill(backfillParams: $params) {
    __typename
    ... on LaunchBackfillSuccess { backfillId }
    ... on PythonError { message }
    ... on PartitionSetNotFoundError { message }
  }
}"""
_LAUNCHED_BACKFILL = ("launchPartitionBackfill", "LaunchBackfillSuccess")
_REEXECUTE_BACKFILL = """
mutation ReexecuteBackfill($params: ReexecutionParams!) {
  reexecutePartitionBackfill(reexecutionParams: $params) {
    __typename
    ... on LaunchBackfillSuccess { backfillId }
    ... on PythonError { message }
  }
}"""
_BACKFILL_STATUS = """
query Backfill($backfillId: String!) {
  partitionBackfillOrError(backfillId: $backfillId) {
    __typename
    ... on PartitionBackfill { status }
    ... on PythonError { message }
  }
}"""
_TERMINATE = """
mutation Terminate($runId: String!, $policy: TerminateRunPolicy) {
  terminateRun(runId: $runId, terminatePolicy: $policy) {
    __typename
    ... on TerminateRunFailure { message }
    ... on PythonError { message }
  }
}"""
FINISHED = ("SUCCESS", "FAILURE", "CANCELED")


class DagsterDevError(RuntimeError):
    pass


class WebserverClient:
    """The GraphQL calls the UI makes, against a webserver at `url` (`dagster dev` or `dagster-webserver`)."""

    def __init__(self, url: str, log_file: Path) -> None:
        self._url, self.log_file = url, log_file

    @property
    def url(self) -> str:
        return self._url

    def graphql(self, query: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
        body = json.dumps({"query": query, "variables": variables or {}}).encode()
        request = urllib.request.Request(
            f"{self.url}/graphql", data=body, headers={"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=60) as response:
            payload = json.loads(response.read())
        if payload.get("errors"):
            raise DagsterDevError(f"GraphQL error: {payload['errors']}")
        return payload["data"]

    def launch(
        self,
        job_name: str,
        *,
        partition: str | None = None,
        location: str | None = None,
        tags: dict[str, str] | None = None,
    ) -> str:
        """Launch `job_name` exactly as the UI's Materialize/Launch button does (with the launchpad's
        extra `tags`, if any); returns the run id."""
        location = location or self.location_name()
        run_tags = {**({"dagster/partition": partition} if partition else {}), **(tags or {})}
        params: dict[str, Any] = {
            "selector": {
                "repositoryLocationName": location,
                "repositoryName": "__repository__",
                "jobName": job_name,
            },
            "runConfigData": {},
            "executionMetadata": {"tags": [{"key": key, "value": value} for key, value in run_tags.items()]},
        }
        result = self._mutate(
            _LAUNCH, {"params": params}, "launchRun", "LaunchRunSuccess", f"Launching {job_name}"
        )
        return str(result["run"]["runId"])

    def launch_backfill(self, job_name: str, partitions: list[str], *, location: str | None = None) -> str:
        """A backfill of `job_name` over `partitions`, as the job page's "Launch backfill" starts it (the
        daemon then launches one run per partition); returns the backfill id."""
        selector = {
            "partitionSetName": f"{job_name}_partition_set",
            "repositorySelector": {
                "repositoryLocationName": location or self.location_name(),
                "repositoryName": "__repository__",
            },
        }
        params = {"selector": selector, "partitionNames": partitions}
        what = f"Launching a backfill of {job_name}"
        return str(self._mutate(_BACKFILL, {"params": params}, *_LAUNCHED_BACKFILL, what)["backfillId"])

    def launch_asset_backfill(self, asset_keys: list[list[str]], partitions: list[str]) -> str:
        """A backfill of `asset_keys` over `partitions`, as the asset page's (or the asset graph's)
        "Materialize" of a range launches one: the daemon runs it under the assets' backfill policy and
        tracks each partition; returns the backfill id."""
        params = {"assetSelection": [{"path": key} for key in asset_keys], "partitionNames": partitions}
        what = f"Launching a backfill of {asset_keys}"
        return str(self._mutate(_BACKFILL, {"params": params}, *_LAUNCHED_BACKFILL, what)["backfillId"])

    def reexecute_backfill(self, backfill_id: str, strategy: str = "FROM_FAILURE") -> str:
        """The backfill page's "Re-execute" (FROM_FAILURE: the partitions not materialised); returns the
        new backfill's id."""
        params = {"parentRunId": backfill_id, "strategy": strategy}
        result = self._mutate(
            _REEXECUTE_BACKFILL,
            {"params": params},
            "reexecutePartitionBackfill",
            "LaunchBackfillSuccess",
            f"Re-executing backfill {backfill_id}",
        )
        return str(result["backfillId"])

    def backfill_status(self, backfill_id: str) -> str:
        """REQUESTED while the daemon works on it; COMPLETED_SUCCESS, COMPLETED_FAILED, ... after."""
        found = self.graphql(_BACKFILL_STATUS, {"backfillId": backfill_id})["partitionBackfillOrError"]
        if found["__typename"] != "PartitionBackfill":
            raise DagsterDevError(f"Backfill {backfill_id}: {found}")
        return str(found["status"])

    def reexecute(self, parent_run_id: str, strategy: str = "FROM_FAILURE") -> str:
        """The UI's "Re-execute from failure" (or ALL_STEPS / FROM_ASSET_FAILURE); returns the new run id."""
        params = {"parentRunId": parent_run_id, "strategy": strategy}
        what = f"Re-executing {parent_run_id}"
        result = self._mutate(
            _REEXECUTE, {"params": params}, "launchRunReexecution", "LaunchRunSuccess", what
        )
        return str(result["run"]["runId"])

    def terminate(self, run_id: str, *, immediately: bool = False) -> None:
        """The UI's Terminate button (or "force termination": mark it canceled at once)."""
        policy = "MARK_AS_CANCELED_IMMEDIATELY" if immediately else "SAFE_TERMINATE"
        variables = {"runId": run_id, "policy": policy}
        self._mutate(_TERMINATE, variables, "terminateRun", "TerminateRunSuccess", f"Terminating {run_id}")

    def _mutate(self, query: str, variables: dict[str, Any], field: str, success: str, what: str) -> Any:
        """The mutation's `field`, when it is `success`; anything else raises, saying `what` failed."""
        result = self.graphql(query, variables)[field]
        if result["__typename"] != success:
            raise DagsterDevError(f"{what} failed: {result}")
        return result

    def step_statuses(self, run_id: str) -> dict[str, str]:
        run = self.graphql(_RUN_QUERY, {"runId": run_id})["runOrError"]
        return {s["stepKey"]: s["status"] for s in run.get("stepStats") or []}

    def wait_for_run(
        self, run_id: str, *, timeout: float = 300, on_step: Callable[[str, str], None] | None = None
    ) -> str:
        seen: dict[str, str] = {}
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            run = self.graphql(_RUN_QUERY, {"runId": run_id})["runOrError"]
            for step in run.get("stepStats") or []:
                if on_step and seen.get(step["stepKey"]) != step["status"] and step["status"]:
                    on_step(step["stepKey"], step["status"])
                seen[step["stepKey"]] = step["status"]
            if run.get("status") in FINISHED:
                return str(run["status"])
            time.sleep(1)
        raise DagsterDevError(f"Run {run_id} did not finish within {timeout:.0f}s; see {self.log_file}")

    def runs_tagged(self, key: str, value: str) -> list[str]:
        """The ids of the runs carrying tag `key=value` (newest first), e.g. those a schedule launched."""
        tags = [{"key": key, "value": value}]
        runs = self.graphql(_RUNS_TAGGED, {"tags": tags})["runsOrError"].get("results") or []
        return [str(r["runId"]) for r in runs]

    def location_name(self) -> str:
        entries = self.graphql(_WORKSPACE_QUERY)["workspaceOrError"]["locationEntries"]
        return str(entries[0]["name"])

    def ping(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}/server_info", timeout=5):
                return True
        except (OSError, urllib.error.URLError):
            return False

    def location_loaded(self) -> bool:
        for entry in self.graphql(_WORKSPACE_QUERY)["workspaceOrError"].get("locationEntries", []):
            error = entry.get("locationOrLoadError") or {}
            if error.get("__typename") == "PythonError":
                raise DagsterDevError(
                    f"The code location '{entry['name']}' failed to load:\n{error['message']}"
                )
            if entry.get("loadStatus") == "LOADED" and error:
                return True
        return False
