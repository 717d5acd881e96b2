"""Column types shared by every domain."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from sqlalchemy import JSON, String, Text, event
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import Mapper
from sqlalchemy.types import TypeDecorator

from tradeguard.core.sensitive import mask_sensitive_text, scrub_value


class DecimalString(TypeDecorator[Decimal]):
    """Exact decimals stored as text: SQLite has no exact numeric type, and money is never float."""

    impl = String(40)
    cache_ok = True

    def process_bind_param(self, value: Decimal | None, dialect: Dialect) -> str | None:
        if value is None:
            return None
        if not isinstance(value, Decimal) or not value.is_finite():
            raise TypeError("DecimalString columns take finite Decimal values only")
        return str(value)

    def process_result_value(self, value: Any, dialect: Dialect) -> Decimal | None:
        return None if value is None else Decimal(value)


def _scrub(value: str | None) -> str | None:
    return None if value is None else mask_sensitive_text(value)


class ScrubbedText(TypeDecorator[str]):
    """Free text people type (a reason, a note, a title), stored with any card number or tax
    id in it masked (core/sensitive.py; PCI DSS 3.5.1): what was typed by mistake never
    reaches the table, its backups or the ledger event that quotes it. `ScrubbedString` is
    the same with a length limit."""

    impl = Text
    cache_ok = True

    def process_bind_param(self, value: str | None, dialect: Dialect) -> str | None:
        return _scrub(value)

    def process_result_value(self, value: Any, dialect: Dialect) -> str | None:
        return None if value is None else str(value)


class ScrubbedString(TypeDecorator[str]):
    """`ScrubbedText` for a column of bounded length."""

    impl = String
    cache_ok = True

    def process_bind_param(self, value: str | None, dialect: Dialect) -> str | None:
        return _scrub(value)

    def process_result_value(self, value: Any, dialect: Dialect) -> str | None:
        return None if value is None else str(value)


class ScrubbedJSON(TypeDecorator[Any]):
    """A JSON column whose strings are free text people typed (a case note's detail)."""

    impl = JSON
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Dialect) -> Any:
        return scrub_value(value)


SCRUBBED_TYPES = (ScrubbedText, ScrubbedString, ScrubbedJSON)


def _scrubbed_on_set(target: Any, value: Any, oldvalue: Any, initiator: Any) -> Any:
    return scrub_value(value)


def scrub_on_assignment(mapper: Mapper[Any], class_: type[Any]) -> None:
    """Mask a scrubbed column's value when it is assigned, not only when it is written: the
    object a request answers with (before any reload) then already shows the masked text."""
    for prop in mapper.column_attrs:
        if any(isinstance(column.type, SCRUBBED_TYPES) for column in prop.columns):
            event.listen(getattr(class_, prop.key), "set", _scrubbed_on_set, retval=True)
