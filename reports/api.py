"""HTTP for statements: bulk generation (staff), progress, and downloads (own only).

No `from __future__ import annotations` here: ninja reads the parameter annotations at import
time, and `@paginate` re-wraps the view.
"""

from django.db.models import QuerySet
from django.http import FileResponse, HttpRequest
from ninja import Query, Router, Schema, Status
from ninja.pagination import paginate

from common.auth import staff_required
from common.pagination import BoundedLimitOffsetPagination
from reports import selectors, services
from reports.models import Statement
from reports.schemas import READ_ERRORS, WRITE_ERRORS, StatementBatchIn, StatementOut, TaskOut

# Absolute paths (/statements…, /tasks…): mounted with an empty prefix.
reports_router = Router(tags=["statements"])

PAGE_SIZE_MAX = 100
PDF_RESPONSE = {
    "responses": {
        "200": {
            "description": "The statement as a PDF file.",
            "content": {"application/pdf": {"schema": {"type": "string", "format": "binary"}}},
        }
    }
}


class StatementFilters(Schema):
    investor_id: int | None = None
    period: str | None = None
    kind: str | None = None


@reports_router.post("/statements/batches", response={202: TaskOut, **WRITE_ERRORS})
def statement_batch_create(request: HttpRequest, payload: StatementBatchIn) -> Status[TaskOut]:
    """Staff: generate every investor's statement for a period (all offerings, or one) in the
    background, one task per investor. Follow it at `GET /tasks/{id}`. 409 while a batch for
    the same period and offering is still running; running one again later only adds the
    statements that are missing."""
    batch = services.statement_batch_create(
        requested_by=staff_required(request.user),
        period=payload.period,
        offering_id=payload.offering_id,
        kind=payload.kind,
    )
    batch.refresh_from_db()  # in-process (no broker) it may already be done
    return Status(202, TaskOut.of(batch, selectors.batch_problems(batch=batch)))


@reports_router.get("/tasks/{task_id}", response={200: TaskOut, **READ_ERRORS})
def task_detail(request: HttpRequest, task_id: int) -> TaskOut:
    """Staff: a statement batch's progress (done / failed / pending of total) and what went
    wrong for whom."""
    batch = selectors.batch_get(user=request.user, batch_id=task_id)
    return TaskOut.of(batch, selectors.batch_problems(batch=batch))


@reports_router.get("/statements", response={200: list[StatementOut], **READ_ERRORS})
@paginate(BoundedLimitOffsetPagination, max_limit=PAGE_SIZE_MAX)
def statement_list(request: HttpRequest, filters: Query[StatementFilters]) -> QuerySet[Statement]:
    """Your statements, newest period first (staff: everyone's; filter by `investor_id`)."""
    return selectors.statement_list(
        user=request.user,
        investor_id=filters.investor_id,
        period=filters.period,
        kind=filters.kind,
    )


@reports_router.get("/statements/{statement_id}", response={200: StatementOut, **READ_ERRORS})
def statement_detail(request: HttpRequest, statement_id: int) -> Statement:
    return selectors.statement_get(user=request.user, statement_id=statement_id)


@reports_router.get(
    "/statements/{statement_id}/pdf",
    response={200: None, **READ_ERRORS},
    openapi_extra=PDF_RESPONSE,
)
def statement_pdf(request: HttpRequest, statement_id: int) -> FileResponse:
    """The PDF. Only your own (staff: any); anyone else's is a 404, as if it did not exist."""
    statement = selectors.statement_get(user=request.user, statement_id=statement_id)
    filename = f"brickbook-{statement.kind.replace('_', '-')}-{statement.period}.pdf"
    return FileResponse(
        statement.file.open("rb"),
        as_attachment=True,
        filename=filename.replace("..", "_to_"),
        content_type="application/pdf",
    )
