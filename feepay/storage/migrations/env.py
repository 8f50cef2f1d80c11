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
        sqlite = connection.dialect.name == "sqlite"
        if sqlite:  # batch mode re-creates tables that others reference: see _foreign_keys
            _foreign_keys(connection, on=False)
        try:
            context.configure(
                connection=connection,
                target_metadata=target_metadata,
                render_as_batch=sqlite,
                compare_type=True,
                # all revisions in one transaction, SQLite too (the engine issues its
                # BEGIN): a migration that refuses undoes the ones before it
                transactional_ddl=True,
            )
            with context.begin_transaction():
                context.run_migrations()
                if sqlite:
                    _check_foreign_keys(connection)
            connection.commit()
        finally:
            if sqlite:
                _foreign_keys(connection, on=True)


def _foreign_keys(connection, *, on: bool) -> None:  # noqa: ANN001
    """SQLite cannot alter a table in place: Alembic's batch mode copies it into a new
    table, drops the old one and renames. With foreign keys enforced, dropping a table that
    other tables reference fails (or would cascade), so enforcement is off during the
    migration — the pragma only takes effect outside a transaction, hence on the driver
    connection before Alembic begins — and the whole database is checked before commit."""
    connection.connection.driver_connection.execute(
        f"PRAGMA foreign_keys={'ON' if on else 'OFF'}")


def _check_foreign_keys(connection) -> None:  # noqa: ANN001
    broken = connection.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
    if broken:
        raise RuntimeError(f"migration left {len(broken)} broken foreign key(s), e.g. "
                           f"{broken[0]}: rolled back")


run()
