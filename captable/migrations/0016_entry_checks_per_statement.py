"""PostgreSQL: the ledger's per-row triggers on entries, postings and accounts work per
statement (or not at all where nothing is refused).

A pay run writes 100,000 entries and 210,000 postings with a few COPY statements; three row
triggers made that one trigger call per row: the sealing queue (an INSERT per entry) and the
deferred balanced-entry check (at COMMIT, once per entry and once more per posting, each a
grouped query over that entry's postings: 310,000 checks for 100,000 entries). Now:

- the sealing queue is filled by a statement trigger on entries, from its transition table;
- each insert statement on entries or on postings queues ONE row listing the entries it
  touched (`captable_entry_check_pending`), and a deferred constraint trigger on that queue
  checks those entries at COMMIT in one set-based query, then removes its row. Same rule and
  messages as before: every entry written or added to in the transaction has postings and
  sums to zero per asset when it commits; `SET CONSTRAINTS ... IMMEDIATE` still checks at once.

Both databases: the payout's single-column foreign-key indexes go (the composite indexes lead
with those columns): a payout written, then paid, updates two indexes fewer.

The queue table is not a Django model (it is empty outside a transaction). SQLite is unchanged
(its triggers are per row, and its balanced-entry check is made by captable/ledger.py).
"""

from typing import Any

import django.db.models.deletion
from django.db import migrations, models

POSTGRES_CREATE = r"""
CREATE TABLE captable_entry_check_pending (
    id bigserial PRIMARY KEY,
    entry_ids bigint[] NOT NULL
);

CREATE OR REPLACE FUNCTION captable_check_entries(checked_entry_ids bigint[]) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    bad record;
BEGIN
    -- Per entry, an index probe of its postings (LATERAL, kept apart from the join): the cost
    -- follows the entries checked, not the size of the ledger.
    SELECT checked.entry_id, per_asset.asset, per_asset.total INTO bad
    FROM (SELECT DISTINCT unnest(checked_entry_ids) AS entry_id) checked
    LEFT JOIN LATERAL (
        SELECT p.asset, SUM(p.amount) AS total FROM captable_posting p
        WHERE p.entry_id = checked.entry_id GROUP BY p.asset OFFSET 0
    ) per_asset ON true
    WHERE per_asset.asset IS NULL OR per_asset.total <> 0
    ORDER BY checked.entry_id
    LIMIT 1;
    IF NOT FOUND THEN
        RETURN;
    END IF;
    IF bad.asset IS NULL THEN
        RAISE EXCEPTION 'ledger entry % has no postings', bad.entry_id
            USING ERRCODE = 'check_violation';
    END IF;
    RAISE EXCEPTION 'ledger entry % is unbalanced: % sums to %',
        bad.entry_id, bad.asset, bad.total
        USING ERRCODE = 'check_violation';
END;
$$;

CREATE OR REPLACE FUNCTION captable_entry_check_pending_run() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM captable_check_entries(NEW.entry_ids);
    DELETE FROM captable_entry_check_pending WHERE id = NEW.id;
    RETURN NULL;
END;
$$;

CREATE CONSTRAINT TRIGGER captable_entry_check_pending_run
    AFTER INSERT ON captable_entry_check_pending
    DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW EXECUTE FUNCTION captable_entry_check_pending_run();

CREATE OR REPLACE FUNCTION captable_entries_inserted() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO captable_unsealedentry (entry_id, chain) SELECT id, chain FROM new_entries;
    INSERT INTO captable_entry_check_pending (entry_ids)
        SELECT array_agg(id) FROM new_entries HAVING count(*) > 0;
    RETURN NULL;
END;
$$;

CREATE OR REPLACE FUNCTION captable_postings_inserted() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO captable_entry_check_pending (entry_ids)
        SELECT array_agg(DISTINCT entry_id) FROM new_postings HAVING count(*) > 0;
    RETURN NULL;
END;
$$;

-- The account guard runs its function only for an update it refuses: one made outside a
-- trigger, or one that changes an account's identity. The balance updates of the posting
-- trigger (100,000 accounts in a pay run) no longer call it once per row.
DROP TRIGGER captable_account_guard ON captable_account;
CREATE TRIGGER captable_account_no_delete BEFORE DELETE ON captable_account
    FOR EACH ROW EXECUTE FUNCTION captable_account_guard();
CREATE TRIGGER captable_account_guard BEFORE UPDATE ON captable_account
    FOR EACH ROW WHEN (
        pg_trigger_depth() < 1
        OR (NEW.key, NEW.kind, NEW.asset, NEW.offering_id, NEW.investor_id, NEW.issuer_id,
            NEW.reference, NEW.allows_negative, NEW.created_at)
           IS DISTINCT FROM
           (OLD.key, OLD.kind, OLD.asset, OLD.offering_id, OLD.investor_id, OLD.issuer_id,
            OLD.reference, OLD.allows_negative, OLD.created_at)
    )
    EXECUTE FUNCTION captable_account_guard();
-- Room on each page for an account's next version: a balance update (no indexed column
-- changes) then stays on its page without touching the account's indexes (HOT).
ALTER TABLE captable_account SET (fillfactor = 50);

DROP TRIGGER captable_entry_queue_seal ON captable_entry;
DROP TRIGGER captable_entry_has_postings ON captable_entry;
DROP TRIGGER captable_posting_balanced ON captable_posting;

CREATE TRIGGER captable_entries_inserted AFTER INSERT ON captable_entry
    REFERENCING NEW TABLE AS new_entries
    FOR EACH STATEMENT EXECUTE FUNCTION captable_entries_inserted();
CREATE TRIGGER captable_postings_inserted AFTER INSERT ON captable_posting
    REFERENCING NEW TABLE AS new_postings
    FOR EACH STATEMENT EXECUTE FUNCTION captable_postings_inserted();
"""

