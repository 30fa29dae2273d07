from __future__ import annotations

from celery import shared_task

from common.idempotency import idempotency_records_purge
from common.outbox import outbox_relay as relay_pending


@shared_task(name="common.outbox_relay", acks_late=True)
def outbox_relay() -> int:
    return relay_pending()


@shared_task(name="common.idempotency_purge", acks_late=True)
def idempotency_purge() -> int:
    return idempotency_records_purge()
