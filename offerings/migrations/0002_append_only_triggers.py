"""The database refuses UPDATE and DELETE on the append-only tables.

PostgreSQL: a BEFORE UPDATE OR DELETE row trigger that raises (TRUNCATE, which the test
runner uses to flush, is left alone). SQLite: one BEFORE UPDATE and one BEFORE DELETE trigger
per table with RAISE(ABORT). A correction is a new row, never an edit.
"""

from __future__ import annotations

from typing import Any

from django.db import migrations

APPEND_ONLY_TABLES = (
    "offerings_offeringstatuschange",
    "offerings_sponsorstatuschange",
    "offerings_offeringdocument",
)

POSTGRES_FUNCTION = """
CREATE OR REPLACE FUNCTION offerings_refuse_change() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '% rows are append-only: % refused', TG_TABLE_NAME, TG_OP
        USING ERRCODE = 'restrict_violation';
END;
$$;
"""


def _create(apps: Any, schema_editor: Any) -> None:
    vendor = schema_editor.connection.vendor
    if vendor == "postgresql":
        schema_editor.execute(POSTGRES_FUNCTION, params=None)
        for table in APPEND_ONLY_TABLES:
            schema_editor.execute(
                f"CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table} "
                "FOR EACH ROW EXECUTE FUNCTION offerings_refuse_change();"
            )
    elif vendor == "sqlite":
        for table in APPEND_ONLY_TABLES:
            for operation in ("UPDATE", "DELETE"):
                schema_editor.execute(
                    f"CREATE TRIGGER {table}_no_{operation.lower()} BEFORE {operation} ON {table} "
                    f"BEGIN SELECT RAISE(ABORT, '{table} rows are append-only: "
                    f"{operation} refused'); END;"
                )


def _drop(apps: Any, schema_editor: Any) -> None:
    vendor = schema_editor.connection.vendor
    if vendor == "postgresql":
        for table in APPEND_ONLY_TABLES:
            schema_editor.execute(f"DROP TRIGGER IF EXISTS {table}_append_only ON {table};")
        schema_editor.execute("DROP FUNCTION IF EXISTS offerings_refuse_change();")
    elif vendor == "sqlite":
        for table in APPEND_ONLY_TABLES:
            for operation in ("update", "delete"):
                schema_editor.execute(f"DROP TRIGGER IF EXISTS {table}_no_{operation};")


class Migration(migrations.Migration):
    dependencies = [("offerings", "0001_initial")]

    operations = [migrations.RunPython(_create, _drop, elidable=False)]
