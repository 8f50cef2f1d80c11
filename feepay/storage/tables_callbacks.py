"""Tables for callbacks (owned by the callbacks work; see migration 000*_callbacks.py)."""

from __future__ import annotations

from feepay.storage.base import Base  # noqa: F401
