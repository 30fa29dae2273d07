"""Hand-written SQL on hot paths: no ORM query compilation, and on PostgreSQL a server-side
prepared statement (psycopg keeps it per connection), so a statement is parsed and planned once
per connection instead of on every request.

Settings enable psycopg's preparation with a threshold no query reaches by repetition
(config/settings.py `prepare_threshold`): only the statements that ask for it here are
prepared. Statements still go through the connection's execute wrappers
(`connection.execute_wrapper`), so profilers and guards that count queries see them.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from django.db import DEFAULT_DB_ALIAS, connection, connections
from django.db.models import Field, Model

M = TypeVar("M", bound=Model)

Params = Sequence[Any] | Mapping[str, Any]


@dataclass
class Rider:
    """A data-modifying statement that runs as a CTE of another (PostgreSQL), sparing it a
    round trip of its own: e.g. the response of an idempotent request stored by the write it
    answers. `sql` names the host statement's CTE whose row it needs as `{only_if}` (the rider
    must write nothing without it, and return a row when it wrote); its parameters are named,
    with a prefix of its own. The host sets `ran` when the rider wrote."""

    sql: str
    params: dict[str, Any]
    ran: bool = False

    def cte(self, *, only_if: str) -> str:
        return self.sql.replace("{only_if}", only_if)


def named_parameters(
    sql: str, params: Sequence[Any], *, prefix: str, inline: Mapping[object, str] | None = None
) -> tuple[str, dict[str, Any]]:
    """`sql` with positional `%s` placeholders as named ones (`%(<prefix><n>)s`), to embed it
    in a statement with named parameters. A parameter that is a key of `inline` (compared by
    identity: a marker object) becomes that SQL expression instead (a column of the
    enclosing statement, say)."""
    parts = sql.split("%s")
    if len(parts) != len(params) + 1 or "%(" in sql:
        raise ValueError("expected exactly one positional %s placeholder per parameter")
    named: dict[str, Any] = {}
    pieces = [parts[0]]
    for index, (value, part) in enumerate(zip(params, parts[1:], strict=True)):
        expression = next((e for marker, e in (inline or {}).items() if marker is value), None)
        if expression is None:
            name = f"{prefix}{index}"
            named[name] = value
            expression = f"%({name})s"
        pieces.extend((expression, part))
    return "".join(pieces), named


def fetch(sql: str, params: Params, *, binary: bool = False) -> list[tuple[Any, ...]]:
    """The rows of `sql` (none for a statement without a result), prepared on PostgreSQL;
    `binary`: results in PostgreSQL's binary format (no text parsing of wide rows)."""
    database = connections[DEFAULT_DB_ALIAS]  # one lookup: the proxy's costs one each time
    if database.vendor != "postgresql":
        with database.cursor() as cursor:
            cursor.execute(sql, params)
            return cursor.fetchall() if cursor.description else []
    import psycopg

    database.ensure_connection()
    rows: list[tuple[Any, ...]] = []
    with database.wrap_database_errors, psycopg.Cursor(database.connection) as prepared:

        def execute(sql: str, params: Any, many: bool, context: Any) -> None:
            prepared.execute(sql, params, prepare=True, binary=binary)
            result = prepared.pgresult
            if result is not None and result.nfields:  # `description` builds Column objects
                rows.extend(prepared.fetchall())

        executor: Any = execute
        for wrapper in reversed(database.execute_wrappers):
            executor = functools.partial(wrapper, executor)
        began = time.monotonic()
        executor(sql, params, False, {"connection": database, "cursor": prepared})
        if database.queries_logged:  # DEBUG, or a test counting queries: as Django's cursor
            database.queries_log.append({"sql": sql, "time": f"{time.monotonic() - began:.3f}"})
    return rows


def fetch_one(sql: str, params: Params, *, binary: bool = False) -> tuple[Any, ...] | None:
    rows = fetch(sql, params, binary=binary)
    return rows[0] if rows else None


def model_from_row(model: type[M], fields: Sequence[Field[Any, Any]], row: Sequence[Any]) -> M:
    """An instance of `model` from `row` (the values of `fields`, which must be in the model's
    field order, as `Model.from_db` expects), converted as the ORM converts them (SQLite's
    text datetimes, integer booleans, decrypted fields...); the fields not read are
    deferred. Pass the same `fields` object each time (a module constant): its converters
    are looked up once."""
    names, converters = _read_plan(fields)
    values = list(row)
    for index, field_converters in converters:
        for convert, expression in field_converters:
            values[index] = convert(values[index], expression, connection)
    return model.from_db(connection.alias, names, values)


# id(fields) → (fields, attribute names, converters by position): hashing a tuple of fields
# costs more than the rest of a row's conversion. The fields object is kept, so an id
# cannot be reused by another list while its entry exists.
_PLANS: dict[int, tuple[object, list[str], list[tuple[int, list[tuple[Any, Any]]]]]] = {}


def _read_plan(
    fields: Sequence[Field[Any, Any]],
) -> tuple[list[str], list[tuple[int, list[tuple[Any, Any]]]]]:
    plan = _PLANS.get(id(fields))
    if plan is None or plan[0] is not fields:
        converters = []
        for index, field in enumerate(fields):
            column = field.get_col(field.model._meta.db_table)
            functions = connection.ops.get_db_converters(column)
            functions = functions + column.get_db_converters(connection)
            if functions:
                converters.append((index, [(function, column) for function in functions]))
        plan = (fields, [field.attname for field in fields], converters)
        _PLANS[id(fields)] = plan
    return plan[1], plan[2]


def adapt_datetime(moment: Any) -> Any:
    """A datetime as the database expects it as a parameter (SQLite: naive UTC text)."""
    return connection.ops.adapt_datetimefield_value(moment)


def column(field: Any) -> str:
    """A model field's quoted column name (for statements built from the models' metadata)."""
    name = getattr(field, "column", None)
    if not isinstance(name, str):
        raise TypeError(f"{field!r} has no column")
    return connection.ops.quote_name(name)
