"""PostgreSQL: a posting statement locks the shared accounts it moves in the ledger's lock order
before it updates their balances.

The posting statement trigger's balance UPDATE joins the statement's postings grouped by
account, so it locks the rows in the join's order, which no rule fixes. Every writer so far
locked its accounts first, in `ledger.LOCK_ORDER`, so the UPDATE only met locks it held. The
pay run's fan-out now writes the shared accounts' legs without locking them first
(captable/ledger.py `_fan_out_write`): the statement's own trigger takes those locks at its
end, so a batch holds the shared accounts (the distribution's payable, the issuer's
withholding) from then to COMMIT only, instead of for the whole statement; two batches on
other connections overlapped everything but that. With more than one shared account in a
statement, two such statements must not lock them in opposite orders: the trigger locks the
statement's shared accounts (those of no investor) by id, as LOCK_ORDER does, before the
UPDATE. An investor's accounts are always locked by the writer before its statement (they
come first in LOCK_ORDER), so the trigger leaves them to the UPDATE.
"""

import importlib
from typing import Any

from django.db import migrations

# The function as 0018 left it (0015's, with its unknown entry and lot checks).
_0018 = importlib.import_module("captable.migrations.0018_statement_level_ledger_keys")
PREVIOUS_FUNCTION = _0018.POSTGRES_POSTINGS_APPLY

UPDATE_BALANCES = """
    UPDATE captable_account a SET balance = a.balance + net.amount, version = a.version + 1"""

LOCK_SHARED_THEN_UPDATE = """
    -- The shared accounts in LOCK_ORDER (investor_id IS NULL, id) before the UPDATE, whose
    -- join would lock them in no set order (0025).
    PERFORM 1 FROM captable_account s
    WHERE s.id IN (SELECT DISTINCT account_id FROM new_postings) AND s.investor_id IS NULL
    ORDER BY s.id FOR UPDATE;
    UPDATE captable_account a SET balance = a.balance + net.amount, version = a.version + 1"""

assert PREVIOUS_FUNCTION.count(UPDATE_BALANCES) == 1
POSTGRES_FUNCTION = PREVIOUS_FUNCTION.replace(UPDATE_BALANCES, LOCK_SHARED_THEN_UPDATE)


def forward(apps: Any, schema_editor: Any) -> None:
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(POSTGRES_FUNCTION, params=None)


def backward(apps: Any, schema_editor: Any) -> None:
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(PREVIOUS_FUNCTION, params=None)


class Migration(migrations.Migration):
    dependencies = [("captable", "0024_entry_check_by_range")]

    operations = [migrations.RunPython(forward, backward)]
