"""Machine facts printed beside every benchmark figure."""

from __future__ import annotations

import os
import platform
import sys
import time


def machine(db_urls: list[str] | tuple[str, ...] = ()) -> dict[str, str]:
    info = {"python": sys.version.split()[0], "platform": platform.platform(),
            "cpus": str(os.cpu_count())}
    try:
        with open("/proc/cpuinfo") as fh:
            info["cpu"] = next(line.split(":", 1)[1].strip() for line in fh
                               if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    import sqlite3

    info["sqlite"] = sqlite3.sqlite_version
    info["python_speed"] = f"{python_speed():.1f} M loop steps/s (best of 3)"
    for url in db_urls:
        if url.startswith("postgresql"):
            from sqlalchemy import create_engine, make_url, text

            # the server's own database: the benchmark's may not exist yet
            eng = create_engine(make_url(url).set(database="postgres"))
            with eng.connect() as conn:
                info["postgresql"] = conn.execute(text("SHOW server_version")).scalar()
            eng.dispose()
    return info


def python_speed(steps: int = 2_000_000) -> float:
    """Millions of steps per second of a small pure-Python loop (an add and a dict store
    each), best of three: a yardstick for comparing figures taken on different machines —
    this workplace's machines of one kind differ by up to 2× in it."""
    best = float("inf")
    for _ in range(3):
        store: dict[int, int] = {}
        clock = time.perf_counter()
        total = 0
        for i in range(steps):
            total += i
            store[i & 1023] = total
        best = min(best, time.perf_counter() - clock)
    return steps / best / 1e6


def print_machine(db_urls: list[str] | tuple[str, ...] = ()) -> None:
    for k, v in machine(db_urls).items():
        print(f"# {k}: {v}")
