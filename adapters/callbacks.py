"""The callback adapter contract: verify, then parse, then reply.

A callback adapter turns one provider's push (a gateway IPN or a bank-credit webhook) into
a :class:`feepay.models.PaymentEvent` and back into the reply that provider expects. It
knows nothing of the database: the pipeline (``adapters.pipeline``) stores the raw request
first, hands it to :meth:`CallbackAdapter.verify`, then :meth:`CallbackAdapter.parse`,
records the event through ``fp.payments`` and answers with :meth:`CallbackAdapter.reply`.

Rules every adapter keeps (docs/adapters.md):

- ``verify`` runs before anything that matters is parsed, compares signatures in constant
  time (:func:`hmac.compare_digest`), accepts any of several active secrets (rotation) and
  raises :class:`~feepay.exceptions.SignatureError` (bad or missing signature, stale
  timestamp) or :class:`~feepay.exceptions.MalformedCallback` (cannot even be read);
- ``parse`` is only called on verified requests; it returns ``None`` for a verified push
  that carries no payment (an outgoing transfer), raises ``MalformedCallback`` otherwise;
- amounts become ``int`` VND via :func:`feepay.money.parse_vnd`; datetimes become aware;
- ``reply`` never raises.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from abc import ABC, abstractmethod
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, ClassVar

from pydantic import ValidationError as PydanticError

from feepay.exceptions import FeepayError, MalformedCallback, SignatureError, ValidationError
from feepay.models import Channel, Credentials, PaymentEvent, RawRequest, RecordResult
from feepay.money import parse_vnd


@dataclass(frozen=True)
class Reply:
    """An HTTP reply: status, body bytes, content type (the web layer sends it as is)."""

    status: int
    body: bytes = b""
    content_type: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)

    @classmethod
    def json(cls, data: object, status: int = 200) -> Reply:
        return cls(status, json.dumps(data, ensure_ascii=False, separators=(",", ":"))
                   .encode("utf-8"))

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", "replace")


class CallbackAdapter(ABC):
    """Base class of callback adapters. Subclasses are stateless; one instance serves all.

    Class attributes:
        name: the adapter name used in URLs (``/callbacks/<name>/<channel>``) and records.
        kind: ``gateway`` or ``bank``.
        methods: HTTP methods the provider uses.
        secret_names: the secrets a channel of this adapter must hold.
        optional_secrets: secrets a channel may hold.
        settings_help: non-secret channel settings this adapter reads, with their meaning.
    """

    name: ClassVar[str]
    kind: ClassVar[str] = "gateway"
    title: ClassVar[str] = ""
    methods: ClassVar[tuple[str, ...]] = ("POST",)
    secret_names: ClassVar[tuple[str, ...]] = ()
    optional_secrets: ClassVar[tuple[str, ...]] = ()
    settings_help: ClassVar[dict[str, str]] = {}

    def txn_scope(self, channel: Channel) -> str:
        """Where this provider's transaction ids are unique, for the idempotency key.

        Gateways number transactions provider-wide (``""``); a bank numbers them per source
        account, so two banks may both send ``id`` 42 — bank adapters scope ids to the
        channel (one channel per source account). Override if a provider differs.
        """
        return str(channel.id) if self.kind == "bank" else ""

    @abstractmethod
    def verify(self, request: RawRequest, credentials: Credentials) -> None:
        """Check the request's authenticity; raise SignatureError or MalformedCallback.

        Timestamps are judged against ``request.received_at`` (so a replay of the inbox
        judges them as when they arrived).
        """

    @abstractmethod
    def parse(self, request: RawRequest) -> PaymentEvent | None:
        """The payment this verified request reports (``None``: no payment in it)."""

    @abstractmethod
    def reply(self, result: RecordResult) -> Reply:
        """The provider's reply once the event is recorded."""

    @abstractmethod
    def reply_rejected(self, error: FeepayError) -> Reply:
        """The provider's reply to a request refused by verify/parse."""

    def reply_ignored(self) -> Reply:
        """The reply to a verified push that carries no payment (acknowledge it)."""
        return Reply.json({"success": True})

    def reply_error(self) -> Reply:
        """The reply when recording failed on our side (the provider should retry)."""
        return Reply.json({"success": False, "message": "temporary error"}, status=503)

    def required_secrets(self, settings: dict[str, object]) -> tuple[str, ...]:
        """Secrets a channel with these settings must have (some adapters depend on mode)."""
        return self.secret_names


