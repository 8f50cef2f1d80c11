"""The ``callbacks`` blueprint: ``GET|POST /callbacks/<adapter>/<channel>``.

Thin by design: it reads the raw request (method, path, raw query string, the headers that
matter, the body bytes up to ``CALLBACK_MAX_BYTES``, remote address, time of receipt) and
hands it to :class:`adapters.pipeline.CallbackPipeline`, which commits it to the inbox
first, verifies, parses, records and picks the provider's reply. See docs/callbacks.md.
"""

from __future__ import annotations

from flask import Blueprint, Response, current_app, request

from adapters.callbacks import Reply
from feepay.inbox import keep_headers
from feepay.models import RawRequest
from feepay.money import now_utc

bp = Blueprint("callbacks", __name__, url_prefix="/callbacks")


@bp.route("/<adapter>/<channel>", methods=["GET", "POST"])
def receive(adapter: str, channel: str) -> Response:
    received_at = now_utc()
    pipeline = current_app.extensions["feepay.pipeline"]
    limit = int(current_app.config["CALLBACK_MAX_BYTES"])
    raw = RawRequest(
        method=request.method, path=request.path[:300],
        query_string=request.query_string.decode("utf-8", "replace"),
        headers=keep_headers(request.headers.items()), body=b"",
        remote_addr=request.remote_addr, received_at=received_at)
    declared = request.content_length
    if declared is not None and declared > limit:
        return _send(pipeline.reject_oversize(adapter, channel, raw, limit, declared).reply)
    body = request.stream.read(limit + 1)
    if len(body) > limit:
        return _send(pipeline.reject_oversize(adapter, channel, raw, limit, len(body)).reply)
    outcome = pipeline.handle(adapter, channel, raw.model_copy(update={"body": body}))
    return _send(outcome.reply)


def _send(reply: Reply) -> Response:
    resp = Response(reply.body, status=reply.status, content_type=reply.content_type)
    for name, value in reply.headers.items():
        resp.headers[name] = value
    return resp
