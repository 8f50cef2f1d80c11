"""Channels: one callback adapter bound to one collection account (or gateway merchant).

A channel holds the provider's credentials — VNPAY's HashSecret, MoMo's accessKey and
secretKey, ZaloPay's key1/key2, a SePay API key, Casso's checksum key, a bank's webhook
secret — sealed at rest with :attr:`FeePay.sealer` (Fernet). Rotation never needs
downtime: :meth:`Channels.rotate_secret` adds a new value while the old one stays
accepted, then :meth:`Channels.retire_secret` (or ``retire_previous=True``) stops
accepting the old one. A request is verified against the secrets that were active when
it was *received*, so replaying the inbox after a rotation still verifies old requests.

Every write is checked against what the channel's adapter declares (:class:`AdapterSpec`:
its ``kind``, ``secret_names``, ``optional_secrets``, ``settings_help`` and, optionally,
``setting_values``), here in the library so the CLI and API users get the same refusals:
an unknown secret or setting name, a setting value the adapter does not accept, a missing
required secret, or a bank channel without its collection account (without one,
``account_mismatch`` could never be flagged). The core does not import adapters at module
level: :attr:`Channels.adapter_lookup` finds the adapter by name — by default through the
adapter registry (``adapters.registry``, imported on first use); an embedding application
or a test may set its own lookup.
"""

from __future__ import annotations

import json
import math
import re
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Protocol

from sqlalchemy import or_, select, update
from sqlalchemy.exc import IntegrityError

from feepay.exceptions import Conflict, NotFound, ValidationError
from feepay.models import Channel, ChannelSecret, Credentials
from feepay.money import now_utc, require_aware
from feepay.storage.tables import AccountRow
from feepay.storage.tables_callbacks import ChannelRow, ChannelSecretRow

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from feepay.api import FeePay

_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,59}$")
_SECRET_NAME = re.compile(r"^[a-z][a-z0-9_]{0,39}$")


@dataclass(frozen=True)
class _Cached:
    version: int
    channel: Channel
    credentials: Credentials


class AdapterSpec(Protocol):
    """What the library needs to know of a callback adapter to check a channel's setup.

    :class:`adapters.callbacks.CallbackAdapter` provides all of it. An adapter may also
    declare ``setting_values: dict[str, rule]`` — the values a setting accepts, where a
    rule is a tuple of allowed values, ``float``/``int`` (a number ≥ 0) or ``str`` (a
    non-empty text); settings without a rule take any value.
    """

    name: str
    kind: str
    secret_names: tuple[str, ...]
    optional_secrets: tuple[str, ...]
    settings_help: dict[str, str]

    def required_secrets(self, settings: dict[str, object]) -> tuple[str, ...]: ...


def _registry_lookup(adapter: str) -> AdapterSpec:
    """The installed adapter called ``adapter`` (raises UnknownAdapter)."""
    from adapters.registry import get_adapter  # lazy: the core does not import adapters

    return get_adapter(adapter)


def check_secret_name(spec: AdapterSpec, secret_name: str) -> str:
    """Refuse a secret name the adapter does not declare (a typo would otherwise be stored
    as an extra "active" secret that nothing reads, and retire nothing)."""
    allowed = (*spec.secret_names, *(n for n in spec.optional_secrets
                                     if n not in spec.secret_names))
    if secret_name not in allowed:
        raise ValidationError(f"{spec.name} channels hold the secret(s) "
                              f"{', '.join(allowed) or '(none)'}; {secret_name!r} is not "
                              "one of them", field="secret")
    return secret_name


def check_settings(spec: AdapterSpec, settings: dict[str, object]) -> dict[str, object]:
    """Refuse settings the adapter does not read, and values it does not accept (an
    ``auth=hmca`` typo would otherwise fall back to the default mode silently).
    ``None`` means "the default" and is accepted for every known setting."""
    known = spec.settings_help
    rules: dict[str, object] = getattr(spec, "setting_values", None) or {}
    for key, value in settings.items():
        if key not in known:
            names = ", ".join(sorted(known)) or "none"
            raise ValidationError(f"{spec.name} has no setting {key!r} (its settings: "
                                  f"{names})", field="setting")
        rule = rules.get(key)
        if value is None or rule is None:
            continue
        if isinstance(rule, tuple | list | frozenset | set):
            if value not in rule:
                raise ValidationError(f"setting {key} of {spec.name} is one of "
                                      f"{', '.join(map(str, rule))}; not {value!r}",
                                      field="setting")
        elif rule in (int, float):
            ok = (isinstance(value, int | float) and not isinstance(value, bool)
                  and math.isfinite(value) and value >= 0
                  and (rule is float or isinstance(value, int)))
            if not ok:
                raise ValidationError(f"setting {key} of {spec.name} is a number ≥ 0; not "
                                      f"{value!r}", field="setting")
        elif rule is str and (not isinstance(value, str) or not value.strip()):
            raise ValidationError(f"setting {key} of {spec.name} is a non-empty text; not "
                                  f"{value!r}", field="setting")
    return settings


