"""The ``callbacks`` blueprint: ``GET|POST /callbacks/<adapter>/<channel>``.

Thin by design: it reads the raw request (method, path, raw query string, the headers that
matter, the body bytes up to ``CALLBACK_MAX_BYTES``, remote address, time of receipt) and
hands it to :class:`adapters.pipeline.CallbackPipeline`, which commits it to the inbox
first, verifies, parses, records and picks the provider's reply. See docs/callbacks.md.
"""

from __future__ import annotations

import logging

from flask import Blueprint, Response, current_app, request
from werkzeug.exceptions import HTTPException

from adapters.callbacks import Reply
from feepay.inbox import keep_headers
from feepay.models import RawRequest
from feepay.money import now_utc

log = logging.getLogger(__name__)
bp = Blueprint("callbacks", __name__, url_prefix="/callbacks")


@bp.route("/<adapter>/<channel>", methods=["GET", "POST"])
def receive(adapter: str, channel: str) -> Response:
    received_at = now_utc()
    app = current_app._get_current_object()  # one context lookup each, not one per use
    req = request._get_current_object()
    pipeline = app.extensions["feepay.pipeline"]
    limit = int(app.config["CALLBACK_MAX_BYTES"])
    declared = req.content_length
    if declared is not None and declared > limit:
        body, size = b"", declared  # not even read
    else:
        body = req.stream.read(limit + 1)
        size = len(body)
    # built from the server's own values: no validation pass needed (model_construct)
    raw = RawRequest.model_construct(
        method=req.method, path=req.path[:300],
        query_string=req.query_string.decode("utf-8", "replace"),
        headers=keep_headers(req.headers.items()), body=body if size <= limit else b"",
        remote_addr=req.remote_addr, received_at=received_at)
    if size > limit:
        return _send(pipeline.reject_oversize(adapter, channel, raw, limit, size).reply)
    return _send(pipeline.handle(adapter, channel, raw).reply)


def _send(reply: Reply) -> Response:
    resp = Response(reply.body, status=reply.status, content_type=reply.content_type)
    for name, value in reply.headers.items():
        resp.headers[name] = value
    return resp


@bp.errorhandler(Exception)
def unexpected(exc: Exception) -> Response | HTTPException:
    """Anything that escaped the pipeline (the database down before the inbox commit):
    a JSON 503, so the provider retries — never an HTML error page."""
    if isinstance(exc, HTTPException):
        return exc
    log.exception("callback %s failed before it could be stored", request.path)
    return Response(b'{"error":"temporary error, retry"}', status=503,
                    content_type="application/json")
