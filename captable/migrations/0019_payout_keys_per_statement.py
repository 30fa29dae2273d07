"""PostgreSQL and SQLite: a payout's distribution and holder are checked per statement.

A distribution's payouts are written in one COPY (100,000 holders); as database foreign keys
(DEFERRABLE INITIALLY DEFERRED) their distribution and investor were 200,000 row-level checks
at COMMIT, ~0.85 s of database time (measured by dropping them on a copy of the benchmark's
database: 8.50 -> 7.65 s of backend CPU for the run). Now the payout statement trigger of 0018
also refuses, on INSERT, a payout whose distribution or investor does not exist (one set-based
look-up per statement), and a row trigger refuses changing either on an existing payout (an
UPDATE that does not name those columns, like paying, does not fire it).

Why no lock on the parents (as a foreign key takes): neither can be deleted while a payout
names it. A distribution has its history (captable_distributionstatuschange, append-only,
with a real foreign key), written when it is declared; a payout's investor held units at the
record date, so it has a holding account (captable_account.investor, a real foreign key).
"""

import importlib
from typing import Any

import django.db.models.deletion
from django.db import migrations, models

_keys = importlib.import_module("captable.migrations.0018_statement_level_ledger_keys")
# 0018's payout rule alone (to put back when going back).
_PAYOUT_RULE_0018 = _keys.POSTGRES_CREATE[
    _keys.POSTGRES_CREATE.index(
        "CREATE OR REPLACE FUNCTION captable_payouts_entry_is_theirs"
    ) : _keys.POSTGRES_CREATE.index("CREATE TRIGGER captable_payouts_entry_inserted")
]

POSTGRES_CREATE = r"""
CREATE OR REPLACE FUNCTION captable_payouts_entry_is_theirs() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    bad record;
BEGIN
    IF TG_OP = 'INSERT' THEN
        SELECT n.id, n.distribution_id, n.investor_id INTO bad FROM new_payouts n
        WHERE NOT EXISTS (SELECT 1 FROM captable_distribution d WHERE d.id = n.distribution_id)
           OR NOT EXISTS (SELECT 1 FROM investors_investor i WHERE i.id = n.investor_id)
        LIMIT 1;
        IF FOUND THEN
            RAISE EXCEPTION 'payout of unknown distribution % or investor %',
                bad.distribution_id, bad.investor_id
                USING ERRCODE = 'foreign_key_violation';
        END IF;
    END IF;
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

CREATE OR REPLACE FUNCTION captable_payout_holder_fixed() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF (NEW.distribution_id, NEW.investor_id) IS DISTINCT FROM
       (OLD.distribution_id, OLD.investor_id) THEN
        RAISE EXCEPTION 'payout %: its distribution and holder never change', OLD.id
            USING ERRCODE = 'restrict_violation';
    END IF;
    RETURN NEW;
END;
$$;

CREATE TRIGGER captable_payout_holder_fixed
    BEFORE UPDATE OF distribution_id, investor_id ON captable_payout
    FOR EACH ROW EXECUTE FUNCTION captable_payout_holder_fixed();
"""

POSTGRES_DROP = r"""
DROP TRIGGER IF EXISTS captable_payout_holder_fixed ON captable_payout;
DROP FUNCTION IF EXISTS captable_payout_holder_fixed();
"""

SQLITE_CREATE = [
    """CREATE TRIGGER captable_payout_keys BEFORE INSERT ON captable_payout BEGIN
        SELECT RAISE(ABORT, 'payout of unknown distribution or investor')
        WHERE NOT EXISTS (SELECT 1 FROM captable_distribution WHERE id = NEW.distribution_id)
           OR NOT EXISTS (SELECT 1 FROM investors_investor WHERE id = NEW.investor_id);
    END""",
    """CREATE TRIGGER captable_payout_holder_fixed
    BEFORE UPDATE OF distribution_id, investor_id ON captable_payout
    WHEN NEW.distribution_id IS NOT OLD.distribution_id OR NEW.investor_id IS NOT OLD.investor_id
    BEGIN
        SELECT RAISE(ABORT, 'a payout''s distribution and holder never change');
    END""",
]
SQLITE_TRIGGERS = ("captable_payout_keys", "captable_payout_holder_fixed")


def forward(apps: Any, schema_editor: Any) -> None:
    vendor = schema_editor.connection.vendor
    if vendor == "postgresql":
        schema_editor.execute(POSTGRES_CREATE, params=None)
    elif vendor == "sqlite":
        for sql in SQLITE_CREATE:
            schema_editor.execute(sql)


def backward(apps: Any, schema_editor: Any) -> None:
    vendor = schema_editor.connection.vendor
    if vendor == "postgresql":
        schema_editor.execute(POSTGRES_DROP, params=None)
        schema_editor.execute(_PAYOUT_RULE_0018, params=None)
    elif vendor == "sqlite":
        for name in SQLITE_TRIGGERS:
            schema_editor.execute(f"DROP TRIGGER IF EXISTS {name}")


class Migration(migrations.Migration):
    dependencies = [
        ("captable", "0018_statement_level_ledger_keys"),
        ("investors", "0002_history_append_only"),
    ]

    operations = [
        # SQLite remakes the payout table for these: its triggers are set aside meanwhile.
        migrations.RunPython(_keys.sqlite_triggers_set_aside, _keys.sqlite_triggers_restore),
        migrations.AlterField(
            model_name="payout",
            name="distribution",
            field=models.ForeignKey(
                db_constraint=False,
                db_index=False,
                on_delete=django.db.models.deletion.PROTECT,
                related_name="payouts",
                to="captable.distribution",
            ),
        ),
        migrations.AlterField(
            model_name="payout",
            name="investor",
            field=models.ForeignKey(
                db_constraint=False,
                db_index=False,
                on_delete=django.db.models.deletion.PROTECT,
                related_name="payouts",
                to="investors.investor",
            ),
        ),
        migrations.RunPython(_keys.sqlite_triggers_restore, _keys.sqlite_triggers_set_aside),
        migrations.RunPython(forward, backward),
    ]
