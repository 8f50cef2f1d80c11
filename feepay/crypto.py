"""Secrets at rest: Fernet encryption of account numbers and provider credentials.

Keys come from the environment: ``FEEPAY_SECRET_KEYS`` holds one or more Fernet keys,
comma-separated, newest first. Encryption uses the first; decryption tries them all
(``MultiFernet``), so a key can be rotated without downtime: put the new key first,
run ``feepay keys rotate`` (re-encrypts every sealed column with it), then drop the old key.

In production (``FEEPAY_ENV=production``) a missing key stops the process with a clear
error. In development, a key file beside the SQLite database is created on first use and
a warning is logged — never a silent built-in default.

Blind indexes (:meth:`Sealer.index`) let the database enforce uniqueness of a sealed value
(HMAC-SHA256 under a key derived from the primary key); rotation recomputes them.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import os
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from feepay.exceptions import ConfigurationError

log = logging.getLogger(__name__)
ENV_KEYS = "FEEPAY_SECRET_KEYS"

#: (ORM class, column) pairs holding sealed values; packages append theirs at import time.
#: ``feepay keys rotate`` re-encrypts them all.
SEALED_COLUMNS: list[tuple[type, str]] = []
#: (ORM class, index column, function row -> plaintext to index) for blind indexes.
BLIND_INDEXES: list[tuple[type, str, object]] = []


class Sealer:
    """Encrypts and decrypts short secrets with a list of Fernet keys (first = current)."""

    def __init__(self, keys: list[str]) -> None:
        if not keys:
            raise ConfigurationError(f"no encryption key: set {ENV_KEYS}")
        try:
            self._fernets = [Fernet(k.strip().encode()) for k in keys]
        except (ValueError, TypeError) as exc:
            raise ConfigurationError(
                f"{ENV_KEYS} holds an invalid Fernet key ({exc}); "
                "make one with `feepay keys generate`") from None
        self._multi = MultiFernet(self._fernets)
        raw = base64.urlsafe_b64decode(keys[0].strip().encode())
        self._index_key = hashlib.sha256(b"feepay-blind-index|" + raw).digest()

    def seal(self, plaintext: str) -> str:
        return self._multi.encrypt(plaintext.encode("utf-8")).decode("ascii")

    def open(self, token: str) -> str:
        try:
            return self._multi.decrypt(token.encode("ascii")).decode("utf-8")
        except InvalidToken:
            raise ConfigurationError(
                "a stored secret cannot be decrypted with the configured keys "
                f"(was a key removed from {ENV_KEYS} before `feepay keys rotate`?)") from None

    def rotate(self, token: str) -> str:
        """Re-encrypt with the current (first) key."""
        return self._multi.rotate(token.encode("ascii")).decode("ascii")

    def index(self, value: str) -> str:
        """A keyed hash for uniqueness/lookup without storing the value in clear."""
        return hmac.new(self._index_key, value.encode("utf-8"), hashlib.sha256).hexdigest()


def generate_key() -> str:
    return Fernet.generate_key().decode("ascii")


def production() -> bool:
    return os.environ.get("FEEPAY_ENV", "development").lower() == "production"


def load_sealer(database_url: str | None = None) -> Sealer:
    """The sealer for this process, from the environment (or the dev key file)."""
    keys = [k for k in os.environ.get(ENV_KEYS, "").split(",") if k.strip()]
    if keys:
        return Sealer(keys)
    if production():
        raise ConfigurationError(
            f"{ENV_KEYS} is not set. In production feepay refuses to start without an "
            "encryption key; generate one with `feepay keys generate` and keep it in your "
            "secret store.")
    return Sealer([_dev_key(database_url)])


def _dev_key(database_url: str | None) -> str:
    path = _dev_key_path(database_url)
    if path.exists():
        return path.read_text().strip()
    key = generate_key()
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(key + "\n")
    log.warning("%s is not set: created a development key in %s (set FEEPAY_ENV=production "
                "to forbid this)", ENV_KEYS, path)
    return key


def _dev_key_path(database_url: str | None) -> Path:
    if database_url and database_url.startswith("sqlite:///") and ":memory:" not in database_url:
        db = Path(database_url[len("sqlite:///"):])
        return db.with_name(db.name + ".key")
    return Path(os.environ.get("FEEPAY_HOME", Path.home() / ".feepay")) / "dev.key"


def rotate_all(fp) -> dict[str, int]:  # noqa: ANN001 - FeePay
    """Re-encrypt every sealed column (and recompute blind indexes) with the current key."""
    from sqlalchemy import select

    import feepay.storage.tables  # noqa: F401 - registers sealed columns

    counts: dict[str, int] = {}
    with fp.db.session() as s:
        for cls, column in SEALED_COLUMNS:
            n = 0
            for row in s.scalars(select(cls)).yield_per(500):
                token = getattr(row, column)
                if token:
                    setattr(row, column, fp.sealer.rotate(token))
                    n += 1
            counts[f"{cls.__tablename__}.{column}"] = n
        for cls, column, plaintext in BLIND_INDEXES:
            for row in s.scalars(select(cls)).yield_per(500):
                setattr(row, column, fp.sealer.index(plaintext(row, fp.sealer)))
    log.info("rotated sealed values: %s", counts)
    return counts
