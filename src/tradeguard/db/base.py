"""Declarative base shared by every domain's tables."""

from __future__ import annotations

from sqlalchemy import MetaData, event
from sqlalchemy.orm import DeclarativeBase

from tradeguard.db.types import scrub_on_assignment

# Stable constraint names so Alembic migrations are identical on SQLite and PostgreSQL.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


# Free-text columns mask card numbers and tax ids as soon as they are assigned (db/types.py).
event.listen(Base, "mapper_configured", scrub_on_assignment, propagate=True)
