from __future__ import annotations

from celery import shared_task

from common.outbox import outbox_relay as relay_pending


@shared_task(name="common.outbox_relay", acks_late=True)
def outbox_relay() -> int:
    return relay_pending()
