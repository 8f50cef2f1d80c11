"""Alembic environment: runs against the engine handed over by ``Database.upgrade``."""

from __future__ import annotations

from alembic import context

import feepay.storage.tables  # noqa: F401 - registers every table on Base.metadata
from feepay.storage.base import Base

config = context.config
target_metadata = Base.metadata


def run() -> None:
    engine = config.attributes.get("engine")
    if engine is None:
        from feepay.storage.engine import make_engine

        engine = make_engine(config.get_main_option("sqlalchemy.url"))
    with engine.connect() as connection:
        context.configure(
            connection=connection,
            target_metadata=target_metadata,
            render_as_batch=connection.dialect.name == "sqlite",
            compare_type=True,
        )
        with context.begin_transaction():
            context.run_migrations()
        connection.commit()


run()
