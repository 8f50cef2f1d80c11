"""feepay's web layer: Flask app factory, blueprints, and the root `feepay` command."""

from __future__ import annotations


def create_app(*args, **kwargs):  # noqa: ANN002, ANN003, ANN201 - re-export, lazily
    """Build the feepay Flask app (see :func:`webapp.app.create_app`)."""
    from webapp.app import create_app as factory

    return factory(*args, **kwargs)


__all__ = ["create_app"]
