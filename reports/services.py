"""Writes of the reports app: statements (render, store, record, notify) and the batches that
generate them. Never changes ledger state.

Shape of a statement's life: build the data and render the PDF *outside* any transaction
(slow, pure), upload the file, then one short transaction records the row and enqueues the
investor's email through the outbox (sent after commit). A duplicate attempt (a re-delivered
task, a re-run batch) finds the existing row, or loses the unique constraint and deletes its
own upload: there is never a second statement for the same scope.

Batches: `statement_batch_create` records the batch and enqueues its start; the start lists
the investors to report, records one item each and enqueues one task each (all through the
outbox, in the transaction that records them). Item and batch statuses change only by
compare-and-swap, so counters stay exact whatever runs twice.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass

from django.conf import settings
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.core.mail import send_mail
from django.db import IntegrityError, transaction
from django.db.models import Case, F, Q, Value, When
from django.utils import timezone

from common.errors import Conflict, NotFound, ValidationFailed
from common.models import User
from common.outbox import outbox_enqueue
from offerings.models import Offering
from reports.event_statements import require_calendar_year
from reports.kinds import StatementScope, scope_check
from reports.models import (
    BatchStatus,
    ItemStatus,
    Statement,
    StatementBatch,
    StatementBatchItem,
    StatementKind,
)
from reports.periods import Period, period_parse
from reports.render import statement_pdf
from reports.selectors import investors_paid_in, investors_to_report
from reports.statements import require_period_over

logger = logging.getLogger(__name__)

TASK_BATCH_START = "reports.statement_batch_start"
TASK_BATCH_ITEM = "reports.statement_batch_item"
TASK_NOTIFY = "reports.statement_notify"
ERROR_TEXT_MAX = 2000


# --- one statement --------------------------------------------------------------------------


def _equals_or_null(field: str, value: int | None) -> Q:
    return Q(**{f"{field}__isnull": True}) if value is None else Q(**{field: value})


def statement_find(scope: StatementScope) -> Statement | None:
    return Statement.objects.filter(
        _equals_or_null("investor_id", scope.investor_id),
        _equals_or_null("offering_id", scope.offering_id),
        kind=scope.kind,
        period_start=scope.period.start,
        period_end=scope.period.end,
        subject=scope.subject,
    ).first()


def statement_file_name(scope: StatementScope) -> str:
    """Unique per attempt, so two racing attempts never write over each other's file."""
    recipient = f"investor-{scope.investor_id}" if scope.investor_id else "offering"
    offering = f"-offering-{scope.offering_id}" if scope.offering_id else ""
    period = scope.period.label.replace("..", "_to_")
    subject = f"-{scope.subject.replace(':', '-')}" if scope.subject else ""
    unique = uuid.uuid4().hex[:12]
    return f"statements/{period}/{scope.kind}/{recipient}{offering}{subject}-{unique}.pdf"


@dataclass(frozen=True)
class GeneratedStatement:
    statement: Statement
    created: bool


def statement_generate(*, scope: StatementScope, batch_id: int | None = None) -> GeneratedStatement:
    """The statement of `scope`, generated once. Call it outside a transaction: rendering
    and the upload must not hold one open."""
    spec = scope_check(scope)
    existing = statement_find(scope)
    if existing is not None:
        return GeneratedStatement(existing, created=False)
    data = spec.build(scope)
    rendered = statement_pdf(spec, data)
    if rendered.refused_urls:  # the templates are ours: a refusal means one of them is wrong
        logger.error("statement %s referenced refused URLs: %s", scope, rendered.refused_urls)
    name = default_storage.save(statement_file_name(scope), ContentFile(rendered.content))
    try:
        with transaction.atomic():
            statement = Statement.objects.create(
                kind=scope.kind,
                investor_id=scope.investor_id,
                offering_id=scope.offering_id,
                period=scope.period.label,
                period_start=scope.period.start,
                period_end=scope.period.end,
                subject=scope.subject,
                file=name,
                fingerprint=data.fingerprint.sha256,
                posting_count=data.fingerprint.posting_count,
                page_count=rendered.page_count,
                batch_id=batch_id,
            )
            if scope.investor_id is not None:
                outbox_enqueue(
                    task_name=TASK_NOTIFY,
                    kwargs={"statement_id": statement.pk},
                    dedupe_key=f"statement-notify:{statement.pk}",
                )
    except IntegrityError:
        default_storage.delete(name)
        winner = statement_find(scope)
        if winner is None:
            raise
        return GeneratedStatement(winner, created=False)
    return GeneratedStatement(statement, created=True)


