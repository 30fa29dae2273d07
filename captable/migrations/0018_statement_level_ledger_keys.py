"""The ledger's hot foreign keys are checked per statement; fewer indexes to keep up.

A pay run to 100,000 holders queued ~820,000 row-level foreign-key checks for COMMIT (Django's
foreign keys are DEFERRABLE INITIALLY DEFERRED), each a locking look-up of one parent row:
about a second and a half of the run's database time went to postings' entry and account
alone. Now:

- a posting's entry, account and lot, and a payout's entry, are no longer database foreign-key
  constraints. On PostgreSQL the posting statement trigger (`captable_postings_apply`, which
  already looked up each posting's account, entry and lot in one set-based query) now names a
  missing entry too, and a statement trigger on payouts refuses an entry that does not exist;
  on SQLite, row triggers refuse both. The parents can never go away (entries and lots are
  append-only, accounts cannot be deleted), so no lock on them is needed to keep the rule.
- An entry is queued for its balanced-entry check once per statement pair whichever of the
  entry and posting statement triggers fires first (0017 made only the posting trigger look;
  in a pay run's one-statement fan-out the posting trigger fires first, so each batch was
  checked twice).
- Indexes nobody reads go: the account key's LIKE-pattern index (the key is unique by a
  constraint instead), the account's offering and investor indexes that duplicate the (offering,
  kind) and (investor) ones, the entries' (chain, id) index (sealing reads its own queue), and
  the NULLs of entries' created_by and postings' lot (partial indexes now).
- A payout's entry is no longer unique-indexed: the trigger's rule (a payout names only the
  entry under its own payout key) already makes it one-to-one, and with no index on it, and
  half of each payout page free (fillfactor 50), paying a payout is a heap-only update.
- PostgreSQL keeps half of each account page free (fillfactor 50): a balance update can then be
  a heap-only tuple update, which writes none of the account's indexes.

SQLite remakes a table to change a column and refuses to while triggers name it: the ledger's
SQLite triggers are set aside in a table of this migration and put back afterwards.
"""

import importlib
from typing import Any

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models

_write_path = importlib.import_module("captable.migrations.0015_ledger_write_path")
_queued_once = importlib.import_module("captable.migrations.0017_entry_check_queued_once")

_EFFECTIVE_TIME_CHECK = (
    """            WHEN e.effective_at IS DISTINCT FROM p.effective_at THEN format("""
)
_UNKNOWN_ENTRY_CHECK = """            WHEN e.effective_at IS NULL THEN format('posting on unknown entry %s', p.entry_id)
"""
_LOT_ACCOUNT_CHECK = (
    """            WHEN p.lot_id IS NOT NULL AND l.holding_id IS DISTINCT FROM p.account_id"""
)
_UNKNOWN_LOT_CHECK = """            WHEN p.lot_id IS NOT NULL AND l.holding_id IS NULL THEN format(
                'posting on unknown lot %s', p.lot_id)
"""
assert _EFFECTIVE_TIME_CHECK in _write_path.POSTGRES_FUNCTION
assert _LOT_ACCOUNT_CHECK in _write_path.POSTGRES_FUNCTION
POSTGRES_POSTINGS_APPLY = _write_path.POSTGRES_FUNCTION.replace(
    _EFFECTIVE_TIME_CHECK, _UNKNOWN_ENTRY_CHECK + _EFFECTIVE_TIME_CHECK
).replace(_LOT_ACCOUNT_CHECK, _UNKNOWN_LOT_CHECK + _LOT_ACCOUNT_CHECK)

