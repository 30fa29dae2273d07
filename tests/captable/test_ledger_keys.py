"""The ledger's keys checked per statement (captable migrations 0018, 0019): a posting's
entry, account and lot, and a payout's entry, distribution and investor, are not database
foreign keys any more, and the database still refuses any row that names one that does not
exist — against raw SQL too, on both databases; a payout's distribution and holder never
change. A payout can name only its own entry (the one under its payout key), so no two
payouts share one. And a pay run's batch queues its entries for the balanced-entry check once,
and posts only the keys not used before when some were."""

from __future__ import annotations

import psycopg
import pytest
from django.db import DatabaseError, connection, transaction

from captable import ledger
from captable.models import Account, Entry, Payout, UnsealedEntry
from investors.models import Investor
from tests.captable.factories import investors, issue, offering_with_units
from tests.captable.test_distribution_fan_out import fan_out, funded_source
from tests.captable.test_distributions import (
    approve_and_fund,
    balance,
    cash_of,
    closed_offering,
    declare,
    pay,
)
from tests.captable.test_ledger_database import (
    ledger_snapshot,
    run_sql_expecting_refusal,
    small_ledger,  # noqa: F401 (a fixture)
)

MISSING = 987_654_321

_POSTING_SQL = (
    "INSERT INTO captable_posting (entry_id, account_id, asset, amount, cost_minor, lot_id,"
    " effective_at) VALUES (%s, %s, %s, %s, 0, %s, %s)"
)


@pytest.mark.embedded
@pytest.mark.parametrize("missing", ["entry", "account", "lot"])
def test_a_posting_naming_a_missing_entry_account_or_lot_is_refused(small_ledger, missing):  # noqa: F811
    offering, alice, _ = small_ledger
    holding = ledger.holding_account(offering, alice)
    entry = Entry.objects.get(kind="issue")
    ids = {"entry": entry.pk, "account": holding.pk, "lot": holding.lots.get().pk}
    ids[missing] = MISSING
    before = ledger_snapshot()

    message = run_sql_expecting_refusal(
        _POSTING_SQL,
        [ids["entry"], ids["account"], holding.asset, 1, ids["lot"], entry.effective_at],
    )

    assert f"unknown {missing}" in message
    assert ledger_snapshot() == before


def _paid_payouts() -> tuple[Payout, Payout]:
    offering, _ = closed_offering([1, 3])
    distribution = declare(offering, amount_minor=400_00)
    approve_and_fund(distribution)
    pay(distribution)
    first, second = Payout.objects.filter(distribution=distribution).order_by("investor_id")
    assert first.entry_id is not None
    assert second.entry_id is not None
    return first, second


@pytest.mark.embedded
@pytest.mark.django_db
@pytest.mark.parametrize("named", ["another payout's entry", "a missing entry"])
def test_a_payout_can_name_only_its_own_entry(named):
    first, second = _paid_payouts()
    entry_id = second.entry_id if named == "another payout's entry" else MISSING

    message = run_sql_expecting_refusal(
        "UPDATE captable_payout SET entry_id = %s WHERE id = %s", [entry_id, first.pk]
    )

    assert "not its payout entry" in message
    first.refresh_from_db()
    assert first.entry_id != entry_id


@pytest.mark.postgres_only
@pytest.mark.django_db
def test_a_fan_out_queues_its_entries_for_the_balanced_check_once():
    people = investors(3)
    source = funded_source(1_000_00)
    with transaction.atomic():
        posted = ledger.cash_fan_out_post(fan_out(source, people, [100, 200, 300]))
        with connection.cursor() as cursor:
            # (The test's own transaction never commits: the setup's checks are queued too.)
            cursor.execute(
                "SELECT entry_ids FROM captable_entry_check_pending"
                " WHERE entry_ids && %s::bigint[]",
                [list(posted.values())],
            )
            queued = [sorted(ids) for (ids,) in cursor.fetchall()]
    # The entry and the posting statement triggers fire for one statement: one queued check.
    assert queued == [sorted(posted.values())]


@pytest.mark.postgres_only
@pytest.mark.django_db
def test_a_fan_out_whose_keys_were_partly_used_posts_only_the_new_ones():
    people = investors(4)
    source = funded_source(1_000_00)
    first = ledger.cash_fan_out_post(fan_out(source, people[:2], [100, 200]))
    entries_before = Entry.objects.count()

    # The same two requests again, with two new ones: the write under all four keys fails on
    # the used keys, and only then are the replays looked up.
    posted = ledger.cash_fan_out_post(fan_out(source, people, [100, 200, 300, 400]))

    assert Entry.objects.count() == entries_before + 2
    assert {key: posted[key] for key in first} == first
    assert len(set(posted.values())) == 4
    assert [cash_of(person) for person in people] == [100, 200, 300, 400]
    assert balance(source) == 1_000_00 - 1_000


