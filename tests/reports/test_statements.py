"""Statement data from the ledger, worked through by hand on a small book (see
`ledger_book.py`), and rendered: the PDF says what the ledger says, regenerating gives the
same numbers and fingerprint whatever is posted later, and amounts follow the locale."""

import re
from datetime import date

import pytest
import time_machine
from django.utils import timezone

from captable.selectors import positions_as_of
from common.errors import Conflict, ValidationFailed
from common.money import money_display
from reports.kinds import StatementScope, kind_spec
from reports.periods import Period, period_parse
from reports.render import statement_pdf
from reports.selectors import investors_to_report
from reports.statements import captable_report, investor_periodic_statement
from tests.captable.factories import transfer
from tests.reports.conftest import pdf_text
from tests.reports.ledger_book import (
    PERIOD,
    at,
    buy,
    investor_named,
    post_after_the_period,
    seed_book,
)

pytestmark = [pytest.mark.django_db, pytest.mark.embedded]

Q3 = period_parse(PERIOD)


@pytest.fixture
def book():
    return seed_book()


def statement_of(investor, period=Q3, offering=None):
    return investor_periodic_statement(investor=investor, period=period, offering=offering)


def test_periods_parse_to_their_first_and_last_day():
    assert period_parse("2026-Q3") == Period("2026-Q3", date(2026, 7, 1), date(2026, 9, 30))
    assert period_parse("2024-02") == Period("2024-02", date(2024, 2, 1), date(2024, 2, 29))
    assert period_parse("2025") == Period("2025", date(2025, 1, 1), date(2025, 12, 31))
    assert period_parse("2025-09-30").is_single_day
    assert period_parse("2025-07-15..2025-08-14").end == date(2025, 8, 14)
    for bad in ("2025-Q5", "2025-13", "Q3", "2025-02-30", "2025-09-30..2025-09-01", ""):
        with pytest.raises(ValidationFailed):
            period_parse(bad)


def test_a_period_is_over_only_once_its_last_day_has_ended_everywhere():
    period = period_parse("2025-09-30")
    # 2025-10-01 11:59 UTC is still 2025-09-30 in UTC-12
    assert not period.is_over(at(2025, 10, 1, 7).replace(minute=59))
    assert period.is_over(at(2025, 10, 1, 8))  # 12:00 UTC


def test_alice_sold_fifty_units_in_the_period(book):
    statement = statement_of(book.alice)
    (section,) = statement.sections
    assert (section.units_opening_quanta, section.units_closing_quanta) == (300, 250)
    assert (section.cost_opening_minor, section.cost_closing_minor) == (30_000_00, 25_000_00)
    assert (section.contributions_minor, section.refunds_minor) == (0, 0)
    assert [(t.description, t.units_quanta, t.cost_minor) for t in section.transactions] == [
        ("Units transferred out", -50, -5_000_00)
    ]
    # her 4 postings up to the period's end: payment, release, issue, transfer out
    assert statement.fingerprint.posting_count == 4


def test_bob_paid_in_bought_and_received_units(book):
    (section,) = statement_of(book.bob).sections
    assert (section.units_opening_quanta, section.units_closing_quanta) == (0, 150)
    assert section.cost_closing_minor == 15_000_00
    assert section.contributions_minor == 10_000_00
    assert section.released_to_issuer_minor == 10_000_00
    assert (section.escrow_opening_minor, section.escrow_closing_minor) == (0, 0)
    assert [(t.description, t.units_quanta, t.cash_minor) for t in section.transactions] == [
        ("Payment received into escrow", 0, 10_000_00),
        ("Escrow released to the issuer", 0, -10_000_00),
        ("Units issued", 100, 0),
        ("Units received by transfer", 50, 0),
    ]


def test_carols_payment_is_still_in_escrow_at_the_end(book):
    statement = statement_of(book.carol)
    (section,) = statement.sections
    assert (section.units_opening_quanta, section.units_closing_quanta) == (0, 0)
    assert (section.escrow_opening_minor, section.escrow_closing_minor) == (0, 2_500_00)
    assert section.contributions_minor == 2_500_00
    (total,) = statement.totals
    assert (total.currency, total.contributions_minor, total.escrow_closing_minor) == (
        "USD",
        2_500_00,
        2_500_00,
    )


def test_units_and_cost_agree_with_the_captable_selector_at_the_period_end(book):
    closing = Q3.end_instant(book.offering.time_zone)
    for investor in book.investors:
        expected = {p.offering_id: p for p in positions_as_of(investor=investor, as_of=closing)}
        for section in statement_of(investor).sections:
            position = expected.get(section.offering.offering_id)
            assert section.units_closing_quanta == (position.quanta if position else 0)
            assert section.cost_closing_minor == (position.cost_minor if position else 0)


def test_regenerating_after_later_postings_gives_the_same_numbers_and_fingerprint(book):
    before = {investor.pk: statement_of(investor) for investor in book.investors}
    spec = kind_spec("investor_periodic")
    pdf_before = pdf_text(statement_pdf(spec, before[book.bob.pk]).content)
    # when more is posted after the period (Q4: a purchase, a transfer, a release)
    post_after_the_period(book)
    after = {investor.pk: statement_of(investor) for investor in book.investors}
    # then every statement is the same, fingerprint included, and so is the PDF's text
    assert after == before
    assert pdf_text(statement_pdf(spec, after[book.bob.pk]).content) == pdf_before
    fingerprints = {s.fingerprint.sha256 for s in after.values()}
    assert len(fingerprints) == 3  # one per investor: they were built from different rows
    # while the next period, which includes the new postings, has another fingerprint
    with time_machine.travel(at(2026, 1, 3), tick=False):
        q4 = statement_of(book.alice, period=period_parse("2025-Q4"))
    assert q4.fingerprint != after[book.alice.pk].fingerprint
    assert q4.sections[0].units_closing_quanta == 270


