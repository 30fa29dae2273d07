"""The pay run's set-based ledger write on PostgreSQL, `ledger.cash_fan_out_post`, and the
per-statement ledger triggers it relies on (captable migration 0016).

The fan-out keeps every rule of `entry_post`: entries balanced (checked again by the database
at COMMIT), keys used once (a replay writes nothing and returns the same ids; another request
under a used key is a Conflict and nothing is written), no account below zero, no zero
posting; every entry is queued for sealing and sealed after commit. A payout's entry written
this way has the very request digest and metadata `payout_batch_entry` gives it (so a run that
mixes the one-by-one and the batched path pays nobody twice). The triggers still refuse, at
COMMIT, an entry with no postings or unbalanced postings, however they were inserted, and an
account changed other than by a posting."""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.db import DatabaseError, connection, transaction

from captable import ledger
from captable.distribution_payrun import payouts_fan_out
from captable.distributions import (
    _PAYOUT_COLUMNS,
    DistributionAccounts,
    PayoutParts,
    _payouts_insert,
    payout_batch_entry,
)
from captable.models import Account, Entry, Payout, Posting, UnsealedEntry
from captable.verification import ledger_verify
from common.errors import Conflict, LimitExceeded, ValidationFailed
from investors.models import Investor
from tests.captable.factories import investors
from tests.captable.test_distributions import balance, cash_of, closed_offering, declare

pytestmark = [pytest.mark.django_db, pytest.mark.postgres_only]

USD = "USD"


def funded_source(amount_minor: int) -> ledger.AccountSpec:
    """An operating account of an issuer holding `amount_minor`."""
    offering, _ = closed_offering([1])
    operating = ledger.issuer_spec(offering.issuer, "operating", USD)
    ledger.cash_move(
        source=ledger.external_spec(USD),
        destination=operating,
        amount_minor=amount_minor,
        idempotency_key=f"fund:{offering.pk}",
    )
    return operating


def fan_out(
    source: ledger.AccountSpec,
    people: list[Investor],
    to_cash: list[int],
    side: tuple[ledger.AccountSpec, list[int]] | None = None,
    prefix: str = "f",
) -> ledger.CashFanOut:
    return ledger.CashFanOut(
        kind="cash_move",
        currency=USD,
        source=source,
        idempotency_keys=[f"{prefix}:{person.pk}" for person in people],
        request_digests=[
            ledger.request_digest("cash_move", {"to": person.pk, "amount": amount})
            for person, amount in zip(people, to_cash, strict=True)
        ],
        investor_ids=[person.pk for person in people],
        to_cash=to_cash,
        sides=[side] if side else [],
        metadata_json=[json.dumps({"n": n}) for n in range(len(people))],
        memo="fan-out test",
    )


def test_a_fan_out_posts_balanced_entries_and_a_replay_posts_nothing(
    django_capture_on_commit_callbacks: Any,
) -> None:
    # given: 100.00 in the source, three investors (no cash accounts yet)
    source = funded_source(100_00)
    people = investors(3)
    fees = ledger.platform_fees_spec(USD)
    # when: each gets 10.00, 20.00, 0.00 and the fees account 1.00, 0.00, 3.00
    spec = fan_out(source, people, [10_00, 20_00, 0], (fees, [1_00, 0, 3_00]))
    with django_capture_on_commit_callbacks(execute=True):
        posted = ledger.cash_fan_out_post(spec)
    # then: one balanced entry each, no zero posting, the balances moved
    assert set(posted) == set(spec.idempotency_keys)
    assert [cash_of(person) for person in people] == [10_00, 20_00, 0]
    assert balance(fees) == 4_00
    assert balance(source) == 100_00 - 34_00
    for key, entry_id in posted.items():
        entry = Entry.objects.get(pk=entry_id)
        assert entry.idempotency_key == key
        amounts = list(Posting.objects.filter(entry=entry).values_list("amount", flat=True))
        assert sum(amounts) == 0
        assert 0 not in amounts
    assert Posting.objects.filter(entry_id__in=posted.values()).count() == 3 + 2 + 2
    # the sealing queue trigger fired for each entry and sealing after commit emptied it
    assert not UnsealedEntry.objects.filter(entry_id__in=posted.values()).exists()
    report = ledger_verify()
    assert report.ok, report.summary()
    # when: the same fan-out again: the same ids, nothing moves
    entries = Entry.objects.count()
    assert ledger.cash_fan_out_post(spec) == posted
    assert Entry.objects.count() == entries
    assert balance(source) == 66_00


