"""GET /portfolio: the investor's own contributions, distributions (income vs return of
capital), value at NAV (or price before any NAV), equity multiple and XIRR, per offering and in
total, from the real ledger."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from typing import Any

import pytest
from django.test import Client

from captable.returns import xirr
from offerings.nav import nav_post
from tests.captable.factories import issue
from tests.captable.test_distribution_waterfall import (
    CONTRIBUTED_ON,
    DOLLARS,
    PAID_ON,
    cfa_terms,
    distribute,
    noon,
    offering_held,
)
from tests.captable.test_distributions_api import get
from tests.captable.test_payments import at
from tests.conftest import new_user
from tests.offerings.factories import member_of

pytestmark = [pytest.mark.django_db, pytest.mark.embedded]

INCOME_ON = date(2027, 7, 5)


def money(amount: str) -> dict[str, str]:
    return {"amount": amount, "currency": "USD"}


def test_income_and_nav_give_multiple_and_irr(api_client: Client) -> None:
    # given: $100 a unit for 100 units on 2027-01-04; $500 of income on 2027-07-05 (another
    # holder has the other 100 units); NAV $110 a unit from 2028-01-03
    offering, (me, other) = offering_held([10_000, 10_000], quanta_each=100)
    distribute(offering, 1_000, paid_on=INCOME_ON, method="pro_rata", kind="income")
    with at(noon(date(2028, 1, 3))):
        nav_post(
            actor=member_of(offering.sponsor),
            offering_id=offering.pk,
            nav_per_unit_minor=110 * DOLLARS,
            currency="USD",
            effective_date=date(2028, 1, 3),
        )
    # when
    with at(noon(PAID_ON)):
        body = get(api_client, "/portfolio", me.user).json()
    # then
    (position,) = body["offerings"]
    assert position["offering_id"] == offering.pk
    assert position["units"] == "100"
    assert position["value_basis"] == "nav"
    assert position["value_per_unit"] == money("110.00")
    returns = position["returns"]
    assert returns["contributed"] == money("10000.00")
    assert returns["distributed_income"] == money("500.00")
    assert returns["distributed_return_of_capital"] == money("0.00")
    assert returns["current_value"] == money("11000.00")
    assert returns["equity_multiple"] == "1.1500"  # (500 + 11,000) / 10,000
    expected = xirr(
        [
            (CONTRIBUTED_ON, Decimal(-10_000)),
            (INCOME_ON, Decimal(500)),
            (PAID_ON, Decimal(11_000)),
        ]
    )
    assert returns["irr"] == str(expected.quantize(Decimal("0.000001")))
    assert Decimal("0.15") < expected < Decimal("0.16")
    assert body["totals"] == [{"currency": "USD", "returns": returns}]
    # and the other holder sees only their own (same numbers, their own investor id)
    with at(noon(PAID_ON)):
        theirs = get(api_client, "/portfolio", other.user).json()
    assert theirs["investor_id"] == other.pk
    assert body["investor_id"] == me.pk


def test_waterfall_sale_return_of_capital_and_totals_over_two_offerings(
    api_client: Client,
) -> None:
    # given: the CFA deal (50M in, 90M back to the LP), and a second offering held at price
    first, (lp,) = offering_held([50_000_000])
    cfa_terms(first)
    distribute(first, 100_000_000)
    second, _ = offering_held([1_000])
    with at(noon(CONTRIBUTED_ON)):
        issue(second, lp, 10, cost_minor=1_000 * DOLLARS)
    # when
    with at(noon(PAID_ON)):
        body = get(api_client, "/portfolio", lp.user).json()
    # then
    by_offering = {p["offering_id"]: p for p in body["offerings"]}
    sale = by_offering[first.pk]["returns"]
    assert sale["distributed_return_of_capital"] == money("50000000.00")
    assert sale["distributed_income"] == money("40000000.00")
    assert sale["current_value"] == money("100000.00")  # 1,000 units at the $100 price
    assert by_offering[second.pk]["value_basis"] == "price"
    (total,) = body["totals"]
    assert total["returns"]["contributed"] == money("50001000.00")
    assert total["returns"]["current_value"] == money("101000.00")


def test_no_investor_profile_is_404(api_client: Client) -> None:
    response = get(api_client, "/portfolio", new_user())
    assert response.status_code == 404
    assert response.json()["code"] == "investor_profile_missing"


def test_anonymous_is_401(api_client: Client) -> None:
    response: Any = api_client.get("/api/v1/portfolio")
    assert response.status_code == 401
