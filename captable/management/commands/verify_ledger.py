from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from captable.seals import ledger_seal_all
from captable.verification import ledger_verify


class Command(BaseCommand):
    help = "Verify every hash chain and ledger invariant; exit non-zero on any violation."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--seal-first",
            action="store_true",
            help="Seal committed entries still awaiting their seal before verifying.",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        if options["seal_first"]:
            ledger_seal_all()
        report = ledger_verify()
        self.stdout.write(report.summary())
        if not report.ok:
            raise CommandError(
                f"ledger verification failed; first bad entry: #{report.first_bad_entry_id}"
            )