def test_a_key_used_for_another_request_writes_nothing() -> None:
    source = funded_source(100_00)
    people = investors(2)
    ledger.cash_fan_out_post(fan_out(source, people[:1], [5_00]))
    entries, accounts = Entry.objects.count(), Account.objects.count()
    with pytest.raises(Conflict, match="already used"):
        ledger.cash_fan_out_post(fan_out(source, people, [6_00, 1_00]))
    assert (Entry.objects.count(), Account.objects.count()) == (entries, accounts)
    assert cash_of(people[1]) == 0


def test_the_source_never_goes_below_zero_and_nothing_is_written() -> None:
    source = funded_source(5_00)
    people = investors(2)
    entries = Entry.objects.count()
    with pytest.raises(LimitExceeded) as refused:
        ledger.cash_fan_out_post(fan_out(source, people, [3_00, 3_00]))
    assert refused.value.code == "insufficient_balance"
    assert Entry.objects.count() == entries
    assert balance(source) == 5_00
    assert [cash_of(person) for person in people] == [0, 0]


@pytest.mark.parametrize(
    ("to_cash", "code"),
    [([0, 1_00], "zero_posting"), ([-1_00, 2_00], "amount_invalid")],
)
def test_malformed_fan_outs_are_refused(to_cash: list[int], code: str) -> None:
    source = funded_source(10_00)
    people = investors(2)
    with pytest.raises(ValidationFailed) as refused:
        ledger.cash_fan_out_post(fan_out(source, people, to_cash))
    assert refused.value.code == code
    assert [cash_of(person) for person in people] == [0, 0]


def test_a_fan_out_naming_a_key_twice_is_refused() -> None:
    source = funded_source(10_00)
    (person,) = investors(1)
    with pytest.raises(ValidationFailed) as refused:
        ledger.cash_fan_out_post(fan_out(source, [person, person], [1_00, 1_00]))
    assert refused.value.code == "idempotency_key_repeated"


@pytest.mark.parametrize(("withholding", "promote"), [(0, 0), (2_40, 0), (0, 5_00), (2_40, 5_00)])
def test_a_payout_entry_has_the_same_request_digest_and_metadata_on_both_paths(
    withholding: int, promote: int
) -> None:
    # given: a payout, as the batched run reads it
    offering, holders = closed_offering([1])
    distribution = declare(offering)
    payout = PayoutParts(
        pk=7,
        investor_id=holders[0].pk,
        gross_minor=10_00,
        income_minor=10_00,
        return_of_capital_minor=0,
        withholding_minor=withholding,
        net_minor=10_00 - withholding,
        promote_minor=promote,
    )
    accounts = DistributionAccounts.of(distribution)
    # when: its entry as one fan-out and as `payout_batch_entry` (the one-by-one path)
    spec = payouts_fan_out([payout], distribution, accounts)
    one = payout_batch_entry(payout, distribution, accounts)
    # then: the same key, request digest, metadata and legs
    assert spec.idempotency_keys == [one.idempotency_key]
    assert spec.request_digests == [ledger.request_digest(one.kind, one.request)]
    assert json.loads(spec.metadata_json[0]) == one.metadata
    legs = {(accounts.payable.key, -(10_00 + promote))}
    legs |= {(f"cash:i{holders[0].pk}:USD", 10_00 - withholding)}
    legs |= {(s.key, amounts[0]) for s, amounts in spec.sides if amounts[0]}
    assert legs == {(s.key, amount) for s, amount in one.legs}


# --- the per-statement triggers ------------------------------------------------------------


def raw_entry(cursor: Any, key: str) -> int:
    cursor.execute(
        "INSERT INTO captable_entry (kind, idempotency_key, request_digest, effective_at,"
        " recorded_at, memo, chain, metadata) VALUES ('cash_move', %s, 'x', now(), now(), '',"
        " 'cash:USD', '{}') RETURNING id",
        [key],
    )
    return int(cursor.fetchone()[0])


