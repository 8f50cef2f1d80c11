"""The Flask application factory.

:func:`create_app` builds the WSGI app in steps (flaskr-style): defaults, then the given
``test_config`` mapping, then the FeePay handle, then each blueprint. Later blueprints
(admin, public, api) join :data:`BLUEPRINTS` — or an embedding application registers its
own on the returned app; every view reaches the handle with :func:`get_fp`.

Configuration keys:

=======================  =================================================================
``FEEPAY_DATABASE_URL``  database URL (default: ``FEEPAY_DATABASE_URL`` env, then SQLite)
``CALLBACK_MAX_BYTES``   largest callback body accepted (default 65 536); larger ones are
                         answered 413 and kept in the inbox without their body
``FEEPAY_MIGRATE``       run migrations when the app starts (default False; ``feepay serve``
                         migrates once before starting workers)
=======================  =================================================================
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from flask import Blueprint, Flask, current_app, jsonify
from sqlalchemy import text

if TYPE_CHECKING:
    from feepay.api import FeePay

log = logging.getLogger(__name__)

#: Blueprints registered by :func:`create_app`, as ``"module:attribute"``.
BLUEPRINTS: list[str] = [
    "webapp.callbacks:bp",
]

DEFAULTS: dict[str, Any] = {
    "FEEPAY_DATABASE_URL": None,
    "CALLBACK_MAX_BYTES": 64 * 1024,
    "FEEPAY_MIGRATE": False,
    "JSON_AS_ASCII": False,
}

health = Blueprint("health", __name__)


@health.get("/healthz")
def healthz():  # noqa: ANN201
    """Liveness and database reachability, for load balancers and ``feepay serve`` users."""
    try:
        with get_fp().db.engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    except Exception as exc:  # noqa: BLE001 - report any database failure as 503
        log.error("healthz: database unreachable: %s", exc)
        return jsonify(status="error", database="unreachable"), 503
    return jsonify(status="ok", database="ok")


def create_app(test_config: Mapping[str, Any] | None = None, *,
               fp: FeePay | None = None) -> Flask:
    """Build the feepay web application.

    Args:
        test_config: configuration overriding the defaults (tests, embedding apps).
        fp: an existing FeePay handle to serve; by default one is opened from
            ``FEEPAY_DATABASE_URL`` (config, then environment).
    """
    app = Flask(__name__)
    app.config.from_mapping(DEFAULTS)
    if test_config:
        app.config.from_mapping(test_config)
    _setup_feepay(app, fp)
    _register_blueprints(app)
    return app


def _setup_feepay(app: Flask, fp: FeePay | None) -> None:
    from adapters.pipeline import CallbackPipeline
    from feepay.api import FeePay

    if fp is None:
        fp = FeePay.open(app.config["FEEPAY_DATABASE_URL"],
                         migrate=bool(app.config["FEEPAY_MIGRATE"]))
    app.extensions["feepay"] = fp
    app.extensions["feepay.pipeline"] = CallbackPipeline(fp)


def _register_blueprints(app: Flask) -> None:
    app.register_blueprint(health)
    for target in BLUEPRINTS:
        module, _, attr = target.partition(":")
        app.register_blueprint(getattr(importlib.import_module(module), attr))


def get_fp() -> FeePay:
    """The FeePay handle of the current app."""
    return current_app.extensions["feepay"]
