"""For migrations: drop a foreign key's own index, and nothing else.

`AlterField(db_index=False)` would do it on PostgreSQL, but SQLite rebuilds the whole table
for it, which drops the table's triggers (the append-only guards of history tables). This
drops the index by name, found by introspection (the one non-unique index on exactly that
column), on every backend; reversed, it creates it again as Django would have."""

from __future__ import annotations

from typing import Any

from django.db import migrations

Indexed = tuple[str, str, str]  # app label, model name, field name


def drop_single_column_indexes(indexed: list[Indexed]) -> migrations.RunPython:
    def forward(apps: Any, schema_editor: Any) -> None:
        for app_label, model_name, field_name in indexed:
            model = apps.get_model(app_label, model_name)
            column = model._meta.get_field(field_name).column
            for name in _single_column_indexes(schema_editor, model._meta.db_table, column):
                schema_editor.execute(f"DROP INDEX {schema_editor.quote_name(name)}")

    def backward(apps: Any, schema_editor: Any) -> None:
        for app_label, model_name, field_name in indexed:
            model = apps.get_model(app_label, model_name)
            field = model._meta.get_field(field_name)
            schema_editor.execute(schema_editor._create_index_sql(model, fields=[field]))

    return migrations.RunPython(forward, backward)


def _single_column_indexes(schema_editor: Any, table: str, column: str) -> list[str]:
    connection = schema_editor.connection
    with connection.cursor() as cursor:
        constraints = connection.introspection.get_constraints(cursor, table)
    return [
        name
        for name, details in constraints.items()
        if details["index"]
        and details["columns"] == [column]
        and not details["unique"]
        and not details["primary_key"]
        and not details["foreign_key"]
    ]
