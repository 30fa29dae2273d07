"""Transactional outbox: background work recorded in the same transaction as the change.

`outbox_enqueue` must run inside the service's transaction; the row commits (or rolls back)
with the change. After commit it is relayed to Celery. If the process dies between commit and
relay, the row stays `pending` and the periodic `outbox_relay` task (Celery beat) sends it:
no work is lost. Tasks are at-least-once, so every task must be idempotent.
"""

from __future__ import annotations

import functools
import logging
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from common.models import OutboxMessage

logger = logging.getLogger(__name__)


def outbox_enqueue(
    *, task_name: str, kwargs: dict[str, Any], dedupe_key: str | None = None
) -> OutboxMessage:
    if not connection.in_atomic_block:
        raise RuntimeError("outbox_enqueue must be called inside the service's transaction")
    if dedupe_key is not None:
        message, _ = OutboxMessage.objects.get_or_create(
            dedupe_key=dedupe_key, defaults={"task_name": task_name, "kwargs": kwargs}
        )
    else:
        message = OutboxMessage.objects.create(task_name=task_name, kwargs=kwargs)
    message_id = message.pk
    transaction.on_commit(lambda: outbox_relay_one(message_id=message_id))
    return message


def _claim(message_id: int) -> OutboxMessage | None:
    """Mark a pending message dispatched (once, even with several relays running) and
    return it; with a broker the message is handed to it before the claim commits."""
    from config.celery import app  # the one Celery app; imported late to keep common app-free

    with transaction.atomic():
        message = (
            OutboxMessage.objects.select_for_update(skip_locked=True)
            .filter(pk=message_id, status=OutboxMessage.Status.PENDING)
            .first()
        )
        if message is None:
            return None
        if not settings.CELERY_TASK_ALWAYS_EAGER:
            # If the broker refuses, the exception rolls the claim back: still pending.
            # If the commit fails after sending, the task is sent twice: tasks are idempotent.
            app.send_task(message.task_name, kwargs=message.kwargs)
        OutboxMessage.objects.filter(pk=message_id).update(
            status=OutboxMessage.Status.DISPATCHED,
            dispatched_at=timezone.now(),
            attempts=message.attempts + 1,
        )
        return message


def outbox_relay_one(*, message_id: int) -> bool:
    """Relay one pending message; True if this call relayed it."""
    try:
        message = _claim(message_id)
    except Exception as error:
        logger.exception("outbox message %s could not be relayed", message_id)
        OutboxMessage.objects.filter(pk=message_id).update(last_error=repr(error)[:2000])
        return False
    if message is None:
        return False
    if settings.CELERY_TASK_ALWAYS_EAGER:
        _run_in_process(message)
    return True


@functools.cache
def _discover_tasks_once() -> None:
    """Autodiscovery of the apps' tasks modules happens when a worker starts; an in-process
    run must trigger it, once per process: each call re-sends Celery's import signal, on
    which its Django fixup runs every system check (seconds, every time)."""
    from config.celery import app

    app.loader.import_default_modules()


def _run_in_process(message: OutboxMessage) -> None:
    """Embedded default: run the task here, outside any transaction, like a worker would.
    A failure is recorded on the row and logged, never raised into the committed request."""
    from config.celery import app

    _discover_tasks_once()
    # throw=False: the failure is recorded below, never raised into the committed request.
    result = app.tasks[message.task_name].apply(kwargs=message.kwargs, throw=False)
    if result.failed():
        logger.error(
            "task %s from outbox %s failed: %r", message.task_name, message.pk, result.result
        )
        OutboxMessage.objects.filter(pk=message.pk).update(last_error=repr(result.result)[:2000])


def outbox_relay(*, batch_size: int | None = None) -> int:
    """Relay every pending message, oldest first; returns how many were sent."""
    limit = batch_size or settings.OUTBOX_RELAY_BATCH_SIZE
    pending_ids = list(
        OutboxMessage.objects.filter(status=OutboxMessage.Status.PENDING)
        .order_by("created_at", "pk")
        .values_list("pk", flat=True)[:limit]
    )
    return sum(outbox_relay_one(message_id=message_id) for message_id in pending_ids)
