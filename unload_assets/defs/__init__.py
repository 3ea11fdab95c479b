"""Dagster's defs folder for this project (`dg`): each sub-folder's `defs.yaml` instantiates a component."""
