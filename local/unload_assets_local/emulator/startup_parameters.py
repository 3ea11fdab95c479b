"""The startup parameters as each side expects them: PostgreSQL given only what it accepts, the client
told the server version Redshift reports."""

from __future__ import annotations

import logging

from unload_assets_local.emulator import wire

log = logging.getLogger(__name__)

# What Redshift reports as its version, and what drivers parse (redshift_connector picks its type
# conversions by it); PostgreSQL's own "16.x (Debian ...)" is not a version they can read.
SERVER_VERSION = "8.0.2"
# Startup parameters that are not PostgreSQL settings but always come from Redshift's drivers;
# PostgreSQL refuses a connection that sends them (FATAL 42704). Used when the catalog cannot list
# PostgreSQL's settings; otherwise everything that is not a setting is left out.
REDSHIFT_DRIVER_PARAMETERS = frozenset(
    {"client_protocol_version", "driver_version", "os_version", "plugin_name", "idp_type", "provider_name",
     "token_type", "identity_namespace", "idc_client_display_name"}
)  # fmt: skip
_PROTOCOL_PARAMETERS = ("user", "database", "options", "replication")


def for_postgres(params: dict[str, str], settings: frozenset[str] | None) -> dict[str, str]:
    """The startup parameters PostgreSQL accepts: the protocol's own and PostgreSQL's settings (names
    compared without case, as PostgreSQL does); a Redshift driver's extras are accepted and ignored."""

    def accepted(name: str) -> bool:
        if name in _PROTOCOL_PARAMETERS or name.startswith("_pq_."):
            return True
        return name.lower() in settings if settings is not None else name not in REDSHIFT_DRIVER_PARAMETERS

    ignored = [name for name in params if not accepted(name)]
    if ignored:
        log.debug("startup parameters ignored, as Redshift does: %s", ", ".join(ignored))
    return {name: value for name, value in params.items() if name not in ignored}


def as_redshift(parameter_status: bytes) -> bytes:
    """A ParameterStatus message, with `server_version` reported as Redshift reports it."""
    name, _, _ = parameter_status[5:].partition(b"\0")
    if name != b"server_version":
        return parameter_status
    return wire.message(b"S", wire.cstr("server_version") + wire.cstr(SERVER_VERSION))
