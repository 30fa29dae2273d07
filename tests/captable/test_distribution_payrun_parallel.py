"""The batched pay run on several database connections at once (PostgreSQL): batches, each
its own transaction, overlap; they share only the distribution's fixed accounts, locked last.
The outcome is the one paying payout by payout gives, with nobody paid twice."""

from __future__ import annotations

from typing import Any

import pytest
from django.db import transaction

from captable import ledger
from captable.distribution_payrun import distribution_pay_run_batched
from captable.distributions import _locked, _payouts_compute, payout_pay
from captable.models import DistributionStatus, Payout
from captable.verification import ledger_verify
from investors.models import Investor
from tests.captable.test_distribution_payrun import postings_by_holder
from tests.captable.test_distributions import (
    after_payment_date,
    approve_and_fund,
    balance,
    closed_offering,
    declare,
)

pytestmark = [pytest.mark.postgres_only, pytest.mark.django_db(transaction=True)]

USD = "USD"


def test_batches_paid_on_several_connections_at_once_pay_each_holder_once() -> None:
    # given: two identical distributions over nine holders, some withheld from (no W-9)
    offering, holders = closed_offering([3, 5, 7, 11, 13, 17, 19, 23, 29])
    Investor.objects.filter(pk__in=[h.pk for h in holders[::3]]).update(tax_form="w9")
    one, two = declare(offering, 10_000_07), declare(offering, 10_000_07)
    for distribution in (one, two):
        approve_and_fund(distribution)
    for payout in _computed(one):
        payout_pay(payout_id=payout.pk)
    _computed(two)
    # when: the second is paid in five batches on three connections at once
    paid = distribution_pay_run_batched(
        distribution_id=two.pk, batch_size=2, one_by_one_max=0, connections=3
    )
    # then: the same entries as payout by payout, the payable empty, nothing paid twice
    assert paid == 9
    two.refresh_from_db()
    assert two.status == DistributionStatus.PAID
    assert balance(ledger.distribution_payable_spec(two.pk, USD)) == 0
    assert postings_by_holder(one) == postings_by_holder(two)
    assert distribution_pay_run_batched(distribution_id=two.pk, connections=3) == 0
    assert ledger_verify().ok


def _computed(distribution: Any) -> list[Payout]:
    """The distribution's payouts computed (what starting the pay run does before it enqueues
    the run, which this test runs itself)."""
    with after_payment_date(distribution), transaction.atomic():
        _payouts_compute(_locked(distribution.pk))
    return list(Payout.objects.filter(distribution=distribution))
