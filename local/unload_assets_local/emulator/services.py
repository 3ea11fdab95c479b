"""What every connection and UNLOAD of one emulator shares: S3, the catalog, the worker pools, faults."""

from __future__ import annotations

import ssl
from dataclasses import dataclass, field
from typing import Any

from unload_assets_local.emulator.catalog.system_tables import Catalog
from unload_assets_local.emulator.faults import UnloadFaults
from unload_assets_local.emulator.login.credentials import CredentialRegistry


@dataclass
class Services:
    """What every connection and UNLOAD of one emulator shares."""

    s3: Any
    catalog: Catalog
    cpu_pool: Any  # lane jobs: formatting, compressing, feeding uploads
    io_pool: Any  # part uploads
    zip_pool: Any  # gzip pieces (never waits on anything, so it cannot deadlock the lanes)
    slices: int
    faults: UnloadFaults = field(default_factory=UnloadFaults)
    active: int = 0  # UNLOADs in flight
    peak: int = 0  # the most UNLOADs ever in flight at once
    credentials: CredentialRegistry | None = None  # temporary IAM users' minted passwords
    backend_login: tuple[str, str] | None = None  # the emulator's own PostgreSQL user, for them
    tls: ssl.SSLContext | None = None  # answers SSLRequest with TLS when set
    logins: dict[str, str] | None = None  # the users the emulator authenticates itself (else relayed)
