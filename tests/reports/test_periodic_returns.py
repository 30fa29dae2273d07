"""The periodic statement's returns, worked by hand on the journey of
`test_event_statements.py` (real services): NAV value, equity multiple and IRR as of the
period's end, printed in the PDF as the ledger gives them; IRR only once the first flow is a
year old (the dashboard's rule); the same figures and fingerprint when regenerated later."""

from __future__ import annotations

import re
from datetime import date, datetime, timedelta
from decimal import Decimal, localcontext
from zoneinfo import ZoneInfo

import pytest

from captable.models import AccountKind, Posting
from offerings.nav import nav_post
from portal.views_dashboard import IRR_SHOWN_AFTER_DAYS as DASHBOARD_IRR_SHOWN_AFTER_DAYS
from reports.kinds import StatementScope, kind_spec
from reports.periods import period_parse
from reports.render import statement_pdf
from reports.returns import IRR_SHOWN_AFTER_DAYS, IrrUnavailable
from reports.statements import InvestorPeriodicStatement, investor_periodic_statement
from tests.captable.test_payments import at
from tests.offerings.factories import member_of
from tests.reports.conftest import pdf_text
from tests.reports.ledger_book import PERIOD as LEDGER_BOOK_PERIOD
from tests.reports.ledger_book import seed_book
from tests.reports.test_event_statements import Journey, journey, ny, pay_distribution

__all__ = ["journey"]  # the fixture, imported for these tests

pytestmark = [pytest.mark.django_db, pytest.mark.embedded]

NEW_YORK = ZoneInfo("America/New_York")


def build(
    investor_id: int, period: str, offering_id: int | None = None
) -> InvestorPeriodicStatement:
    spec = kind_spec("investor_periodic")
    scope = StatementScope(
        "investor_periodic", period_parse(period), investor_id=investor_id, offering_id=offering_id
    )
    data: InvestorPeriodicStatement = spec.build(scope)
    return data


def text_of(data: InvestorPeriodicStatement) -> str:
    rendered = statement_pdf(kind_spec("investor_periodic"), data)
    assert rendered.refused_urls == ()
    return pdf_text(rendered.content)


def post_nav(journey: Journey, dollars: int, effective: date) -> None:
    with at(datetime.combine(effective + timedelta(days=1), datetime.min.time(), NEW_YORK)):
        nav_post(
            actor=member_of(journey.offering.sponsor),
            offering_id=journey.offering.pk,
            nav_per_unit_minor=dollars * 100,
            currency="USD",
            effective_date=effective,
        )


def irr_by_bisection(flows: list[tuple[date, Decimal]]) -> Decimal:
    """The rate r where the flows' value at the first date, each discounted by
    (1 + r) ** (days / 365), is zero: an independent check of the XIRR the statement prints."""

    def value_at(rate: Decimal) -> Decimal:
        first = flows[0][0]
        return sum(
            (amount / (1 + rate) ** (Decimal((on - first).days) / 365) for on, amount in flows),
            Decimal(0),
        )

    with localcontext() as context:
        context.prec = 40
        low, high = Decimal("-0.9"), Decimal(10)
        for _ in range(200):
            middle = (low + high) / 2
            if value_at(middle) > 0:  # money in first: the value falls as the rate rises
                low = middle
            else:
                high = middle
        return (low + high) / 2


@pytest.fixture
def valued(journey: Journey) -> Journey:
    """The journey, then: NAV $120.00 a unit effective 2026-06-30, and an income distribution
    of $400.00 paid in August 2026 (Alice holds 30 of the 40 units: $300.00)."""
    post_nav(journey, 120, date(2026, 6, 30))
    pay_distribution(journey.offering, ny(2026, 8, 14), amount_minor=400_00, kind="income")
    return journey


def test_nav_value_equity_multiple_and_irr_printed_are_the_ledgers(valued: Journey) -> None:
    # given Alice's flows, worked by hand: $3,000.00 for 30 units at the close on
    # 2025-06-30; $450.00 income and $300.00 return of capital paid 2025-08-16; $300.00
    # income paid 2026-08-16; 30 units at the NAV in force on 2026-09-30 ($120.00): $3,600.00
    before = build(valued.alice.pk, "2025-Q3")
    data = build(valued.alice.pk, "2026-Q3")
    assert [line.paid_on for line in before.distributions] == [date(2025, 8, 16)]
    assert [line.paid_on for line in data.distributions] == [date(2026, 8, 16)]
    flows = [
        (date(2025, 6, 30), Decimal(-3000)),
        (date(2025, 8, 16), Decimal(750)),
        (date(2026, 8, 16), Decimal(300)),
        (date(2026, 9, 30), Decimal(3600)),
    ]
    multiple = Decimal(750 + 300 + 3600) / Decimal(3000)  # 1.55
    irr = irr_by_bisection(flows)
    assert Decimal("0.53") < irr < Decimal("0.54")
    # when
    (section,) = data.sections
    returns = section.returns
    # then the data
    assert (section.valuation.basis, section.valuation.per_unit_minor) == ("nav", 120_00)
    assert section.valuation.nav_date == date(2026, 6, 30)
    assert returns.first_flow_on == date(2025, 6, 30)
    assert (returns.contributed_minor, returns.income_minor) == (3_000_00, 750_00)
    assert (returns.return_of_capital_minor, returns.capital_out_minor) == (300_00, 0)
    assert returns.value_minor == 3_600_00
    assert returns.equity_multiple == multiple
    assert returns.irr is not None
    assert abs(returns.irr - irr) < Decimal("0.000001")
    assert (section.income_minor, section.return_of_capital_minor) == (300_00, 0)
    # and what the PDF prints
    text = text_of(data)
    assert "Value at end 30 units \u00d7 $120.00 NAV of Jun 30, 2026 $3,600.00" in text
    assert "Equity multiple (distributions + value) ÷ invested 1.55\u00d7" in text
    shown = f"{(irr * 100).quantize(Decimal('0.01'))} %"  # the text extraction drops the NBSP
    assert shown == "53.49 %"
    assert f"IRR annualised (XIRR), value at end included {shown}" in text
    assert f"Maple Court Residences $3,000.00 $1,050.00 $3,600.00 1.55\u00d7 {shown}" in text
    assert "Scale from 0 to $3,600.00; the last point is the value at end, $3,600.00." in text
    assert section.returns.chart is not None
    assert all(isinstance(c, int) for dot in section.returns.chart.dots for c in dot)