def _payout_copy_sql(replaced: str) -> str:
    """INSERT a copy of a payout (every column but the id) with `replaced` set to %s."""
    columns = [str(f.column) for f in Payout._meta.concrete_fields if not f.primary_key]
    values = ["%s" if column == replaced else column for column in columns]
    return (
        f"INSERT INTO captable_payout ({', '.join(columns)}) "
        f"SELECT {', '.join(values)} FROM captable_payout WHERE id = %s"
    )


@pytest.mark.embedded
@pytest.mark.django_db
@pytest.mark.parametrize("column", ["distribution_id", "investor_id"])
def test_a_payout_of_a_missing_distribution_or_investor_is_refused(column):
    first, _ = _paid_payouts()
    payouts_before = Payout.objects.count()

    message = run_sql_expecting_refusal(_payout_copy_sql(column), [MISSING, first.pk])

    assert "unknown distribution" in message
    assert Payout.objects.count() == payouts_before


@pytest.mark.embedded
@pytest.mark.django_db
@pytest.mark.parametrize("column", ["distribution_id", "investor_id"])
def test_a_payouts_distribution_and_holder_never_change(column):
    first, second = _paid_payouts()
    other = getattr(second, column) if column == "investor_id" else second.distribution_id + 1

    message = run_sql_expecting_refusal(
        f"UPDATE captable_payout SET {column} = %s WHERE id = %s",
        [other, first.pk],
    )

    assert "never change" in message
    first.refresh_from_db()
    assert getattr(first, column) != other


# --- migration 0023 (PostgreSQL): an account's investor and the sealing queue's entry are
# checked per statement, an entry's reversal is unique where set.

_ACCOUNT_SQL = (
    "INSERT INTO captable_account (key, kind, asset, investor_id, allows_negative, balance,"
    " version, created_at) VALUES (%s, 'cash', 'USD', %s, false, 0, 0, now())"
)


@pytest.mark.postgres_only
@pytest.mark.django_db
def test_an_account_of_a_missing_investor_is_refused():
    (alice,) = investors(1)
    ledger.cash_accounts_open([alice.pk], "USD")  # an existing investor: accepted

    message = run_sql_expecting_refusal(_ACCOUNT_SQL, [f"cash:i{MISSING}:USD", MISSING])

    assert f"unknown investor {MISSING}" in message
    assert not Account.objects.filter(investor_id=MISSING).exists()
    assert Account.objects.filter(investor_id=alice.pk).count() == 1


@pytest.mark.postgres_only
def test_an_investor_with_ledger_accounts_cannot_be_deleted(small_ledger):  # noqa: F811
    _, alice, _ = small_ledger

    message = run_sql_expecting_refusal("DELETE FROM investors_investor WHERE id = %s", [alice.pk])

    assert "has ledger accounts" in message
    assert Investor.objects.filter(pk=alice.pk).exists()
    message = run_sql_expecting_refusal(
        "UPDATE investors_investor SET id = %s WHERE id = %s", [MISSING, alice.pk]
    )
    assert "has ledger accounts" in message


@pytest.mark.postgres_only
@pytest.mark.django_db(transaction=True)
def test_an_account_insert_holds_its_investors_until_commit():
    """As the foreign key did: an investor named by an account being written cannot be deleted
    under it (the delete waits for the writer's lock)."""
    (alice,) = investors(1)
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(_ACCOUNT_SQL, [f"cash:i{alice.pk}:USD", alice.pk])
        with psycopg.connect(_url(), autocommit=True) as other:
            other.execute("SET lock_timeout = '200ms'")
            with pytest.raises(psycopg.errors.LockNotAvailable):
                other.execute(
                    "SELECT 1 FROM investors_investor WHERE id = %s FOR UPDATE", [alice.pk]
                )


def _url() -> str:
    settings = connection.settings_dict
    return (
        f"postgresql://{settings['USER']}:{settings['PASSWORD']}@{settings['HOST']}:"
        f"{settings['PORT']}/{settings['NAME']}"
    )


@pytest.mark.postgres_only
@pytest.mark.django_db
def test_a_sealing_queue_row_for_a_missing_entry_is_refused():
    offering = offering_with_units(1_000)
    (alice,) = investors(1)
    entry = issue(offering, alice, 10)  # queued for sealing (the test never commits)
    assert UnsealedEntry.objects.filter(entry_id=entry.pk).exists()

    inserted = run_sql_expecting_refusal(
        "INSERT INTO captable_unsealedentry (entry_id, chain) VALUES (%s, 'x')", [MISSING]
    )
    updated = run_sql_expecting_refusal(
        "UPDATE captable_unsealedentry SET entry_id = %s WHERE entry_id = %s",
        [MISSING, entry.pk],
    )

    assert f"unknown entry {MISSING}" in inserted
    assert f"unknown entry {MISSING}" in updated
    assert UnsealedEntry.objects.filter(entry_id=entry.pk).exists()
    assert not UnsealedEntry.objects.filter(entry_id=MISSING).exists()


