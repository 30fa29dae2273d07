"""`manage.py generate_statements --period 2026-Q3 [--offering ID]`: the same batch as
`POST /statements/batches`, from the command line, with a progress bar.

Without a broker (the embedded default), or with `--in-process`, the statements are rendered
here, one after another. With a broker the batch is started through the outbox like the API
does, and the command follows its progress until it finishes (`--no-wait` returns at once).
`--kind annual_tax_summary --period 2025` makes every paid investor's tax summary for a year;
`--kind captable_report --period 2026-09-30 --offering ID` renders an offering's cap-table
report as of that day instead. Confirmations and distribution notices are about one event and
are not made in batches.
"""

from __future__ import annotations

import sys
import time
from typing import Any

from django.conf import settings
from django.core.files.storage import default_storage
from django.core.management.base import BaseCommand, CommandError, CommandParser

from common.errors import DomainError
from reports import services
from reports.commands_progress import progress_bar
from reports.kinds import REGISTRY, StatementScope
from reports.models import BatchStatus, ItemStatus, Statement, StatementBatch, StatementKind
from reports.periods import period_parse

POLL_SECONDS = 0.5


class Command(BaseCommand):
    help = "Generate every investor's statement for a period (or one cap-table report)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--period", required=True, help="2026-Q3, 2026-07, 2026, a range…")
        parser.add_argument("--offering", type=int, default=None, help="Offering id.")
        parser.add_argument(
            "--kind",
            choices=sorted(REGISTRY),
            default=StatementKind.INVESTOR_PERIODIC,
        )
        parser.add_argument(
            "--in-process", action="store_true", help="Render here even when a broker is set."
        )
        parser.add_argument(
            "--no-wait", action="store_true", help="With a broker: start and return."
        )

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            if options["kind"] == StatementKind.CAPTABLE_REPORT:
                self._captable_report(options["period"], options["offering"])
                return
            in_process = settings.CELERY_TASK_ALWAYS_EAGER or options["in_process"]
            batch = services.statement_batch_create(
                requested_by=None,
                period=options["period"],
                offering_id=options["offering"],
                start_in_background=not in_process,
                kind=options["kind"],
            )
        except DomainError as error:
            raise CommandError(error.detail) from None
        self.stdout.write(f"Batch #{batch.pk}: statements for {batch.period}")
        if in_process:
            self._run_here(batch)
        elif options["no_wait"]:
            self.stdout.write(f"Started; follow it with GET /api/v1/tasks/{batch.pk}")
            return
        else:
            self._follow(batch)
        self._summary(batch)

    def _captable_report(self, period: str, offering_id: int | None) -> None:
        if offering_id is None:
            raise CommandError("--offering is required for a cap-table report.")
        scope = StatementScope(
            kind=StatementKind.CAPTABLE_REPORT,
            period=period_parse(period),
            offering_id=offering_id,
        )
        generated = services.statement_generate(scope=scope)
        verb = "Generated" if generated.created else "Already generated"
        self.stdout.write(f"{verb}: {_location(generated.statement)}")

    def _run_here(self, batch: StatementBatch) -> None:
        total = services.statement_batch_start(batch_id=batch.pk, enqueue_items=False)
        done = failed = 0
        self._draw(done, failed, total)
        pending = batch.items.filter(status=ItemStatus.PENDING).order_by("investor_id")
        for investor_id in pending.values_list("investor_id", flat=True):
            try:
                services.statement_batch_item_run(batch_id=batch.pk, investor_id=investor_id)
                done += 1
            except Exception as error:  # recorded on the item and counted, then go on
                services.statement_batch_item_failure(
                    batch_id=batch.pk, investor_id=investor_id, error=repr(error), is_final=True
                )
                failed += 1
            self._draw(done, failed, total)
        self._end_bar()

    def _follow(self, batch: StatementBatch) -> None:
        while True:
            batch.refresh_from_db()
            self._draw(batch.done, batch.failed, batch.total)
            if batch.status not in (BatchStatus.PENDING, BatchStatus.RUNNING):
                break
            time.sleep(POLL_SECONDS)
        self._end_bar()

    def _draw(self, done: int, failed: int, total: int) -> None:
        bar = progress_bar(done=done, failed=failed, total=total)
        if sys.stdout.isatty():
            self.stdout.write(f"\r{bar}", ending="")
            self.stdout.flush()
        elif done + failed in (0, total) or (done + failed) % max(total // 10, 1) == 0:
            self.stdout.write(bar)

    def _end_bar(self) -> None:
        if sys.stdout.isatty():
            self.stdout.write("")

    def _summary(self, batch: StatementBatch) -> None:
        batch.refresh_from_db()
        self.stdout.write(
            f"Batch #{batch.pk} {batch.status}: {batch.done} done, {batch.failed} failed "
            f"of {batch.total}"
        )
        for item in batch.items.exclude(last_error="").exclude(status=ItemStatus.DONE):
            self.stdout.write(f"  investor {item.investor_id} failed: {item.last_error}")
        for statement in Statement.objects.filter(
            pk__in=batch.items.filter(status=ItemStatus.DONE).values("statement_id")
        ).order_by("investor_id"):
            self.stdout.write(f"  investor {statement.investor_id}: {_location(statement)}")


def _location(statement: Statement) -> str:
    """The file's local path when storage is local, else its name in the storage."""
    name = str(statement.file.name)
    try:
        return str(default_storage.path(name))
    except NotImplementedError:
        return name
