"""Decision history is append-only, enforced by the database (not only by Python code).

PostgreSQL: a trigger refuses UPDATE and DELETE (TRUNCATE, used by test flushes, is left alone).
SQLite: a trigger refuses UPDATE; DELETE stays possible because Django's flush between
transactional tests deletes rows one table at a time.
"""

from typing import Any

from django.db import migrations

POSTGRES_FORWARD = """
CREATE OR REPLACE FUNCTION investors_decision_append_only() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION USING
        ERRCODE = 'integrity_constraint_violation',
        MESSAGE = 'investors_investordecision is append-only: ' || TG_OP || ' refused';
END;
$$ LANGUAGE plpgsql;
CREATE TRIGGER investors_decision_append_only
    BEFORE UPDATE OR DELETE ON investors_investordecision
    FOR EACH ROW EXECUTE FUNCTION investors_decision_append_only();
"""
POSTGRES_BACKWARD = """
DROP TRIGGER IF EXISTS investors_decision_append_only ON investors_investordecision;
DROP FUNCTION IF EXISTS investors_decision_append_only();
"""
SQLITE_FORWARD = """
CREATE TRIGGER investors_decision_no_update
BEFORE UPDATE ON investors_investordecision
BEGIN
    SELECT RAISE(ABORT, 'investors_investordecision is append-only (UPDATE refused)');
END;
"""
SQLITE_BACKWARD = "DROP TRIGGER IF EXISTS investors_decision_no_update;"


def forward(apps: Any, schema_editor: Any) -> None:
    vendor = schema_editor.connection.vendor
    if vendor == "postgresql":
        schema_editor.execute(POSTGRES_FORWARD)
    elif vendor == "sqlite":
        schema_editor.execute(SQLITE_FORWARD)


def backward(apps: Any, schema_editor: Any) -> None:
    vendor = schema_editor.connection.vendor
    if vendor == "postgresql":
        schema_editor.execute(POSTGRES_BACKWARD)
    elif vendor == "sqlite":
        schema_editor.execute(SQLITE_BACKWARD)


class Migration(migrations.Migration):
    dependencies = [("investors", "0001_initial")]

    operations = [migrations.RunPython(forward, backward)]
