"""The ledger's invariants, enforced by the database itself (see captable/models.py).

PostgreSQL:
- entries, postings, lots and seals refuse UPDATE and DELETE;
- a posting insert checks its asset, effective time and lot against its account and entry,
  then adds its amount to the account's balance (the account's CHECK refuses a negative
  balance where one is not allowed) and refuses a lot going below zero;
- an account row refuses DELETE and any UPDATE not made by that posting trigger;
- a deferred constraint trigger refuses, at COMMIT, an entry whose postings do not sum to
  zero per asset, or an entry with no postings.
SQLite: the same append-only, balance and account triggers; the balanced-entry check is made
by captable/ledger.py before insert (SQLite has no deferred triggers).
"""

from __future__ import annotations

from typing import Any

from django.db import migrations

APPEND_ONLY_TABLES = (
    "captable_entry",
    "captable_posting",
    "captable_lot",
    "captable_chainseal",
    "captable_sealedentry",
)

POSTGRES_CREATE = r"""
CREATE OR REPLACE FUNCTION captable_refuse_change() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'ledger % rows are append-only: % refused', TG_TABLE_NAME, TG_OP
        USING ERRCODE = 'restrict_violation';
END;
$$;

CREATE OR REPLACE FUNCTION captable_posting_apply() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    account_row captable_account%ROWTYPE;
    entry_effective_at timestamptz;
    lot_holding_id bigint;
    lot_quanta bigint;
BEGIN
    SELECT * INTO account_row FROM captable_account WHERE id = NEW.account_id;
    IF account_row.asset IS DISTINCT FROM NEW.asset THEN
        RAISE EXCEPTION 'posting asset % does not match account % (%)',
            NEW.asset, NEW.account_id, account_row.asset USING ERRCODE = 'check_violation';
    END IF;
    SELECT effective_at INTO entry_effective_at FROM captable_entry WHERE id = NEW.entry_id;
    IF entry_effective_at IS DISTINCT FROM NEW.effective_at THEN
        RAISE EXCEPTION 'posting effective time differs from its entry %', NEW.entry_id
            USING ERRCODE = 'check_violation';
    END IF;
    IF account_row.kind = 'holding' AND NEW.lot_id IS NULL THEN
        RAISE EXCEPTION 'a posting on holding % must name a lot', NEW.account_id
            USING ERRCODE = 'check_violation';
    END IF;
    IF NEW.lot_id IS NOT NULL THEN
        SELECT holding_id INTO lot_holding_id FROM captable_lot WHERE id = NEW.lot_id;
        IF lot_holding_id IS DISTINCT FROM NEW.account_id THEN
            RAISE EXCEPTION 'lot % belongs to another account', NEW.lot_id
                USING ERRCODE = 'check_violation';
        END IF;
        SELECT SUM(amount) INTO lot_quanta FROM captable_posting WHERE lot_id = NEW.lot_id;
        IF lot_quanta < 0 THEN
            RAISE EXCEPTION 'lot % would go negative (%)', NEW.lot_id, lot_quanta
                USING ERRCODE = 'check_violation';
        END IF;
    END IF;
    UPDATE captable_account SET balance = balance + NEW.amount WHERE id = NEW.account_id;
    RETURN NULL;
END;
$$;

CREATE OR REPLACE FUNCTION captable_account_guard() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        RAISE EXCEPTION 'ledger accounts cannot be deleted' USING ERRCODE = 'restrict_violation';
    END IF;
    IF pg_trigger_depth() < 2 THEN
        RAISE EXCEPTION 'account % changes only through postings', OLD.id
            USING ERRCODE = 'restrict_violation';
    END IF;
    IF (NEW.key, NEW.kind, NEW.asset, NEW.offering_id, NEW.investor_id, NEW.issuer_id,
        NEW.reference, NEW.allows_negative, NEW.created_at)
       IS DISTINCT FROM
       (OLD.key, OLD.kind, OLD.asset, OLD.offering_id, OLD.investor_id, OLD.issuer_id,
        OLD.reference, OLD.allows_negative, OLD.created_at) THEN
        RAISE EXCEPTION 'account % identity is immutable', OLD.id
            USING ERRCODE = 'restrict_violation';
    END IF;
    RETURN NEW;
END;
$$;

CREATE OR REPLACE FUNCTION captable_check_entry(checked_entry_id bigint) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    unbalanced record;
BEGIN
    IF NOT EXISTS (SELECT 1 FROM captable_posting WHERE entry_id = checked_entry_id) THEN
        RAISE EXCEPTION 'ledger entry % has no postings', checked_entry_id
            USING ERRCODE = 'check_violation';
    END IF;
    SELECT asset, SUM(amount) AS total INTO unbalanced
        FROM captable_posting WHERE entry_id = checked_entry_id
        GROUP BY asset HAVING SUM(amount) <> 0 LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'ledger entry % is unbalanced: % sums to %',
            checked_entry_id, unbalanced.asset, unbalanced.total
            USING ERRCODE = 'check_violation';
    END IF;
END;
$$;

CREATE OR REPLACE FUNCTION captable_posting_balanced() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM captable_check_entry(NEW.entry_id);
    RETURN NULL;
END;
$$;

CREATE OR REPLACE FUNCTION captable_entry_has_postings() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM captable_check_entry(NEW.id);
    RETURN NULL;
END;
$$;

CREATE TRIGGER captable_posting_apply AFTER INSERT ON captable_posting
    FOR EACH ROW EXECUTE FUNCTION captable_posting_apply();
CREATE TRIGGER captable_account_guard BEFORE UPDATE OR DELETE ON captable_account
    FOR EACH ROW EXECUTE FUNCTION captable_account_guard();
CREATE CONSTRAINT TRIGGER captable_posting_balanced AFTER INSERT ON captable_posting
    DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW EXECUTE FUNCTION captable_posting_balanced();
CREATE CONSTRAINT TRIGGER captable_entry_has_postings AFTER INSERT ON captable_entry
    DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW EXECUTE FUNCTION captable_entry_has_postings();
"""

