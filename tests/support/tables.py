"""Whether migrations build exactly the tables the models describe (alembic autogenerate)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy.engine import Connection

from tradeguard.db.base import Base


def model_differences(tables: set[str]) -> Callable[[Connection], list[Any]]:
    """For `conn.run_sync`: what differs between the database and the models, among `tables`."""

    def mine(item: Any, name: str | None, type_: str, reflected: bool, compare_to: Any) -> bool:
        table = name if type_ == "table" else getattr(getattr(item, "table", None), "name", None)
        return table in tables

    def differences(connection: Connection) -> list[Any]:
        context = MigrationContext.configure(connection, opts={"include_object": mine})
        return list(compare_metadata(context, Base.metadata))

    return differences
