"""API schemas for statements and their batches."""

from __future__ import annotations

from datetime import date, datetime
from typing import Literal

from ninja import Schema
from pydantic import Field

from common.schemas import ErrorOut, StrictSchema, ValidationErrorOut
from reports.models import Statement, StatementBatch, StatementBatchItem

READ_ERRORS: dict[int, type[Schema]] = {
    401: ErrorOut,
    403: ErrorOut,
    404: ErrorOut,
    422: ValidationErrorOut,
}
WRITE_ERRORS: dict[int, type[Schema]] = {
    400: ErrorOut,
    401: ErrorOut,
    403: ErrorOut,
    404: ErrorOut,
    409: ErrorOut,
    422: ValidationErrorOut,
}


class StatementBatchIn(StrictSchema):
    period: str = Field(
        min_length=4,
        max_length=40,
        examples=["2026-Q3"],
        description="2026-Q3, 2026-07, 2026, or 2026-07-01..2026-09-30; must be over.",
    )
    offering_id: int | None = Field(None, description="Only this offering (default: all).")
    kind: Literal["investor_periodic", "annual_tax_summary"] = Field(
        "investor_periodic",
        description="Periodic statements, or annual tax summaries (period: a year, e.g. 2025).",
    )


class StatementOut(Schema):
    id: int
    kind: str
    period: str
    period_start: date
    period_end: date
    investor_id: int | None
    offering_id: int | None
    subject: str = Field(description="What a one-event document is about: subscription:12…")
    fingerprint: str = Field(description="SHA-256 of the ledger postings it was built from.")
    posting_count: int
    page_count: int
    created_at: datetime
    pdf_url: str

    @staticmethod
    def resolve_pdf_url(statement: Statement) -> str:
        return f"/api/v1/statements/{statement.pk}/pdf"


class TaskProblemOut(Schema):
    investor_id: int
    status: str = Field(description="`failed` (gave up) or `pending` (will be retried).")
    attempts: int
    error: str


class TaskOut(Schema):
    id: int
    kind: str = "statement_batch"
    statement_kind: str
    status: str
    period: str
    offering_id: int | None
    total: int
    done: int
    failed: int
    pending: int
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    problems: list[TaskProblemOut]

    @classmethod
    def of(cls, batch: StatementBatch, problems: list[StatementBatchItem]) -> TaskOut:
        return cls(
            id=batch.pk,
            statement_kind=batch.kind,
            status=batch.status,
            period=batch.period,
            offering_id=batch.offering_id,
            total=batch.total,
            done=batch.done,
            failed=batch.failed,
            pending=batch.total - batch.done - batch.failed,
            created_at=batch.created_at,
            started_at=batch.started_at,
            finished_at=batch.finished_at,
            problems=[
                TaskProblemOut(
                    investor_id=item.investor_id,
                    status=item.status,
                    attempts=item.attempts,
                    error=item.last_error,
                )
                for item in problems
            ],
        )