def statement_notify(*, statement_id: int) -> bool:
    """Email the investor that their statement is ready (a link, never the PDF: email is not
    a safe channel for it). At least once: marked after sending, so a crash in between
    sends it again rather than never."""
    statement = Statement.objects.select_related("investor__user").filter(pk=statement_id).first()
    if statement is None or statement.investor is None or statement.notified_at is not None:
        return False
    investor = statement.investor
    platform = getattr(settings, "REPORTS_PLATFORM_NAME", "Brickbook")
    send_mail(
        subject=f"Your {platform} statement for {statement.period} is ready",
        message=(
            f"Dear {investor.legal_name},\n\n"
            f"Your {statement.get_kind_display().lower()} for {statement.period} is ready. "
            f"Sign in to download it: GET /api/v1/statements/{statement.pk}/pdf\n\n"
            f"Ledger fingerprint: {statement.fingerprint}\n\n— {platform}\n"
        ),
        from_email=None,
        recipient_list=[investor.user.email],
    )
    changed = Statement.objects.filter(pk=statement.pk, notified_at__isnull=True).update(
        notified_at=timezone.now()
    )
    return changed == 1


# --- batches --------------------------------------------------------------------------------


# Kinds generated in bulk for a period; the others are about one event (a subscription, a
# distribution) or one offering (the cap-table report) and are generated one at a time.
BATCH_KINDS = (StatementKind.INVESTOR_PERIODIC, StatementKind.ANNUAL_TAX_SUMMARY)


def _check_batch_kind(kind: str, period: Period, offering_id: int | None) -> None:
    if kind not in BATCH_KINDS:
        raise ValidationFailed(
            f"Statements of kind {kind!r} are not generated in batches; batches make "
            f"{', '.join(BATCH_KINDS)}.",
            code="batch_kind_invalid",
        )
    if kind == StatementKind.ANNUAL_TAX_SUMMARY:
        require_calendar_year(period)
        if offering_id is not None:
            raise ValidationFailed(
                "An annual tax summary covers every offering: leave the offering out.",
                code="offering_not_allowed",
            )


def statement_batch_create(
    *,
    requested_by: User | None,
    period: str,
    offering_id: int | None = None,
    start_in_background: bool = True,
    kind: str = StatementKind.INVESTOR_PERIODIC,
) -> StatementBatch:
    """Record a batch of one kind for a period (one offering, or all) and enqueue its start.
    Refused while another batch of the same kind, period and scope is still open (409)."""
    parsed = period_parse(period)
    _check_batch_kind(kind, parsed, offering_id)
    require_period_over(parsed)
    if offering_id is not None and not Offering.objects.filter(pk=offering_id).exists():
        raise NotFound(f"Offering {offering_id} not found.", code="offering_not_found")
    with transaction.atomic():
        try:
            with transaction.atomic():
                batch = StatementBatch.objects.create(
                    kind=kind,
                    period=parsed.label,
                    period_start=parsed.start,
                    period_end=parsed.end,
                    offering_id=offering_id,
                    requested_by=requested_by,
                )
        except IntegrityError:
            raise _open_batch_conflict(kind, parsed, offering_id) from None
        if start_in_background:
            outbox_enqueue(
                task_name=TASK_BATCH_START,
                kwargs={"batch_id": batch.pk},
                dedupe_key=f"statement-batch:{batch.pk}",
            )
    return batch


def _open_batch_conflict(kind: str, period: Period, offering_id: int | None) -> Conflict:
    open_batch = StatementBatch.objects.filter(
        _equals_or_null("offering_id", offering_id),
        kind=kind,
        period_start=period.start,
        period_end=period.end,
        status__in=[BatchStatus.PENDING, BatchStatus.RUNNING],
    ).first()
    return Conflict(
        f"A batch for {period.label} is already running; follow it at /tasks/{{id}}.",
        code="batch_already_open",
        batch_id=open_batch.pk if open_batch else None,
    )


