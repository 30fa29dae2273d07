"""The database itself keeps the ledger's rules, even against raw SQL that bypasses
captable/ledger.py; and verify_ledger notices what was changed behind the application's back."""

import io
from typing import Any

import pytest
from django.core.management import CommandError, call_command
from django.db import DatabaseError, connection, transaction

from captable import ledger
from captable.models import Account, ChainSeal, Entry, Posting, SealedEntry
from captable.seals import ledger_seal_all, seal_digest
from captable.verification import ledger_verify
from tests.captable.factories import investors, issue, offering_with_units, transfer


def ledger_snapshot() -> tuple[object, ...]:
    return (
        Entry.objects.count(),
        tuple(Posting.objects.order_by("pk").values_list("pk", "amount")),
        tuple(Account.objects.order_by("pk").values_list("pk", "balance")),
    )


def run_sql_expecting_refusal(sql: str, params: list[Any] | None = None) -> str:
    with pytest.raises(DatabaseError) as error, transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(sql, params)
    return str(error.value)


@pytest.fixture
def small_ledger(db):
    offering = offering_with_units(1_000)
    alice, bob = investors(2)
    issue(offering, alice, 100, cost_minor=1_000)
    transfer(offering, alice, bob, 30)
    ledger_seal_all()
    return offering, alice, bob


@pytest.mark.embedded
@pytest.mark.parametrize(
    "sql",
    [
        "UPDATE captable_posting SET amount = amount + 1",
        "DELETE FROM captable_posting",
        "UPDATE captable_entry SET memo = 'edited'",
        "DELETE FROM captable_entry",
        "UPDATE captable_lot SET quanta_acquired = 1",
        "DELETE FROM captable_sealedentry",
        "UPDATE captable_chainseal SET digest = 'x'",
        "DELETE FROM captable_account",
        "UPDATE captable_account SET kind = 'external'",
    ],
)
def test_raw_sql_cannot_change_posted_rows(small_ledger, sql):
    before = ledger_snapshot()
    message = run_sql_expecting_refusal(sql)
    refusals = ("append-only", "cannot be deleted", "immutable", "changes only through postings")
    assert any(refusal in message for refusal in refusals), message
    assert ledger_snapshot() == before


@pytest.mark.postgres_only
def test_raw_balance_update_is_refused_on_postgres(small_ledger):
    before = ledger_snapshot()
    message = run_sql_expecting_refusal("UPDATE captable_account SET balance = balance + 5")
    assert "changes only through postings" in message
    assert ledger_snapshot() == before


@pytest.mark.embedded
def test_raw_posting_that_overdraws_a_holding_is_refused(small_ledger):
    offering, alice, _ = small_ledger
    holding = ledger.holding_account(offering, alice)
    entry = Entry.objects.get(kind="issue")
    before = ledger_snapshot()
    lot_id = holding.lots.get().pk
    run_sql_expecting_refusal(
        "INSERT INTO captable_posting (entry_id, account_id, asset, amount, cost_minor, lot_id,"
        " effective_at) VALUES (%s, %s, %s, %s, 0, %s, %s)",
        [entry.pk, holding.pk, holding.asset, -1_000, lot_id, entry.effective_at],
    )
    assert ledger_snapshot() == before


@pytest.mark.postgres_only
@pytest.mark.django_db(transaction=True)
def test_raw_unbalanced_entry_fails_at_commit_and_changes_nothing():
    offering = offering_with_units(1_000)
    (alice,) = investors(1)
    issue(offering, alice, 10)
    treasury = ledger.treasury_account(offering)
    before = ledger_snapshot()
    # the inserts are accepted; the balance check is deferred to COMMIT, which raises
    with (
        pytest.raises(DatabaseError, match="unbalanced"),
        transaction.atomic(),
        connection.cursor() as cursor,
    ):
        cursor.execute(
            "INSERT INTO captable_entry (kind, idempotency_key, request_digest, effective_at,"
            " recorded_at, memo, chain, metadata) VALUES ('authorize', 'raw', 'x', now(),"
            " now(), '', 'offering:0', '{}') RETURNING id"
        )
        (entry_id,) = cursor.fetchone()
        cursor.execute(
            "INSERT INTO captable_posting (entry_id, account_id, asset, amount, cost_minor,"
            " effective_at) SELECT %s, %s, %s, 5, 0, effective_at FROM captable_entry"
            " WHERE id = %s",
            [entry_id, treasury.pk, treasury.asset, entry_id],
        )
    assert ledger_snapshot() == before
    assert ledger_verify().ok


