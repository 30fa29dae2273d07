"""Statements (rendered PDFs) and the batches that generate them in the background.

Invariants (database constraints):
- one statement per recipient, kind, period, offering and subject (the subscription or
  distribution a one-event document is about): an investor's statement
  (offering-wide or for all their offerings) and a sponsor's report (investor empty, offering
  set) are each unique, so a re-run batch or a re-delivered task can never add a second one;
- a statement always names its recipient scope (an investor, an offering or both) and a
  period whose end is not before its start; its fingerprint is the SHA-256 (hex) of exactly
  the postings it was built from, so regenerating it gives the same fingerprint;
- a batch never counts more finished items than it has (done + failed <= total), has a
  finish time exactly when it is finished, and at most one batch per kind, period and
  offering is open (pending or running) at a time;
- a batch item (one investor of one batch) is unique per batch and investor; it is done
  exactly when it points at its statement, and a failed item keeps the error that failed it.

Counters and statuses change only by compare-and-swap in `reports/services.py`.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import F, Q
from django.utils import timezone

from investors.models import Investor
from offerings.models import Offering


class StatementKind(models.TextChoices):
    INVESTOR_PERIODIC = "investor_periodic", "Periodic investor statement"
    CAPTABLE_REPORT = "captable_report", "Cap-table report (sponsor)"
    SUBSCRIPTION_CONFIRMATION = "subscription_confirmation", "Subscription confirmation"
    DISTRIBUTION_NOTICE = "distribution_notice", "Distribution notice"
    ANNUAL_TAX_SUMMARY = "annual_tax_summary", "Annual tax summary (informational)"


class Statement(models.Model):
    kind = models.CharField(max_length=32, choices=StatementKind.choices)
    investor = models.ForeignKey(
        Investor, on_delete=models.PROTECT, null=True, blank=True, related_name="statements"
    )
    offering = models.ForeignKey(
        Offering, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    period = models.CharField(max_length=40, help_text="As requested: 2026-Q3, 2026-09-30…")
    period_start = models.DateField()
    period_end = models.DateField()
    # What one-event documents are about ("subscription:12", "distribution:7"); empty for
    # periodic ones. Part of the uniqueness: two events on the same day are two documents.
    subject = models.CharField(max_length=40, blank=True, default="")
    file = models.FileField(max_length=300)
    fingerprint = models.CharField(max_length=64)
    posting_count = models.PositiveIntegerField()
    page_count = models.PositiveSmallIntegerField()
    batch = models.ForeignKey(
        "StatementBatch",
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="statements",
    )
    notified_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        indexes = [
            models.Index(fields=["investor", "-created_at"], name="statement_investor_idx"),
            models.Index(fields=["offering", "-created_at"], name="statement_offering_idx"),
        ]
        constraints = [
            models.CheckConstraint(
                condition=Q(kind__in=StatementKind.values), name="statement_kind_valid"
            ),
            models.CheckConstraint(
                condition=Q(investor__isnull=False) | Q(offering__isnull=False),
                name="statement_has_recipient_scope",
            ),
            models.CheckConstraint(
                condition=Q(period_end__gte=F("period_start")), name="statement_period_ordered"
            ),
            models.UniqueConstraint(
                fields=["investor", "kind", "period_start", "period_end", "offering", "subject"],
                condition=Q(investor__isnull=False, offering__isnull=False),
                name="statement_unique_investor_offering",
            ),
            models.UniqueConstraint(
                fields=["investor", "kind", "period_start", "period_end", "subject"],
                condition=Q(investor__isnull=False, offering__isnull=True),
                name="statement_unique_investor_all_offerings",
            ),
            models.UniqueConstraint(
                fields=["kind", "period_start", "period_end", "offering"],
                condition=Q(investor__isnull=True),
                name="statement_unique_offering_report",
            ),
        ]

    def __str__(self) -> str:
        who = f"investor {self.investor_id}" if self.investor_id else f"offering {self.offering_id}"
        return f"{self.get_kind_display()} {self.period} ({who})"


class BatchStatus(models.TextChoices):
    PENDING = "pending", "Waiting for its investors to be listed"
    RUNNING = "running"
    COMPLETED = "completed"
    COMPLETED_WITH_FAILURES = "completed_with_failures"


OPEN_BATCH_STATUSES = (BatchStatus.PENDING, BatchStatus.RUNNING)
FINISHED_BATCH_STATUSES = (BatchStatus.COMPLETED, BatchStatus.COMPLETED_WITH_FAILURES)


class StatementBatch(models.Model):
    """One bulk run: every investor with something to report for the period (in one
    offering, or in any) gets one task; `total`/`done`/`failed` are its progress."""

    kind = models.CharField(
        max_length=32, choices=StatementKind.choices, default=StatementKind.INVESTOR_PERIODIC
    )
    period = models.CharField(max_length=40)
    period_start = models.DateField()
    period_end = models.DateField()
    offering = models.ForeignKey(
        Offering, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    # Empty when started from the command line (`manage.py generate_statements`).
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    status = models.CharField(
        max_length=24, choices=BatchStatus.choices, default=BatchStatus.PENDING
    )
    total = models.PositiveIntegerField(default=0)
    done = models.PositiveIntegerField(default=0)
    failed = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(default=timezone.now)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name_plural = "statement batches"
        constraints = [
            models.CheckConstraint(
                condition=Q(status__in=BatchStatus.values), name="statementbatch_status_valid"
            ),
            models.CheckConstraint(
                condition=Q(kind__in=StatementKind.values), name="statementbatch_kind_valid"
            ),
            models.CheckConstraint(
                condition=Q(done__lte=F("total") - F("failed")),
                name="statementbatch_progress_within_total",
            ),
            models.CheckConstraint(
                condition=Q(status__in=FINISHED_BATCH_STATUSES, finished_at__isnull=False)
                | (~Q(status__in=FINISHED_BATCH_STATUSES) & Q(finished_at__isnull=True)),
                name="statementbatch_finished_has_time",
            ),
            models.CheckConstraint(
                condition=~Q(status__in=FINISHED_BATCH_STATUSES) | Q(done=F("total") - F("failed")),
                name="statementbatch_finished_counts_everything",
            ),
            models.CheckConstraint(
                condition=Q(period_end__gte=F("period_start")),
                name="statementbatch_period_ordered",
            ),
            models.UniqueConstraint(
                fields=["kind", "period_start", "period_end", "offering"],
                condition=Q(status__in=OPEN_BATCH_STATUSES, offering__isnull=False),
                name="statementbatch_one_open_per_offering",
            ),
            models.UniqueConstraint(
                fields=["kind", "period_start", "period_end"],
                condition=Q(status__in=OPEN_BATCH_STATUSES, offering__isnull=True),
                name="statementbatch_one_open_all_offerings",
            ),
        ]

    def __str__(self) -> str:
        scope = f"offering {self.offering_id}" if self.offering_id else "all offerings"
        return f"batch #{self.pk} {self.period} ({scope}): {self.status}"


class ItemStatus(models.TextChoices):
    PENDING = "pending"
    DONE = "done"
    FAILED = "failed"


class StatementBatchItem(models.Model):
    batch = models.ForeignKey(StatementBatch, on_delete=models.PROTECT, related_name="items")
    investor = models.ForeignKey(Investor, on_delete=models.PROTECT, related_name="+")
    status = models.CharField(max_length=8, choices=ItemStatus.choices, default=ItemStatus.PENDING)
    attempts = models.PositiveSmallIntegerField(default=0)
    last_error = models.TextField(blank=True)
    statement = models.ForeignKey(
        Statement, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        indexes = [models.Index(fields=["batch", "status"], name="statementitem_batch_status")]
        constraints = [
            models.UniqueConstraint(
                fields=["batch", "investor"], name="statementitem_unique_investor"
            ),
            models.CheckConstraint(
                condition=Q(status__in=ItemStatus.values), name="statementitem_status_valid"
            ),
            models.CheckConstraint(
                condition=Q(status=ItemStatus.DONE, statement__isnull=False)
                | (~Q(status=ItemStatus.DONE) & Q(statement__isnull=True)),
                name="statementitem_done_iff_statement",
            ),
            models.CheckConstraint(
                condition=~Q(status=ItemStatus.FAILED) | ~Q(last_error=""),
                name="statementitem_failure_has_error",
            ),
        ]

    def __str__(self) -> str:
        return f"batch #{self.batch_id} investor {self.investor_id}: {self.status}"