POSTGRES_CREATE = r"""
CREATE OR REPLACE FUNCTION captable_entries_inserted() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    touched bigint[] := ARRAY(SELECT id FROM new_entries ORDER BY id);
BEGIN
    INSERT INTO captable_unsealedentry (entry_id, chain) SELECT id, chain FROM new_entries;
    IF cardinality(touched) > 0 AND NOT EXISTS (
        SELECT 1 FROM captable_entry_check_pending WHERE entry_ids = touched
    ) THEN
        INSERT INTO captable_entry_check_pending (entry_ids) VALUES (touched);
    END IF;
    RETURN NULL;
END;
$$;

CREATE OR REPLACE FUNCTION captable_payouts_entry_is_theirs() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    bad record;
BEGIN
    -- A payout's entry is the one under the payout's own key: it exists, and no other payout
    -- can name it (entry keys are unique, and so are (distribution, investor) pairs).
    SELECT n.id, n.entry_id INTO bad FROM new_payouts n
    LEFT JOIN captable_entry e ON e.id = n.entry_id
    WHERE n.entry_id IS NOT NULL
      AND e.idempotency_key IS DISTINCT FROM
          'distribution:' || n.distribution_id || ':payout:' || n.investor_id
    LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'payout % names ledger entry %, which is not its payout entry',
            bad.id, bad.entry_id
            USING ERRCODE = 'foreign_key_violation';
    END IF;
    RETURN NULL;
END;
$$;

CREATE TRIGGER captable_payouts_entry_inserted AFTER INSERT ON captable_payout
    REFERENCING NEW TABLE AS new_payouts
    FOR EACH STATEMENT EXECUTE FUNCTION captable_payouts_entry_is_theirs();
CREATE TRIGGER captable_payouts_entry_updated AFTER UPDATE ON captable_payout
    REFERENCING NEW TABLE AS new_payouts
    FOR EACH STATEMENT EXECUTE FUNCTION captable_payouts_entry_is_theirs();

ALTER TABLE captable_account SET (fillfactor = 50);
ALTER TABLE captable_payout SET (fillfactor = 50);
"""

POSTGRES_DROP = r"""
ALTER TABLE captable_account RESET (fillfactor);
ALTER TABLE captable_payout RESET (fillfactor);
DROP TRIGGER IF EXISTS captable_payouts_entry_updated ON captable_payout;
DROP TRIGGER IF EXISTS captable_payouts_entry_inserted ON captable_payout;
DROP FUNCTION IF EXISTS captable_payouts_entry_is_theirs();
"""

_SQLITE_PAYOUT_ENTRY_CHECK = """
        SELECT RAISE(ABORT, 'payout names a ledger entry which is not its payout entry')
        WHERE NOT EXISTS (
            SELECT 1 FROM captable_entry WHERE id = NEW.entry_id
            AND idempotency_key = 'distribution:' || NEW.distribution_id || ':payout:'
                                  || NEW.investor_id
        );"""

# Row triggers in the place of the foreign keys (SQLite's ledger checks are per row anyway).
SQLITE_KEYS = [
    """CREATE TRIGGER captable_posting_keys BEFORE INSERT ON captable_posting BEGIN
        SELECT RAISE(ABORT, 'posting on unknown entry')
        WHERE NOT EXISTS (SELECT 1 FROM captable_entry WHERE id = NEW.entry_id);
        SELECT RAISE(ABORT, 'posting on unknown account')
        WHERE NOT EXISTS (SELECT 1 FROM captable_account WHERE id = NEW.account_id);
        SELECT RAISE(ABORT, 'posting on unknown lot')
        WHERE NEW.lot_id IS NOT NULL
          AND NOT EXISTS (SELECT 1 FROM captable_lot WHERE id = NEW.lot_id);
    END""",
    f"""CREATE TRIGGER captable_payout_entry_inserted BEFORE INSERT ON captable_payout
    WHEN NEW.entry_id IS NOT NULL BEGIN {_SQLITE_PAYOUT_ENTRY_CHECK} END""",
    f"""CREATE TRIGGER captable_payout_entry_updated BEFORE UPDATE OF entry_id ON captable_payout
    WHEN NEW.entry_id IS NOT NULL BEGIN {_SQLITE_PAYOUT_ENTRY_CHECK} END""",
]
SQLITE_KEY_TRIGGERS = (
    "captable_posting_keys",
    "captable_payout_entry_inserted",
    "captable_payout_entry_updated",
)
REMADE_TABLES = ("captable_account", "captable_entry", "captable_payout", "captable_posting")
SAVED = "captable_migration_0018_saved_triggers"


def sqlite_triggers_set_aside(apps: Any, schema_editor: Any) -> None:
    """SQLite: keep every trigger that names a table remade below, and drop it for now."""
    if schema_editor.connection.vendor != "sqlite":
        return
    with schema_editor.connection.cursor() as cursor:
        cursor.execute(f"CREATE TABLE {SAVED} (name text, sql text)")
        cursor.execute("SELECT name, sql FROM sqlite_master WHERE type = 'trigger'")
        named = [
            (name, sql) for name, sql in cursor.fetchall() if any(t in sql for t in REMADE_TABLES)
        ]
        for name, sql in named:
            saved = f"INSERT INTO {SAVED} (name, sql) VALUES (%s, %s)"  # noqa: S608 (a constant)
            cursor.execute(saved, [name, sql])
            cursor.execute(f'DROP TRIGGER "{name}"')


