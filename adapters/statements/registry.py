"""Which formats exist, which one a file is in, and importing a file end to end.

Built in: one declarative profile per bank and gateway in ``profiles/*.toml``, plus MT940,
camt.053 and camt.054. Two ways to add a format, the later winning a name:

1. **Third-party packages** declare an entry point in the group ``feepay.statements``
   (:data:`GROUP`)::

       [project.entry-points."feepay.statements"]
       mybank = "feepay_mybank:MyBankStatement"

   The entry point loads an :class:`~adapters.statements.base.Adapter` subclass (made with
   no arguments), an adapter instance, or a function of no arguments returning one (how a
   package ships a TOML profile: ``make_adapter(Profile.load(path))``). Its name must equal
   the adapter's ``name``. A plugin cannot replace a built-in format (ignored with a
   warning; correct a built-in profile with a user profile instead), and a plugin that
   fails to load is logged and skipped — the other formats keep working. Entry points are
   loaded, and their adapters made, once per process (:func:`reload_plugins` forgets
   them): an adapter must be stateless, as the built-in ones are. The callback adapters'
   group ``feepay.adapters`` is separate (:mod:`adapters.registry`): the two kinds have
   different contracts and name spaces (``--format vnpay`` is a settlement layout,
   ``/callbacks/vnpay`` an IPN).
2. **User profiles** without writing Python: put TOML files (same keys as the built-in
   ones, see :mod:`adapters.statements.tabular`) in a directory or file named by
   ``FEEPAY_STATEMENT_PROFILES`` (several paths separated by ``:``), or pass
   ``--profiles PATH`` on the command line. A user profile with the same ``name`` as a
   built-in or plugin format replaces it.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable
from functools import lru_cache
from pathlib import Path

from adapters.entry_points import loaded
from adapters.statements.base import Adapter
from adapters.statements.camt import Camt
from adapters.statements.mt940 import Mt940
from adapters.statements.source import Source
from adapters.statements.tabular import Profile, make_adapter
from feepay.exceptions import ParseError, ValidationError
from feepay.models import SettlementFile, Statement
from feepay.statements import ImportResult

log = logging.getLogger(__name__)

BUILTIN_PROFILES = Path(__file__).parent / "profiles"
ENV_PROFILES = "FEEPAY_STATEMENT_PROFILES"
GROUP = "feepay.statements"
KINDS = ("statement", "settlement")


def profile_files(extra: Iterable[str | Path] = ()) -> list[Path]:
    """Built-in TOML profiles, then the user's (environment, then ``extra``)."""
    return sorted(BUILTIN_PROFILES.glob("*.toml")) + _user_profile_files(extra)


def _user_profile_files(extra: Iterable[str | Path]) -> list[Path]:
    files: list[Path] = []
    user = [p for p in os.environ.get(ENV_PROFILES, "").split(os.pathsep) if p.strip()]
    for entry in [*user, *extra]:
        path = Path(entry).expanduser()
        if path.is_dir():
            files.extend(sorted(path.glob("*.toml")))
        elif path.is_file():
            files.append(path)
        else:
            raise ValidationError(f"statement profile path {path} does not exist",
                                  field="profiles")
    return files


def plugins(builtin: Iterable[str] = ()) -> dict[str, Adapter]:
    """Adapters registered by installed packages (group ``feepay.statements``), by name.

    Names in ``builtin`` are refused with a warning: a plugin cannot shadow a built-in.
    Entry points are loaded and their adapters made once per process, like the built-in
    ones, so problems are logged once; :func:`reload_plugins` starts again.
    """
    return dict(_plugins(frozenset(builtin)))


def reload_plugins() -> None:
    """Forget the loaded entry points: the next :func:`adapters` call scans them again."""
    _plugins.cache_clear()


@lru_cache(maxsize=1)
def _plugins(reserved: frozenset[str]) -> tuple[tuple[str, Adapter], ...]:
    found: list[tuple[str, Adapter]] = []
    for ep, obj in loaded(GROUP, reserved, label="statement adapter", builtin="format"):
        adapter = _plugin_adapter(ep.name, ep.value, obj)
        if adapter is not None:
            found.append((ep.name, adapter))
    return tuple(found)