def tamper(sql: str, params: list[Any], *tables: str) -> None:
    """Change rows behind the application's back: switch off the guards, write, switch on."""
    with connection.cursor() as cursor:
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")  # no pending trigger events
        for table in tables:
            cursor.execute(f"ALTER TABLE {table} DISABLE TRIGGER USER")
        cursor.execute(sql, params)
        for table in tables:
            cursor.execute(f"ALTER TABLE {table} ENABLE TRIGGER USER")


@pytest.mark.postgres_only
def test_verify_ledger_names_a_row_altered_behind_the_applications_back(small_ledger):
    assert ledger_verify().ok
    transfer_entry = Entry.objects.get(kind="transfer")
    posting = transfer_entry.postings.order_by("pk")[0]
    tamper(
        "UPDATE captable_posting SET cost_minor = cost_minor + 1 WHERE id = %s",
        [posting.pk],
        "captable_posting",
    )
    report = ledger_verify()
    assert not report.ok
    assert report.first_bad_entry_id == transfer_entry.pk
    assert any(
        f"entry #{transfer_entry.pk} changed after it was sealed" in p for p in report.problems
    )
    out = io.StringIO()
    with pytest.raises(CommandError, match=f"first bad entry: #{transfer_entry.pk}"):
        call_command("verify_ledger", stdout=out)
    assert "PROBLEM" in out.getvalue()


@pytest.mark.postgres_only
def test_verify_ledger_detects_a_chain_rewritten_without_the_key(small_ledger):
    transfer_entry = Entry.objects.get(kind="transfer")
    # The forger moves 10 more units to bob, consistently: postings, balances, lot sums...
    for posting in transfer_entry.postings.all():
        delta = 10 if posting.amount > 0 else -10
        tamper(
            "UPDATE captable_posting SET amount = amount + %s WHERE id = %s",
            [delta, posting.pk],
            "captable_posting",
        )
        tamper(
            "UPDATE captable_account SET balance = balance + %s WHERE id = %s",
            [delta, posting.account_id],
            "captable_account",
        )
    # ...recomputes every entry digest and re-signs the seals, but with a guessed key.
    from captable.seals import entries_with_content, entry_digest

    for seal in ChainSeal.objects.order_by("chain", "sequence"):
        members = list(SealedEntry.objects.filter(seal=seal).order_by("entry_id"))
        digests = []
        for entry in entries_with_content(Entry(pk=m.entry_id) for m in members):
            digest = entry_digest(entry, entry.postings.all(), entry.lots_opened.all())
            digests.append((entry.pk, digest))
            tamper(
                "UPDATE captable_sealedentry SET entry_digest = %s WHERE entry_id = %s",
                [digest, entry.pk],
                "captable_sealedentry",
            )
        forged = seal_digest(seal.previous_digest, digests, "guessed-key")
        tamper(
            "UPDATE captable_chainseal SET digest = %s WHERE id = %s",
            [forged, seal.pk],
            "captable_chainseal",
        )
    report = ledger_verify()
    # every invariant still holds, only the keyed seal gives the forgery away
    assert not report.ok
    assert all("does not verify with the key" in problem for problem in report.problems)
    assert report.first_bad_entry_id is not None


@pytest.mark.postgres_only
@pytest.mark.django_db(transaction=True)
def test_the_hot_ledger_statements_are_prepared_on_the_connection():
    # Django turns psycopg's prepared statements off unless its OPTIONS set a threshold, and
    # psycopg then ignores the ledger's explicit prepare=True, silently: every posting was
    # parsed and planned again. The settings enable them; this keeps it that way.
    offering = offering_with_units(1_000)
    alice, bob = investors(2)
    issue(offering, alice, 100)
    transfer(offering, alice, bob, 30)  # outside a transaction: the optimistic path
    transfer(offering, bob, alice, 10)
    with connection.cursor() as cursor:
        cursor.execute("SELECT statement FROM pg_prepared_statements")
        prepared = [row[0] for row in cursor.fetchall()]
    assert any("FROM captable_account a" in sql and "lots.ids" in sql for sql in prepared)
    assert any("INSERT INTO captable_posting" in sql for sql in prepared)
