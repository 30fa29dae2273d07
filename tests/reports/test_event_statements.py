"""The subscription confirmation, the distribution notice and the annual tax summary, on a
journey run through the real services at fixed moments: subscribe, sign, fund through the
webhook, close, then distributions in 2025 and 2026. Each PDF is parsed back and checked
against the ledger; regenerating after later activity gives the same figures and fingerprint."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import date, datetime
from types import SimpleNamespace
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from django.core.files.storage import default_storage
from django.core.management import CommandError, call_command

from captable import closing
from captable.models import Distribution, Payout, Subscription
from common.errors import Conflict, ValidationFailed
from common.money import money_display
from investors.models import Investor
from offerings.models import Offering
from reports import services
from reports.event_kinds import distribution_notice_scope, subscription_confirmation_scope
from reports.event_statements import (
    annual_tax_summary,
    distribution_notice,
    subscription_confirmation,
    tier_lines,
)
from reports.kinds import StatementScope, kind_spec
from reports.models import Statement, StatementBatch
from reports.periods import period_parse
from reports.render import statement_pdf
from tests.captable.test_closing import after_deadline, fresh
from tests.captable.test_distributions import approve_and_fund, declare, pay
from tests.captable.test_payments import at, funded, notify, signed, start_payment
from tests.captable.test_subscriptions import kyc_investor, open_offering
from tests.conftest import bearer, new_user
from tests.reports.conftest import pdf_text

pytestmark = [pytest.mark.django_db, pytest.mark.embedded]

NEW_YORK = ZoneInfo("America/New_York")


def ny(year: int, month: int, day: int, hour: int = 12) -> datetime:
    return datetime(year, month, day, hour, tzinfo=NEW_YORK)


@dataclass
class Journey:
    offering: Offering
    alice: Investor
    bob: Investor
    alice_subscription: Subscription
    bob_subscription: Subscription
    august: Distribution


def pay_distribution(offering: Offering, day: datetime, **terms: Any) -> Distribution:
    with at(day):
        distribution = declare(fresh(offering), **terms)
        approve_and_fund(distribution)
    return pay(distribution)


@pytest.fixture
def journey() -> Journey:
    """Maple Court ($100.00 a unit, New York): Alice (W-9 on file) funds 30 units, Bob (no tax
    form: 24% backup withholding) 10, paying twice after his first transfer bounced. The
    offering closes funded on 2025-07-01; a mixed distribution of $1,000.00 ($600.00 income)
    is paid in August 2025."""
    with at(ny(2025, 5, 1)):
        offering = open_offering(
            title="Maple Court Residences",
            target_raise_minor=1_000_00,
            time_zone="America/New_York",
        )
        alice = kyc_investor(legal_name="Alice Andersen", tax_form="w9")
        bob = kyc_investor(legal_name="Bob Brennan")
        alice_subscription, _ = funded(alice, offering, 30)
    with at(ny(2025, 5, 2)):
        bob_subscription = signed(bob, offering, 10)
        first = start_payment(bob_subscription)
        notify(first)
        notify(first, "payment.returned")
        notify(start_payment(bob_subscription))
    with after_deadline(offering):
        closing.offering_close(offering=fresh(offering), actor=None)
    august = pay_distribution(
        offering, ny(2025, 8, 14), amount_minor=1_000_00, kind="mixed", income_minor=600_00
    )
    return Journey(
        fresh(offering),
        alice,
        bob,
        Subscription.objects.get(pk=alice_subscription.pk),
        Subscription.objects.get(pk=bob_subscription.pk),
        august,
    )


def rendered_text(kind: str, data: object) -> str:
    rendered = statement_pdf(kind_spec(kind), data)
    assert rendered.refused_urls == ()
    return pdf_text(rendered.content)


# --- subscription confirmation --------------------------------------------------------------


def test_the_confirmation_shows_the_subscription_the_agreement_hash_and_the_ledger(journey):
    data = subscription_confirmation(subscription_id=journey.bob_subscription.pk)
    agreement = journey.bob_subscription.agreements.get()
    # the ledger: paid twice (the first bounced), released at the close, 10 units at cost
    assert (data.units_issued_quanta, data.cost_minor) == (10, 1_000_00)
    assert data.paid_in_minor == 2 * data.amount_minor + 2 * data.fee_minor
    assert data.refunded_minor == data.amount_minor + data.fee_minor  # the bounce
    assert data.released_minor == data.amount_minor + data.fee_minor
    assert [a.document_sha256 for a in data.agreements] == [agreement.document_sha256]
    text = rendered_text("subscription_confirmation", data)
    for expected in (
        "Subscription confirmation",
        "Bob Brennan",
        journey.bob.user.email,
        "Maple Court Residences",
        f"Subscription #{journey.bob_subscription.pk}",
        agreement.document_sha256,
        money_display(1_000_00, "USD"),
        "Units issued",
        "Page 1 of 1",
        data.fingerprint.sha256,
    ):
        assert expected in text or expected in text.replace(" ", ""), expected


def test_no_confirmation_before_the_subscription_is_accepted():
    with at(ny(2025, 5, 1)):
        offering = open_offering()
        subscription, _ = funded(kyc_investor(), offering, 2)
    with pytest.raises(Conflict) as refused:
        subscription_confirmation(subscription_id=subscription.pk)
    assert refused.value.code == "subscription_not_accepted"


# --- distribution notice --------------------------------------------------------------------


def test_the_notice_splits_income_and_return_of_capital_and_shows_withholding(journey):
    # 30 and 10 units of 40: Alice $750.00 ($450.00 income), Bob $250.00 ($150.00 income)
    alice = distribution_notice(distribution_id=journey.august.pk, investor_id=journey.alice.pk)
    bob = distribution_notice(distribution_id=journey.august.pk, investor_id=journey.bob.pk)
    assert (alice.gross_minor, alice.income_minor, alice.withholding_minor) == (750_00, 450_00, 0)
    assert (bob.gross_minor, bob.income_minor, bob.return_of_capital_minor) == (
        250_00,
        150_00,
        100_00,
    )
    assert (bob.withholding_rate_basis_points, bob.withholding_minor, bob.net_minor) == (
        2400,
        36_00,
        214_00,
    )
    payout = Payout.objects.get(distribution=journey.august, investor=journey.bob)
    assert (bob.quanta_of_record, bob.net_minor) == (payout.quanta, payout.net_minor)
    text = rendered_text("distribution_notice", bob)
    for expected in (
        "Distribution notice",
        "Bob Brennan",
        f"Distribution #{journey.august.pk}",
        "Pro rata by units of record",
        "$250.00",
        "$150.00",
        "$100.00",
        "$36.00",
        "$214.00",
        "24 % of income · no tax form on file",
        "Page 1 of 1",
        bob.fingerprint.sha256,
    ):
        assert expected in text or expected in text.replace(" ", ""), expected


# --- annual tax summary ---------------------------------------------------------------------


def test_the_tax_summary_totals_the_years_payouts_as_the_ledger_paid_them(journey):
    summary = annual_tax_summary(investor=journey.bob, period=period_parse("2025"))
    (total,) = summary.totals
    assert (total.income_minor, total.return_of_capital_minor, total.withholding_minor) == (
        150_00,
        100_00,
        36_00,
    )
    assert (total.gross_minor, total.net_minor) == (250_00, 214_00)
    assert summary.fingerprint.posting_count == 1  # the payout's posting on Bob's cash
    text = rendered_text("annual_tax_summary", summary)
    for expected in (
        "Annual tax summary",
        "Tax year 2025",
        "not a tax form",
        "Bob Brennan",
        "Maple Court Residences",
        "$214.00",
        "$36.00",
        summary.fingerprint.sha256,
    ):
        assert expected in text or expected in text.replace(" ", ""), expected


def test_a_tax_summary_covers_a_calendar_year_that_is_over(journey):
    with pytest.raises(ValidationFailed):
        annual_tax_summary(investor=journey.bob, period=period_parse("2025-Q3"))
    with at(ny(2025, 12, 31)), pytest.raises(Conflict):
        annual_tax_summary(investor=journey.bob, period=period_parse("2025"))


# --- the fingerprint rule, for all three ----------------------------------------------------


def test_regenerating_after_later_activity_gives_the_same_documents(journey):
    before = (
        subscription_confirmation(subscription_id=journey.alice_subscription.pk),
        distribution_notice(distribution_id=journey.august.pk, investor_id=journey.alice.pk),
        annual_tax_summary(investor=journey.alice, period=period_parse("2025")),
    )
    texts = [rendered_text(kind, data) for kind, data in zip(KINDS, before, strict=True)]
    # when more is paid to the same investor, in the same offering, the next year
    pay_distribution(journey.offering, ny(2026, 2, 10), amount_minor=400_00, kind="income")
    after = (
        subscription_confirmation(subscription_id=journey.alice_subscription.pk),
        distribution_notice(distribution_id=journey.august.pk, investor_id=journey.alice.pk),
        annual_tax_summary(investor=journey.alice, period=period_parse("2025")),
    )
    # then each is the same, fingerprint and PDF text included
    assert after == before
    assert [rendered_text(kind, data) for kind, data in zip(KINDS, after, strict=True)] == texts
    # and the 2026 summary, built from the new payout, is another document
    with at(ny(2027, 1, 5)):
        next_year = annual_tax_summary(investor=journey.alice, period=period_parse("2026"))
    assert next_year.totals[0].income_minor == 300_00
    assert next_year.fingerprint != after[2].fingerprint


KINDS = ("subscription_confirmation", "distribution_notice", "annual_tax_summary")


def test_stored_once_per_event_and_listed_with_their_subject(journey):
    scopes = [
        subscription_confirmation_scope(journey.alice_subscription.pk),
        distribution_notice_scope(journey.august.pk, journey.alice.pk),
        StatementScope("annual_tax_summary", period_parse("2025"), investor_id=journey.alice.pk),
    ]
    first = [services.statement_generate(scope=scope) for scope in scopes]
    again = [services.statement_generate(scope=scope) for scope in scopes]
    assert all(g.created for g in first)
    assert not any(g.created for g in again)
    assert [g.statement.pk for g in first] == [g.statement.pk for g in again]
    confirmation, notice, summary = (g.statement for g in first)
    assert confirmation.subject == f"subscription:{journey.alice_subscription.pk}"
    # filed on the day of the close (the deadline, 60 days after it opened, New York time)
    assert (confirmation.period_start, confirmation.period_end) == (date(2025, 6, 30),) * 2
    assert (notice.subject, str(notice.period_start)) == (
        f"distribution:{journey.august.pk}",
        str(journey.august.payment_date),
    )
    assert summary.subject == ""
    with default_storage.open(str(notice.file.name), "rb") as stored:
        assert "Distribution notice" in pdf_text(stored.read())


def test_a_batch_makes_every_paid_investors_tax_summary_for_the_year(journey):
    # when
    call_command("generate_statements", "--period", "2025", "--kind", "annual_tax_summary")
    # then one summary per investor paid in 2025, with their own figures
    summaries = Statement.objects.filter(kind="annual_tax_summary").order_by("investor_id")
    assert [s.investor_id for s in summaries] == [journey.alice.pk, journey.bob.pk]
    batch = StatementBatch.objects.get(kind="annual_tax_summary")
    assert (batch.status, batch.total, batch.done, batch.failed) == ("completed", 2, 2, 0)
    with default_storage.open(str(summaries[1].file.name), "rb") as stored:
        text = pdf_text(stored.read())
    assert "Bob Brennan" in text
    assert "$214.00" in text


def test_batches_only_make_periodic_statements_and_tax_summaries(journey, api_client):
    with pytest.raises(CommandError, match="not generated in batches"):
        call_command("generate_statements", "--period", "2025", "--kind", "distribution_notice")
    with pytest.raises(CommandError, match="calendar year"):
        call_command("generate_statements", "--period", "2025-Q3", "--kind", "annual_tax_summary")
    response = api_client.post(
        "/api/v1/statements/batches",
        data={"period": "2025", "kind": "annual_tax_summary", "offering_id": journey.offering.pk},
        content_type="application/json",
        **bearer(new_user(is_staff=True)),
    )
    assert response.status_code == 400
    assert response.json()["code"] == "offering_not_allowed"
    assert not StatementBatch.objects.exists()


def test_a_waterfall_payouts_tiers_are_shown_one_line_each(journey):
    # given a payout that recorded its breakdown by tier (waterfall distributions do)
    payout = SimpleNamespace(
        tiers=[
            {"tier": "return_of_capital", "index": 0, "investor_minor": 100_00, "sponsor_minor": 0},
            {"tier": "preferred_return", "index": 1, "investor_minor": 120_00, "sponsor_minor": 0},
            {"tier": "promote", "index": 2, "investor_minor": 30_00, "sponsor_minor": 7_50},
        ]
    )
    tiers = tier_lines(payout)  # type: ignore[arg-type]
    assert [(t.tier, t.investor_minor, t.sponsor_minor) for t in tiers] == [
        ("return_of_capital", 100_00, 0),
        ("preferred_return", 120_00, 0),
        ("promote", 30_00, 7_50),
    ]
    # when the notice carries them
    notice = distribution_notice(distribution_id=journey.august.pk, investor_id=journey.bob.pk)
    text = rendered_text("distribution_notice", replace(notice, tiers=tiers, promote_minor=7_50))
    # then each tier is a line, with the sponsor's share beside it
    assert "Return of capital $100.00 $0.00" in text
    assert "Preferred return $120.00 $0.00" in text
    assert "Promote split $30.00 $7.50" in text
    assert "TO THE SPONSOR" in text.upper()
    # and a payout without a breakdown (pro rata, or recorded before tiers existed) has none
    assert tier_lines(SimpleNamespace()) == ()  # type: ignore[arg-type]


def test_the_periodic_statement_lists_the_periods_distributions(journey):
    spec = kind_spec("investor_periodic")
    data = spec.build(
        StatementScope("investor_periodic", period_parse("2025-Q3"), investor_id=journey.bob.pk)
    )
    (line,) = data.distributions
    assert (line.distribution_id, line.income_minor, line.return_of_capital_minor) == (
        journey.august.pk,
        150_00,
        100_00,
    )
    assert (line.withholding_minor, line.net_minor) == (36_00, 214_00)
    text = rendered_text("investor_periodic", data)
    assert f"Maple Court Residences #{journey.august.pk} $150.00 $100.00 $36.00 $214.00" in text
    assert "No distributions in this period" not in text
    # the quarter before had none
    before = spec.build(
        StatementScope("investor_periodic", period_parse("2025-Q2"), investor_id=journey.bob.pk)
    )
    assert before.distributions == ()
    assert "No distributions in this period" in rendered_text("investor_periodic", before)