def test_a_period_not_over_yet_is_refused(book):
    this_quarter = f"{timezone.now().year}-Q{(timezone.now().month - 1) // 3 + 1}"
    with pytest.raises(Conflict) as refused:
        statement_of(book.alice, period=period_parse(this_quarter))
    assert refused.value.code == "period_not_over"


def test_investors_to_report_are_those_with_a_balance_or_activity(book):
    ids = sorted(i.pk for i in book.investors)
    assert investors_to_report(period=Q3) == ids
    assert investors_to_report(period=period_parse("2025-Q2")) == [book.alice.pk]
    assert investors_to_report(period=period_parse("2025-04")) == []
    assert investors_to_report(period=Q3, offering_id=book.offering.pk + 999) == []


def test_the_pdf_shows_the_investor_units_and_amounts_of_the_ledger(book):
    spec = kind_spec("investor_periodic")
    data = spec.build(StatementScope("investor_periodic", Q3, investor_id=book.bob.pk))
    rendered = statement_pdf(spec, data)
    text = pdf_text(rendered.content)
    assert rendered.refused_urls == ()
    # page 1: summary, position and returns; page 2: the transactions and distributions
    assert rendered.page_count == 2
    for expected in (
        "Bob Brennan",
        book.bob.user.email,
        "Investor statement",
        "Q3 2025",
        "Maple Court Residences",
        money_display(10_000_00, "USD"),
        money_display(15_000_00, "USD"),
        "No distributions in this period",
        "Page 1 of 2",
        data.fingerprint.sha256,
    ):
        assert expected in text, expected
    # date, description, entry number, units, cost, escrow cash: one line per entry
    assert re.search(r"Aug 10, 2025 Units issued #\d+ \+100 \+\$10,000\.00", text)
    assert re.search(r"Sep 1, 2025 Units received by transfer #\d+ \+50 \+\$5,000\.00", text)


def test_amounts_and_dates_follow_the_investors_locale(book):
    dora = investor_named("Dora Daubner", country="DE", us_state="")
    buy(book.offering, dora, 25, at(2025, 8, 20))
    spec = kind_spec("investor_periodic")
    data = spec.build(StatementScope("investor_periodic", Q3, investor_id=dora.pk))
    text = pdf_text(statement_pdf(spec, data).content)
    assert data.locale == "de_DE"
    assert "2.500,00 $" in text  # German grouping and decimal comma, the offering's currency
    assert "20.08.2025" in text


def test_many_transactions_flow_onto_numbered_pages(book):
    for day in range(1, 29):
        buy(book.offering, book.carol, 1, at(2025, 8, day))
    spec = kind_spec("investor_periodic")
    data = spec.build(StatementScope("investor_periodic", Q3, investor_id=book.carol.pk))
    rendered = statement_pdf(spec, data)
    text = pdf_text(rendered.content)
    assert rendered.page_count >= 2
    assert f"Page 2 of {rendered.page_count}" in text
    assert data.sections[0].units_closing_quanta == 28


def test_a_statement_for_one_offering_leaves_cash_accounts_out(book):
    statement = statement_of(book.bob, offering=book.offering)
    assert [s.offering.offering_id for s in statement.sections] == [book.offering.pk]
    assert statement.cash_accounts == ()


def test_the_captable_report_as_of_the_period_end(book):
    post_after_the_period(book)
    report = captable_report(offering=book.offering, period=period_parse("2025-09-30"))
    assert [(h.legal_name, h.quanta, h.cost_minor, str(h.percent)) for h in report.holders] == [
        ("Alice Andersen", 250, 25_000_00, "62.5000"),
        ("Bob Brennan", 150, 15_000_00, "37.5000"),
    ]
    assert (report.authorized_quanta, report.treasury_quanta) == (10_000, 9_600)
    # authorize (2), two issues (2 each), one transfer (2): the Q4 postings are not in it
    assert report.fingerprint.posting_count == 8
    spec = kind_spec("captable_report")
    text = pdf_text(statement_pdf(spec, report).content)
    for expected in ("Cap-table report", "Alice Andersen", "62.5000", "$40,000.00", "9,600"):
        assert expected in text, expected


def test_an_investor_who_exited_before_the_period_has_nothing_to_report(book):
    erin = investor_named("Erin Eriksen")
    buy(book.offering, erin, 10, at(2025, 5, 10))
    with time_machine.travel(at(2025, 6, 1), tick=False):
        transfer(book.offering, erin, book.carol, 10)
    assert statement_of(erin).sections == ()
    assert erin.pk not in investors_to_report(period=Q3)
    assert erin.pk in investors_to_report(period=period_parse("2025-Q2"))
    # carol held erin's 10 units all through Q3: they are her opening position
    assert statement_of(book.carol).sections[0].units_opening_quanta == 10
