"""Tables for statements (owned by the statements work; see migration 000*_statements.py)."""

from __future__ import annotations

from feepay.storage.base import Base  # noqa: F401
