"""Scheduled work for offerings. Tasks call services and are safe to run twice."""

from __future__ import annotations

from celery import shared_task

from offerings.services import offerings_open_due


@shared_task(name="offerings.open_due", acks_late=True)
def open_due() -> list[int]:
    """Take approved offerings whose opens_at has passed live (run by Celery beat)."""
    return offerings_open_due()