def batch_period(batch: StatementBatch) -> Period:
    return Period(batch.period, batch.period_start, batch.period_end)


def statement_batch_start(*, batch_id: int, enqueue_items: bool = True) -> int:
    """List the investors to report, record one item each and (by default) enqueue one task
    each. Safe to run twice: only a pending batch starts. Returns the number of items."""
    batch = StatementBatch.objects.filter(pk=batch_id).first()
    if batch is None or batch.status != BatchStatus.PENDING:
        return 0
    if batch.kind == StatementKind.ANNUAL_TAX_SUMMARY:
        investor_ids = investors_paid_in(period=batch_period(batch))
    else:
        investor_ids = investors_to_report(
            period=batch_period(batch), offering_id=batch.offering_id
        )
    now = timezone.now()
    with transaction.atomic():
        started = StatementBatch.objects.filter(pk=batch_id, status=BatchStatus.PENDING).update(
            status=BatchStatus.RUNNING, total=len(investor_ids), started_at=now
        )
        if started != 1:
            return 0
        StatementBatchItem.objects.bulk_create(
            StatementBatchItem(batch_id=batch_id, investor_id=investor_id, updated_at=now)
            for investor_id in investor_ids
        )
        if enqueue_items:
            for investor_id in investor_ids:
                outbox_enqueue(
                    task_name=TASK_BATCH_ITEM,
                    kwargs={"batch_id": batch_id, "investor_id": investor_id},
                    dedupe_key=f"statement-batch:{batch_id}:investor:{investor_id}",
                )
        _finish_if_complete(batch_id)
    return len(investor_ids)


def statement_batch_item_run(*, batch_id: int, investor_id: int) -> str:
    """Generate one investor's statement for the batch (or find it) and mark the item done.
    Returns the item's status; an item already finished is left as it is."""
    item = (
        StatementBatchItem.objects.select_related("batch")
        .filter(batch_id=batch_id, investor_id=investor_id)
        .first()
    )
    if item is None:
        raise NotFound(f"Batch {batch_id} has no item for investor {investor_id}.")
    if item.status != ItemStatus.PENDING:
        return str(item.status)
    StatementBatchItem.objects.filter(pk=item.pk).update(
        attempts=F("attempts") + 1, updated_at=timezone.now()
    )
    batch = item.batch
    scope = StatementScope(
        kind=batch.kind,
        period=batch_period(batch),
        investor_id=investor_id,
        offering_id=batch.offering_id,
    )
    statement = statement_generate(scope=scope, batch_id=batch.pk).statement
    with transaction.atomic():
        done = StatementBatchItem.objects.filter(pk=item.pk, status=ItemStatus.PENDING).update(
            status=ItemStatus.DONE, statement=statement, updated_at=timezone.now()
        )
        if done == 1:
            StatementBatch.objects.filter(pk=batch_id).update(done=F("done") + 1)
            _finish_if_complete(batch_id)
    return ItemStatus.DONE


def statement_batch_item_failure(
    *, batch_id: int, investor_id: int, error: str, is_final: bool
) -> None:
    """Record a failed attempt on its item; the last one marks the item failed and counts
    it, so a batch always finishes and reports what it could not do."""
    text = (error or "unknown error")[:ERROR_TEXT_MAX]
    now = timezone.now()
    items = StatementBatchItem.objects.filter(
        batch_id=batch_id, investor_id=investor_id, status=ItemStatus.PENDING
    )
    with transaction.atomic():
        if not is_final:
            items.update(last_error=text, updated_at=now)
            return
        if items.update(status=ItemStatus.FAILED, last_error=text, updated_at=now) == 1:
            StatementBatch.objects.filter(pk=batch_id).update(failed=F("failed") + 1)
            _finish_if_complete(batch_id)


def _finish_if_complete(batch_id: int) -> None:
    StatementBatch.objects.filter(
        pk=batch_id, status=BatchStatus.RUNNING, total=F("done") + F("failed")
    ).update(
        status=Case(
            When(failed=0, then=Value(BatchStatus.COMPLETED)),
            default=Value(BatchStatus.COMPLETED_WITH_FAILURES),
        ),
        finished_at=timezone.now(),
    )
