"""PostgreSQL: postings are applied per statement, not per row.

An entry's postings arrive in one INSERT (captable/ledger.py). The row trigger read the
account, the entry and the lot and updated the balance once per posting; this statement
trigger does the same checks for all the statement's postings in one query over its
transition table, refuses a lot that ends below zero, and adds each account's net amount to
its balance in one UPDATE (the account's CHECK still refuses a negative balance where one is
not allowed). Same rules and messages as before; SQLite keeps its row triggers.
"""

from typing import Any

from django.db import migrations

POSTGRES_FORWARD = r"""
DROP TRIGGER IF EXISTS captable_posting_apply ON captable_posting;

CREATE OR REPLACE FUNCTION captable_postings_apply() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    problem text;
    bad_lot record;
BEGIN
    SELECT checked.problem INTO problem FROM (
        SELECT CASE
            WHEN a.id IS NULL THEN format('posting on unknown account %s', p.account_id)
            WHEN a.asset IS DISTINCT FROM p.asset THEN format(
                'posting asset %s does not match account %s (%s)', p.asset, p.account_id, a.asset)
            WHEN e.effective_at IS DISTINCT FROM p.effective_at THEN format(
                'posting effective time differs from its entry %s', p.entry_id)
            WHEN a.kind = 'holding' AND p.lot_id IS NULL THEN format(
                'a posting on holding %s must name a lot', p.account_id)
            WHEN p.lot_id IS NOT NULL AND l.holding_id IS DISTINCT FROM p.account_id THEN format(
                'lot %s belongs to another account', p.lot_id)
        END AS problem
        FROM new_postings p
        LEFT JOIN captable_account a ON a.id = p.account_id
        LEFT JOIN captable_entry e ON e.id = p.entry_id
        LEFT JOIN captable_lot l ON l.id = p.lot_id
    ) checked WHERE checked.problem IS NOT NULL LIMIT 1;
    IF problem IS NOT NULL THEN
        RAISE EXCEPTION '%', problem USING ERRCODE = 'check_violation';
    END IF;

    SELECT drawn.lot_id, SUM(q.amount) AS quanta INTO bad_lot
    FROM (SELECT DISTINCT lot_id FROM new_postings WHERE amount < 0 AND lot_id IS NOT NULL) drawn
    JOIN captable_posting q ON q.lot_id = drawn.lot_id
    GROUP BY drawn.lot_id HAVING SUM(q.amount) < 0 LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'lot % would go negative (%)', bad_lot.lot_id, bad_lot.quanta
            USING ERRCODE = 'check_violation';
    END IF;

    UPDATE captable_account a SET balance = a.balance + net.amount
    FROM (SELECT account_id, SUM(amount) AS amount FROM new_postings GROUP BY account_id) net
    WHERE a.id = net.account_id AND net.amount <> 0;
    RETURN NULL;
END;
$$;

CREATE TRIGGER captable_postings_apply AFTER INSERT ON captable_posting
    REFERENCING NEW TABLE AS new_postings
    FOR EACH STATEMENT EXECUTE FUNCTION captable_postings_apply();
"""

POSTGRES_BACKWARD = r"""
DROP TRIGGER IF EXISTS captable_postings_apply ON captable_posting;
DROP FUNCTION IF EXISTS captable_postings_apply();
CREATE TRIGGER captable_posting_apply AFTER INSERT ON captable_posting
    FOR EACH ROW EXECUTE FUNCTION captable_posting_apply();
"""


def forward(apps: Any, schema_editor: Any) -> None:
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(POSTGRES_FORWARD, params=None)


def backward(apps: Any, schema_editor: Any) -> None:
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(POSTGRES_BACKWARD, params=None)


class Migration(migrations.Migration):
    dependencies = [("captable", "0005_sealing_queue")]

    operations = [migrations.RunPython(forward, backward, elidable=False)]
