"""Tables for reconcile (owned by the reconcile work; see migration 000*_reconcile.py)."""

from __future__ import annotations

from feepay.storage.base import Base  # noqa: F401