POSTGRES_DROP = """
DROP TRIGGER IF EXISTS captable_entry_has_postings ON captable_entry;
DROP TRIGGER IF EXISTS captable_posting_balanced ON captable_posting;
DROP TRIGGER IF EXISTS captable_account_guard ON captable_account;
DROP TRIGGER IF EXISTS captable_posting_apply ON captable_posting;
DROP FUNCTION IF EXISTS captable_entry_has_postings();
DROP FUNCTION IF EXISTS captable_posting_balanced();
DROP FUNCTION IF EXISTS captable_check_entry(bigint);
DROP FUNCTION IF EXISTS captable_account_guard();
DROP FUNCTION IF EXISTS captable_posting_apply();
"""

SQLITE_CREATE = (
    """
    CREATE TRIGGER captable_posting_apply AFTER INSERT ON captable_posting
    BEGIN
        SELECT RAISE(ABORT, 'posting asset does not match its account')
            WHERE NEW.asset IS NOT (SELECT asset FROM captable_account WHERE id = NEW.account_id);
        SELECT RAISE(ABORT, 'a posting on a holding must name a lot')
            WHERE NEW.lot_id IS NULL
              AND (SELECT kind FROM captable_account WHERE id = NEW.account_id) = 'holding';
        SELECT RAISE(ABORT, 'lot belongs to another account')
            WHERE NEW.lot_id IS NOT NULL
              AND (SELECT holding_id FROM captable_lot WHERE id = NEW.lot_id) IS NOT NEW.account_id;
        SELECT RAISE(ABORT, 'lot would go negative')
            WHERE NEW.lot_id IS NOT NULL
              AND (SELECT SUM(amount) FROM captable_posting WHERE lot_id = NEW.lot_id) < 0;
        UPDATE captable_account SET balance = balance + NEW.amount WHERE id = NEW.account_id;
    END;
    """,
    """
    CREATE TRIGGER captable_account_no_delete BEFORE DELETE ON captable_account
    BEGIN SELECT RAISE(ABORT, 'ledger accounts cannot be deleted'); END;
    """,
    """
    CREATE TRIGGER captable_account_identity BEFORE UPDATE OF
        key, kind, asset, offering_id, investor_id, issuer_id, reference, allows_negative,
        created_at ON captable_account
    BEGIN SELECT RAISE(ABORT, 'account identity is immutable'); END;
    """,
)


def _create(apps: Any, schema_editor: Any) -> None:
    vendor = schema_editor.connection.vendor
    if vendor == "postgresql":
        schema_editor.execute(POSTGRES_CREATE, params=None)
        for table in APPEND_ONLY_TABLES:
            schema_editor.execute(
                f"CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table} "
                "FOR EACH ROW EXECUTE FUNCTION captable_refuse_change();"
            )
    elif vendor == "sqlite":
        for statement in SQLITE_CREATE:
            schema_editor.execute(statement)
        for table in APPEND_ONLY_TABLES:
            for operation in ("UPDATE", "DELETE"):
                schema_editor.execute(
                    f"CREATE TRIGGER {table}_no_{operation.lower()} BEFORE {operation} ON "
                    f"{table} BEGIN SELECT RAISE(ABORT, 'ledger {table} rows are append-only: "
                    f"{operation} refused'); END;"
                )


def _drop(apps: Any, schema_editor: Any) -> None:
    vendor = schema_editor.connection.vendor
    if vendor == "postgresql":
        for table in APPEND_ONLY_TABLES:
            schema_editor.execute(f"DROP TRIGGER IF EXISTS {table}_append_only ON {table};")
        schema_editor.execute(POSTGRES_DROP, params=None)
        schema_editor.execute("DROP FUNCTION IF EXISTS captable_refuse_change();")
    elif vendor == "sqlite":
        for name in (
            "captable_posting_apply",
            "captable_account_no_delete",
            "captable_account_identity",
        ):
            schema_editor.execute(f"DROP TRIGGER IF EXISTS {name};")
        for table in APPEND_ONLY_TABLES:
            for operation in ("update", "delete"):
                schema_editor.execute(f"DROP TRIGGER IF EXISTS {table}_no_{operation};")


class Migration(migrations.Migration):
    dependencies = [("captable", "0001_initial")]

    operations = [migrations.RunPython(_create, _drop, elidable=False)]
