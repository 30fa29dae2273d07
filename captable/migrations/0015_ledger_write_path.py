"""PostgreSQL: the posting statement trigger looks rows up by primary key.

The trigger's checks joined the statement's few postings to the account, entry and lot tables;
the planner, working from statistics of tables that grow by the second, chose hash joins over
sequential scans of `captable_entry` and `captable_account`, so the trigger's cost grew with the
ledger (0.35 ms of a 2-posting transfer on a fresh benchmark database, more as it filled). Each
lookup is now a LATERAL subquery kept apart from the join (OFFSET 0) on the row's key: index
probes whatever the statistics say, a cost proportional to the statement's postings and not to
the ledger (a COPY of many postings, captable/ledger.py `entries_post_batch`, pays one probe
per posting and table). The balance UPDATE stays a grouped join, which suits one entry and a
batch alike. Same rules, same messages, same order of checks.

Both databases: indexes that no query uses and every posting writes are dropped — the
foreign-key indexes on lot.holding (the (holding, issued_at, id) index leads with it),
lot.origin_lot (lineage, never searched), posting.account (the (account, effective_at) index
leads with it), posting.lot (a second copy of the explicit lot index), and on PostgreSQL the
LIKE-pattern copy Django adds to the unique entry.idempotency_key (only ever compared whole).
The index drops are by name found through introspection and done in place: on SQLite, Django
would rebuild the tables for AlterField and lose their triggers.
"""

import importlib
from typing import Any

import django.db.models.deletion
from django.db import migrations, models

POSTGRES_FUNCTION = r"""
CREATE OR REPLACE FUNCTION captable_postings_apply() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    problem text;
    bad_lot record;
BEGIN
    SELECT checked.problem INTO problem FROM (
        SELECT CASE
            WHEN a.asset IS NULL THEN format('posting on unknown account %s', p.account_id)
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
        LEFT JOIN LATERAL (
            SELECT x.asset, x.kind FROM captable_account x WHERE x.id = p.account_id OFFSET 0
        ) a ON true
        LEFT JOIN LATERAL (
            SELECT x.effective_at FROM captable_entry x WHERE x.id = p.entry_id OFFSET 0
        ) e ON true
        LEFT JOIN LATERAL (
            SELECT x.holding_id FROM captable_lot x WHERE x.id = p.lot_id OFFSET 0
        ) l ON true
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

    UPDATE captable_account a SET balance = a.balance + net.amount, version = a.version + 1
    FROM (SELECT account_id, SUM(amount) AS amount FROM new_postings GROUP BY account_id) net
    WHERE a.id = net.account_id;
    RETURN NULL;
END;
$$;
"""


# (table, column) whose single-column, non-unique index goes.
UNUSED_INDEXES = [
    ("captable_lot", "holding_id"),
    ("captable_lot", "origin_lot_id"),
    ("captable_posting", "account_id"),
    ("captable_posting", "lot_id"),
]


def _single_column_indexes(schema_editor: Any, table: str, column: str) -> list[str]:
    connection = schema_editor.connection
    with connection.cursor() as cursor:
        constraints = connection.introspection.get_constraints(cursor, table)
    return sorted(
        name
        for name, info in constraints.items()
        if info["index"]
        and not info["unique"]
        and not info["primary_key"]
        and info["columns"] == [column]
    )


def forward(apps: Any, schema_editor: Any) -> None:
    declared = {
        index.name
        for model in ("Lot", "Posting")
        for index in apps.get_model("captable", model)._meta.indexes
    }
    for table, column in UNUSED_INDEXES:
        for name in _single_column_indexes(schema_editor, table, column):
            if name not in declared:  # posting.lot keeps its declared index
                schema_editor.execute(f"DROP INDEX {schema_editor.quote_name(name)}")
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(POSTGRES_FUNCTION, params=None)
        for name in _single_column_indexes(schema_editor, "captable_entry", "idempotency_key"):
            if name.endswith("_like"):
                schema_editor.execute(f"DROP INDEX {schema_editor.quote_name(name)}")


def backward(apps: Any, schema_editor: Any) -> None:
    quote = schema_editor.quote_name
    for table, column in UNUSED_INDEXES:
        name = f"{table}_{column}_restored"
        schema_editor.execute(f"CREATE INDEX {quote(name)} ON {quote(table)} ({quote(column)})")
    if schema_editor.connection.vendor == "postgresql":
        previous = importlib.import_module("captable.migrations.0007_account_version")
        schema_editor.execute(previous.POSTGRES_FUNCTION, params=None)


class Migration(migrations.Migration):
    dependencies = [("captable", "0014_distribution_reversal")]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.AlterField(
                    model_name="lot",
                    name="holding",
                    field=models.ForeignKey(
                        db_index=False,
                        on_delete=django.db.models.deletion.PROTECT,
                        related_name="lots",
                        to="captable.account",
                    ),
                ),
                migrations.AlterField(
                    model_name="lot",
                    name="origin_lot",
                    field=models.ForeignKey(
                        blank=True,
                        db_index=False,
                        null=True,
                        on_delete=django.db.models.deletion.PROTECT,
                        related_name="+",
                        to="captable.lot",
                    ),
                ),
                migrations.AlterField(
                    model_name="posting",
                    name="account",
                    field=models.ForeignKey(
                        db_index=False,
                        on_delete=django.db.models.deletion.PROTECT,
                        related_name="postings",
                        to="captable.account",
                    ),
                ),
                migrations.AlterField(
                    model_name="posting",
                    name="lot",
                    field=models.ForeignKey(
                        blank=True,
                        db_index=False,
                        null=True,
                        on_delete=django.db.models.deletion.PROTECT,
                        related_name="postings",
                        to="captable.lot",
                    ),
                ),
            ],
            database_operations=[migrations.RunPython(forward, backward, elidable=False)],
        )
    ]
