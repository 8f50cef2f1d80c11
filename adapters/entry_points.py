"""Loading a group of third-party entry points, as both adapter registries do.

A plugin may not take a built-in's name, and one that fails to load is logged and
skipped: a broken package must not stop the formats and adapters that work. What a loaded
object must be is each registry's own business (:mod:`adapters.registry`,
:mod:`adapters.statements.registry`).
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Iterator
from importlib.metadata import EntryPoint, entry_points

log = logging.getLogger(__name__)


def loaded(group: str, reserved: Collection[str], *, label: str,
           builtin: str) -> Iterator[tuple[EntryPoint, object]]:
    """Each entry point of ``group`` with the object it loads, skipping (logged) those
    named like a built-in (``reserved``) and those that fail to load. ``label`` and
    ``builtin`` name the kind in the log: "cannot load <label> entry point …", "… is a
    built-in <builtin>"."""
    for ep in entry_points(group=group):
        if ep.name in reserved:
            log.warning("%s entry point %s=%s ignored: %r is a built-in %s", label, ep.name,
                        ep.value, ep.name, builtin)
            continue
        try:
            obj = ep.load()
        except Exception:  # noqa: BLE001 - a broken plugin must not stop the others
            log.exception("cannot load %s entry point %s=%s", label, ep.name, ep.value)
            continue
        yield ep, obj