def check_channel(spec: AdapterSpec, *, secrets: Iterable[str],
                  settings: dict[str, object], account_id: int | None) -> None:
    """Everything :meth:`Channels.add` checks against the adapter, before any write."""
    check_settings(spec, settings)
    names = list(secrets)
    for secret_name in names:
        check_secret_name(spec, secret_name)
    missing = [n for n in spec.required_secrets(settings) if n not in names]
    if missing:
        raise ValidationError(f"{spec.name} needs secret(s) {', '.join(missing)}",
                              field="secret")
    if spec.kind == "bank" and account_id is None:
        raise ValidationError(f"{spec.name} is a bank adapter: its channel must name the "
                              "collection account the bank reports on, so that credits on "
                              "another account are flagged (account_mismatch)",
                              field="account_id")


def check_name(name: str) -> str:
    """Channel names appear in URLs: lower-case letters, digits, ``-`` and ``_``."""
    if not isinstance(name, str) or not _NAME.match(name):
        raise ValidationError("a channel name is 1–60 characters: a–z, 0–9, '-' or '_', "
                              "starting with a letter or digit", field="name")
    return name


class Channels:
    """Create, list and rotate channels; hand adapters their credentials."""

    def __init__(self, fp: FeePay) -> None:
        self.fp = fp
        self._cache: dict[str, _Cached] = {}
        self._lock = threading.Lock()
        #: adapter name → its :class:`AdapterSpec` (raises UnknownAdapter); replaceable
        self.adapter_lookup: Callable[[str], AdapterSpec] = _registry_lookup

    # -- checking --------------------------------------------------------------------------
    def spec(self, adapter: str) -> AdapterSpec:
        """The adapter called ``adapter`` (UnknownAdapter, a NotFound, if none is)."""
        if not adapter or not _NAME.match(adapter):
            raise ValidationError("invalid adapter name", field="adapter")
        return self.adapter_lookup(adapter)

    def check(self, adapter: str, *, secrets: Iterable[str] = (),
              settings: dict[str, object] | None = None,
              account_id: int | None = None) -> AdapterSpec:
        """Check a channel setup against its adapter without writing anything (the CLI
        calls it before prompting for secret values); :meth:`add` does the same."""
        spec = self.spec(adapter)
        check_channel(spec, secrets=secrets, settings=settings or {}, account_id=account_id)
        return spec

    def check_rotation(self, name: str, secret_name: str) -> None:
        """Refuse a secret name channel ``name``'s adapter does not declare (what
        :meth:`rotate_secret` checks; the CLI asks before prompting for the value)."""
        check_secret_name(self.spec(self.get(name).adapter), secret_name)

    # -- writing ---------------------------------------------------------------------------
    def add(self, name: str, adapter: str, *, secrets: dict[str, str],
            account_id: int | None = None, merchant_id: str | None = None,
            settings: dict[str, object] | None = None, actor: str = "system") -> Channel:
        """Create a channel with its initial secrets (each sealed)."""
        check_name(name)
        self.check(adapter, secrets=secrets, settings=settings or {}, account_id=account_id)
        for key, value in secrets.items():
            self._check_secret(key, value)
        now = now_utc()
        try:
            with self.fp.db.session() as s:
                if account_id is not None and s.get(AccountRow, account_id) is None:
                    raise ValidationError(f"collection account {account_id} does not exist",
                                          field="account_id")
                row = ChannelRow(name=name, adapter=adapter, account_id=account_id,
                                 merchant_id=merchant_id or None,
                                 settings=json.dumps(settings or {}, sort_keys=True),
                                 active=True, created_at=now)
                s.add(row)
                s.flush()
                for key, value in secrets.items():
                    s.add(self._secret_row(row.id, key, value, now))
                self.fp.audit.append(s, actor=actor, action="channels.add",
                                     object_type="channel", object_id=name,
                                     details={"adapter": adapter, "account_id": account_id,
                                              "secrets": sorted(secrets)})
        except IntegrityError:
            raise Conflict(f"a channel named {name!r} already exists", field="name") from None
        self.invalidate(name)
        return self.get(name)

    def rotate_secret(self, name: str, secret_name: str, value: str, *,
                      retire_previous: bool = False, actor: str = "system") -> Channel:
        """Add a new value for ``secret_name``; the old ones stay accepted unless retired."""
        self._check_secret(secret_name, value)
        now = now_utc()
        with self.fp.db.session() as s:
            row = self._row(s, name)
            check_secret_name(self.spec(row.adapter), secret_name)  # no write yet
            if retire_previous:
                s.execute(update(ChannelSecretRow).where(
                    ChannelSecretRow.channel_id == row.id,
                    ChannelSecretRow.name == secret_name,
                    ChannelSecretRow.active.is_(True)).values(active=False, retired_at=now))
            s.add(self._secret_row(row.id, secret_name, value, now))
            _bump(row)
            self.fp.audit.append(s, actor=actor, action="channels.rotate_secret",
                                 object_type="channel", object_id=name,
                                 details={"secret": secret_name,
                                          "retire_previous": retire_previous})
        self.invalidate(name)
        return self.get(name)

    def retire_secret(self, name: str, secret_id: int, *, actor: str = "system") -> Channel:
        """Stop accepting one secret value (the last active value of a name cannot go)."""
        now = now_utc()
        with self.fp.db.session() as s:
            row = self._row(s, name)
            secret = s.get(ChannelSecretRow, secret_id)
            if secret is None or secret.channel_id != row.id:
                raise NotFound(f"channel {name} has no secret {secret_id}", field="secret_id")
            if not secret.active:
                raise Conflict(f"secret {secret_id} is already retired", field="secret_id")
            others = s.scalar(select(ChannelSecretRow.id).where(
                ChannelSecretRow.channel_id == row.id, ChannelSecretRow.name == secret.name,
                ChannelSecretRow.active.is_(True), ChannelSecretRow.id != secret_id).limit(1))
            if others is None:
                raise Conflict(f"secret {secret_id} is the only active {secret.name}: rotate "
                               "first", field="secret_id")
            secret.active = False
            secret.retired_at = now
            _bump(row)
            self.fp.audit.append(s, actor=actor, action="channels.retire_secret",
                                 object_type="channel", object_id=name,
                                 details={"secret_id": secret_id, "secret": secret.name})
        self.invalidate(name)
        return self.get(name)

    def set_active(self, name: str, active: bool, *, actor: str = "system") -> Channel:
        with self.fp.db.session() as s:
            row = self._row(s, name)
            row.active = active
            _bump(row)
            self.fp.audit.append(s, actor=actor, action="channels.set_active",
                                 object_type="channel", object_id=name,
                                 details={"active": active})
        self.invalidate(name)
        return self.get(name)

    # -- reading ---------------------------------------------------------------------------
    def get(self, name: str) -> Channel:
        with self.fp.db.session() as s:
            return self._to_model(s, self._row(s, name))

    def list(self) -> list[Channel]:
        with self.fp.db.session() as s:
            rows = s.scalars(select(ChannelRow).order_by(ChannelRow.name)).all()
            return [self._to_model(s, r) for r in rows]

    def credentials(self, name: str, at: datetime | None = None) -> Credentials:
        """Every secret value accepted for a request received at ``at`` (default now).

        A value counts if it was created before ``at`` and not retired before ``at``
        (a value still active counts whenever it was created, so a secret added just
        after a request arrived also verifies it — rotation order is the bank's).
        """
        with self.fp.db.session() as s:
            row = self._row(s, name)
            return self._credentials(s, row, at)

    def lookup(self, name: str, version: int | None = None
               ) -> tuple[Channel, Credentials] | None:
        """The channel and its current credentials — from the in-process cache when its
        ``version`` is the one given. Returns ``None`` for an unknown channel.

        The callback endpoint gets the channel's version for free in the statement that
        commits the request to the inbox (:meth:`feepay.inbox.Inbox.store`); every change
        (:meth:`rotate_secret`, :meth:`retire_secret`, :meth:`set_active`) bumps the
        version in its own transaction. So a cached entry is used only while it is
        exactly the channel as it was when the request was received: a retired secret is
        never accepted for a request received after the retirement committed (the bound
        is zero, in every worker process), and the decryptions happen once per version.
        Without ``version`` the channel is read from the database.
        """
        hit = self._cache.get(name)
        if hit is not None and version is not None and hit.version == version:
            return hit.channel, hit.credentials
        entry = self._load(name)
        if entry is None:
            return None
        with self._lock:
            self._cache[name] = entry
        return entry.channel, entry.credentials

    def invalidate(self, name: str | None = None) -> None:
        """Forget cached credentials now (the version check would catch up anyway)."""
        with self._lock:
            if name is None:
                self._cache.clear()
            else:
                self._cache.pop(name, None)

    def _load(self, name: str) -> _Cached | None:
        """The channel, its secrets and its version in ONE statement (one snapshot, so the
        version always describes exactly the secrets read with it)."""
        q = (select(ChannelRow, ChannelSecretRow)
             .outerjoin(ChannelSecretRow, ChannelSecretRow.channel_id == ChannelRow.id)
             .where(ChannelRow.name == name).order_by(ChannelSecretRow.id))
        with self.fp.db.session() as s:
            rows = s.execute(q).all()
        if not rows:
            return None
        row = rows[0][0]
        secrets = [x for _, x in rows if x is not None]
        values: dict[str, list[str]] = {}
        for secret in reversed(secrets):  # newest first, as credentials() gives them
            if secret.active:
                values.setdefault(secret.name, []).append(self.fp.sealer.open(secret.value_enc))
        creds = Credentials(channel=row.name, merchant_id=row.merchant_id,
                            settings=json.loads(row.settings or "{}"),
                            secrets={k: tuple(v) for k, v in values.items()})
        return _Cached(row.version, _channel_model(row, secrets), creds)

    # -- helpers ---------------------------------------------------------------------------
    @staticmethod
    def _row(s: Session, name: str) -> ChannelRow:
        row = s.scalar(select(ChannelRow).where(ChannelRow.name == name))
        if row is None:
            raise NotFound(f"no channel named {name!r}", field="channel")
        return row

    @staticmethod
    def _check_secret(name: str, value: str) -> None:
        if not _SECRET_NAME.match(name or ""):
            raise ValidationError(f"invalid secret name {name!r}", field="secret")
        if not isinstance(value, str) or not value.strip() or len(value) > 1000:
            raise ValidationError(f"secret {name} must be 1–1000 characters", field=name)

    def _secret_row(self, channel_id: int, name: str, value: str,
                    now: datetime) -> ChannelSecretRow:
        return ChannelSecretRow(channel_id=channel_id, name=name,
                                value_enc=self.fp.sealer.seal(value),
                                fingerprint=self.fp.sealer.index(value), active=True,
                                created_at=now)

    def _credentials(self, s: Session, row: ChannelRow, at: datetime | None) -> Credentials:
        q = select(ChannelSecretRow).where(ChannelSecretRow.channel_id == row.id)
        if at is None:
            q = q.where(ChannelSecretRow.active.is_(True))
        else:
            at = require_aware(at, "at")
            q = q.where(or_(ChannelSecretRow.active.is_(True),
                            ChannelSecretRow.retired_at > at))
        secrets: dict[str, list[str]] = {}
        for secret in s.scalars(q.order_by(ChannelSecretRow.id.desc())):
            secrets.setdefault(secret.name, []).append(self.fp.sealer.open(secret.value_enc))
        return Credentials(channel=row.name, merchant_id=row.merchant_id,
                           settings=json.loads(row.settings or "{}"),
                           secrets={k: tuple(v) for k, v in secrets.items()})

    @staticmethod
    def _to_model(s: Session, row: ChannelRow) -> Channel:
        secrets = s.scalars(select(ChannelSecretRow).where(
            ChannelSecretRow.channel_id == row.id).order_by(ChannelSecretRow.id)).all()
        return _channel_model(row, secrets)


def _bump(row: ChannelRow) -> None:
    """A new version of the channel (``version = version + 1`` in SQL: concurrent changes
    each get their own number); cached credentials of older versions stop being used."""
    row.version = ChannelRow.version + 1


def _channel_model(row: ChannelRow, secrets: list[ChannelSecretRow]) -> Channel:
    return Channel(
        id=row.id, name=row.name, adapter=row.adapter, account_id=row.account_id,
        merchant_id=row.merchant_id, settings=json.loads(row.settings or "{}"),
        active=row.active, created_at=row.created_at,
        secrets=tuple(ChannelSecret(id=x.id, name=x.name, fingerprint=x.fingerprint[:8],
                                    active=x.active, created_at=x.created_at,
                                    retired_at=x.retired_at) for x in secrets))