POSTGRES_DROP = r"""
DROP TRIGGER captable_postings_inserted ON captable_posting;
DROP TRIGGER captable_entries_inserted ON captable_entry;
DROP FUNCTION captable_postings_inserted();
DROP FUNCTION captable_entries_inserted();
DROP TABLE captable_entry_check_pending;
DROP FUNCTION captable_entry_check_pending_run();
DROP FUNCTION captable_check_entries(bigint[]);

CREATE TRIGGER captable_entry_queue_seal AFTER INSERT ON captable_entry
    FOR EACH ROW EXECUTE FUNCTION captable_entry_queue_seal();
ALTER TABLE captable_account RESET (fillfactor);
DROP TRIGGER captable_account_guard ON captable_account;
DROP TRIGGER captable_account_no_delete ON captable_account;
CREATE TRIGGER captable_account_guard BEFORE UPDATE OR DELETE ON captable_account
    FOR EACH ROW EXECUTE FUNCTION captable_account_guard();
CREATE CONSTRAINT TRIGGER captable_posting_balanced AFTER INSERT ON captable_posting
    DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW EXECUTE FUNCTION captable_posting_balanced();
CREATE CONSTRAINT TRIGGER captable_entry_has_postings AFTER INSERT ON captable_entry
    DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW EXECUTE FUNCTION captable_entry_has_postings();
"""


# Both databases: the payout's single-column foreign-key indexes, which the unique
# (distribution, investor) and the (investor, distribution) index lead with; dropped by name
# found through introspection, in place (on SQLite, AlterField would rebuild the table).
PAYOUT_INDEXED_COLUMNS = ("distribution_id", "investor_id")


def _payout_single_column_indexes(schema_editor: Any, column: str) -> list[str]:
    connection = schema_editor.connection
    with connection.cursor() as cursor:
        constraints = connection.introspection.get_constraints(cursor, "captable_payout")
    return sorted(
        name
        for name, info in constraints.items()
        if info["index"]
        and not info["unique"]
        and not info["primary_key"]
        and info["columns"] == [column]
    )


def forward(apps: Any, schema_editor: Any) -> None:
    for column in PAYOUT_INDEXED_COLUMNS:
        for name in _payout_single_column_indexes(schema_editor, column):
            schema_editor.execute(f"DROP INDEX {schema_editor.quote_name(name)}")
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(POSTGRES_CREATE, params=None)


def backward(apps: Any, schema_editor: Any) -> None:
    for column in PAYOUT_INDEXED_COLUMNS:
        name = schema_editor.quote_name(f"captable_payout_{column}_restored")
        schema_editor.execute(f"CREATE INDEX {name} ON captable_payout ({column})")
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(POSTGRES_DROP, params=None)


class Migration(migrations.Migration):
    dependencies = [
        ("captable", "0015_ledger_write_path"),
        ("investors", "0002_history_append_only"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.AlterField(
                    model_name="payout",
                    name="distribution",
                    field=models.ForeignKey(
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
                        db_index=False,
                        on_delete=django.db.models.deletion.PROTECT,
                        related_name="payouts",
                        to="investors.investor",
                    ),
                ),
            ],
            database_operations=[migrations.RunPython(forward, backward, elidable=False)],
        )
    ]
