"""A client's startup and login: TLS, startup parameters, MD5 as Redshift asks, temporary IAM users,
and the emulator's own login to PostgreSQL (SCRAM)."""
