"""Finding callback adapters by name: the built-ins plus third-party entry points.

Built-in adapters are listed in :data:`BUILTIN` as ``"module:Class"`` strings (imported on
first use). A separate package adds its own by declaring an entry point in the group
``feepay.adapters``::

    [project.entry-points."feepay.adapters"]
    mybank = "feepay_mybank:MyBankWebhook"

The entry point's name is the adapter name used in URLs (``/callbacks/mybank/<channel>``)
and must equal the class's ``name``. A third-party adapter cannot replace a built-in one
(the built-in wins and a warning is logged). Entry points that load something other than a
:class:`~adapters.callbacks.CallbackAdapter` subclass are skipped. Statement parsers have
their own group, ``feepay.statements`` (:mod:`adapters.statements.registry`). See
docs/adapters.md.
"""

from __future__ import annotations

import importlib
import logging
from functools import lru_cache

from adapters.callbacks import CallbackAdapter
from adapters.entry_points import loaded
from feepay.exceptions import UnknownAdapter

log = logging.getLogger(__name__)

GROUP = "feepay.adapters"

BUILTIN: dict[str, str] = {
    "vnpay": "adapters.gateways.vnpay:Vnpay",
    "momo": "adapters.gateways.momo:Momo",
    "zalopay": "adapters.gateways.zalopay:Zalopay",
    "sepay": "adapters.banks.sepay:Sepay",
    "casso": "adapters.banks.casso:Casso",
    "bankhook": "adapters.banks.signed_webhook:SignedBankWebhook",
}


def _load(target: str) -> object:
    module, _, attr = target.partition(":")
    return getattr(importlib.import_module(module), attr)


def _is_callback_adapter(obj: object) -> bool:
    return isinstance(obj, type) and issubclass(obj, CallbackAdapter)


def _plugins() -> dict[str, type[CallbackAdapter]]:
    found: dict[str, type[CallbackAdapter]] = {}
    for ep, obj in loaded(GROUP, BUILTIN, label="adapter", builtin="adapter"):
        if not _is_callback_adapter(obj):
            continue  # not a callback adapter (statement parsers: feepay.statements)
        if obj.name != ep.name:
            log.warning("entry point %s loads adapter named %r: ignored", ep.name, obj.name)
            continue
        found[ep.name] = obj
    return found


class Registry:
    """Name → adapter instance. Adapters are stateless, so one instance serves everyone."""

    def __init__(self, *, include_plugins: bool = True) -> None:
        self._classes: dict[str, str | type[CallbackAdapter]] = dict(BUILTIN)
        if include_plugins:
            self._classes.update(_plugins())
        self._instances: dict[str, CallbackAdapter] = {}

    def names(self) -> list[str]:
        return sorted(self._classes)

    def get(self, name: str) -> CallbackAdapter:
        """The adapter called ``name``; raises :class:`UnknownAdapter`."""
        adapter = self._instances.get(name)
        if adapter is not None:
            return adapter
        target = self._classes.get(name)
        if target is None:
            raise UnknownAdapter(f"no callback adapter named {name!r} "
                                 f"(known: {', '.join(self.names())})", field="adapter")
        cls = _load(target) if isinstance(target, str) else target
        adapter = self._instances[name] = cls()
        return adapter

    def register(self, cls: type[CallbackAdapter]) -> None:
        """Add an adapter class at run time (tests, embedding applications)."""
        if not _is_callback_adapter(cls):
            raise TypeError(f"{cls!r} is not a CallbackAdapter subclass")
        self._classes[cls.name] = cls
        self._instances.pop(cls.name, None)

    def __contains__(self, name: object) -> bool:
        return name in self._classes


@lru_cache(maxsize=1)
def default_registry() -> Registry:
    """The process-wide registry (built-ins + installed entry points), built once."""
    return Registry()


def get_adapter(name: str) -> CallbackAdapter:
    return default_registry().get(name)
