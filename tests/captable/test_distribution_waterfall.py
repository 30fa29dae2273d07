"""Waterfall distributions on the real ledger: the offering's terms, each holder's capital
account rebuilt from the ledger (issues, transfers, earlier distributions), the payout split by
tier with the sponsor's promote posted to the issuer's promote account, exact to the cent."""

from __future__ import annotations

import json
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from django.test import Client

from captable import ledger
from captable.distribution_waterfall import (
    PromoteTierTerms,
    capital_accounts_at_record,
    waterfall_terms_set,
)
from captable.distributions import (
    distribution_approve,
    distribution_declare,
    distribution_fund,
    distribution_pay,
    distribution_pay_run,
)
from captable.models import AccountKind, Distribution, DistributionStatus, Payout
from captable.verification import ledger_verify
from captable.waterfall import (
    CapitalAccount,
    DatedAmount,
    DirectPayout,
    waterfall_compute,
)
from common.errors import Conflict, ValidationFailed
from investors.models import Investor
from offerings.models import Offering, OfferingStatus
from tests.captable.factories import investors, issue, offering_with_units, transfer
from tests.captable.test_distributions import balance, cash_of, staff
from tests.captable.test_distributions_api import get
from tests.captable.test_payments import at
from tests.captable.test_waterfall import CFA_CONFIG
from tests.conftest import bearer, new_user
from tests.offerings.factories import member_of

pytestmark = [pytest.mark.django_db, pytest.mark.embedded]

NEW_YORK = ZoneInfo("America/New_York")
CONTRIBUTED_ON = date(2027, 1, 4)
PAID_ON = date(2028, 1, 4)  # 365 days later: exactly one year of pref
DOLLARS = 100  # minor units per dollar


def noon(on: date) -> datetime:
    return datetime(on.year, on.month, on.day, 12, tzinfo=NEW_YORK)


def cfa_terms(offering: Offering) -> None:
    """The CFA study-notes terms: 8% simple pref, 100% catch-up to 20% of profit, then 80/20."""
    waterfall_terms_set(
        actor=member_of(offering.sponsor),
        offering_id=offering.pk,
        preferred_return_rate=Decimal("0.08"),
        catch_up_sponsor_share=Decimal(1),
        sponsor_profit_target=Decimal("0.20"),
        promote_tiers=[PromoteTierTerms(sponsor_share=Decimal("0.20"))],
    )


def offering_held(
    costs_dollars: list[int], *, quanta_each: int = 1_000
) -> tuple[Offering, list[Investor]]:
    """Closed funded; each holder issued `quanta_each` quanta at noon on CONTRIBUTED_ON for
    their cost in dollars; W-9s on file (no withholding)."""
    offering = offering_with_units(quanta=quanta_each * len(costs_dollars) + 1_000)
    holders = investors(len(costs_dollars))
    with at(noon(CONTRIBUTED_ON)):
        for holder, cost in zip(holders, costs_dollars, strict=True):
            issue(offering, holder, quanta_each, cost_minor=cost * DOLLARS)
    Investor.objects.filter(pk__in=[h.pk for h in holders]).update(tax_form="w9")
    Offering.objects.filter(pk=offering.pk).update(status=OfferingStatus.CLOSED_FUNDED)
    return Offering.objects.get(pk=offering.pk), holders


def distribute(
    offering: Offering, amount_dollars: int, *, paid_on: date = PAID_ON, **terms: Any
) -> Distribution:
    """Declare (a week before), approve, fund and pay on `paid_on`; record date the day before."""
    record_date = paid_on - timedelta(days=1)
    declaration: dict[str, Any] = {
        "actor": member_of(offering.sponsor),
        "offering_id": offering.pk,
        "amount_minor": amount_dollars * DOLLARS,
        "currency": "USD",
        "kind": "mixed",
        "method": "waterfall",
        "record_date": record_date,
        "payment_date": paid_on,
    }
    with at(noon(paid_on - timedelta(days=7))):
        declared = distribution_declare(**(declaration | terms))
        distribution_approve(actor=staff(), distribution_id=declared.pk)
        distribution_fund(actor=member_of(offering.sponsor), distribution_id=declared.pk)
    with at(noon(paid_on)):
        distribution_pay(actor=staff(), distribution_id=declared.pk)
        distribution_pay_run(distribution_id=declared.pk)
    return Distribution.objects.get(pk=declared.pk)


def put(client: Client, path: str, user: Any, body: Any) -> Any:
    headers: Any = bearer(user)
    return client.put(
        f"/api/v1{path}", data=json.dumps(body), content_type="application/json", **headers
    )


def promote_balance(offering: Offering) -> int:
    return balance(ledger.issuer_spec(offering.issuer, AccountKind.PROMOTE, "USD"))


