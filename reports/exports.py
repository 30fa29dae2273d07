"""Cap-table exports (CSV, XLSX) through pandas, without ever turning money into float.

The frame holds ints (ids, quanta), Decimals (units, money, percentages: object columns) and
strings. `frame_check_no_float` refuses a float column before anything is written. CSV
prints each Decimal's exact text; XLSX stores it as a number cell whose XML text is that same
exact decimal, formatted with the currency's places.

Used by `manage.py export_captable` and, through `captable_export_response`, by
`GET /offerings/{id}/captable?format=csv|xlsx`.
"""

from __future__ import annotations

import io
from datetime import UTC, datetime
from typing import Literal

import pandas as pd
from django.http import HttpResponse

from captable.selectors import captable_as_of
from common.money import currency_exponent, minor_units_to_decimal
from investors.models import Investor
from offerings.models import Offering
from offerings.quantities import quanta_exponent, quanta_to_units

ExportFormat = Literal["csv", "xlsx"]
CONTENT_TYPES: dict[str, str] = {
    "csv": "text/csv; charset=utf-8",
    "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
}
CAPTABLE_COLUMNS = (
    "investor_id",
    "investor_legal_name",
    "units",
    "quanta",
    "percent_of_issued",
    "cost_basis",
    "currency",
)


def captable_frame(*, offering: Offering, as_of: datetime) -> pd.DataFrame:
    """One row per holder as of `as_of` (`captable.selectors.captable_as_of`), by investor."""
    table = captable_as_of(offering=offering, as_of=as_of)
    names = dict(
        Investor.objects.filter(pk__in=[row.investor_id for row in table.rows]).values_list(
            "pk", "legal_name"
        )
    )
    per_unit, currency = offering.quanta_per_unit, offering.currency
    frame = pd.DataFrame(
        {
            "investor_id": pd.Series([r.investor_id for r in table.rows], dtype="int64"),
            "investor_legal_name": pd.Series(
                [names.get(r.investor_id, "") for r in table.rows], dtype="object"
            ),
            "units": pd.Series(
                [quanta_to_units(r.quanta, quanta_per_unit=per_unit) for r in table.rows],
                dtype="object",
            ),
            "quanta": pd.Series([r.quanta for r in table.rows], dtype="int64"),
            "percent_of_issued": pd.Series([r.percent for r in table.rows], dtype="object"),
            "cost_basis": pd.Series(
                [minor_units_to_decimal(r.cost_minor, currency) for r in table.rows],
                dtype="object",
            ),
            "currency": pd.Series([currency] * len(table.rows), dtype="object"),
        },
        columns=list(CAPTABLE_COLUMNS),
    )
    frame.attrs.update(
        offering_id=offering.pk,
        offering_title=offering.title,
        as_of=as_of.astimezone(UTC).isoformat(),
        currency=currency,
        quanta_per_unit=per_unit,
    )
    frame_check_no_float(frame)
    return frame


def frame_check_no_float(frame: pd.DataFrame) -> None:
    floats = [str(name) for name, dtype in frame.dtypes.items() if dtype.kind in "fc"]
    if floats:
        raise TypeError(f"float columns in an export (money and units must stay exact): {floats}")


def frame_to_csv(frame: pd.DataFrame) -> bytes:
    frame_check_no_float(frame)
    return frame.to_csv(index=False, lineterminator="\n").encode("utf-8")


def frame_to_xlsx(frame: pd.DataFrame, *, sheet_name: str = "Cap table") -> bytes:
    """Numbers as number cells, formatted with exactly their places (money: the currency's,
    units: the offering's quantum, percentages: 4)."""
    frame_check_no_float(frame)
    buffer = io.BytesIO()
    with pd.ExcelWriter(buffer, engine="openpyxl") as writer:
        frame.to_excel(writer, sheet_name=sheet_name, index=False)
        sheet = writer.sheets[sheet_name]
        formats = {
            "units": _places_format(quanta_exponent(int(frame.attrs.get("quanta_per_unit", 1)))),
            "percent_of_issued": _places_format(4),
            "cost_basis": _places_format(
                currency_exponent(str(frame.attrs.get("currency", "USD")))
            ),
            "quanta": "0",
            "investor_id": "0",
        }
        for index, name in enumerate(frame.columns, start=1):
            letter = sheet.cell(row=1, column=index).column_letter
            width = max([len(str(name)), *(len(str(v)) for v in frame[name])]) + 2
            sheet.column_dimensions[letter].width = min(width, 60)
            number_format = formats.get(str(name))
            if number_format:
                for (cell,) in sheet.iter_rows(min_row=2, min_col=index, max_col=index):
                    cell.number_format = number_format
        sheet.freeze_panes = "A2"
    return buffer.getvalue()


def _places_format(places: int) -> str:
    return "#,##0" + ("." + "0" * places if places else "")


def frame_export(frame: pd.DataFrame, file_format: ExportFormat) -> bytes:
    return frame_to_csv(frame) if file_format == "csv" else frame_to_xlsx(frame)


def captable_export_response(
    *, offering: Offering, as_of: datetime, file_format: ExportFormat
) -> HttpResponse:
    """The cap table as a downloadable CSV or XLSX file."""
    content = frame_export(captable_frame(offering=offering, as_of=as_of), file_format)
    stamp = as_of.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")
    response = HttpResponse(content, content_type=CONTENT_TYPES[file_format])
    response["Content-Disposition"] = (
        f'attachment; filename="captable-{offering.slug}-{stamp}.{file_format}"'
    )
    return response