def sqlite_triggers_restore(apps: Any, schema_editor: Any) -> None:
    if schema_editor.connection.vendor != "sqlite":
        return
    with schema_editor.connection.cursor() as cursor:
        cursor.execute(f"SELECT sql FROM {SAVED}")  # noqa: S608 (a constant)
        for (sql,) in cursor.fetchall():
            cursor.execute(sql)
        cursor.execute(f"DROP TABLE {SAVED}")


def forward(apps: Any, schema_editor: Any) -> None:
    vendor = schema_editor.connection.vendor
    if vendor == "postgresql":
        schema_editor.execute(POSTGRES_POSTINGS_APPLY, params=None)
        schema_editor.execute(POSTGRES_CREATE, params=None)
    elif vendor == "sqlite":
        for sql in SQLITE_KEYS:
            schema_editor.execute(sql)


def backward(apps: Any, schema_editor: Any) -> None:
    vendor = schema_editor.connection.vendor
    if vendor == "postgresql":
        schema_editor.execute(_write_path.POSTGRES_FUNCTION, params=None)
        schema_editor.execute(_queued_once.POSTGRES_CREATE, params=None)
        schema_editor.execute(POSTGRES_DROP, params=None)
    elif vendor == "sqlite":
        for name in SQLITE_KEY_TRIGGERS:
            schema_editor.execute(f"DROP TRIGGER IF EXISTS {name}")


class Migration(migrations.Migration):
    dependencies = [
        ("captable", "0017_entry_check_queued_once"),
        ("investors", "0002_history_append_only"),
        ("offerings", "0007_property_photo"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.RunPython(sqlite_triggers_set_aside, sqlite_triggers_restore),
        migrations.RemoveIndex(
            model_name="posting",
            name="captable_po_lot_id_45de0b_idx",
        ),
        migrations.RemoveIndex(
            model_name="entry",
            name="captable_en_chain_c139c2_idx",
        ),
        migrations.AlterField(
            model_name="account",
            name="investor",
            field=models.ForeignKey(
                blank=True,
                db_index=False,
                null=True,
                on_delete=django.db.models.deletion.PROTECT,
                related_name="+",
                to="investors.investor",
            ),
        ),
        migrations.AlterField(
            model_name="account",
            name="key",
            field=models.CharField(max_length=120),
        ),
        migrations.AlterField(
            model_name="account",
            name="offering",
            field=models.ForeignKey(
                blank=True,
                db_index=False,
                null=True,
                on_delete=django.db.models.deletion.PROTECT,
                related_name="+",
                to="offerings.offering",
            ),
        ),
        migrations.AlterField(
            model_name="entry",
            name="created_by",
            field=models.ForeignKey(
                blank=True,
                db_index=False,
                null=True,
                on_delete=django.db.models.deletion.PROTECT,
                related_name="+",
                to=settings.AUTH_USER_MODEL,
            ),
        ),
        migrations.AlterField(
            model_name="payout",
            name="entry",
            field=models.ForeignKey(
                blank=True,
                db_constraint=False,
                db_index=False,
                null=True,
                on_delete=django.db.models.deletion.PROTECT,
                related_name="+",
                to="captable.entry",
            ),
        ),
        migrations.AlterField(
            model_name="posting",
            name="account",
            field=models.ForeignKey(
                db_constraint=False,
                db_index=False,
                on_delete=django.db.models.deletion.PROTECT,
                related_name="postings",
                to="captable.account",
            ),
        ),
        migrations.AlterField(
            model_name="posting",
            name="entry",
            field=models.ForeignKey(
                db_constraint=False,
                on_delete=django.db.models.deletion.PROTECT,
                related_name="postings",
                to="captable.entry",
            ),
        ),
        migrations.AlterField(
            model_name="posting",
            name="lot",
            field=models.ForeignKey(
                blank=True,
                db_constraint=False,
                db_index=False,
                null=True,
                on_delete=django.db.models.deletion.PROTECT,
                related_name="postings",
                to="captable.lot",
            ),
        ),
        migrations.AddIndex(
            model_name="entry",
            index=models.Index(
                condition=models.Q(("created_by__isnull", False)),
                fields=["created_by"],
                name="entry_created_by",
            ),
        ),
        migrations.AddIndex(
            model_name="posting",
            index=models.Index(
                condition=models.Q(("lot__isnull", False)), fields=["lot"], name="posting_lot"
            ),
        ),
        migrations.AddConstraint(
            model_name="account",
            constraint=models.UniqueConstraint(fields=("key",), name="account_key_unique"),
        ),
        migrations.RunPython(sqlite_triggers_restore, sqlite_triggers_set_aside),
        migrations.RunPython(forward, backward),
    ]
