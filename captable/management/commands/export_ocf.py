"""`manage.py export_ocf OFFERING DIR [--as-of TS]`: the offering's cap table as an Open Cap
Format package (Manifest, Stakeholders, StockClasses, Transactions) in DIR.

The files are written into a temporary folder beside DIR, validated there against the OCF
schemas (`OCF_SCHEMA_DIR`), and only then moved to DIR; if any file is invalid the command
prints every problem, leaves nothing at DIR and exits non-zero. DIR must not exist or be empty.
The files name investors: treat the folder as personal data.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from captable import ocf
from captable.captable_api import as_of_parse, offering_find
from common.errors import DomainError


class Command(BaseCommand):
    help = "Export an offering's cap table as validated Open Cap Format (OCF) files into DIR."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("offering", help="Offering id or slug.")
        parser.add_argument("directory", help="Folder to create (must not exist, or be empty).")
        parser.add_argument(
            "--as-of",
            dest="as_of",
            default=None,
            help="ISO-8601 instant (default now); naive = the offering's time zone.",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            offering = offering_find(str(options["offering"]))
            moment = as_of_parse(options["as_of"], time_zone=offering.time_zone)
        except DomainError as error:
            raise CommandError(error.detail) from None
        directory = Path(options["directory"])
        try:
            package = ocf.ocf_export(offering=offering, directory=directory, as_of=moment)
        except (ocf.OcfInvalid, ocf.OcfExportError, ocf.OcfSchemaMissing) as error:
            raise CommandError(str(error)) from None
        transactions = package.documents[ocf.TRANSACTIONS_FILE]["items"]
        stakeholders = package.documents[ocf.STAKEHOLDERS_FILE]["items"]
        self.stdout.write(
            f"Wrote {len(package.contents)} OCF files to {directory} "
            f"({len(stakeholders)} stakeholders, {len(transactions)} transactions); "
            "every file validates."
        )
