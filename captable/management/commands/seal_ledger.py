from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand

from captable.seals import ledger_seal_all


class Command(BaseCommand):
    help = "Seal committed ledger entries that are still awaiting their seal."

    def handle(self, *args: Any, **options: Any) -> None:
        self.stdout.write(f"sealed {ledger_seal_all()} entries")
