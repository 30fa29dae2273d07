"""Scheduled captable work. Safe to run twice: sealing only takes unsealed entries, and an
expiry (of a reservation or of a reconfirmation) is a compare-and-swap."""

from __future__ import annotations

from celery import shared_task

from captable.seals import ledger_seal_all
from captable.subscriptions import (
    reconfirmations_expire_due,
    subscriptions_expire_due,
    subscriptions_require_reconfirmation,
)
from common.models import User
from offerings.models import Offering, OfferingDocument


@shared_task(name="captable.seal_ledger", acks_late=True)
def seal_ledger() -> int:
    """Backstop for after-commit sealing (a process that died between commit and seal)."""
    return ledger_seal_all()


@shared_task(name="captable.expire_subscriptions", acks_late=True)
def expire_subscriptions() -> int:
    """Expire unfunded reservations past their time and promote the waitlists; safe to run
    twice (each expiry is a compare-and-swap)."""
    return len(subscriptions_expire_due())


@shared_task(name="captable.expire_reconfirmations", acks_late=True)
def expire_reconfirmations() -> int:
    """Cancel and refund the subscriptions not reconfirmed in time after a material change;
    safe to run twice (each cancellation is a compare-and-swap)."""
    return len(reconfirmations_expire_due())


@shared_task(name="captable.require_reconfirmation", acks_late=True)
def require_reconfirmation(
    *, offering_id: int, document_id: int | None = None, actor_id: int | None = None
) -> int:
    """A material change to an offering (enqueued through the outbox by whoever records it,
    e.g. a new document version): ask its signed and funded subscriptions to reconfirm.
    Safe to run twice (a subscription already asked for the same agreement is skipped)."""
    offering = Offering.objects.get(pk=offering_id)
    document = OfferingDocument.objects.get(pk=document_id) if document_id is not None else None
    actor = User.objects.get(pk=actor_id) if actor_id is not None else None
    return len(
        subscriptions_require_reconfirmation(offering=offering, actor=actor, document=document)
    )