def _plugin_adapter(name: str, target: str, obj: object) -> Adapter | None:
    """The adapter an entry point loads, or None (logged) when it is not a usable one."""
    if isinstance(obj, type) and not issubclass(obj, Adapter):
        log.warning("statement entry point %s=%s is not an Adapter subclass: ignored",
                    name, target)
        return None
    try:  # an instance as is; a class or a factory called with no arguments
        adapter = obj if isinstance(obj, Adapter) or not callable(obj) else obj()
    except Exception:  # noqa: BLE001 - as above
        log.exception("cannot make the statement adapter of entry point %s=%s", name, target)
        return None
    if not isinstance(adapter, Adapter):
        log.warning("statement entry point %s=%s gives %r, not an Adapter: ignored",
                    name, target, type(adapter).__name__)
        return None
    if adapter.name != name or adapter.kind not in KINDS:
        log.warning("statement entry point %s=%s gives an adapter named %r of kind %r "
                    "(the name must equal the entry point's, the kind be one of %s): ignored",
                    name, target, adapter.name, adapter.kind, "/".join(KINDS))
        return None
    return adapter


def adapters(extra: Iterable[str | Path] = ()) -> dict[str, Adapter]:
    """Every known adapter by name: built-in profiles and formats, then plugins (entry
    points, never replacing a built-in), then user profiles (replacing any of the same
    name)."""
    out: dict[str, Adapter] = {}
    for path in sorted(BUILTIN_PROFILES.glob("*.toml")):
        profile = Profile.load(path)
        out[profile.name] = make_adapter(profile)
    for adapter in (Mt940(), Camt("053"), Camt("054")):
        out.setdefault(adapter.name, adapter)
    out.update(plugins(out))
    for path in _user_profile_files(extra):
        profile = Profile.load(path)
        if profile.name in out:
            log.info("statement profile %s from %s replaces the format of that name",
                     profile.name, path)
        out[profile.name] = make_adapter(profile)
    return out


def get_adapter(name: str, extra: Iterable[str | Path] = ()) -> Adapter:
    known = adapters(extra)
    try:
        return known[name]
    except KeyError:
        raise ValidationError(f"unknown format '{name}'; known: {', '.join(sorted(known))}",
                              field="format") from None


def detect(source: Source, known: dict[str, Adapter] | None = None) -> Adapter:
    """The one adapter that identifies the file, or a ParseError saying why none/several."""
    if source.kind == "empty":
        raise ParseError("the file is empty", source=source.name)
    if source.kind == "binary":
        raise ParseError("the file is not text in UTF-8 or UTF-16 nor a spreadsheet "
                         "(binary or unknown content)", source=source.name)
    if source.is_spreadsheet:
        source.tables()  # a truncated or corrupt workbook says so, not "unknown format"
    known = known if known is not None else adapters()
    found = [a for a in known.values() if a.safe_identify(source)]
    if not found:
        raise ParseError("not a statement or settlement file in any known format (tried "
                         f"{', '.join(sorted(known))}); if it is a bank export, check its "
                         "header row and title against docs/statements.md or pass --format "
                         "to see what is missing", source=source.name)
    if len(found) > 1:
        raise ParseError(f"the file matches several formats ({', '.join(a.name for a in found)}"
                         "); choose one with --format", source=source.name)
    return found[0]


def parse_file(path: str | Path, fmt: str | None = None,
               extra: Iterable[str | Path] = ()) -> tuple[Adapter, Statement | SettlementFile]:
    """Parse a file completely (no database): for previews, tests and goldens."""
    source = Source(path)
    try:
        adapter = get_adapter(fmt, extra) if fmt else detect(source, adapters(extra))
        if adapter.kind == "settlement":
            return adapter, adapter.read_settlement(source)
        return adapter, adapter.read(source).to_statement()
    finally:
        source.close()


def import_file(fp, path: str | Path, account_id: int, *, fmt: str | None = None,  # noqa: ANN001
                actor: str = "system", extra: Iterable[str | Path] = (),
                replace_reason: str | None = None) -> tuple[Adapter, ImportResult]:
    """Identify (or use ``fmt``), validate the whole file, then store it into the account.

    ``replace_reason``: the file is a gateway's correction; it replaces the stored batches
    it changes (:meth:`feepay.statements.Statements.import_settlement`). A bank statement
    is refused with it: its lines are only ever added, never replaced."""
    source = Source(path)
    try:
        adapter = get_adapter(fmt, extra) if fmt else detect(source, adapters(extra))
        common = {"file_name": source.name, "file_sha256": source.sha256(),
                  "file_size": source.size, "actor": actor}
        if adapter.kind == "settlement":
            result = fp.statements.import_settlement(adapter.read_settlement(source),
                                                     account_id, **common,
                                                     replace_reason=replace_reason)
        elif replace_reason is not None:
            raise ValidationError(
                f"{source.name}: --replace-batches is for gateway settlement files; this is "
                f"a bank statement ('{adapter.name}'); nothing was imported",
                field="replace_batches")
        else:
            result = fp.statements.import_stream(adapter.read(source), account_id, **common)
        return adapter, result
    finally:
        source.close()
