"""Redshift's catalog inside PostgreSQL: the emulator's system tables and session functions."""
