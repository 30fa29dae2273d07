"""PostgreSQL: entries' idempotency keys and accounts' keys collate "C" (byte order).

They are machine keys; nothing sorts them for people. With the database's collation (C.UTF-8
here, en_US.UTF-8 often in production) every comparison in their unique indexes goes through
strcoll; a pay run to 100,000 holders inserts and looks up 100,000 of each (measured on a
copy of the benchmark's database: the entry key alone took 0.46 s off the run's backend CPU).
PostgreSQL will not change a column's type while a trigger's definition names it (the account
guard's WHEN clause does): the two tables' triggers are set aside and put back around the
change. SQLite compares bytes already; it remakes the tables, so its triggers are set aside
too (0018's helpers).
"""

import importlib
from typing import Any

from django.db import migrations

import captable.models

_keys = importlib.import_module("captable.migrations.0018_statement_level_ledger_keys")

TABLES = ("captable_account", "captable_entry")
SAVED = "captable_migration_0021_saved_triggers"


def postgres_triggers_set_aside(apps: Any, schema_editor: Any) -> None:
    if schema_editor.connection.vendor != "postgresql":
        return
    with schema_editor.connection.cursor() as cursor:
        cursor.execute(
            f"CREATE TABLE {SAVED} AS "  # noqa: S608 (constants)
            "SELECT t.tgname::text AS name, c.relname::text AS tbl, "
            "pg_get_triggerdef(t.oid) AS definition "
            "FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid "
            "WHERE NOT t.tgisinternal AND c.relname = ANY(%s)",
            [list(TABLES)],
        )
        cursor.execute(f"SELECT name, tbl FROM {SAVED}")  # noqa: S608 (a constant)
        for name, table in cursor.fetchall():
            cursor.execute(f'DROP TRIGGER "{name}" ON "{table}"')


def postgres_triggers_restore(apps: Any, schema_editor: Any) -> None:
    if schema_editor.connection.vendor != "postgresql":
        return
    with schema_editor.connection.cursor() as cursor:
        cursor.execute(f"SELECT definition FROM {SAVED}")  # noqa: S608 (a constant)
        for (definition,) in cursor.fetchall():
            cursor.execute(definition)
        cursor.execute(f"DROP TABLE {SAVED}")


def set_aside(apps: Any, schema_editor: Any) -> None:
    _keys.sqlite_triggers_set_aside(apps, schema_editor)
    postgres_triggers_set_aside(apps, schema_editor)


def restore(apps: Any, schema_editor: Any) -> None:
    _keys.sqlite_triggers_restore(apps, schema_editor)
    postgres_triggers_restore(apps, schema_editor)


class Migration(migrations.Migration):
    dependencies = [("captable", "0021_redundant_foreign_key_indexes")]

    operations = [
        migrations.RunPython(set_aside, restore),
        migrations.AlterField(
            model_name="account",
            name="key",
            field=captable.models.MachineKeyField(max_length=120),
        ),
        migrations.AlterField(
            model_name="entry",
            name="idempotency_key",
            field=captable.models.MachineKeyField(max_length=200, unique=True),
        ),
        migrations.RunPython(restore, set_aside),
    ]
