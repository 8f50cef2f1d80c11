"""The callback pipeline: inbox first, verify, parse, record, reply.

:class:`CallbackPipeline` is what the web endpoint, ``feepay inbox replay`` and the
ZaloPay poller share, so a request is handled the same way whether it arrives live or is
replayed after a crash:

1. :meth:`CallbackPipeline.handle` commits the raw request to the inbox (its own
   transaction: one statement, which also returns the channel's version) — before
   anything else, so nothing received is ever lost;
2. it then finds the adapter and the channel (credentials cached in-process for exactly
   that version: :meth:`feepay.channels.Channels.lookup`), verifies the signature, parses
   the request, and records the event through ``fp.payments`` (which also marks the inbox
   row processed, atomically with the event: one statement on PostgreSQL);
3. the adapter's reply goes back to the provider.

:meth:`CallbackPipeline.process` runs step 2 for a stored row (``feepay inbox replay``,
the ZaloPay poller), verifying against the secrets active when it was *received*.

A failed verification or an unreadable body marks the inbox row ``rejected`` with the
reason and changes nothing else — in particular no idempotency record is written, so a
forged request cannot poison the genuine one. An error while recording leaves the row
``received`` (replay will retry it) and answers with the provider's "try again" reply.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

import pydantic

from adapters.callbacks import CallbackAdapter, Reply, refused_field
from adapters.registry import Registry, default_registry
from feepay import dbapi
from feepay.exceptions import FeepayError, MalformedCallback, SignatureError, UnknownAdapter
from feepay.inbox import UNREADABLE
from feepay.models import Channel, Credentials, InboxItem, InboxState, RawRequest
from feepay.money import now_utc

if TYPE_CHECKING:
    from feepay.api import FeePay
    from feepay.dbapi import Raw

log = logging.getLogger(__name__)

NOT_FOUND = Reply.json({"error": "unknown callback endpoint"}, status=404)
METHOD_NOT_ALLOWED = Reply.json({"error": "method not allowed"}, status=405)
TOO_LARGE = Reply.json({"error": "request body too large"}, status=413)
_READ = object()  # no channel version known: read the channel from the database


@dataclass(frozen=True)
class Outcome:
    """What happened to one request (for logs, tests and ``inbox replay`` output)."""

    inbox_id: int
    state: InboxState
    reply: Reply
    reason: str | None = None
    event_id: int | None = None
    duplicate: bool = False


class CallbackPipeline:
    """Handles callback requests for one FeePay handle (thread-safe; share one)."""

    def __init__(self, fp: FeePay, registry: Registry | None = None) -> None:
        self.fp = fp
        self.registry = registry or default_registry()
        self._write_lock = (threading.Lock() if fp.db.dialect == "sqlite"
                            else contextlib.nullcontext())
        self._connections = dbapi.HotConnections(fp.db)

    # -- entry points ----------------------------------------------------------------------
    def handle(self, adapter: str, channel: str, request: RawRequest) -> Outcome:
        """Receive (commit to the inbox) and process one live request.

        One connection serves the whole request (:class:`feepay.dbapi.HotConnections`:
        kept between requests, autocommit): the inbox insert (which also returns the
        channel's version, so cached credentials are checked for free), then the
        recording. On SQLite the writes of this process are also serialised by a lock,
        which spares SQLite's busy-wait back-off (one writer at a time anyway).
        """
        with self._write_lock, self._connections.connection() as raw:
            received = self.fp.inbox.store(adapter, channel, request, connection=raw)
            return self._process(received.inbox_id, adapter, channel, request, raw,
                                 live_version=received.channel_version)

    def reject_oversize(self, adapter: str, channel: str, request: RawRequest,
                        limit: int, size: int) -> Outcome:
        """Keep a trace of a request whose body was too large (the body is not stored)."""
        reason = f"body too large: {size} bytes > limit {limit}"
        inbox_id = self.fp.inbox.receive(adapter, channel, request, keep_body=False,
                                         state=InboxState.REJECTED, reason=reason,
                                         body_size=size)
        return Outcome(inbox_id, InboxState.REJECTED, TOO_LARGE, reason)

    def replay(self, item: InboxItem) -> Outcome:
        """Process a stored, not yet processed inbox row again (``feepay inbox replay``)."""
        return self.process(item.id, item.adapter, item.channel, item.request, replay=True)

    # -- the steps -------------------------------------------------------------------------
    def process(self, inbox_id: int, adapter_name: str, channel_name: str,
                request: RawRequest, *, replay: bool = False,
                connection: Raw | None = None) -> Outcome:
        """Verify, parse and record a stored request (on ``connection`` when given).

        A replay verifies with the secrets that were accepted when the request was
        received (``request.received_at``), read from the database.
        """
        return self._process(inbox_id, adapter_name, channel_name, request, connection,
                             at=request.received_at if replay else None)

    def _process(self, inbox_id: int, adapter_name: str, channel_name: str,
                 request: RawRequest, conn: Raw | None, *, at: datetime | None = None,
                 live_version: int | None | object = _READ) -> Outcome:
        try:
            adapter = self.registry.get(adapter_name)
        except UnknownAdapter:
            return self._reject(inbox_id, f"unknown adapter {adapter_name!r}", NOT_FOUND,
                                conn=conn)
        found = self._channel(channel_name, at, live_version)
        if found is None or found[0].adapter != adapter_name:
            return self._reject(inbox_id, f"no {adapter_name} channel named {channel_name!r}",
                                NOT_FOUND, conn=conn)
        channel, creds = found
        if not channel.active:
            return self._reject(inbox_id, f"channel {channel_name} is disabled", NOT_FOUND,
                                channel.id, conn=conn)
        if request.method not in adapter.methods and request.method != "POLL":
            return self._reject(inbox_id, f"method {request.method} not allowed",
                                METHOD_NOT_ALLOWED, channel.id, conn=conn)
        return self._verified(inbox_id, adapter, channel, creds, request, conn)

    def _verified(self, inbox_id: int, adapter: CallbackAdapter, channel: Channel,
                  creds: Credentials, request: RawRequest, conn: Raw | None) -> Outcome:
        try:
            if request.method != "POLL":  # polled answers came over our own TLS call
                adapter.verify(request, creds)
            event = adapter.parse(request)
        except (SignatureError, MalformedCallback) as exc:
            kind = "signature" if isinstance(exc, SignatureError) else "malformed"
            return self._reject(inbox_id, f"{kind}: {exc}", adapter.reply_rejected(exc),
                                channel.id, conn=conn)
        except FeepayError as exc:  # e.g. an amount parse_vnd refused
            err = MalformedCallback(str(exc))
            return self._reject(inbox_id, f"malformed: {exc}", adapter.reply_rejected(err),
                                channel.id, conn=conn)
        except pydantic.ValidationError as exc:  # a value our event model refuses
            err = MalformedCallback(": ".join(refused_field(exc, "request")))
            return self._reject(inbox_id, f"malformed: {err}", adapter.reply_rejected(err),
                                channel.id, conn=conn)
        except Exception:  # noqa: BLE001 - an adapter bug: keep the row for replay
            log.exception("%s could not read inbox item %s; left for replay", adapter.name,
                          inbox_id)
            return Outcome(inbox_id, InboxState.RECEIVED, adapter.reply_error(),
                           "error while reading the request")
        if event is None:
            self.fp.inbox.mark(inbox_id, InboxState.IGNORED, "no payment in this request",
                               channel_id=channel.id, connection=conn)
            return Outcome(inbox_id, InboxState.IGNORED, adapter.reply_ignored(),
                           "no payment in this request")
        try:
            result = self.fp.payments.record(event, channel=channel, inbox_id=inbox_id,
                                             received_at=request.received_at,
                                             txn_scope=adapter.txn_scope(channel),
                                             connection=conn)
        except Exception:  # noqa: BLE001 - the row stays 'received'; replay retries it
            log.exception("recording inbox item %s failed; left for replay", inbox_id)
            return Outcome(inbox_id, InboxState.RECEIVED, adapter.reply_error(),
                           "error while recording")
        return Outcome(inbox_id, InboxState.PROCESSED, adapter.reply(result),
                       event_id=result.event_id, duplicate=result.duplicate)

    def _channel(self, name: str, at: datetime | None,
                 live_version: int | None | object) -> tuple[Channel, Credentials] | None:
        """The channel and the credentials to verify with.

        Live requests (``live_version`` is the channel version read when the request was
        committed to the inbox; ``None``: no such channel) use the in-process cache, valid
        for exactly that version; replays read the secrets accepted at ``at``.
        """
        if live_version is None:
            return None
        if at is None:
            return self.fp.channels.lookup(
                name, live_version if isinstance(live_version, int) else None)
        try:
            channel = self.fp.channels.get(name)
        except FeepayError:
            return None
        return channel, self.fp.channels.credentials(name, at=at)

    def _reject(self, inbox_id: int, reason: str, reply: Reply,
                channel_id: int | None = None, *, conn: Raw | None = None) -> Outcome:
        log.warning("callback %s rejected: %s", inbox_id, reason)
        self.fp.inbox.mark(inbox_id, InboxState.REJECTED, reason, channel_id=channel_id,
                           connection=conn)
        return Outcome(inbox_id, InboxState.REJECTED, reply, reason)


def replay_pending(fp: FeePay, *, limit: int | None = None,
                   pipeline: CallbackPipeline | None = None,
                   older_than: float = 0.0) -> list[Outcome]:
    """Process every inbox row still ``received``, oldest first (idempotent).

    Args:
        limit: stop after this many rows.
        older_than: only rows received at least this many seconds ago (so a replay run
            beside a live server leaves requests that are being processed right now).
    """
    pipeline = pipeline or CallbackPipeline(fp)
    before = None
    if older_than:
        from datetime import timedelta

        before = now_utc() - timedelta(seconds=older_than)
    outcomes: list[Outcome] = []
    after = 0
    while limit is None or len(outcomes) < limit:
        batch = fp.inbox.pending(after_id=after, before=before, limit=200)
        if not batch:
            break
        for item in batch:
            outcomes.append(_replay_one(pipeline, item))
            after = item.id
            if limit is not None and len(outcomes) >= limit:
                break
    return outcomes


def _replay_one(pipeline: CallbackPipeline, item: InboxItem) -> Outcome:
    """Replay one row; a failure is logged and reported, and the rows after it still run
    (the failed row stays ``received`` for the next replay)."""
    if UNREADABLE in item.request.headers:
        return Outcome(item.id, InboxState.RECEIVED, Reply.json(
            {"error": "sealed headers unreadable"}, status=500),
            "its sealed headers cannot be opened (is a key missing from "
            "FEEPAY_SECRET_KEYS?); left for the next replay")
    try:
        return pipeline.replay(item)
    except Exception as exc:  # noqa: BLE001 - one bad row must not stop the others
        log.exception("replaying inbox item %s failed; left for the next replay", item.id)
        return Outcome(item.id, InboxState.RECEIVED, Reply.json({"error": "replay failed"},
                                                                 status=500),
                       f"replay failed: {type(exc).__name__}: {exc}"[:500])

