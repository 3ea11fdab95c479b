"""Imported once by the forkserver of the multiprocess executor: the code location built before any
step process is forked, so each step starts with the modules imported and the definitions built
instead of importing Dagster and rebuilding every target again (see execution.py)."""

from unload_assets.definitions import defs

defs()
