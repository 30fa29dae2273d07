"""PostgreSQL: fewer row-level checks and index entries per pay run, same rules.

A pay run to 100,000 holders opens 100,000 available-cash accounts and writes 100,000 entries;
each queued row-level work that a set-based check does for a fraction of the cost (measured on
a copy of the benchmark's database):

- An account's investor is checked per statement, not per row: the deferred foreign key made
  one locking look-up per account at COMMIT (~150 ms of each 25,000-account batch's COMMIT;
  ~60 ms set-based). An account insert statement now takes the same lock (FOR KEY SHARE, so
  an investor being deleted is waited for and then refused) on all its investors in one
  query and refuses an investor that does not exist; a row trigger on investors refuses
  deleting one an account names (the account's investor never changes: the account guard
  refuses it). 0019 relies on this for payouts: an investor paid has a holding account.
- The sealing queue's entry is checked per statement where a row could be wrong: the queue is
  filled by the entries' statement trigger from the entries just inserted (they exist); only
  a row written directly (trigger depth 0) is checked, against captable_entry. Entries are
  never deleted, so the queue's rows cannot lose their entry either.
- An entry's `reverses` is unique where it is set (a partial unique index): every entry but a
  reversal added a NULL to the old unique index. Django's state keeps the one-to-one field;
  only PostgreSQL's index changes (the rule is the same: NULLs never collide).
- The balanced-entry queue's arrays (25,000 entry ids a batch) are stored uncompressed:
  pglz compressing them cost more than the row's whole life (it is deleted at COMMIT).

SQLite keeps its foreign keys (its checks are per row anyway); Django's state marks the two
foreign keys db_constraint=False, as PostgreSQL has them.
"""

from typing import Any

import django.db.models.deletion
from django.db import migrations, models

POSTGRES_CREATE = r"""
CREATE OR REPLACE FUNCTION captable_accounts_investor_exists() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    wanted bigint[] := ARRAY(
        SELECT DISTINCT investor_id FROM new_accounts WHERE investor_id IS NOT NULL
        ORDER BY investor_id
    );
    found_count integer;
    missing bigint;
BEGIN
    IF cardinality(wanted) = 0 THEN
        RETURN NULL;
    END IF;
    -- The lock a foreign key takes, in one statement: a concurrent delete of one of these
    -- investors waits for this transaction, then finds the account and is refused.
    SELECT count(*) INTO found_count FROM (
        SELECT 1 FROM investors_investor WHERE id = ANY(wanted) ORDER BY id FOR KEY SHARE
    ) locked;
    IF found_count < cardinality(wanted) THEN
        SELECT w INTO missing FROM unnest(wanted) AS w
        WHERE NOT EXISTS (SELECT 1 FROM investors_investor i WHERE i.id = w) LIMIT 1;
        RAISE EXCEPTION 'account of unknown investor %', missing
            USING ERRCODE = 'foreign_key_violation';
    END IF;
    RETURN NULL;
END;
$$;

CREATE TRIGGER captable_accounts_investor_exists AFTER INSERT ON captable_account
    REFERENCING NEW TABLE AS new_accounts
    FOR EACH STATEMENT EXECUTE FUNCTION captable_accounts_investor_exists();

CREATE OR REPLACE FUNCTION captable_investor_without_accounts() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM captable_account WHERE investor_id = OLD.id) THEN
        RAISE EXCEPTION 'investor % has ledger accounts: it cannot be deleted', OLD.id
            USING ERRCODE = 'foreign_key_violation';
    END IF;
    RETURN OLD;
END;
$$;

CREATE TRIGGER captable_investor_without_accounts BEFORE DELETE ON investors_investor
    FOR EACH ROW EXECUTE FUNCTION captable_investor_without_accounts();
CREATE TRIGGER captable_investor_id_fixed BEFORE UPDATE OF id ON investors_investor
    FOR EACH ROW WHEN (NEW.id IS DISTINCT FROM OLD.id)
    EXECUTE FUNCTION captable_investor_without_accounts();

CREATE OR REPLACE FUNCTION captable_unsealed_entries_exist() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    missing bigint;
BEGIN
    SELECT n.entry_id INTO missing FROM new_unsealed n
    WHERE NOT EXISTS (SELECT 1 FROM captable_entry e WHERE e.id = n.entry_id) LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'sealing queue row for unknown entry %', missing
            USING ERRCODE = 'foreign_key_violation';
    END IF;
    RETURN NULL;
END;
$$;

-- Rows the entries' trigger queues (depth 1) come from the entries just inserted.
CREATE TRIGGER captable_unsealed_inserted AFTER INSERT ON captable_unsealedentry
    REFERENCING NEW TABLE AS new_unsealed
    FOR EACH STATEMENT WHEN (pg_trigger_depth() < 1)
    EXECUTE FUNCTION captable_unsealed_entries_exist();
CREATE TRIGGER captable_unsealed_updated AFTER UPDATE ON captable_unsealedentry
    REFERENCING NEW TABLE AS new_unsealed
    FOR EACH STATEMENT EXECUTE FUNCTION captable_unsealed_entries_exist();

CREATE UNIQUE INDEX entry_reverses_once ON captable_entry (reverses_id)
    WHERE reverses_id IS NOT NULL;

ALTER TABLE captable_entry_check_pending ALTER COLUMN entry_ids SET STORAGE EXTERNAL;
"""

