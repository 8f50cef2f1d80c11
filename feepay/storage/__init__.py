"""Storage: SQLAlchemy 2.0 tables, engines and sessions, Alembic migrations.

ORM rows stay inside ``feepay`` services; callers get pydantic models.
"""

from feepay.storage.base import Base
from feepay.storage.engine import Database, open_database

__all__ = ["Base", "Database", "open_database"]
