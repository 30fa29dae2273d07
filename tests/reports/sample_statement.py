"""Sample periodic statements to look at (not collected by `make test`: the name does not start
with test_). Writes PDFs, and a PNG of each page when pdftoppm (poppler-utils) is installed, to
$STATEMENT_SAMPLE_DIR (default var/statement-samples):

    .venv/bin/python -m pytest tests/reports/sample_statement.py -p no:cacheprovider

docs/statement-example.png is page 1 of `alice-2026-Q3` at 110 dpi.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from datetime import date
from pathlib import Path

import pytest

from reports.event_kinds import distribution_notice_scope, subscription_confirmation_scope
from reports.kinds import StatementScope, kind_spec
from reports.periods import period_parse
from reports.render import statement_pdf
from tests.reports.ledger_book import PERIOD, seed_book
from tests.reports.test_event_statements import Journey, journey, ny, pay_distribution
from tests.reports.test_periodic_returns import post_nav

__all__ = ["journey"]  # the fixture

pytestmark = [pytest.mark.django_db]


def sample_dir() -> Path:
    directory = Path(os.environ.get("STATEMENT_SAMPLE_DIR", "var/statement-samples"))
    directory.mkdir(parents=True, exist_ok=True)
    return directory


def write(name: str, investor_id: int, period: str) -> None:
    scope = StatementScope("investor_periodic", period_parse(period), investor_id=investor_id)
    write_scope(f"{name}-{period}", scope)


def write_scope(name: str, scope: StatementScope) -> None:
    spec = kind_spec(scope.kind)
    path = sample_dir() / f"{name}.pdf"
    path.write_bytes(statement_pdf(spec, spec.build(scope)).content)
    if shutil.which("pdftoppm"):
        subprocess.run(["pdftoppm", "-r", "110", "-png", path, path.with_suffix("")], check=True)


def test_write_the_journey_statements(journey: Journey) -> None:
    post_nav(journey, 120, date(2026, 6, 30))
    pay_distribution(journey.offering, ny(2026, 8, 14), amount_minor=400_00, kind="income")
    for investor in (journey.alice, journey.bob):
        for period in ("2025-Q3", "2026-Q3"):
            write(investor.legal_name.split()[0].lower(), investor.pk, period)
    # and the other kinds, for Bob (withholding, a bounced payment)
    bob = journey.bob
    write_scope("confirmation-bob", subscription_confirmation_scope(journey.bob_subscription.pk))
    write_scope("notice-bob", distribution_notice_scope(journey.august.pk, bob.pk))
    year = period_parse("2025")
    write_scope("tax-summary-bob", StatementScope("annual_tax_summary", year, investor_id=bob.pk))
    as_of = period_parse("2026-09-30")
    offering_id = journey.offering.pk
    write_scope("captable", StatementScope("captable_report", as_of, offering_id=offering_id))


def test_write_the_ledger_book_statements() -> None:
    book = seed_book()
    for investor in book.investors:
        write(f"book-{investor.legal_name.split()[0].lower()}", investor.pk, PERIOD)
