"""SQL text as the emulator reads it: which statements it executes itself, and Redshift-only SQL put in
PostgreSQL's words (pure: no I/O)."""
