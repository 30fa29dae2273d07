"""Cap-table exports: exact amounts through pandas (no float column, ever), as CSV and as
XLSX whose cells hold the exact decimal text, and `manage.py export_captable`."""

import io
import zipfile
from decimal import Decimal
from io import StringIO

import pandas as pd
import pytest
from django.core.management import CommandError, call_command
from openpyxl import load_workbook

from reports.exports import (
    captable_export_response,
    captable_frame,
    frame_check_no_float,
    frame_to_csv,
    frame_to_xlsx,
)
from reports.periods import period_parse
from tests.captable.factories import investors, issue, offering_with_units, transfer
from tests.reports.ledger_book import post_after_the_period, seed_book

pytestmark = [pytest.mark.django_db, pytest.mark.embedded]


@pytest.fixture
def thousandths():
    """1/1000-unit quanta at $100.00 a unit (10 cents a quantum): 12.345 units cost $1,234.50."""
    offering = offering_with_units(1_000_000, quanta_per_unit=1000, price_per_unit_minor=100_00)
    alice, bob = investors(2)
    issue(offering, alice, 12_345, cost_minor=1_234_50)
    issue(offering, bob, 7_655, cost_minor=765_50)
    transfer(offering, alice, bob, 345)
    return offering, alice, bob


def test_the_frame_holds_ints_decimals_and_text_never_float(thousandths):
    offering, alice, _ = thousandths
    frame = captable_frame(offering=offering, as_of=_now())
    assert [dtype.kind for dtype in frame.dtypes] == ["i", "O", "O", "i", "O", "O", "O"]
    rows = frame.to_dict("records")
    assert rows[0] == {
        "investor_id": alice.pk,
        "investor_legal_name": alice.legal_name,
        "units": Decimal("12.000"),
        "quanta": 12_000,
        "percent_of_issued": Decimal("60.0000"),
        "cost_basis": Decimal("1200.00"),  # 345/12345 of $1,234.50 moved with the units
        "currency": "USD",
    }
    assert rows[1]["units"] == Decimal("8.000")
    assert sum(row["cost_basis"] for row in rows) == Decimal("2000.00")


def test_csv_prints_every_amount_exactly(thousandths):
    offering, alice, bob = thousandths
    text = frame_to_csv(captable_frame(offering=offering, as_of=_now())).decode()
    assert text.splitlines() == [
        "investor_id,investor_legal_name,units,quanta,percent_of_issued,cost_basis,currency",
        f"{alice.pk},{alice.legal_name},12.000,12000,60.0000,1200.00,USD",
        f"{bob.pk},{bob.legal_name},8.000,8000,40.0000,800.00,USD",
    ]


def sheet_xml(content: bytes) -> str:
    return zipfile.ZipFile(io.BytesIO(content)).read("xl/worksheets/sheet1.xml").decode()


def test_xlsx_number_cells_hold_the_exact_decimal():
    frame = pd.DataFrame({"cost_basis": [Decimal("0.10") + Decimal("0.20")]}, dtype="object")
    xml = sheet_xml(frame_to_xlsx(frame))
    assert "<v>0.3</v>" in xml  # the Decimal's value, not float's 0.30000000000000004
    assert "0.30000000000000004" not in xml


def test_xlsx_cap_table_cells_and_formats(thousandths):
    offering, alice, _ = thousandths
    content = frame_to_xlsx(captable_frame(offering=offering, as_of=_now()))
    sheet = load_workbook(io.BytesIO(content)).active
    assert sheet is not None
    assert [cell.value for cell in sheet[1]][:3] == ["investor_id", "investor_legal_name", "units"]
    assert sheet["B2"].value == alice.legal_name
    assert (sheet["C2"].number_format, sheet["F2"].number_format) == ("#,##0.000", "#,##0.00")
    assert Decimal(str(sheet["F2"].value)) == Decimal("1200.00")


def test_a_float_column_is_refused():
    with pytest.raises(TypeError, match="cost_basis"):
        frame_check_no_float(pd.DataFrame({"cost_basis": [0.1 + 0.2]}))


def test_the_export_is_as_of_the_instant_asked():
    book = seed_book()
    post_after_the_period(book)
    as_of = period_parse("2025-09-30").end_instant(book.offering.time_zone)
    frame = captable_frame(offering=book.offering, as_of=as_of)
    assert list(frame["quanta"]) == [250, 150]  # the Q4 purchase and transfer are not in it
    response = captable_export_response(offering=book.offering, as_of=as_of, file_format="csv")
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert "captable-" in response["Content-Disposition"]
    assert b"Alice Andersen,250,250,62.5000,25000.00,USD" in response.content


def test_export_command_writes_csv_and_xlsx(thousandths, tmp_path):
    offering, alice, _ = thousandths
    out = StringIO()
    call_command(
        "export_captable", str(offering.pk), "--format", "csv", "--output", "-", stdout=out
    )
    assert f"{alice.pk},{alice.legal_name},12.000,12000" in out.getvalue()
    target = tmp_path / "exports" / "captable.xlsx"
    call_command(
        "export_captable",
        offering.slug,
        "--format",
        "xlsx",
        "--output",
        str(target),
        stderr=StringIO(),
    )
    sheet = load_workbook(target).active
    assert sheet is not None
    assert sheet.max_row == 3
    assert list(tmp_path.joinpath("exports").iterdir()) == [target]  # no temporary left


def test_export_command_refuses_an_unknown_offering(tmp_path):
    with pytest.raises(CommandError, match="not found"):
        call_command("export_captable", "no-such-offering", "--format", "csv", "--output", "-")


def _now():
    from django.utils import timezone

    return timezone.now()
