"""Scheduled ledger work. Safe to run twice: sealing only takes unsealed entries."""

from __future__ import annotations

from celery import shared_task

from captable.seals import ledger_seal_all


@shared_task(name="captable.seal_ledger", acks_late=True)
def seal_ledger() -> int:
    """Backstop for after-commit sealing (a process that died between commit and seal)."""
    return ledger_seal_all()