@pytest.mark.postgres_only
def test_an_entry_is_reversed_once_even_by_raw_sql(small_ledger):  # noqa: F811
    entry = Entry.objects.get(kind="transfer")
    reversal = ledger.entry_reverse(entry_id=entry.pk, idempotency_key="undo", reason="test")
    columns = [
        str(f.column)
        for f in Entry._meta.concrete_fields
        if f.column not in ("id", "idempotency_key")
    ]
    before = ledger_snapshot()

    message = run_sql_expecting_refusal(
        f"INSERT INTO captable_entry (idempotency_key, {', '.join(columns)}) "
        f"SELECT 'undo again', {', '.join(columns)} FROM captable_entry WHERE id = %s",
        [reversal.pk],
    )

    assert "reverses" in message  # entry_reverses_once (0023)
    assert ledger_snapshot() == before


@pytest.mark.postgres_only
@pytest.mark.django_db
@pytest.mark.parametrize("opened_before", [[], [0], [0, 2], [0, 1, 2]])
def test_cash_accounts_open_opens_only_the_missing_ones(opened_before):
    """Tried first as if every account were new (a plain insert): when some exist the insert
    fails on their key and is made again without them."""
    people = investors(3)
    ledger.cash_accounts_open([people[i].pk for i in opened_before], "USD")
    ids_before = set(Account.objects.filter(kind="cash").values_list("pk", flat=True))

    ledger.cash_accounts_open([person.pk for person in people], "USD")
    ledger.cash_accounts_open([person.pk for person in people], "USD")

    cash = Account.objects.filter(kind="cash", investor__in=people)
    assert sorted(cash.values_list("investor_id", flat=True)) == sorted(p.pk for p in people)
    assert ids_before <= set(cash.values_list("pk", flat=True))
    assert {a.key for a in cash} == {f"cash:i{p.pk}:USD" for p in people}


# --- migration 0024: a dense batch's entries are checked with one range scan --------------------

_ENTRIES_SQL = """
    INSERT INTO captable_entry (id, kind, idempotency_key, request_digest, effective_at,
                                recorded_at, memo, chain, metadata)
    SELECT n, 'cash_move', %s || n, 'x', now(), now(), '', 'cash:USD', '{}'
    FROM unnest(%s::bigint[]) AS n
"""
_POSTINGS_SQL = """
    INSERT INTO captable_posting (entry_id, account_id, asset, amount, cost_minor, effective_at)
    SELECT n, leg.account_id, 'USD',
           CASE WHEN n = %(bad)s AND leg.amount > 0 THEN 99 ELSE leg.amount END, 0, now()
    FROM unnest(%(ids)s::bigint[]) AS n
    CROSS JOIN (VALUES (%(source)s::bigint, -100), (%(cash)s::bigint, 100))
         AS leg(account_id, amount)
    WHERE NOT (n = %(bad)s AND %(skip_bad)s)
"""


@pytest.mark.postgres_only
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("spacing", [1, 3], ids=["dense ids: range scan", "sparse ids: probes"])
@pytest.mark.parametrize("fault", ["no postings", "unbalanced"])
def test_a_batch_of_entries_names_its_first_bad_entry_at_commit(spacing, fault):
    """150 entries written in two statements (entries, then postings), all balanced but one
    (the 90th: no postings, or a leg of 99 against 100). Explicit ids, dense or spread."""
    external = ledger.external_account("USD")
    (person,) = investors(1)
    cash = ledger.cash_account(person, "USD")
    with connection.cursor() as cursor:
        cursor.execute("SELECT max(id) FROM captable_entry")
        first = int(cursor.fetchone()[0] or 0) + 1_000
    ids = [first + spacing * n for n in range(150)]
    bad = ids[89]
    entries_before = Entry.objects.count()

    with (
        pytest.raises(DatabaseError) as error,
        transaction.atomic(),
        connection.cursor() as cursor,
    ):
        cursor.execute(_ENTRIES_SQL, [f"batch-{spacing}-{fault}-", ids])
        params = {"ids": ids, "source": external.pk, "cash": cash.pk, "bad": bad}
        cursor.execute(_POSTINGS_SQL, params | {"skip_bad": fault == "no postings"})

    expected = "has no postings" if fault == "no postings" else "is unbalanced"
    assert f"ledger entry {bad} {expected}" in str(error.value)
    assert Entry.objects.count() == entries_before
