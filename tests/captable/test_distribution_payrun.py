"""Batched ledger writes and the batched pay run: `ledger.entries_post_batch` (COPY on
PostgreSQL) keeps every rule of `entry_post` — balanced entries, no negative balances, keys
used once (replays skipped, a different request refused with nothing written), every entry
queued for sealing and sealed after commit — and paying a distribution in batches gives
exactly what paying payout by payout gives, with nobody paid twice when the two are mixed."""

from __future__ import annotations

from typing import Any

import pytest
from django.db import connection

from captable import ledger
from captable.distribution_payrun import distribution_pay_run_batched
from captable.distributions import distribution_pay, payout_pay
from captable.models import DistributionStatus, Entry, Payout, Posting, UnsealedEntry
from captable.verification import ledger_verify
from common.errors import Conflict, LimitExceeded, ValidationFailed
from investors.models import Investor
from tests.captable.factories import investors
from tests.captable.test_distributions import (
    after_payment_date,
    approve_and_fund,
    balance,
    cash_of,
    closed_offering,
    declare,
    staff,
)

pytestmark = [pytest.mark.django_db, pytest.mark.embedded]

USD = "USD"


def batch(people: list[Investor], amount_minor: int, prefix: str) -> list[ledger.BatchEntry]:
    source = ledger.external_spec(USD)
    return [
        ledger.BatchEntry(
            kind="cash_in",
            idempotency_key=f"{prefix}:{person.pk}",
            request={"to": person.pk, "amount": amount_minor},
            legs=[(source, -amount_minor), (ledger.cash_spec(person, USD), amount_minor)],
        )
        for person in people
    ]


def test_a_batch_posts_every_entry_and_a_replay_posts_nothing(
    django_capture_on_commit_callbacks: Any,
) -> None:
    people = investors(3)
    with django_capture_on_commit_callbacks(execute=True):
        first = ledger.entries_post_batch(batch(people, 12_34, "b"))
    assert [cash_of(person) for person in people] == [12_34] * 3
    assert Entry.objects.filter(pk__in=first.values()).count() == 3
    assert Posting.objects.filter(entry_id__in=first.values()).count() == 6
    # the sealing queue trigger fired for each and sealing after commit emptied it
    assert not UnsealedEntry.objects.filter(entry_id__in=first.values()).exists()
    report = ledger_verify()
    assert report.ok, report.summary()
    assert report.unsealed_entries == 0
    # when: the same batch again
    again = ledger.entries_post_batch(batch(people, 12_34, "b"))
    assert again == first
    assert [cash_of(person) for person in people] == [12_34] * 3


def test_a_key_reused_for_another_request_writes_nothing() -> None:
    people = investors(2)
    ledger.entries_post_batch(batch(people[:1], 5_00, "k"))
    entries = Entry.objects.count()
    with pytest.raises(Conflict, match="already used"):
        ledger.entries_post_batch(batch(people, 6_00, "k"))
    assert Entry.objects.count() == entries
    assert cash_of(people[1]) == 0


def test_no_negative_balance_and_nothing_written() -> None:
    people = investors(2)
    ledger.entries_post_batch(batch(people[:1], 5_00, "in"))
    payable = ledger.cash_spec(people[0], USD)
    out = [
        ledger.BatchEntry(
            kind="cash_move",
            idempotency_key=f"out:{n}",
            request={"n": n},
            legs=[(payable, -3_00), (ledger.cash_spec(people[1], USD), 3_00)],
        )
        for n in range(2)
    ]
    entries = Entry.objects.count()
    with pytest.raises(LimitExceeded):
        ledger.entries_post_batch(out)  # 6.00 out of 5.00
    assert Entry.objects.count() == entries
    assert cash_of(people[0]) == 5_00


@pytest.mark.parametrize(
    ("amounts", "code"),
    [((-5, 4), "entry_unbalanced"), ((0, 0), "zero_posting"), ((5,), "entry_too_small")],
)
def test_malformed_entries_are_refused(amounts: tuple[int, ...], code: str) -> None:
    (person,) = investors(1)
    specs = [ledger.external_spec(USD), ledger.cash_spec(person, USD)]
    entry = ledger.BatchEntry(
        kind="cash_in",
        idempotency_key="bad",
        request={},
        legs=list(zip(specs, amounts, strict=False)),
    )
    with pytest.raises(ValidationFailed) as raised:
        ledger.entries_post_batch([entry])
    assert raised.value.code == code


def test_batched_pay_run_pays_what_payout_by_payout_pays() -> None:
    # given: two identical distributions over holders with different tax forms
    offering, holders = closed_offering([3, 5, 7, 11])
    Investor.objects.filter(pk=holders[0].pk).update(tax_form="w9")
    one, two = declare(offering, 1_000_01), declare(offering, 1_000_01)
    for distribution in (one, two):
        approve_and_fund(distribution)
        with after_payment_date(distribution):
            distribution_pay(actor=staff(), distribution_id=distribution.pk)
    # when: one paid payout by payout (one of them before the batches, as after a crash)
    first_of_two = Payout.objects.filter(distribution=two).order_by("pk").first()
    assert first_of_two is not None
    payout_pay(payout_id=first_of_two.pk)
    for payout in Payout.objects.filter(distribution=one):
        payout_pay(payout_id=payout.pk)
    paid = distribution_pay_run_batched(distribution_id=two.pk, batch_size=2, one_by_one_max=0)
    # then
    assert paid == 3
    two.refresh_from_db()
    assert two.status == DistributionStatus.PAID
    assert balance(ledger.distribution_payable_spec(two.pk, USD)) == 0

    def postings(distribution: Any) -> list[tuple[int, list[int]]]:
        rows = Payout.objects.filter(distribution=distribution).order_by("investor_id")
        return [
            (p.investor_id, sorted(p.entry.postings.values_list("amount", flat=True)))  # type: ignore[union-attr]
            for p in rows
        ]

    assert postings(one) == postings(two)
    assert distribution_pay_run_batched(distribution_id=two.pk) == 0  # again: nothing
    assert ledger_verify().ok
    assert connection.vendor in ("postgresql", "sqlite")
