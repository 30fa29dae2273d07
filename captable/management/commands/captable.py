"""`manage.py captable OFFERING [--as-of TS] [--format table|csv|json]`.

OFFERING is an id or a slug; `--as-of` takes the same values as the API's `as_of` (an instant,
a naive wall-clock time in the offering's time zone, or a bare date meaning the end of that
day there; default now). `json` prints exactly what `GET /offerings/{id}/captable` returns;
`csv` one row per holder; `table` an aligned text table with totals, for people.
"""

from __future__ import annotations

import csv
import io
import json
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from captable.captable_api import CapTableOut, as_of_parse, captable_report, offering_find
from captable.selectors import percent_of
from common.errors import DomainError

CSV_COLUMNS = (
    "investor_id",
    "investor_legal_name",
    "units",
    "quanta",
    "percent",
    "cost_basis_amount",
    "cost_basis_currency",
)


class Command(BaseCommand):
    help = "Print an offering's cap table as of an instant (table, csv or json)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("offering", help="Offering id or slug.")
        parser.add_argument(
            "--as-of",
            dest="as_of",
            default=None,
            help="ISO-8601 instant; naive = the offering's time zone; a date = end of that day.",
        )
        parser.add_argument("--format", choices=("table", "csv", "json"), default="table")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            offering = offering_find(str(options["offering"]))
            moment = as_of_parse(options["as_of"], time_zone=offering.time_zone)
        except DomainError as error:
            raise CommandError(error.detail) from None
        report = captable_report(offering=offering, as_of=moment)
        output_format = options["format"]
        if output_format == "json":
            self.stdout.write(json.dumps(report.model_dump(mode="json"), indent=2))
        elif output_format == "csv":
            self.stdout.write(captable_csv(report), ending="")
        else:
            self.stdout.write(captable_text(report, title=offering.title), ending="")


def captable_csv(report: CapTableOut) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for row in report.rows:
        writer.writerow(
            [
                row.investor_id,
                row.investor_legal_name,
                row.units,
                row.quanta,
                row.percent,
                row.cost_basis.amount,
                row.cost_basis.currency,
            ]
        )
    return buffer.getvalue()


def captable_text(report: CapTableOut, *, title: str) -> str:
    header = ("Investor", "Legal name", "Units", "Percent", "Cost basis")
    lines = [
        (
            str(row.investor_id),
            row.investor_legal_name,
            row.units,
            row.percent,
            f"{row.cost_basis.amount} {row.cost_basis.currency}",
        )
        for row in report.rows
    ]
    total_percent = percent_of(report.issued_quanta, report.issued_quanta)
    total = (
        "Total",
        f"{len(report.rows)} holder{'' if len(report.rows) == 1 else 's'}",
        report.issued_units,
        f"{total_percent:.4f}",
        f"{report.cost_basis_total.amount} {report.cost_basis_total.currency}",
    )
    widths = [max(len(line[i]) for line in [header, *lines, total]) for i in range(len(header))]
    right_aligned = (True, False, True, True, True)

    def render(cells: tuple[str, ...]) -> str:
        return "  ".join(
            cell.rjust(width) if right else cell.ljust(width)
            for cell, width, right in zip(cells, widths, right_aligned, strict=True)
        ).rstrip()

    rule = "  ".join("-" * width for width in widths)
    out = [
        f"{title} (offering {report.offering_id}) as of {report.as_of} ({report.time_zone})",
        f"Authorized {report.authorized_units} units; treasury {report.treasury_units}; "
        f"issued {report.issued_units}",
        "",
        render(header),
        rule,
        *(render(line) for line in lines),
        rule,
        render(total),
    ]
    return "\n".join(out) + "\n"
