"""GET /offerings/{id}/captable?format=csv|xlsx: the cap table as a file, for the offering's
sponsor and staff only (anyone else: 404, as for an offering that does not exist)."""

import io
from decimal import Decimal

import pytest
from openpyxl import load_workbook

from tests.conftest import bearer, new_user
from tests.investors.factories import make_investor
from tests.offerings.factories import approved_sponsor, member_of, staff
from tests.reports.ledger_book import post_after_the_period, seed_book

pytestmark = [pytest.mark.django_db, pytest.mark.embedded]

XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


def url(offering_id: int) -> str:
    return f"/api/v1/offerings/{offering_id}/captable"


@pytest.fixture
def book():
    book = seed_book()
    post_after_the_period(book)
    return book


def test_the_sponsor_downloads_the_csv_as_of_a_date(api_client, book):
    response = api_client.get(
        url(book.offering.pk),
        {"format": "csv", "as_of": "2025-09-30"},
        **bearer(member_of(book.offering.sponsor)),
    )
    assert response.status_code == 200
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert response["Content-Disposition"].startswith('attachment; filename="captable-')
    assert response.content.decode().splitlines() == [
        "investor_id,investor_legal_name,units,quanta,percent_of_issued,cost_basis,currency",
        f"{book.alice.pk},Alice Andersen,250,250,62.5000,25000.00,USD",
        f"{book.bob.pk},Bob Brennan,150,150,37.5000,15000.00,USD",
    ]


def test_staff_download_the_xlsx_with_exact_amounts(api_client, book):
    response = api_client.get(url(book.offering.pk), {"format": "xlsx"}, **bearer(staff()))
    assert response.status_code == 200
    assert response["Content-Type"] == XLSX
    sheet = load_workbook(io.BytesIO(response.content)).active
    assert sheet is not None
    rows = [[cell.value for cell in row] for row in sheet.iter_rows(min_row=2)]
    # now: alice 270, bob 140, carol 10 (the Q4 purchase and transfer are in)
    assert [(row[1], row[3]) for row in rows] == [
        ("Alice Andersen", 270),
        ("Bob Brennan", 140),
        ("Carol Castillo", 10),
    ]
    assert sum(Decimal(str(row[5])) for row in rows) == Decimal("42000.00")


def test_json_stays_the_default(api_client, book):
    response = api_client.get(url(book.offering.pk), **bearer(staff()))
    assert response.status_code == 200
    assert response.json()["issued_quanta"] == 420


@pytest.mark.parametrize("file_format", ["csv", "xlsx"])
def test_nobody_else_gets_the_file(api_client, book, file_format):
    holder = book.alice.user
    other_sponsor = member_of(approved_sponsor(name="Other Realty"))
    stranger = make_investor(legal_name="Stranger").user
    for user in (holder, other_sponsor, stranger, new_user()):
        response = api_client.get(url(book.offering.pk), {"format": file_format}, **bearer(user))
        assert response.status_code == 404, user
        assert response.json()["code"] == "offering_not_found"
        assert b"Alice" not in response.content
    # an offering that does not exist reads the same
    missing = api_client.get(
        url(book.offering.pk + 999), {"format": file_format}, **bearer(staff())
    )
    assert missing.status_code == 404
    assert api_client.get(url(book.offering.pk), {"format": file_format}).status_code == 401


def test_an_unknown_format_is_refused(api_client, book):
    response = api_client.get(url(book.offering.pk), {"format": "pdf"}, **bearer(staff()))
    assert response.status_code == 422
