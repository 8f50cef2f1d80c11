"""Channels: one callback adapter bound to one collection account (or gateway merchant).

A channel holds the provider's credentials — VNPAY's HashSecret, MoMo's accessKey and
secretKey, ZaloPay's key1/key2, a SePay API key, Casso's checksum key, a bank's webhook
secret — sealed at rest with :attr:`FeePay.sealer` (Fernet). Rotation never needs
downtime: :meth:`Channels.rotate_secret` adds a new value while the old one stays
accepted, then :meth:`Channels.retire_secret` (or ``retire_previous=True``) stops
accepting the old one. A request is verified against the secrets that were active when
it was *received*, so replaying the inbox after a rotation still verifies old requests.

The core does not know adapters: which secret names an adapter needs is checked by the
caller (``adapters/cli_channels.py``) through the adapter registry.
"""

from __future__ import annotations

import json
import re
import threading
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

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

    # -- writing ---------------------------------------------------------------------------
    def add(self, name: str, adapter: str, *, secrets: dict[str, str],
            account_id: int | None = None, merchant_id: str | None = None,
            settings: dict[str, object] | None = None, actor: str = "system") -> Channel:
        """Create a channel with its initial secrets (each sealed)."""
        check_name(name)
        if not adapter or not _NAME.match(adapter):
            raise ValidationError("invalid adapter name", field="adapter")
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