def test_under_a_year_the_irr_is_not_shown_and_units_are_valued_at_the_price(
    valued: Journey,
) -> None:
    # 2025-Q3 ends 92 days after the first flow, and the first NAV came in 2026
    data = build(valued.alice.pk, "2025-Q3")
    (section,) = data.sections
    assert section.valuation.basis == "price"
    assert section.returns.value_minor == 3_000_00
    assert section.returns.equity_multiple == Decimal(750 + 3000) / Decimal(3000)
    assert section.returns.irr is None
    assert section.returns.irr_unavailable == IrrUnavailable.UNDER_A_YEAR
    text = text_of(data)
    assert "30 units \u00d7 $100.00 offering price (no NAV yet) $3,000.00" in text
    assert "1.25\u00d7" in text
    assert "value at end included n/a shown after 1 year" in text


def test_the_irr_rule_is_the_dashboards() -> None:
    assert IRR_SHOWN_AFTER_DAYS == DASHBOARD_IRR_SHOWN_AFTER_DAYS


def test_nothing_invested_yet_gives_no_multiple_and_no_irr() -> None:
    # carol's payment is still in escrow at the end of 2025-Q3: no unit acquired
    book = seed_book()
    period = period_parse(LEDGER_BOOK_PERIOD)
    (section,) = investor_periodic_statement(investor=book.carol, period=period).sections
    returns = section.returns
    assert (returns.contributed_minor, returns.value_minor) == (0, 0)
    assert returns.equity_multiple is None
    assert returns.irr_unavailable == IrrUnavailable.NOTHING_INVESTED
    assert returns.chart is None
    text = text_of(build(book.carol.pk, LEDGER_BOOK_PERIOD))
    assert "÷ invested n/a nothing invested yet" in text
    assert "value at end included n/a nothing invested yet" in text


def test_regenerated_after_a_later_nav_and_payout_the_figures_and_fingerprint_stay(
    valued: Journey,
) -> None:
    before = build(valued.alice.pk, "2026-Q3")
    text_before = text_of(before)
    # when a NAV effective after the period and another payout are posted
    post_nav(valued, 150, date(2026, 10, 15))
    pay_distribution(valued.offering, ny(2026, 10, 20), amount_minor=800_00, kind="income")
    # then the 2026-Q3 statement is the same, and its PDF says the same
    after = build(valued.alice.pk, "2026-Q3")
    assert after == before
    assert text_of(after) == text_before


def test_payouts_the_returns_use_are_in_the_fingerprint_of_a_one_offering_statement(
    valued: Journey,
) -> None:
    data = build(valued.alice.pk, "2026-Q3", offering_id=valued.offering.pk)
    closing = period_parse("2026-Q3").end_instant(valued.offering.time_zone)
    offering_postings = Posting.objects.filter(
        account__investor=valued.alice,
        account__offering=valued.offering,
        account__kind__in=[AccountKind.HOLDING, AccountKind.ESCROW],
        effective_at__lte=closing,
    ).count()
    # no cash account on a one-offering statement: the two payouts' cash postings are added
    assert data.fingerprint.posting_count == offering_postings + 2
    assert data.cash_accounts == ()
    assert data.sections[0].returns.income_minor == 750_00


def test_a_late_evening_payout_has_the_same_date_in_every_table(valued: Journey) -> None:
    data = build(valued.alice.pk, "2026-Q3")
    (cash,) = data.cash_accounts
    assert cash.time_zone == valued.offering.time_zone  # its one offering's zone
    text = text_of(data)
    # the payout's entry took effect in the evening of Aug 16 in New York (Aug 17 in UTC)
    assert "Aug 16, 2026 Distribution received" in text
    assert f"Aug 16, 2026 Maple Court Residences #{data.distributions[0].distribution_id}" in text
    assert "Aug 17, 2026" not in text
    assert re.search(r"read as of the end of Sep 30, 2026 in America/ ?New_York", text)
