"""The batched pay run: paying a distribution in batches (`ledger.cash_fan_out_post`, whose
own rules are tested in test_distribution_fan_out) gives exactly what paying payout by payout
gives, with nobody paid twice when the two are mixed."""

from __future__ import annotations

from typing import Any

import pytest
from django.db import connection

from captable import ledger
from captable.distribution_payrun import distribution_pay_run_batched
from captable.distributions import distribution_pay, payout_pay
from captable.models import DistributionStatus, Payout
from captable.verification import ledger_verify
from investors.models import Investor
from tests.captable.test_distributions import (
    after_payment_date,
    approve_and_fund,
    balance,
    closed_offering,
    declare,
    staff,
)

pytestmark = [pytest.mark.django_db, pytest.mark.embedded]

USD = "USD"


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
    paid = distribution_pay_run_batched(
        distribution_id=two.pk, batch_size=2, one_by_one_max=0, connections=1
    )
    # then
    assert paid == 3
    two.refresh_from_db()
    assert two.status == DistributionStatus.PAID
    assert balance(ledger.distribution_payable_spec(two.pk, USD)) == 0
    assert postings_by_holder(one) == postings_by_holder(two)
    assert distribution_pay_run_batched(distribution_id=two.pk) == 0  # again: nothing
    assert ledger_verify().ok
    assert connection.vendor in ("postgresql", "sqlite")


def postings_by_holder(distribution: Any) -> list[tuple[int, list[int]]]:
    rows = Payout.objects.filter(distribution=distribution).order_by("investor_id")
    return [
        (p.investor_id, sorted(p.entry.postings.values_list("amount", flat=True)))  # type: ignore[union-attr]
        for p in rows
    ]
