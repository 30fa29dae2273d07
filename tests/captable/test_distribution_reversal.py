"""Undoing a paid distribution: only by reversing entries, prepared by one staff member and
approved by another; every account back where it was, reinvested units and the promote too; all
or nothing when money has moved on."""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.test import Client

from captable import ledger
from captable.distribution_reinvestment import reinvestment_elect
from captable.distribution_reversal import (
    distribution_reversal_approve,
    distribution_reversal_prepare,
)
from captable.models import AccountKind, DistributionStatus, Entry, EntryKind
from captable.portfolio import portfolio_of
from captable.verification import ledger_verify
from captable.withdrawals import withdrawal_request
from common.errors import Conflict, InvalidTransition, LimitExceeded, NotAllowed
from offerings.models import Offering
from tests.captable.test_distribution_reinvestment import INCOME_ON, holding, with_nav
from tests.captable.test_distribution_waterfall import (
    DOLLARS,
    PAID_ON,
    cfa_terms,
    distribute,
    noon,
    offering_held,
    promote_balance,
)
from tests.captable.test_distributions import balance, cash_of, staff
from tests.captable.test_payments import at
from tests.conftest import bearer

pytestmark = [pytest.mark.django_db, pytest.mark.embedded]


def accounts(offering: Offering) -> dict[str, int]:
    issuer = offering.issuer
    return {
        "operating": balance(ledger.issuer_spec(issuer, AccountKind.OPERATING, "USD")),
        "promote": balance(ledger.issuer_spec(issuer, AccountKind.PROMOTE, "USD")),
        "withholding": balance(ledger.issuer_spec(issuer, AccountKind.WITHHOLDING_PAYABLE, "USD")),
        "external": balance(ledger.external_spec("USD")),
    }


def test_a_paid_waterfall_distribution_is_undone_by_two_staff() -> None:
    # given: the CFA sale paid (LP 90M, promote 10M)
    offering, (lp,) = offering_held([50_000_000])
    cfa_terms(offering)
    before = accounts(offering)
    paid = distribute(offering, 100_000_000)
    assert promote_balance(offering) == 10_000_000 * DOLLARS
    preparer, approver = staff(), staff()
    # when
    distribution_reversal_prepare(actor=preparer, distribution_id=paid.pk, reason="Wrong amount")
    with pytest.raises(NotAllowed, match="Four eyes"):
        distribution_reversal_approve(actor=preparer, distribution_id=paid.pk)
    reversal = distribution_reversal_approve(actor=approver, distribution_id=paid.pk)
    # then: one reversing entry each for the payout and the two funding entries
    assert reversal.entries_reversed == 3
    paid.refresh_from_db()
    assert paid.status == DistributionStatus.REVERSED
    assert cash_of(lp) == 0
    assert accounts(offering) == before
    assert balance(ledger.distribution_payable_spec(paid.pk, "USD")) == 0
    assert Entry.objects.filter(kind=EntryKind.REVERSAL).count() == 3
    assert ledger_verify().ok
    with at(noon(PAID_ON)):
        (position,) = portfolio_of(investor=lp).positions
    assert position.returns.distributed == 0
    # approving again changes nothing
    assert distribution_reversal_approve(actor=approver, distribution_id=paid.pk).pk == reversal.pk


def test_reinvested_units_are_undone_too() -> None:
    offering, (me,) = offering_held([10_000], quanta_each=100)
    reinvestment_elect(actor=me.user, offering_id=offering.pk, is_enabled=True)
    with_nav(offering, 110)
    paid = distribute(offering, 500, paid_on=INCOME_ON, method="pro_rata", kind="income")
    assert holding(offering, me) == 104
    distribution_reversal_prepare(actor=staff(), distribution_id=paid.pk, reason="Duplicate")
    reversal = distribution_reversal_approve(actor=staff(), distribution_id=paid.pk)
    assert reversal.entries_reversed == 6  # cash, issue, authorize, payout, 2 funding
    assert holding(offering, me) == 100
    assert cash_of(me) == 0
    refreshed = Offering.objects.get(pk=offering.pk)
    assert refreshed.units_authorized_quanta == offering.units_authorized_quanta
    assert refreshed.units_issued_quanta == offering.units_issued_quanta
    assert ledger_verify().ok


def test_all_or_nothing_when_the_money_has_been_withdrawn() -> None:
    offering, (me,) = offering_held([10_000], quanta_each=100)
    paid = distribute(offering, 500, paid_on=INCOME_ON, method="pro_rata", kind="income")
    withdrawal_request(actor=me.user, amount_minor=100 * DOLLARS, currency="USD", payee_account="x")
    distribution_reversal_prepare(actor=staff(), distribution_id=paid.pk, reason="Oops")
    with pytest.raises((Conflict, LimitExceeded)):
        distribution_reversal_approve(actor=staff(), distribution_id=paid.pk)
    paid.refresh_from_db()
    assert paid.status == DistributionStatus.PAID
    assert not Entry.objects.filter(kind=EntryKind.REVERSAL).exists()
    assert cash_of(me) == 400 * DOLLARS


def test_only_a_paid_distribution_once() -> None:
    offering, _ = offering_held([10_000], quanta_each=100)
    paid = distribute(offering, 500, paid_on=INCOME_ON, method="pro_rata", kind="income")
    distribution_reversal_prepare(actor=staff(), distribution_id=paid.pk, reason="Oops")
    with pytest.raises(Conflict, match="already prepared"):
        distribution_reversal_prepare(actor=staff(), distribution_id=paid.pk, reason="Again")
    distribution_reversal_approve(actor=staff(), distribution_id=paid.pk)
    with pytest.raises(InvalidTransition):
        distribution_reversal_prepare(actor=staff(), distribution_id=paid.pk, reason="Again")


def test_over_http(api_client: Client) -> None:
    offering, (me,) = offering_held([10_000], quanta_each=100)
    paid = distribute(offering, 500, paid_on=INCOME_ON, method="pro_rata", kind="income")
    preparer, approver = staff(), staff()

    def post(path: str, user: Any, body: Any = None) -> Any:
        headers: Any = bearer(user)
        data = json.dumps(body) if body is not None else ""
        return api_client.post(
            f"/api/v1/distributions/{paid.pk}{path}",
            data,
            content_type="application/json",
            **headers,
        )

    assert post("/reversal", me.user, {"reason": "mine"}).status_code == 403
    assert post("/reversal", preparer, {"reason": "Wrong"}).status_code == 201
    assert post("/reversal/approve", preparer).json()["code"] == "four_eyes"
    approved = post("/reversal/approve", approver)
    assert approved.status_code == 200, approved.content
    assert approved.json()["entries_reversed"] == 3
