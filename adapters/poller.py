"""Polling gateways that only call back on success (ZaloPay): ask about open orders.

ZaloPay sends its callback only for paid orders, and a callback can be lost. So every
order opened at ZaloPay is noted (``fp.payments.open_order``) and ``feepay channels poll
<channel>`` (run it every minute or two, e.g. from cron or the scheduler) asks ZaloPay
about each open one. A paid answer goes through the same pipeline as a callback — stored
in the inbox first (method ``POLL``), recorded idempotently on ``zp_trans_id`` — so
whichever of callback and poll comes second is a duplicate, never a second payment.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING

from adapters.gateways.zalopay import QUERY_URL, PollAnswer, Transport, ZalopayPoller
from adapters.gateways.zalopay import http_post_form as default_transport
from adapters.pipeline import CallbackPipeline
from feepay.exceptions import ConfigurationError, ValidationError
from feepay.models import RawRequest
from feepay.money import now_utc

if TYPE_CHECKING:
    from feepay.api import FeePay

log = logging.getLogger(__name__)


@dataclass
class PollReport:
    channel: str
    asked: int = 0
    paid: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    still_open: list[str] = field(default_factory=list)
    errors: dict[str, str] = field(default_factory=dict)

    def as_dict(self) -> dict[str, object]:
        return {"channel": self.channel, "asked": self.asked, "paid": self.paid,
                "failed": self.failed, "open": self.still_open, "errors": self.errors}


def poll_zalopay(fp: FeePay, channel_name: str, *, transport: Transport | None = None,
                 now: datetime | None = None,
                 pipeline: CallbackPipeline | None = None) -> PollReport:
    """Ask ZaloPay about every open order of a channel; record the paid ones."""
    channel = fp.channels.get(channel_name)
    if channel.adapter != "zalopay":
        raise ValidationError(f"channel {channel_name} is a {channel.adapter} channel; only "
                              "zalopay channels are polled", field="channel")
    creds = fp.channels.credentials(channel_name)
    if not channel.merchant_id or not creds.values("key1"):
        raise ConfigurationError(f"channel {channel_name} needs its app_id (--merchant) and "
                                 "a key1 secret to query ZaloPay")
    poller = ZalopayPoller(channel.merchant_id, creds.values("key1")[0],
                           url=str(channel.settings.get("query_url") or QUERY_URL),
                           transport=transport or default_transport)
    pipeline = pipeline or CallbackPipeline(fp)
    report = PollReport(channel_name)
    for order_id in fp.payments.orders_to_poll(channel, now=now):
        at = now or now_utc()
        report.asked += 1
        try:
            answer = poller.query(order_id, now=at)
        except Exception as exc:  # noqa: BLE001 - network trouble: try again next run
            log.warning("polling %s order %s failed: %s", channel_name, order_id, exc)
            report.errors[order_id] = str(exc)
            continue
        if answer.state == PollAnswer.PAID:
            _record(pipeline, channel_name, order_id, answer, at)
            report.paid.append(order_id)
        elif answer.state == PollAnswer.FAILED:
            report.failed.append(order_id)
        else:
            report.still_open.append(order_id)
        fp.payments.close_order(channel, order_id, answer.state, now=at)
    return report


def _record(pipeline: CallbackPipeline, channel: str, order_id: str, answer: PollAnswer,
            at: datetime) -> None:
    data = json.dumps(answer.event.raw, separators=(",", ":")) if answer.event else "{}"
    body = json.dumps({"data": data, "mac": "", "type": 1, "query_answer": answer.answer},
                      separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    raw = RawRequest(method="POLL", path=f"/poll/zalopay/{channel}/{order_id}"[:300],
                     headers={"content-type": "application/json"}, body=body,
                     remote_addr=None, received_at=at)
    pipeline.handle("zalopay", channel, raw)
