"""COPY from S3: the statement, the files read from S3, their formats, and the load into PostgreSQL."""
