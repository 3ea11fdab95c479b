"""UNLOAD: the statement parsed and checked, run on the client's session, and its output (data files,
compression, Parquet, manifest) streamed to S3."""
