"""The Slack sensors' bench fixtures (support/slack_sensors.py) for the sensor test modules here: a module
that defines a fixture of the same name keeps its own."""

from unload_assets_tests.support.slack_sensors import instance, slack, standin, webserver  # noqa: F401
