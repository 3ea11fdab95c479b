"""Slack: every message the project posts, and the sensors that post them exactly once, through the
Slack resource (`resources/slack.py`: ids in the message metadata, history lookups, `NotDelivered`).

- `messages.py`: the messages, pure (run delivered or failed, catch-up summary, catalogue problem, late,
  now delivered), Block Kit limits and secrets scrubbed;
- `tick.py`: what every sensor tick shares: the clock, the limits, one cursor, one exactly-once poster;
- `run_sensors.py` (+ `run_post.py`, `run_report.py`): the run success and failure sensors, and what a
  finished run did; `catalogue_notices.py`: the catalogue's problems, told by the failure sensor;
- `deadline_sensor.py` (+ `deadline_post.py`, `lateness.py`): "late" and "now delivered".
"""
