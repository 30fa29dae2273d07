"""`manage.py captable`: every format parsed back and compared with the selector."""

import csv
import io
import json
from decimal import Decimal

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from captable.selectors import captable_as_of
from tests.captable.factories import investors, issue, offering_with_units, transfer

pytestmark = [pytest.mark.django_db, pytest.mark.embedded]


def run(*args: str) -> str:
    out = io.StringIO()
    call_command("captable", *args, stdout=out)
    return out.getvalue()


@pytest.fixture
def book():
    """Thousandths of a unit, $100.00 a unit: alice 12.5 units, bob 3.25, alice sells 0.5."""
    offering = offering_with_units(100_000, quanta_per_unit=1_000, min_investment_units=Decimal(1))
    alice, bob = investors(2)
    first = issue(offering, alice, 12_500, cost_minor=1_250_00)
    issue(offering, bob, 3_250, cost_minor=325_00)
    transfer(offering, alice, bob, 500)
    return offering, alice, bob, first


def expected_rows(offering, as_of=None):
    table = captable_as_of(offering=offering, as_of=as_of)
    return [(row.investor_id, row.quanta, row.cost_minor, row.percent) for row in table.rows]


def test_json_is_the_selector_with_strings_for_amounts(book):
    offering, alice, _, _ = book
    data = json.loads(run(str(offering.pk), "--format", "json"))
    assert data["issued_units"] == "15.750"
    assert data["authorized_units"] == "100.000"
    assert data["treasury_quanta"] == 100_000 - 15_750
    parsed = [
        (
            row["investor_id"],
            row["quanta"],
            int(Decimal(row["cost_basis"]["amount"]) * 100),
            Decimal(row["percent"]),
        )
        for row in data["rows"]
    ]
    assert parsed == expected_rows(offering)
    assert [row["units"] for row in data["rows"]] == ["12.000", "3.750"]
    assert all(isinstance(row["cost_basis"]["amount"], str) for row in data["rows"])
    assert data["rows"][0]["investor_legal_name"] == alice.legal_name


def test_csv_rows_parse_back_to_the_selector(book):
    offering, alice, bob, _ = book
    rows = list(csv.DictReader(io.StringIO(run(offering.slug, "--format", "csv"))))
    parsed = [
        (
            int(row["investor_id"]),
            int(row["quanta"]),
            int(Decimal(row["cost_basis_amount"]) * 100),
            Decimal(row["percent"]),
        )
        for row in rows
    ]
    assert parsed == expected_rows(offering)
    assert [row["investor_legal_name"] for row in rows] == [alice.legal_name, bob.legal_name]
    assert {row["cost_basis_currency"] for row in rows} == {"USD"}


def test_table_is_aligned_with_totals(book):
    offering, *_ = book
    text = run(str(offering.pk))
    lines = text.splitlines()
    assert lines[0].startswith(f"{offering.title} (offering {offering.pk}) as of ")
    assert "Authorized 100.000 units; treasury 84.250; issued 15.750" in lines[1]
    header, rule = lines[3], lines[4]
    assert header.split()[:2] == ["Investor", "Legal"]
    body = lines[5:-2]
    assert len(body) == 2
    assert body[0].split()[-4:] == ["12.000", "76.1905", "1200.00", "USD"]
    assert body[1].split()[-4:] == ["3.750", "23.8095", "375.00", "USD"]
    assert lines[-1].split() == ["Total", "2", "holders", "15.750", "100.0000", "1575.00", "USD"]
    # aligned: the units column ends at the same place on every line
    units_end = [
        line.index(units) + len(units)
        for line, units in zip(body, ["12.000", "3.750"], strict=True)
    ]
    assert units_end[0] == units_end[1] == lines[-1].index("15.750") + len("15.750")
    assert len(rule) >= len(header)


def test_as_of_option_between_two_issues(book):
    offering, alice, _, first = book
    data = json.loads(
        run(str(offering.pk), "--as-of", first.effective_at.isoformat(), "--format", "json")
    )
    assert [(row["investor_id"], row["units"]) for row in data["rows"]] == [(alice.pk, "12.500")]
    assert expected_rows(offering, first.effective_at) == [
        (alice.pk, 12_500, 1_250_00, Decimal("100.0000"))
    ]


def test_unknown_offering_and_bad_as_of_are_command_errors(book):
    offering, *_ = book
    with pytest.raises(CommandError, match="not found"):
        run("no-such-offering")
    with pytest.raises(CommandError, match="ISO-8601"):
        run(str(offering.pk), "--as-of", "yesterday-ish")
