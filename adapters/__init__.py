"""Adapters: providers' bytes in, feepay's pydantic models out (and replies back).

- callback adapters (``adapters.gateways``, ``adapters.banks``): verify, parse and answer a
  gateway IPN or bank webhook — see :mod:`adapters.callbacks` and docs/adapters.md;
- statement parsers (``adapters.statements``).

Adapters know nothing of the database.
"""

from __future__ import annotations

from adapters.callbacks import CallbackAdapter, Reply
from adapters.registry import BUILTIN, GROUP, Registry, default_registry, get_adapter

__all__ = ["BUILTIN", "GROUP", "CallbackAdapter", "Registry", "Reply", "default_registry",
           "get_adapter"]