def raw_posting(cursor: Any, entry_id: int, account_id: int, amount: int) -> None:
    cursor.execute(
        "INSERT INTO captable_posting (entry_id, account_id, asset, amount, cost_minor,"
        " effective_at) SELECT %s, %s, 'USD', %s, 0, effective_at FROM captable_entry"
        " WHERE id = %s",
        [entry_id, account_id, amount, entry_id],
    )


def two_cash_accounts() -> tuple[int, int]:
    external = ledger.external_account(USD)
    (person,) = investors(1)
    return external.pk, ledger.cash_account(person, USD).pk


@pytest.mark.django_db(transaction=True)
def test_an_entry_without_postings_fails_at_commit() -> None:
    entries = Entry.objects.count()
    with (
        pytest.raises(DatabaseError, match="has no postings"),
        transaction.atomic(),
        connection.cursor() as cursor,
    ):
        raw_entry(cursor, "raw-empty")
    assert Entry.objects.count() == entries


@pytest.mark.django_db(transaction=True)
def test_postings_added_in_several_statements_are_checked_together_at_commit() -> None:
    source, cash = two_cash_accounts()
    # given: an entry whose two postings are inserted one statement at a time
    with transaction.atomic(), connection.cursor() as cursor:
        entry_id = raw_entry(cursor, "raw-two-statements")
        raw_posting(cursor, entry_id, source, -7_00)
        raw_posting(cursor, entry_id, cash, 7_00)
    # then: balanced when it commits: accepted
    assert Account.objects.get(pk=cash).balance == 7_00
    # and: a later posting that unbalances a committed entry is refused at COMMIT
    with (
        pytest.raises(DatabaseError, match="unbalanced"),
        transaction.atomic(),
        connection.cursor() as cursor,
    ):
        raw_posting(cursor, entry_id, cash, 1_00)
    assert Account.objects.get(pk=cash).balance == 7_00


@pytest.mark.django_db(transaction=True)
def test_postings_of_an_entry_already_queued_for_its_check_are_still_checked() -> None:
    # migration 0017: a posting statement touching exactly the entries an earlier statement of
    # the transaction queued does not queue them again; the one check at COMMIT covers it
    source, cash = two_cash_accounts()
    entries = Entry.objects.count()
    with (
        pytest.raises(DatabaseError, match="unbalanced: USD sums to -100"),
        transaction.atomic(),
        connection.cursor() as cursor,
    ):
        entry_id = raw_entry(cursor, "raw-queued-once")
        raw_posting(cursor, entry_id, source, -7_00)
        raw_posting(cursor, entry_id, cash, 6_00)
        cursor.execute("SELECT count(*) FROM captable_entry_check_pending")
        assert cursor.fetchone()[0] == 1  # queued by the entry's statement only
    assert Entry.objects.count() == entries
    assert Account.objects.get(pk=cash).balance == 0


@pytest.mark.django_db(transaction=True)
def test_one_unbalanced_entry_among_many_fails_the_whole_statement_at_commit() -> None:
    source, cash = two_cash_accounts()
    entries = Entry.objects.count()
    with (
        pytest.raises(DatabaseError, match="unbalanced"),
        transaction.atomic(),
        connection.cursor() as cursor,
    ):
        ids = [raw_entry(cursor, f"raw-many-{n}") for n in range(3)]
        cursor.execute(
            "INSERT INTO captable_posting (entry_id, account_id, asset, amount, cost_minor,"
            " effective_at) SELECT e.id, leg.account_id, 'USD', leg.amount, 0, e.effective_at"
            " FROM captable_entry e CROSS JOIN LATERAL (VALUES (%s, -100), (%s,"
            " CASE WHEN e.id = %s THEN 99 ELSE 100 END)) AS leg(account_id, amount)"
            " WHERE e.id = ANY(%s)",
            [source, cash, ids[1], ids],
        )
    assert Entry.objects.count() == entries


