"""The callback inbox: every request is committed here before anything else happens.

Nothing received is ever lost: the raw request (method, path, query, the headers that
matter, body bytes, remote address, time of receipt) is committed in its own short
transaction first. Processing then moves the row from ``received`` to ``processed``
(in the same transaction that records the payment event), ``ignored`` (a verified push
with no payment in it) or ``rejected`` (bad signature, unreadable body — with the reason;
nothing else changes). A crash in between leaves the row ``received``, and
``feepay inbox replay`` processes exactly those rows again.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from sqlalchemy import func, select

from feepay import dbapi
from feepay.exceptions import NotFound
from feepay.models import InboxItem, InboxState, RawRequest
from feepay.money import now_utc
from feepay.storage.tables_callbacks import InboxRow

if TYPE_CHECKING:
    from feepay.api import FeePay
    from feepay.dbapi import Raw

log = logging.getLogger(__name__)

#: Headers worth keeping: what providers sign or authenticate with, and what tells the
#: request's origin. Everything else (cookies, user agents…) is dropped.
KEPT_HEADERS = frozenset({
    "authorization", "content-type", "content-length", "x-casso-signature",
    "x-sepay-signature", "x-sepay-timestamp", "feepay-signature", "x-forwarded-for",
    "x-real-ip", "user-agent", "secure-token",
})
#: Kept headers that carry a credential (SePay's ``Authorization: Apikey …``): stored
#: Fernet-sealed in ``sealed_headers``, never in clear; opened again for replay.
SECRET_HEADERS = frozenset({"authorization", "secure-token"})
MAX_REASON = 2000
#: Marks a loaded row whose sealed headers could not be opened (see Inbox._to_model).
UNREADABLE = "x-feepay-sealed-headers-unreadable"

# The channel is looked up in the same statement: the caller gets the channel's version
# (NULL: no such channel for this adapter) — the callback endpoint serves cached
# credentials only while that version is unchanged (feepay.channels), at no extra round
# trip. (The row's own channel_id is set when a request is rejected; a recorded payment
# event carries its channel.)
_INSERT = dbapi.Statement("inbox_insert", """
INSERT INTO callback_inbox (received_at, adapter, channel, channel_id, method, path,
    query_string, headers, sealed_headers, body, body_size, remote_addr, state, reason, attempts,
    processed_at, event_id)
VALUES (:received_at, :adapter, :channel, NULL, :method, :path, :query_string, :headers,
    :sealed_headers, :body, :body_size, :remote_addr, :state, :reason, 0, :processed_at, NULL)
RETURNING id, (SELECT version FROM channels WHERE name = :channel AND adapter = :adapter)
""", {"received_at": "ts", "adapter": "text", "channel": "text", "method": "text",
      "path": "text", "query_string": "text", "headers": "text", "sealed_headers": "text",
      "body": "bytes",
      "body_size": "int", "remote_addr": "text", "state": "text", "reason": "text",
      "processed_at": "ts"})
_MARK = dbapi.Statement("inbox_mark", """
UPDATE callback_inbox SET state = :state, reason = :reason, processed_at = :processed_at,
    attempts = attempts + 1, event_id = COALESCE(:event_id, event_id),
    channel_id = COALESCE(:channel_id, channel_id)
