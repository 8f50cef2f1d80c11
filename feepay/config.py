"""Configuration from the environment (and CLI options, which win).

=========================  ==========================================================
``FEEPAY_DATABASE_URL``    database URL; default ``sqlite:///feepay.db`` (current dir)
``FEEPAY_SECRET_KEYS``     Fernet keys, comma-separated, newest first (see crypto.py)
``FEEPAY_ENV``             ``development`` (default) or ``production``
``FEEPAY_REFERENCE_TTL``   days a new reference stays payable (default 7)
=========================  ==========================================================
"""

from __future__ import annotations

import os
from dataclasses import dataclass

DEFAULT_URL = "sqlite:///feepay.db"


@dataclass(frozen=True)
class Settings:
    database_url: str
    reference_ttl_days: int = 7

    @classmethod
    def from_env(cls, database_url: str | None = None) -> Settings:
        return cls(
            database_url=database_url or os.environ.get("FEEPAY_DATABASE_URL") or DEFAULT_URL,
            reference_ttl_days=int(os.environ.get("FEEPAY_REFERENCE_TTL", "7")),
        )
