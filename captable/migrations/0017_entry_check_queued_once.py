"""PostgreSQL: an entry is queued for the balanced-entry check at most once per transaction.

Since 0016 each insert statement on entries and each one on postings queues a row listing the
entries it touched, and the deferred trigger checks each row at COMMIT. A transfer writes its
entry and its postings in one statement, so the same entry was queued, and checked, twice
(two deferred trigger calls of ~70 µs in a ~1.1 ms transfer). Now a statement queues only the
entries not already waiting in this transaction's queue: the check at COMMIT reads all of an
entry's postings, those of later statements included, so one queued check covers them. The
queue's rows are deleted when they are checked (at COMMIT, or at once under `SET CONSTRAINTS
... IMMEDIATE`), so postings added after an entry was checked queue it again. The comparison is
a set difference (hashed), so a pay run's 100,000 entries cost one pass, not a product.
"""

from typing import Any

from django.db import migrations

POSTGRES_CREATE = r"""
CREATE OR REPLACE FUNCTION captable_postings_inserted() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    touched bigint[] := ARRAY(SELECT DISTINCT entry_id FROM new_postings ORDER BY entry_id);
BEGIN
    IF cardinality(touched) = 0 THEN
        RETURN NULL;
    END IF;
    -- The entry statement of this transaction queued exactly these entries (a transfer, a
    -- payout): their check at COMMIT reads these postings too.
    IF NOT EXISTS (SELECT 1 FROM captable_entry_check_pending WHERE entry_ids = touched) THEN
        INSERT INTO captable_entry_check_pending (entry_ids) VALUES (touched);
    END IF;
    RETURN NULL;
END;
$$;

CREATE OR REPLACE FUNCTION captable_entries_inserted() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO captable_unsealedentry (entry_id, chain) SELECT id, chain FROM new_entries;
    INSERT INTO captable_entry_check_pending (entry_ids)
        SELECT array_agg(id ORDER BY id) FROM new_entries HAVING count(*) > 0;
    RETURN NULL;
END;
$$;
"""

POSTGRES_DROP = r"""
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

"""


def forward(apps: Any, schema_editor: Any) -> None:
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(POSTGRES_CREATE)


def backward(apps: Any, schema_editor: Any) -> None:
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(POSTGRES_DROP)


class Migration(migrations.Migration):
    dependencies = [("captable", "0016_entry_checks_per_statement")]

    operations = [migrations.RunPython(forward, backward)]
