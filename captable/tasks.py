"""Scheduled captable work. Safe to run twice: sealing only takes unsealed entries, and an
expiry (of a reservation or of a reconfirmation) is a compare-and-swap."""

from __future__ import annotations

from celery import shared_task

from captable.closing import early_close_notify, offering_close, offerings_close_due
from captable.distribution_payrun import distribution_pay_run_batched
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


# --- closing -------------------------------------------------------------------------------------


@shared_task(name="captable.close_offering", acks_late=True)
def close_offering(*, offering_id: int) -> bool:
    """Run (or resume) an offering's close once a second staff member approved it (enqueued
    through the outbox). Safe to run twice: every step is a compare-and-swap under a
    deterministic ledger key. True when the offering is closed."""
    closing = offering_close(offering=Offering.objects.get(pk=offering_id), actor=None)
    return closing is not None and closing.completed_at is not None


@shared_task(name="captable.close_due_offerings", acks_late=True)
def close_due_offerings() -> list[int]:
    """Close every live offering past its deadline and resume every unfinished close (Celery
    beat). Safe to run twice and concurrently."""
    return offerings_close_due()


@shared_task(name="captable.notify_early_close", acks_late=True)
def notify_early_close(*, early_close_id: int) -> int:
    """Notice of a Reg CF early close to the investors with commitments (from the outbox)."""
    return early_close_notify(early_close_id=early_close_id)


# --- distributions --------------------------------------------------------------------------------


@shared_task(name="captable.pay_distribution", acks_late=True, reject_on_worker_lost=True)
def pay_distribution(*, distribution_id: int) -> int:
    """Pay every unpaid payout of a funded distribution (enqueued through the outbox when staff
    start the pay run), in batches when there are many. Acknowledged late and re-queued if its
    worker dies: a payout is paid once (its row lock, its ledger key), so a run started again
    pays only what is left."""
    return distribution_pay_run_batched(distribution_id=distribution_id)
