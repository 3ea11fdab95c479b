"""A sensor evaluated the way the daemon evaluates it, the cursor carried from tick to tick. A new one
given only the cursor is a restarted daemon: fresh definitions, the state Dagster kept."""

from __future__ import annotations

import dagster as dg

from unload_assets.resources.slack import UnloadSlackResource


class SensorDaemon:
    def __init__(self, instance: dg.DagsterInstance, sensor: dg.SensorDefinition, cursor: str | None) -> None:
        self.instance, self.sensor, self.cursor = instance, sensor, cursor

    def tick(self, slack: UnloadSlackResource) -> str:
        """One tick; its skip message. A Slack sensor never requests a run."""
        [key] = self.sensor.required_resource_keys  # the instance's Slack resource
        context = dg.build_sensor_context(instance=self.instance, cursor=self.cursor, resources={key: slack})
        result = self.sensor.evaluate_tick(context)
        assert not result.run_requests
        self.cursor = result.cursor
        return result.skip_message or ""
