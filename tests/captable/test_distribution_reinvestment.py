"""Reinvestment (DRIP): a holder who opted in has their net payout buy newly authorized units
at NAV in whole quanta through the subscription checks, the remainder in cash; a refusal pays
it all in cash and says why; the units count as a contribution in the waterfall and the IRR;
paying again buys nothing more."""

from __future__ import annotations

import json
from datetime import date
from decimal import Decimal
from typing import Any

import pytest
from django.test import Client

from captable import ledger
from captable.distribution_reinvestment import reinvestment_elect
from captable.distribution_waterfall import capital_accounts_at_record
from captable.distributions import distribution_pay_run
from captable.models import AccountKind, Payout
from captable.portfolio import portfolio_of
from captable.selectors import captable_as_of
from captable.verification import ledger_verify
from captable.waterfall import DatedAmount
from investors.models import Investor
from offerings.models import Offering
from offerings.nav import nav_post
from tests.captable.test_distribution_waterfall import (
    CONTRIBUTED_ON,
    DOLLARS,
    PAID_ON,
    cfa_terms,
    distribute,
    noon,
    offering_held,
)
from tests.captable.test_distributions import balance, cash_of
from tests.captable.test_payments import at
from tests.conftest import bearer
from tests.offerings.factories import member_of

pytestmark = [pytest.mark.django_db, pytest.mark.embedded]

INCOME_ON = date(2027, 7, 5)


def with_nav(offering: Offering, dollars: int, on: date = date(2027, 7, 1)) -> None:
    with at(noon(on)):
        nav_post(
            actor=member_of(offering.sponsor),
            offering_id=offering.pk,
            nav_per_unit_minor=dollars * DOLLARS,
            currency="USD",
            effective_date=on,
        )


def holding(offering: Offering, investor: Investor) -> int:
    rows = captable_as_of(offering=offering, as_of=noon(PAID_ON)).rows
    return next(row.quanta for row in rows if row.investor_id == investor.pk)


def income(offering: Offering, dollars: int) -> dict[int, Payout]:
    paid = distribute(offering, dollars, paid_on=INCOME_ON, method="pro_rata", kind="income")
    return {p.investor_id: p for p in Payout.objects.filter(distribution=paid)}


def test_the_net_buys_whole_units_at_nav_and_the_rest_is_cash() -> None:
    # given: one holder of 100 units at $100, opted in; NAV $110
    offering, (me,) = offering_held([10_000], quanta_each=100)
    reinvestment_elect(actor=me.user, offering_id=offering.pk, is_enabled=True)
    with_nav(offering, 110)
    operating = ledger.issuer_spec(offering.issuer, AccountKind.OPERATING, "USD")
    # when: $500 of income is paid (no withholding)
    (payout,) = income(offering, 500).values()
    # then: 4 units for $440, $60 in cash
    assert (payout.reinvested_quanta, payout.reinvested_minor) == (4, 440 * DOLLARS)
    assert cash_of(me) == 60 * DOLLARS
    assert holding(offering, me) == 104
    assert balance(operating) == 440 * DOLLARS
    refreshed = Offering.objects.get(pk=offering.pk)
    assert refreshed.units_authorized_quanta == offering.units_authorized_quanta + 4
    assert refreshed.units_issued_quanta == offering.units_issued_quanta + 4
    # and paying again buys nothing more
    distribution_pay_run(distribution_id=payout.distribution_id)
    assert holding(offering, me) == 104
    assert ledger_verify().ok


def test_without_opting_in_or_when_a_check_refuses_it_is_all_cash() -> None:
    offering, (me, other) = offering_held([10_000, 10_000], quanta_each=100)
    reinvestment_elect(actor=other.user, offering_id=offering.pk, is_enabled=True)
    Investor.objects.filter(pk=other.pk).update(kyc_status="rejected")
    with_nav(offering, 110)
    payouts = income(offering, 1_000)
    assert payouts[me.pk].reinvested_quanta == 0
    assert payouts[me.pk].reinvestment_note == ""
    assert payouts[other.pk].reinvested_quanta == 0
    assert "KYC" in payouts[other.pk].reinvestment_note
    assert cash_of(me) == cash_of(other) == 500 * DOLLARS


def test_no_nav_no_purchase() -> None:
    offering, (me,) = offering_held([10_000], quanta_each=100)
    reinvestment_elect(actor=me.user, offering_id=offering.pk, is_enabled=True)
    (payout,) = income(offering, 500).values()
    assert payout.reinvested_quanta == 0
    assert "NAV" in payout.reinvestment_note
    assert cash_of(me) == 500 * DOLLARS


def test_reinvested_units_count_as_a_contribution() -> None:
    offering, (me,) = offering_held([10_000], quanta_each=100)
    reinvestment_elect(actor=me.user, offering_id=offering.pk, is_enabled=True)
    with_nav(offering, 110)
    income(offering, 500)
    cfa_terms(offering)
    sale = distribute(offering, 20_000)
    accounts = capital_accounts_at_record(distribution=sale)
    assert accounts[me.pk].contributions == (
        DatedAmount(CONTRIBUTED_ON, Decimal(10_000)),
        DatedAmount(INCOME_ON, Decimal(440)),
    )
    with at(noon(PAID_ON)):
        (position,) = portfolio_of(investor=me).positions
    assert position.returns.contributed == Decimal(10_440)


def test_elect_over_http(api_client: Client) -> None:
    offering, (me,) = offering_held([10_000], quanta_each=100)
    headers: Any = bearer(me.user)
    path = f"/api/v1/offerings/{offering.pk}/reinvestment"
    response = api_client.put(
        path, json.dumps({"enabled": True}), content_type="application/json", **headers
    )
    assert response.status_code == 200, response.content
    assert response.json() == {"offering_id": offering.pk, "investor_id": me.pk, "enabled": True}
    bad = api_client.put(
        path, json.dumps({"enabled": True, "x": 1}), content_type="application/json", **headers
    )
    assert bad.status_code == 422
