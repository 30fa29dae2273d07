"""Shared by captable's migrations: make history tables append-only.

PostgreSQL refuses UPDATE and DELETE through `captable_history_append_only()` (migration
0003); SQLite refuses UPDATE only, so test flushes can still empty the tables. The leading
underscore keeps Django's migration loader from treating this module as a migration.
"""

from __future__ import annotations

from typing import Any

from django.db import migrations


def append_only_history(*tables: str) -> migrations.RunPython:
    def forward(apps: Any, schema_editor: Any) -> None:
        vendor = schema_editor.connection.vendor
        for table in tables:
            if vendor == "postgresql":
                schema_editor.execute(
                    f"CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table} "
                    "FOR EACH ROW EXECUTE FUNCTION captable_history_append_only();"
                )
            elif vendor == "sqlite":
                schema_editor.execute(
                    f"CREATE TRIGGER {table}_no_update BEFORE UPDATE ON {table} BEGIN "
                    f"SELECT RAISE(ABORT, '{table} is append-only (UPDATE refused)'); END;"
                )

    def backward(apps: Any, schema_editor: Any) -> None:
        vendor = schema_editor.connection.vendor
        for table in tables:
            if vendor == "postgresql":
                schema_editor.execute(f"DROP TRIGGER IF EXISTS {table}_append_only ON {table};")
            elif vendor == "sqlite":
                schema_editor.execute(f"DROP TRIGGER IF EXISTS {table}_no_update;")

    return migrations.RunPython(forward, backward)
