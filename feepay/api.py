"""The public Python API: one object a case system opens and uses.

>>> from feepay import FeePay                                   # doctest: +SKIP
>>> fp = FeePay.open("sqlite:///feepay.db")                     # doctest: +SKIP
>>> ref = fp.references.issue("000.00.01.H40-251201-0001", "40", ["LP-HT-01"])  # doctest: +SKIP
>>> ref.code, ref.amount_due, ref.vietqr                        # doctest: +SKIP

Each service is an attribute (``units``, ``users``, ``accounts``, ``fees``, ``references``,
``audit``); other packages attach theirs the same way (payments, statements, reconcile).
"""

from __future__ import annotations

import logging
from functools import cached_property

from feepay.config import Settings
from feepay.crypto import Sealer, load_sealer
from feepay.storage.engine import Database

log = logging.getLogger(__name__)


class FeePay:
    """A handle on one feepay database with its services. Thread-safe; share one per process."""

    def __init__(self, db: Database, sealer: Sealer, settings: Settings) -> None:
        self.db = db
        self.sealer = sealer
        self.settings = settings

    @classmethod
    def open(cls, url: str | None = None, *, migrate: bool = True,
             sealer: Sealer | None = None, **engine_kwargs: object) -> FeePay:
        """Open the database at ``url`` (default from ``FEEPAY_DATABASE_URL``).

        Args:
            url: SQLAlchemy URL or a path to a SQLite file.
            migrate: run pending migrations first (``feepay init`` does the same).
            sealer: encryption keys; default from ``FEEPAY_SECRET_KEYS``.
        """
        settings = Settings.from_env(url)
        db = Database(settings.database_url, **engine_kwargs)
        if migrate:
            db.upgrade()
        return cls(db, sealer or load_sealer(db.url), settings)

    def close(self) -> None:
        self.db.dispose()

    def __enter__(self) -> FeePay:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @cached_property
    def units(self):  # noqa: ANN201
        from feepay.units import Units

        return Units(self)

    @cached_property
    def users(self):  # noqa: ANN201
        from feepay.users import Users

        return Users(self)

    @cached_property
    def accounts(self):  # noqa: ANN201
        from feepay.accounts import Accounts

        return Accounts(self)

    @cached_property
    def fees(self):  # noqa: ANN201
        from feepay.fees import Fees

        return Fees(self)

    @cached_property
    def references(self):  # noqa: ANN201
        from feepay.references import References

        return References(self)

    @cached_property
    def audit(self):  # noqa: ANN201
        from feepay.audit import AuditLog

        return AuditLog(self)

    @cached_property
    def statements(self):  # noqa: ANN201
        from feepay.statements import Statements

        return Statements(self)

    @cached_property
    def channels(self):  # noqa: ANN201
        from feepay.channels import Channels

        return Channels(self)

    @cached_property
    def inbox(self):  # noqa: ANN201
        from feepay.inbox import Inbox

        return Inbox(self)

    @cached_property
    def payments(self):  # noqa: ANN201
        from feepay.payments import Payments

        return Payments(self)