POSTGRES_DROP = r"""
ALTER TABLE captable_entry_check_pending ALTER COLUMN entry_ids SET STORAGE EXTENDED;
DROP INDEX IF EXISTS entry_reverses_once;
DROP TRIGGER IF EXISTS captable_unsealed_updated ON captable_unsealedentry;
DROP TRIGGER IF EXISTS captable_unsealed_inserted ON captable_unsealedentry;
DROP FUNCTION IF EXISTS captable_unsealed_entries_exist();
DROP TRIGGER IF EXISTS captable_investor_id_fixed ON investors_investor;
DROP TRIGGER IF EXISTS captable_investor_without_accounts ON investors_investor;
DROP FUNCTION IF EXISTS captable_investor_without_accounts();
DROP TRIGGER IF EXISTS captable_accounts_investor_exists ON captable_account;
DROP FUNCTION IF EXISTS captable_accounts_investor_exists();
"""

# (table, column, referenced table): the row-level foreign keys replaced above.
FOREIGN_KEYS = [
    ("captable_account", "investor_id", "investors_investor"),
    ("captable_unsealedentry", "entry_id", "captable_entry"),
]


def _constraints(schema_editor: Any, table: str) -> dict[str, Any]:
    connection = schema_editor.connection
    with connection.cursor() as cursor:
        return dict(connection.introspection.get_constraints(cursor, table))


def _reverses_unique_constraints(schema_editor: Any) -> list[str]:
    return sorted(
        name
        for name, info in _constraints(schema_editor, "captable_entry").items()
        if info["unique"] and not info["index"] and info["columns"] == ["reverses_id"]
    )


def forward(apps: Any, schema_editor: Any) -> None:
    if schema_editor.connection.vendor != "postgresql":
        return
    quote = schema_editor.quote_name
    for table, column, _ in FOREIGN_KEYS:
        for name, info in _constraints(schema_editor, table).items():
            if info["foreign_key"] and info["columns"] == [column]:
                schema_editor.execute(f"ALTER TABLE {quote(table)} DROP CONSTRAINT {quote(name)}")
    for name in _reverses_unique_constraints(schema_editor):
        schema_editor.execute(f"ALTER TABLE captable_entry DROP CONSTRAINT {quote(name)}")
    schema_editor.execute(POSTGRES_CREATE, params=None)


def backward(apps: Any, schema_editor: Any) -> None:
    if schema_editor.connection.vendor != "postgresql":
        return
    schema_editor.execute(POSTGRES_DROP, params=None)
    schema_editor.execute(
        "ALTER TABLE captable_entry ADD CONSTRAINT captable_entry_reverses_id_key "
        "UNIQUE (reverses_id)"
    )
    for table, column, referenced in FOREIGN_KEYS:
        schema_editor.execute(
            f"ALTER TABLE {table} ADD CONSTRAINT {table}_{column}_fk FOREIGN KEY ({column}) "
            f"REFERENCES {referenced} (id) DEFERRABLE INITIALLY DEFERRED"
        )


class Migration(migrations.Migration):
    dependencies = [
        ("captable", "0022_machine_keys_collate_c"),
        ("investors", "0002_history_append_only"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.AlterField(
                    model_name="account",
                    name="investor",
                    field=models.ForeignKey(
                        blank=True,
                        db_constraint=False,
                        db_index=False,
                        null=True,
                        on_delete=django.db.models.deletion.PROTECT,
                        related_name="+",
                        to="investors.investor",
                    ),
                ),
                migrations.AlterField(
                    model_name="unsealedentry",
                    name="entry",
                    field=models.OneToOneField(
                        db_constraint=False,
                        on_delete=django.db.models.deletion.CASCADE,
                        primary_key=True,
                        serialize=False,
                        to="captable.entry",
                    ),
                ),
            ],
            database_operations=[migrations.RunPython(forward, backward)],
        ),
    ]
