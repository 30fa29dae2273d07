"""Background work for statements. Every task fetches by id and calls a service; each is
safe to run twice (see `reports/services.py`), acknowledged late and re-queued if its worker
dies (`CELERY_TASK_ACKS_LATE`, `CELERY_TASK_REJECT_ON_WORKER_LOST`, set here too)."""

from __future__ import annotations

from typing import Any

from celery import Task, shared_task
from celery.signals import worker_process_init

from common.errors import DomainError
from reports import services
from reports.pdf import pdf_warm_up

# Transient failures (database restarts, storage hiccups) get a few tries, spaced out.
ITEM_RETRIES_MAX = 3
ITEM_RETRY_BACKOFF_SECONDS = (5, 30, 120)


@worker_process_init.connect
def _warm_renderer(**_: Any) -> None:
    """Each worker process imports WeasyPrint and builds fonts once, before its first task."""
    pdf_warm_up()


@shared_task(name=services.TASK_BATCH_START, acks_late=True, reject_on_worker_lost=True)
def statement_batch_start(batch_id: int) -> int:
    return services.statement_batch_start(batch_id=batch_id)


@shared_task(
    name=services.TASK_BATCH_ITEM,
    bind=True,
    acks_late=True,
    reject_on_worker_lost=True,
    max_retries=ITEM_RETRIES_MAX,
)
def statement_batch_item(self: Task[Any, Any], batch_id: int, investor_id: int) -> Any:
    """One investor's statement. A refusal (DomainError: the data says no) fails the item at
    once; anything else is retried, and the last failure is recorded on the item and counted
    on the batch: never dropped silently."""
    try:
        return services.statement_batch_item_run(batch_id=batch_id, investor_id=investor_id)
    except DomainError as error:
        services.statement_batch_item_failure(
            batch_id=batch_id,
            investor_id=investor_id,
            error=f"{error.code}: {error}",
            is_final=True,
        )
        return "failed"
    except Exception as error:
        retries = self.request.retries
        is_final = retries >= ITEM_RETRIES_MAX
        services.statement_batch_item_failure(
            batch_id=batch_id, investor_id=investor_id, error=repr(error), is_final=is_final
        )
        if is_final:
            return "failed"
        countdown = ITEM_RETRY_BACKOFF_SECONDS[min(retries, len(ITEM_RETRY_BACKOFF_SECONDS) - 1)]
        if self.request.is_eager:
            # In-process (no broker): hand the retry back to `apply`, which runs it at once.
            # Raising it would propagate out of `apply` (task_eager_propagates is on).
            return self.retry(exc=error, countdown=countdown, throw=False)
        raise self.retry(exc=error, countdown=countdown) from error


@shared_task(
    name=services.TASK_NOTIFY,
    acks_late=True,
    reject_on_worker_lost=True,
    autoretry_for=(Exception,),
    retry_backoff=True,
    max_retries=5,
)
def statement_notify(statement_id: int) -> bool:
    return services.statement_notify(statement_id=statement_id)