def test_an_account_changes_only_through_postings() -> None:
    _, cash = two_cash_accounts()
    for sql in (
        "UPDATE captable_account SET balance = 1 WHERE id = %s",
        "UPDATE captable_account SET key = 'stolen' WHERE id = %s",
        "DELETE FROM captable_account WHERE id = %s",
    ):
        with (
            pytest.raises(DatabaseError),
            transaction.atomic(),
            connection.cursor() as cursor,
        ):
            cursor.execute(sql, [cash])
    assert Account.objects.get(pk=cash).balance == 0


def test_payout_rows_written_by_copy_read_back_as_computed() -> None:
    """The COPY text is written by hand (`_payouts_insert`): every value reads back as it
    went in, text that COPY would take for escapes included."""
    offering, (a, b) = closed_offering([1, 2])
    distribution = declare(offering, 300_00)
    tiers = [{"tier": "pref\\return\ttab\nline\r", "amount": "1.00", "name": 'é ✓ "q" 50%'}]
    rows = [
        (a.pk, 1, 100_00, 60_00, 40_00, "none", 2_400, 14_40, 85_60, 0, tiers),
        (b.pk, 2, 200_00, 200_00, 0, "w9", 0, 0, 200_00, 7, []),
    ]

    _payouts_insert(distribution, rows)

    fields = [*_PAYOUT_COLUMNS[:-1], "tiers"]
    found = Payout.objects.filter(distribution=distribution).order_by("investor_id")
    assert [tuple(row) for row in found.values_list(*fields)] == [
        (*row[:-1], row[-1]) for row in rows
    ]
    assert all(p.reinvested_minor == 0 and p.reinvestment_note == "" for p in found)
    assert found[0].created_at is not None


@pytest.mark.parametrize(
    "values", [[], [0], [1, -2, 3], [2**63 - 1, -(2**63)], list(range(10**6, 10**6 + 25_000))]
)
def test_bigint_array_text_reads_back_as_the_same_ints(values: list[int]) -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT %s::bigint[]", [ledger.bigint_array_text(values)])
        assert cursor.fetchone()[0] == values


@pytest.mark.parametrize("bad", [[1, True], [1, "2"], [1.0], [None]])
def test_bigint_array_text_takes_only_ints(bad: list[Any]) -> None:
    with pytest.raises(TypeError):
        ledger.bigint_array_text(bad)


def test_a_fan_outs_then_gets_every_key_replays_included_and_rolls_back_with_it() -> None:
    # given: one of three entries posted before (a replay), and a source short of the rest
    source = funded_source(10_00)
    people = investors(3)
    ledger.cash_fan_out_post(fan_out(source, people[:1], [4_00]))
    seen: list[dict[str, int]] = []

    def then(posted: dict[str, int]) -> None:
        seen.append(dict(posted))
        investors(1)  # a write of the caller's, in the fan-out's transaction

    people_before = Investor.objects.count()
    # when: the rest need 4.00 + 3.00 + 5.00 from the 6.00 left
    with pytest.raises(LimitExceeded):
        ledger.cash_fan_out_post(fan_out(source, people, [4_00, 3_00, 5_00]), then=then)
    # then: `then` ran with every key, and its write rolled back with the entries
    assert seen
    assert all(set(keys) == {f"f:{p.pk}" for p in people} for keys in seen)
    assert Investor.objects.count() == people_before
    assert balance(source) == 6_00
    # when: the rest fit; then: `then` gets the replayed key's entry too, once
    seen.clear()
    posted = ledger.cash_fan_out_post(fan_out(source, people, [4_00, 3_00, 2_00]), then=then)
    assert seen == [posted]
    assert len(posted) == 3
    assert Investor.objects.count() == people_before + 1
    assert balance(source) == 1_00


@pytest.mark.parametrize(
    "values", [["a"], ["distribution:1:payout:2", 'q"u\\o\tte', "é ü", "{}"], []]
)
def test_text_lines_come_back_whole_from_postgresql(values: list[str]) -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT string_to_array(%s::text, E'\\n')", [ledger.text_lines(values)])
        (split,) = cursor.fetchone()
    assert split == values


@pytest.mark.parametrize("values", [["a\nb"], ["", "x"], ["x", ""], [""]])
def test_text_lines_refuse_what_would_not_come_back_whole(values: list[str]) -> None:
    with pytest.raises(ValueError, match="without newlines"):
        ledger.text_lines(values)