def tier_dollars(payout: Payout) -> dict[str, tuple[int, int]]:
    return {
        f"{t['tier']}_{t['index']}": (t["investor_minor"] // DOLLARS, t["sponsor_minor"] // DOLLARS)
        for t in payout.tiers
        if t["investor_minor"] or t["sponsor_minor"]
    }


def test_cfa_example_paid_on_the_ledger_to_the_cent() -> None:
    # given: the LP contributes $50,000,000; one year later the sale distributes $100,000,000
    offering, (lp,) = offering_held([50_000_000])
    cfa_terms(offering)
    # when
    paid = distribute(offering, 100_000_000)
    # then: LP $90,000,000 (capital 50M + pref 4M + 36M), sponsor $10,000,000 (1M + 9M)
    assert paid.status == DistributionStatus.PAID
    payout = Payout.objects.get(distribution=paid)
    assert payout.gross_minor == 90_000_000 * DOLLARS
    assert payout.promote_minor == 10_000_000 * DOLLARS
    assert payout.return_of_capital_minor == 50_000_000 * DOLLARS
    assert payout.income_minor == 40_000_000 * DOLLARS
    assert paid.income_minor == 40_000_000 * DOLLARS
    assert tier_dollars(payout) == {
        "return_of_capital_0": (50_000_000, 0),
        "preferred_return_0": (4_000_000, 0),
        "catch_up_0": (0, 1_000_000),
        "promote_0": (36_000_000, 9_000_000),
    }
    assert cash_of(lp) == 90_000_000 * DOLLARS
    assert promote_balance(offering) == 10_000_000 * DOLLARS
    assert balance(ledger.distribution_payable_spec(paid.pk, "USD")) == 0
    assert ledger_verify().ok


def test_withholding_applies_to_the_income_tiers_only() -> None:
    offering, (lp,) = offering_held([50_000_000])
    Investor.objects.filter(pk=lp.pk).update(tax_form="none")  # no W-9: backup withholding 24%
    cfa_terms(offering)
    payout = Payout.objects.get(distribution=distribute(offering, 100_000_000))
    assert payout.withholding_minor == 40_000_000 * DOLLARS * 24 // 100
    assert cash_of(lp) == (90_000_000 - 9_600_000) * DOLLARS


def test_a_transfer_carries_the_sellers_capital_account_to_the_buyer() -> None:
    # given: A and B contribute $25M each; half a year later A sells half its units to C
    offering, (a, b) = offering_held([25_000_000, 25_000_000])
    (c,) = investors(1)
    Investor.objects.filter(pk=c.pk).update(tax_form="w9")
    with at(noon(date(2027, 7, 1))):
        transfer(offering, a, c, 500)
    cfa_terms(offering)
    # when
    paid = distribute(offering, 100_000_000)
    # then: C stands in A's shoes for half of A's history (contribution dated 2027-01-04), so
    # C gets exactly what A keeps, and the deal as a whole is the CFA example
    payouts = {p.investor_id: p for p in Payout.objects.filter(distribution=paid)}
    assert payouts[a.pk].gross_minor == payouts[c.pk].gross_minor == 22_500_000 * DOLLARS
    assert payouts[b.pk].gross_minor == 45_000_000 * DOLLARS
    assert tier_dollars(payouts[c.pk])["preferred_return_0"] == (1_000_000, 0)
    assert promote_balance(offering) == 10_000_000 * DOLLARS
    accounts = capital_accounts_at_record(distribution=paid)
    assert accounts[c.pk].contributions == (DatedAmount(CONTRIBUTED_ON, Decimal("12500000")),)


def test_earlier_distributions_are_replayed_into_the_capital_account() -> None:
    # given: a pro-rata income distribution of $2,000,000 half-way, then the waterfall sale
    offering, _ = offering_held([50_000_000])
    cfa_terms(offering)
    midway = date(2027, 7, 5)
    with at(noon(midway - timedelta(days=7))):
        income = distribution_declare(
            actor=member_of(offering.sponsor),
            offering_id=offering.pk,
            amount_minor=2_000_000 * DOLLARS,
            currency="USD",
            kind="income",
            record_date=midway - timedelta(days=1),
            payment_date=midway,
        )
        distribution_approve(actor=staff(), distribution_id=income.pk)
        distribution_fund(actor=member_of(offering.sponsor), distribution_id=income.pk)
    with at(noon(midway)):
        distribution_pay(actor=staff(), distribution_id=income.pk)
        distribution_pay_run(distribution_id=income.pk)
    # when
    paid = distribute(offering, 100_000_000)
    # then: the payout is what the pure waterfall gives on the same history
    account = CapitalAccount(
        contributions=(DatedAmount(CONTRIBUTED_ON, Decimal(50_000_000)),),
        direct_payouts=(DirectPayout(midway, Decimal(0), Decimal(2_000_000)),),
    )
    expected = waterfall_compute(
        account=account, amount=Decimal(100_000_000), on=PAID_ON, config=CFA_CONFIG
    )
    payout = Payout.objects.get(distribution=paid)
    assert Decimal(payout.gross_minor) / DOLLARS == expected.investor_amount
    assert Decimal(payout.promote_minor) / DOLLARS == expected.sponsor_amount
    # the income paid the pref accrued by then (50M * 8% * 182/365 = 1,994,520.55; the rest
    # is profit, not prepaid pref); pref then accrues 50M * 8% * 183/365 = 2,005,479.45
    pref = next(t for t in payout.tiers if t["tier"] == "preferred_return")
    assert pref["investor_minor"] == 2_005_479_45
    assert payout.gross_minor + payout.promote_minor == 100_000_000 * DOLLARS


def test_a_second_waterfall_distribution_replays_the_first() -> None:
    offering, _ = offering_held([50_000_000])
    cfa_terms(offering)
    first = distribute(offering, 30_000_000)
    second = distribute(offering, 70_000_000, paid_on=PAID_ON + timedelta(days=1))
    one = Payout.objects.get(distribution=first)
    two = Payout.objects.get(distribution=second)
    assert tier_dollars(one) == {"return_of_capital_0": (30_000_000, 0)}
    assert two.return_of_capital_minor == 20_000_000 * DOLLARS
    # both together are the CFA split, plus one more day of pref on the capital still out
    assert one.gross_minor + two.gross_minor + one.promote_minor + two.promote_minor == (
        100_000_000 * DOLLARS
    )
    assert promote_balance(offering) == one.promote_minor + two.promote_minor
    assert ledger_verify().ok


def test_refusals() -> None:
    offering, _ = offering_held([1_000])
    with at(noon(PAID_ON - timedelta(days=7))):
        terms: dict[str, Any] = {
            "actor": member_of(offering.sponsor),
            "offering_id": offering.pk,
            "amount_minor": 100 * DOLLARS,
            "currency": "USD",
            "kind": "mixed",
            "method": "waterfall",
            "record_date": PAID_ON - timedelta(days=1),
            "payment_date": PAID_ON,
        }
        with pytest.raises(Conflict, match="no waterfall terms"):
            distribution_declare(**terms)
        cfa_terms(offering)
        with pytest.raises(ValidationFailed, match="declare it as mixed"):
            distribution_declare(**(terms | {"kind": "income"}))
        with pytest.raises(ValidationFailed, match="declare it as mixed"):
            distribution_declare(**(terms | {"income_minor": 10}))
        with pytest.raises(ValidationFailed, match="last promote tier"):
            waterfall_terms_set(
                actor=member_of(offering.sponsor),
                offering_id=offering.pk,
                preferred_return_rate=Decimal("0.08"),
                promote_tiers=[
                    PromoteTierTerms(Decimal("0.2"), "lp_irr", Decimal("0.12")),
                ],
            )
    distribute(offering, 100)
    with pytest.raises(Conflict, match="can no longer change"):
        cfa_terms(offering)


def test_terms_and_tiers_over_http(api_client: Client) -> None:
    # given: the CFA deal, terms set over HTTP by the sponsor
    offering, (lp,) = offering_held([50_000_000])
    sponsor = member_of(offering.sponsor)
    body = {
        "preferred_return_rate": "0.08",
        "sponsor_profit_target": "0.20",
        "promote_tiers": [{"sponsor_share": "0.20"}],
    }
    response = put(api_client, f"/offerings/{offering.pk}/waterfall", sponsor, body)
    assert response.status_code == 200, response.content
    assert response.json()["promote_tiers"] == [{"sponsor_share": "0.20"}]
    unknown = put(api_client, f"/offerings/{offering.pk}/waterfall", sponsor, body | {"x": 1})
    assert unknown.status_code == 422
    bad = body | {"promote_tiers": [{"sponsor_share": "0.2", "hurdle_kind": "lp_irr"}]}
    refused = put(api_client, f"/offerings/{offering.pk}/waterfall", sponsor, bad)
    assert refused.status_code == 400
    assert refused.json()["code"] == "waterfall_invalid"
    stranger = put(api_client, f"/offerings/{offering.pk}/waterfall", new_user(), body)
    assert stranger.status_code in (403, 404)
    assert get(api_client, f"/offerings/{offering.pk}/waterfall", sponsor).status_code == 200
    # when: paid, and read back by the investor
    paid = distribute(offering, 100_000_000)
    detail = get(api_client, f"/distributions/{paid.pk}", lp.user).json()
    # then
    (payout,) = detail["payouts"]["items"]
    assert payout["promote"] == {"amount": "10000000.00", "currency": "USD"}
    assert [(t["tier"], t["investor"]["amount"], t["sponsor"]["amount"]) for t in payout["tiers"]][
        :3
    ] == [
        ("return_of_capital", "50000000.00", "0.00"),
        ("preferred_return", "4000000.00", "0.00"),
        ("catch_up", "0.00", "1000000.00"),
    ]
    assert detail["totals"]["promote"]["amount"] == "10000000.00"