WHERE id = :inbox_id
""", {"state": "text", "reason": "text", "processed_at": "ts", "event_id": "int",
      "channel_id": "int", "inbox_id": "int"})


@dataclass(frozen=True)
class Received:
    """A committed inbox row: its id, and the version of its channel then (``None``: no
    channel of that adapter by that name)."""

    inbox_id: int
    channel_version: int | None


def keep_headers(headers: Iterable[tuple[str, str]],
                 extra: Iterable[str] = ()) -> dict[str, str]:
    """The headers that matter, names lower-cased (later duplicates are joined by ``,``)."""
    wanted = KEPT_HEADERS | {h.lower() for h in extra}
    out: dict[str, str] = {}
    for name, value in headers:
        key = name.lower()
        if key in wanted:
            out[key] = f"{out[key]},{value}" if key in out else value
    return out


class Inbox:
    """Store raw callbacks first; mark what became of them; list what is left to replay."""

    def __init__(self, fp: FeePay) -> None:
        self.fp = fp

    def receive(self, adapter: str, channel: str, request: RawRequest, *,
                state: InboxState = InboxState.RECEIVED, reason: str | None = None,
                keep_body: bool = True, body_size: int | None = None,
                connection: Raw | None = None) -> int:
        """Commit the raw request; returns the inbox id (see :meth:`store`)."""
        return self.store(adapter, channel, request, state=state, reason=reason,
                          keep_body=keep_body, body_size=body_size,
                          connection=connection).inbox_id

    def store(self, adapter: str, channel: str, request: RawRequest, *,
              state: InboxState = InboxState.RECEIVED, reason: str | None = None,
              keep_body: bool = True, body_size: int | None = None,
              connection: Raw | None = None) -> Received:
        """Commit the raw request — one statement, its own transaction, durable when this
        returns (on ``connection`` when given, so a request uses one pooled connection)."""
        headers, sealed = self._split(request.headers)
        with dbapi.connect(self.fp.db, connection) as raw:
            values = {
                "received_at": raw.ts(request.received_at), "adapter": adapter[:40],
                "channel": channel[:60], "method": request.method[:10],
                "path": request.path[:300], "query_string": request.query_string,
                "headers": json.dumps(headers), "sealed_headers": sealed,
                "body": request.body if keep_body else b"",
                "body_size": len(request.body) if body_size is None else body_size,
                "remote_addr": (request.remote_addr or None) and request.remote_addr[:64],
                "state": state.value, "reason": _reason(reason),
                "processed_at": None if state is InboxState.RECEIVED else raw.ts(now_utc())}
            inbox_id, version = raw.one(_INSERT, values)
        return Received(inbox_id, version)

    def mark(self, inbox_id: int, state: InboxState, reason: str | None = None, *,
             event_id: int | None = None, channel_id: int | None = None,
             connection: Raw | None = None) -> None:
        """Record the outcome of processing (one statement, its own transaction)."""
        with dbapi.connect(self.fp.db, connection) as raw:
            raw.run(_MARK, {
                "state": state.value, "reason": _reason(reason),
                "processed_at": raw.ts(now_utc()), "event_id": event_id,
                "channel_id": channel_id, "inbox_id": inbox_id})

    def get(self, inbox_id: int) -> InboxItem:
        with self.fp.db.session() as s:
            row = s.get(InboxRow, inbox_id)
            if row is None:
                raise NotFound(f"no inbox item {inbox_id}", field="inbox_id")
            return self._to_model(row)

    def pending(self, *, limit: int = 500, after_id: int = 0,
                before: datetime | None = None) -> list[InboxItem]:
        """Rows still ``received`` (never processed), oldest first, for replay."""
        with self.fp.db.session() as s:
            q = (select(InboxRow).where(InboxRow.state == InboxState.RECEIVED.value,
                                        InboxRow.id > after_id)
                 .order_by(InboxRow.id).limit(limit))
            if before is not None:
                q = q.where(InboxRow.received_at < before)
            return [self._to_model(r) for r in s.scalars(q)]

    def list(self, *, state: InboxState | None = None, limit: int = 100) -> list[InboxItem]:
        with self.fp.db.session() as s:
            q = select(InboxRow).order_by(InboxRow.id.desc()).limit(limit)
            if state is not None:
                q = q.where(InboxRow.state == state.value)
            return [self._to_model(r, unseal=False) for r in s.scalars(q)]

    def counts(self) -> dict[str, int]:
        """How many rows are in each state."""
        with self.fp.db.session() as s:
            rows = s.execute(select(InboxRow.state, func.count()).group_by(InboxRow.state))
            out = {st.value: 0 for st in InboxState}
            out.update({state: n for state, n in rows})
            return out

    def _split(self, headers: dict[str, str]) -> tuple[dict[str, str], str | None]:
        """The headers to store in clear, and the credential-bearing ones sealed."""
        if not SECRET_HEADERS.intersection(headers):
            return headers, None
        secret = {k: v for k, v in headers.items() if k in SECRET_HEADERS}
        clear = {k: v for k, v in headers.items() if k not in SECRET_HEADERS}
        return clear, self.fp.sealer.seal(json.dumps(secret))

    def _to_model(self, row: InboxRow, *, unseal: bool = True) -> InboxItem:
        """The stored request; ``unseal``: with its credential headers opened (replay
        needs them; a listing does not). A row whose sealed headers cannot be opened (the
        key was dropped before ``feepay keys rotate``) gets :data:`UNREADABLE` instead,
        so replay leaves it for later rather than failing or rejecting it."""
        headers = json.loads(row.headers or "{}")
        if row.sealed_headers and unseal:
            try:
                headers.update(json.loads(self.fp.sealer.open(row.sealed_headers)))
            except Exception:  # noqa: BLE001 - reported per row, the others still load
                log.error("inbox row %s: its sealed headers cannot be opened (a missing "
                          "key?); left for replay once the key is back", row.id)
                headers[UNREADABLE] = "1"
        return InboxItem(
            id=row.id, adapter=row.adapter, channel=row.channel, channel_id=row.channel_id,
            request=RawRequest(method=row.method, path=row.path,
                               query_string=row.query_string, headers=headers,
                               body=bytes(row.body), remote_addr=row.remote_addr,
                               received_at=row.received_at),
            state=InboxState(row.state), reason=row.reason, attempts=row.attempts,
            processed_at=row.processed_at, event_id=row.event_id, body_size=row.body_size)


def _reason(reason: str | None) -> str | None:
    return reason[:MAX_REASON] if reason else None




def seal_clear_headers(fp: FeePay) -> int:
    """Seal credential headers still kept in clear (rows stored before migration 0005).

    ``feepay keys rotate`` runs it; returns how many rows it sealed.
    """
    inbox = Inbox(fp)
    n = 0
    with fp.db.session() as s:
        rows = s.scalars(select(InboxRow).where(InboxRow.headers.contains('"authorization"')
                                                | InboxRow.headers.contains('"secure-token"')))
        for row in rows:
            headers = json.loads(row.headers or "{}")
            clear, sealed = inbox._split(headers)
            if sealed is None or row.sealed_headers:  # nothing in clear / already sealed
                continue
            row.headers, row.sealed_headers = json.dumps(clear), sealed
            n += 1
    return n
