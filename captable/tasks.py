"""Scheduled captable work. Safe to run twice: sealing only takes unsealed entries, and an
expiry is a compare-and-swap."""

from __future__ import annotations

from celery import shared_task

from captable.seals import ledger_seal_all
from captable.subscriptions import subscriptions_expire_due


@shared_task(name="captable.seal_ledger", acks_late=True)
def seal_ledger() -> int:
    """Backstop for after-commit sealing (a process that died between commit and seal)."""
    return ledger_seal_all()


@shared_task(name="captable.expire_subscriptions", acks_late=True)
def expire_subscriptions() -> int:
    """Expire unfunded reservations past their time and promote the waitlists; safe to run
    twice (each expiry is a compare-and-swap)."""
    return len(subscriptions_expire_due())
