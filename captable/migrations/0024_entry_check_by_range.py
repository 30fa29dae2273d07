"""PostgreSQL: the balanced-entry check reads a batch's postings with one index range scan.

At COMMIT each queued statement's entries are checked: every entry has postings and they sum to
zero per asset. The check probed the postings' entry index once per entry (25,000 probes for a
pay run's batch, ~75 ms). A batch's entries take consecutive ids (one statement, one sequence),
so when the entries checked are many (more than 100) and dense (their id range is less than
twice their number), their postings are now read with one range scan of that index, summed per
entry and asset, and joined back to the entries checked (~25 ms a batch). An entry with no
posting in the range still shows as having none, so the rule and its messages are unchanged:
the first entry (by id) with no postings or an unbalanced asset is named. Few or scattered
entries (a transfer: one) keep the per-entry probes, with no extra statement.
"""

import importlib
from typing import Any

from django.db import migrations

_checks = importlib.import_module("captable.migrations.0016_entry_checks_per_statement")
_START = "CREATE OR REPLACE FUNCTION captable_check_entries"
_END = "CREATE OR REPLACE FUNCTION captable_entry_check_pending_run"
# 0016's function alone (to put back when going back).
CHECK_ENTRIES_0016 = _checks.POSTGRES_CREATE[
    _checks.POSTGRES_CREATE.index(_START) : _checks.POSTGRES_CREATE.index(_END)
]

POSTGRES_CREATE = r"""
CREATE OR REPLACE FUNCTION captable_check_entries(checked_entry_ids bigint[]) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    bad record;
    id_low bigint;
    id_high bigint;
    entry_count bigint;
    is_dense boolean := false;
BEGIN
    IF cardinality(checked_entry_ids) > 100 THEN
        SELECT min(x), max(x), count(DISTINCT x) INTO id_low, id_high, entry_count
        FROM unnest(checked_entry_ids) AS x;
        is_dense := id_high - id_low < 2 * entry_count;
    END IF;
    IF is_dense THEN
        -- One range scan of the postings' entry index, summed per entry and asset; entries
        -- of other transactions in the range are summed too (committed ones balance).
        SELECT checked.entry_id, per_asset.asset, per_asset.total INTO bad
        FROM (SELECT DISTINCT unnest(checked_entry_ids) AS entry_id) checked
        LEFT JOIN (
            SELECT p.entry_id, p.asset, SUM(p.amount) AS total FROM captable_posting p
            WHERE p.entry_id BETWEEN id_low AND id_high GROUP BY p.entry_id, p.asset
        ) per_asset ON per_asset.entry_id = checked.entry_id
        WHERE per_asset.asset IS NULL OR per_asset.total <> 0
        ORDER BY checked.entry_id
        LIMIT 1;
    ELSE
        -- Per entry, an index probe of its postings (LATERAL, kept apart from the join): the
        -- cost follows the entries checked, not the size of the ledger.
        SELECT checked.entry_id, per_asset.asset, per_asset.total INTO bad
        FROM (SELECT DISTINCT unnest(checked_entry_ids) AS entry_id) checked
        LEFT JOIN LATERAL (
            SELECT p.asset, SUM(p.amount) AS total FROM captable_posting p
            WHERE p.entry_id = checked.entry_id GROUP BY p.asset OFFSET 0
        ) per_asset ON true
        WHERE per_asset.asset IS NULL OR per_asset.total <> 0
        ORDER BY checked.entry_id
        LIMIT 1;
    END IF;
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
"""


def forward(apps: Any, schema_editor: Any) -> None:
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(POSTGRES_CREATE, params=None)


def backward(apps: Any, schema_editor: Any) -> None:
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(CHECK_ENTRIES_0016, params=None)


class Migration(migrations.Migration):
    dependencies = [("captable", "0023_pay_run_keys_per_statement")]

    operations = [migrations.RunPython(forward, backward)]