# --- helpers shared by adapters ------------------------------------------------------------


def hmac_hex(key: str | bytes, message: str | bytes, digest: str = "sha256") -> str:
    """Hex HMAC of ``message`` under ``key`` (strings are UTF-8)."""
    k = key.encode("utf-8") if isinstance(key, str) else key
    m = message.encode("utf-8") if isinstance(message, str) else message
    return hmac.new(k, m, getattr(hashlib, digest)).hexdigest()


def matches_any(candidate: str, expected: Iterable[str]) -> bool:
    """Constant-time comparison of ``candidate`` against every expected value.

    Compares against all of them (no early exit) so timing does not reveal which secret
    of a rotation matched; hex case is ignored.
    """
    got = candidate.strip().lower().encode("ascii", "replace")
    ok = False
    for value in expected:
        ok |= hmac.compare_digest(got, value.lower().encode("ascii", "replace"))
    return ok


def require_secrets(credentials: Credentials, *names: str) -> dict[str, tuple[str, ...]]:
    """The values of each named secret; a channel without them cannot verify anything."""
    out = {n: credentials.values(n) for n in names}
    missing = [n for n, v in out.items() if not v]
    if missing:
        raise SignatureError(f"channel {credentials.channel} has no active "
                             f"{', '.join(missing)}: cannot verify")
    return out


def load_json_object(body: bytes, *, what: str = "body") -> dict[str, Any]:
    """Decode a JSON object from raw bytes or raise MalformedCallback."""
    try:
        data = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise MalformedCallback(f"the {what} is not JSON", field=what) from None
    if not isinstance(data, dict):
        raise MalformedCallback(f"the {what} is not a JSON object", field=what)
    return data


def refused_field(exc: PydanticError, default: str = "body") -> tuple[str, str]:
    """The first field a pydantic model refused and why: ``("id", "String should have at
    most 100 characters")`` (``default`` when the error names no field)."""
    first = exc.errors()[0]
    where = ".".join(str(part) for part in first.get("loc", ())) or default
    return where, first.get("msg", "invalid value")


def require_fields(data: dict[str, Any], *names: str) -> None:
    missing = [n for n in names if data.get(n) in (None, "")]
    if missing:
        raise MalformedCallback(f"missing field(s): {', '.join(missing)}", field=missing[0])


def parse_stamp_header(value: str | None, header: str) -> tuple[str, list[str]]:
    """Split a ``t=<stamp>,v1=<sig>[,v1=<sig>…]`` header into the stamp and signatures."""
    if not value:
        raise SignatureError(f"missing {header} header")
    stamp = None
    sigs: list[str] = []
    for part in value.split(","):
        key, sep, val = part.strip().partition("=")
        if not sep:
            continue
        if key == "t":
            stamp = val.strip()
        elif key == "v1":
            sigs.append(val.strip())
    if not stamp or not stamp.isdigit():
        raise SignatureError(f"{header} has no valid t= timestamp")
    if not sigs:
        raise SignatureError(f"{header} has no v1= signature")
    return stamp, sigs


def check_tolerance(stamp_seconds: float, received_at: datetime, tolerance: float) -> None:
    """Refuse a signed timestamp further than ``tolerance`` seconds from reception."""
    if tolerance and abs(received_at.timestamp() - stamp_seconds) > tolerance:
        raise SignatureError(
            f"signature timestamp is {abs(received_at.timestamp() - stamp_seconds):.0f} s "
            f"away from the time of receipt (tolerance {tolerance:.0f} s): replayed or "
            "clock skew")


def setting(credentials: Credentials, name: str, default: Any) -> Any:
    value = credentials.settings.get(name, default)
    return default if value is None else value


def amount_of(value: Any, field: str) -> int:
    """A provider's amount (JSON int or text) as int VND; refused as MalformedCallback."""
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise MalformedCallback(f"{field} {value!r} is not an amount", field=field)
    try:
        return parse_vnd(value, field=field)
    except ValidationError as exc:
        raise MalformedCallback(exc.message, field=field) from None


def clean_raw(data: dict[str, Any], *drop: str) -> dict[str, Any]:
    """The provider's fields minus signatures, for evidence on the payment event."""
    return {k: v for k, v in data.items() if k not in drop}
