"""`feepay serve` and `feepay inbox …` (gathered by webapp/cli.py).

``feepay serve`` runs the web app under gunicorn (production: several worker processes,
threads per worker) when gunicorn is installed, else under Werkzeug's development server
with a warning. Migrations run once before the workers start; each worker then builds its
own app (and database pool) after the fork.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable

import click

from feepay import clikit
from feepay.models import InboxState

log = logging.getLogger(__name__)


def gunicorn_available() -> bool:
    try:
        import gunicorn  # noqa: F401
    except ImportError:
        return False
    return True


def gunicorn_options(*, bind: str, workers: int, threads: int, timeout: int = 30,
                     access_log: bool = False) -> dict[str, object]:
    """The gunicorn settings ``feepay serve`` uses (``gthread`` workers when threaded)."""
    return {"bind": bind, "workers": workers, "threads": threads,
            "worker_class": "gthread" if threads > 1 else "sync",
            "timeout": timeout, "graceful_timeout": 10, "keepalive": 5,
            "accesslog": "-" if access_log else None, "proc_name": "feepay"}


def run_gunicorn(db_url: str, *, bind: str, workers: int, threads: int,
                 timeout: int = 30, max_body: int | None = None,
                 access_log: bool = False,
                 app_factory: Callable[[], object] | None = None) -> None:
    """Serve ``create_app`` with gunicorn (blocks until stopped).

    ``app_factory`` serves another WSGI app under exactly the same settings (the
    benchmark's minimal endpoint uses it).
    """
    from gunicorn.app.base import BaseApplication

    class FeepayServer(BaseApplication):
        def load_config(self) -> None:
            for key, value in gunicorn_options(bind=bind, workers=workers, threads=threads,
                                               timeout=timeout,
                                               access_log=access_log).items():
                self.cfg.set(key, value)

        def load(self):  # noqa: ANN202 - runs in each worker, after the fork
            if app_factory is not None:
                return app_factory()
            from webapp.app import create_app

            config = {"FEEPAY_DATABASE_URL": db_url}
            if max_body:
                config["CALLBACK_MAX_BYTES"] = max_body
            return create_app(config)

    FeepayServer().run()


@click.command("serve")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=int)
@click.option("--workers", default=lambda: int(os.environ.get("FEEPAY_WORKERS", "0"))
              or (os.cpu_count() or 1), type=int,
              help="Worker processes (default: one per CPU, or FEEPAY_WORKERS).")
@click.option("--threads", default=8, show_default=True, type=int,
              help="Threads per worker (gthread): requests mostly wait on the database.")
@click.option("--dev", is_flag=True, help="Werkzeug development server (single process).")
@click.option("--access-log", is_flag=True, help="Log every request to stderr.")
@clikit.json_option
@clikit.command
def serve(fp, host: str, port: int, workers: int, threads: int, dev: bool,  # noqa: ANN001
          access_log: bool, as_json: bool) -> None:
    """Run the web service (callbacks, /healthz) — gunicorn when installed."""
    fp.db.upgrade()
    url = fp.db.url
    fp.close()
    use_gunicorn = gunicorn_available() and not dev
    clikit.emit(as_json, {"server": "gunicorn" if use_gunicorn else "werkzeug",
                          "bind": f"{host}:{port}", "workers": workers, "threads": threads},
                f"feepay serving on http://{host}:{port} "
                f"({'gunicorn' if use_gunicorn else 'development server'}) — /healthz")
    if use_gunicorn:
        run_gunicorn(url, bind=f"{host}:{port}", workers=workers, threads=threads,
                     access_log=access_log)
        return
    if not dev:
        log.warning("gunicorn is not installed: using the development server "
                    "(pip install 'feepay[server]' for production)")
    from webapp.app import create_app

    create_app({"FEEPAY_DATABASE_URL": url}).run(host=host, port=port, threaded=True)


@click.group("inbox")
def inbox() -> None:
    """The callback inbox: every request received, and what became of it."""


@inbox.command("replay")
@click.option("--limit", type=int, help="At most this many rows.")
@click.option("--older-than", type=float, default=0.0, show_default=True,
              help="Only rows received at least this many seconds ago (use beside a "
                   "running server, e.g. 60).")
@clikit.json_option
@clikit.command
def replay(fp, limit: int | None, older_than: float, as_json: bool) -> None:  # noqa: ANN001
    """Process inbox rows never processed (after a crash). Idempotent: safe to re-run."""
    from adapters.pipeline import replay_pending

    outcomes = replay_pending(fp, limit=limit, older_than=older_than)
    summary: dict[str, int] = {}
    for o in outcomes:
        key = "duplicate" if o.duplicate else o.state.value
        summary[key] = summary.get(key, 0) + 1
    data = {"replayed": len(outcomes), "outcomes": summary,
            "items": [{"inbox_id": o.inbox_id, "state": o.state.value, "reason": o.reason,
                       "event_id": o.event_id, "duplicate": o.duplicate} for o in outcomes]}
    clikit.emit(as_json, data, lambda: f"replayed {len(outcomes)} inbox item(s): "
                + (", ".join(f"{k} {v}" for k, v in sorted(summary.items())) or "none"))


@inbox.command("list")
@click.option("--state", "state_filter", type=click.Choice([s.value for s in InboxState]))
@click.option("--limit", type=int, default=50, show_default=True)
@clikit.json_option
@clikit.command
def list_(fp, state_filter: str | None, limit: int, as_json: bool) -> None:  # noqa: ANN001
    """The latest inbox rows (newest first) and the count in each state."""
    items = fp.inbox.list(state=InboxState(state_filter) if state_filter else None,
                          limit=limit)
    counts = fp.inbox.counts()
    data = {"counts": counts, "items": [
        {"id": i.id, "received_at": i.request.received_at, "adapter": i.adapter,
         "channel": i.channel, "state": i.state.value, "reason": i.reason,
         "event_id": i.event_id, "body_size": i.body_size}
        for i in items]}

    def human() -> str:
        head = "  ".join(f"{k}: {v}" for k, v in counts.items())
        rows = [f"#{i.id} {clikit.local_time(i.request.received_at, seconds=True)} "
                f"{i.adapter}/{i.channel} {i.state.value} {i.body_size} B"
                + (f" — {i.reason}" if i.reason else "") for i in items]
        return "\n".join([head, *rows])

    clikit.emit(as_json, data, human)


commands: list[click.Command] = [serve, inbox]
