"""Imported once by the forkserver of the multiprocess executor: the code location built before any
step process is forked, so each step starts with the modules imported, the definitions built and the
repository resolved (its asset graph and jobs) instead of importing Dagster and rebuilding every target
again: a forked step then only cuts its job down to its own targets (see execution.py)."""

from unload_assets.definitions import defs

defs().get_repository_def()
