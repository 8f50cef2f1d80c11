"""Machine facts printed beside every benchmark figure."""

from __future__ import annotations

import os
import platform
import sys


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
    for url in db_urls:
        if url.startswith("postgresql"):
            from sqlalchemy import create_engine, text

            eng = create_engine(url)
            with eng.connect() as conn:
                info["postgresql"] = conn.execute(text("SHOW server_version")).scalar()
            eng.dispose()
    return info


def print_machine(db_urls: list[str] | tuple[str, ...] = ()) -> None:
    for k, v in machine(db_urls).items():
        print(f"# {k}: {v}")
