"""Closing an offering: four-eyes close requests, the close itself, and Reg CF early closes.

    live ──(a close request approved by a second staff member, or the deadline)──► closing
    closing ──► closed_funded (subscriptions accepted, units issued)
            └─► closed_failed (every funded subscription refunded, no unit issued)

The outcome is decided once and kept on the offering's `OfferingClosing` row:

- funded when the paid, no-longer-withdrawable money reaches the target, or the offering keeps
  what it raises (and raised something); failed when an all-or-nothing offering cannot reach
  its target any more;
- money that may still be withdrawn does not count either way: a funded ECSP subscription
  inside its reflection period (`revocable_until` in the future), or one asked to reconfirm a
  material change. While the outcome depends on it, the close waits (the offering stays
  `closing`; the scheduled task resumes it). Once funded, such a subscription is accepted only
  when its period is over (and refunded at once when the offering failed). We wait rather than
  exclude: excluding would refund an investor who wants in, or count one who may leave.

Then every subscription is handled in its own transaction, so a close that dies half-way is
finished by running it again (the scheduled task resumes every offering left `closing`):

- funded, offering funded: accepted — units issued treasury → holding (a lot at cost = the
  subscription amount), escrow → issuer proceeds less the platform fee, and the platform fee
  plus the investor's processing fee → platform fees; the offering's counters move
  reserved → issued;
- funded, offering failed: refunded in full (`payments.subscription_refund`, escrow → external);
- reserved or signed (never funded): cancelled, units released, any part-payment refunded
  (`subscriptions.subscription_cancel_unfunded`); waitlisted: cancelled.

Every ledger entry has a deterministic key (`close:{offering}:issue:{subscription}`, …) and
every status change is a compare-and-swap: a step done is never done twice (no double issue,
no double refund), and a step that died left nothing behind (its transaction rolled back).
The close finishes only when no subscription holds or awaits units, the reserved counter is
zero and the offering's escrow accounts are empty.

Locks: the offering row, then the subscription row, then the ledger's accounts (the order the
subscription services use).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.core.mail import send_mail
from django.db import IntegrityError, transaction
from django.db.models import F, Sum
from django.utils import timezone

from captable import ledger
from captable.closing_selectors import (
    REG_CF_NOTICE_BUSINESS_DAYS,
    business_days_after_notice,
    early_close_scheduled,
    in_reflection_period,
    offering_amount_funded_minor,
    offering_amount_withdrawable_minor,
    offering_subscription_ids,
)
from captable.models import (
    OPEN_CLOSE_REQUEST_STATUSES,
    SUBSCRIPTION_HOLDING_STATUSES,
    SUBSCRIPTION_UNFUNDED_STATUSES,
    Account,
    AccountKind,
    CloseRequest,
    CloseRequestStatus,
    CloseRequestStatusChange,
    ClosingOutcome,
    ClosingTrigger,
    EarlyClose,
    EarlyCloseStatus,
    Entry,
    OfferingClosing,
    Subscription,
    SubscriptionStatus,
    SubscriptionStatusChange,
)
from captable.payments import subscription_refund
from captable.subscription_selectors import (
    REG_CF_CANCEL_CUTOFF,
    reconfirmation_pending,
    subscription_escrowed_minor,
    subscription_total_due_minor,
)
from captable.subscriptions import subscription_cancel_unfunded
from common.auth import staff_required
from common.errors import (
    Conflict,
    DomainError,
    InvalidTransition,
    NotAllowed,
    ValidationFailed,
)
from common.models import User
from common.money import basis_points_of, format_minor_units
from common.outbox import outbox_enqueue
from offerings import services as offering_services
from offerings.exemptions import Exemption
from offerings.models import FundingModel, Offering, OfferingStatus

logger = logging.getLogger(__name__)

REG_CF_EARLY_CLOSE_DAYS_LIVE_MIN = 21
# Passes over the subscriptions per run: a late payment or a reflection period that ends
# during a pass is picked up by the next one; what is left waits for the next run.
CLOSE_PASSES_MAX = 3

CLOSED_STATUSES = (OfferingStatus.CLOSED_FUNDED, OfferingStatus.CLOSED_FAILED)


def _money(amount_minor: int, currency: str) -> str:
    return f"{currency} {format_minor_units(amount_minor, currency)}"


def _offering_locked(offering_id: int) -> Offering:
    return (
        Offering.objects.select_for_update(no_key=True, of=("self",))
        .select_related("issuer")
        .get(pk=offering_id)
    )


def platform_fee_minor(offering: Offering, amount_minor: int) -> int:
    """The platform's fee on one subscription: basis points of its amount, rounded once."""
    return basis_points_of(amount_minor, offering.platform_fee_basis_points)


def _subscription_transition(
    subscription: Subscription,
    *,
    from_status: str,
    to_status: str,
    actor: User | None,
    reason: str,
    now: datetime,
) -> bool:
    """Compare-and-swap with a history row; False (nothing written) if the status moved."""
    changed = Subscription.objects.filter(pk=subscription.pk, status=from_status).update(
        status=to_status, updated_at=now
    )
    if changed != 1:
        return False
    SubscriptionStatusChange.objects.create(
        subscription_id=subscription.pk,
        from_status=from_status,
        to_status=to_status,
        actor=actor,
        reason=reason,
    )
    subscription.status = to_status
    return True


# --- the outcome ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Outcome:
    outcome: str  # a ClosingOutcome, or "" while it cannot be decided yet
    amount_funded_minor: int
    amount_withdrawable_minor: int


def closing_outcome(offering: Offering, now: datetime) -> Outcome:
    """Funded, failed, or "" (undecided: it depends on money that may still be withdrawn)."""
    firm = offering_amount_funded_minor(offering=offering, now=now)
    withdrawable = offering_amount_withdrawable_minor(offering=offering, now=now)
    if offering.funding_model == FundingModel.KEEP_WHAT_YOU_RAISE:
        decided = ClosingOutcome.FUNDED if firm else "" if withdrawable else ClosingOutcome.FAILED
    elif firm >= offering.target_raise_minor:
        decided = ClosingOutcome.FUNDED
    elif firm + withdrawable < offering.target_raise_minor:
        decided = ClosingOutcome.FAILED
    else:
        decided = ""
    return Outcome(decided, firm, withdrawable)


def _decide(closing: OfferingClosing, offering: Offering, now: datetime) -> None:
    """Record the outcome once it can be decided (the caller holds the offering's lock)."""
    if closing.outcome:
        return
    decision = closing_outcome(offering, now)
    if not decision.outcome:
        return
    changed = OfferingClosing.objects.filter(pk=closing.pk, outcome="").update(
        outcome=decision.outcome, decided_at=now, amount_funded_minor=decision.amount_funded_minor
    )
    assert changed == 1, "the outcome is decided under the offering's lock"
    closing.refresh_from_db()


# --- starting a close -------------------------------------------------------------------------


def _check_closable_early(offering: Offering, now: datetime) -> None:
    """Before the deadline: never for Reg CF (only through an early close, which moves the
    deadline after notice); for the other exemptions once the target is met."""
    if now >= offering.closes_at:
        return
    if offering.exemption == Exemption.REG_CF:
        raise Conflict(
            "A Reg CF offering closes at its deadline; to close earlier, schedule an early "
            "close (notice of a new deadline at least 5 business days ahead).",
            code="reg_cf_close_before_deadline",
            closes_at=offering.closes_at.isoformat(),
        )
    funded = offering_amount_funded_minor(offering=offering, now=now)
    if funded < offering.target_raise_minor:
        raise Conflict(
            f"Before its deadline an offering closes only once its target is met "
            f"({_money(funded, offering.currency)} of "
            f"{_money(offering.target_raise_minor, offering.currency)}).",
            code="target_not_met",
        )


def _early_close_lapses(offering: Offering, actor: User | None, now: datetime) -> bool:
    """At an early deadline the target must still be met (Reg CF); if it is not, the early
    close lapses and the original deadline is back. True when it lapsed."""
    early = early_close_scheduled(offering_id=offering.pk)
    if early is None or early.closes_at != offering.closes_at:
        return False
    funded = offering_amount_funded_minor(offering=offering, now=now)
    if funded >= offering.target_raise_minor:
        EarlyClose.objects.filter(pk=early.pk, status=EarlyCloseStatus.SCHEDULED).update(
            status=EarlyCloseStatus.CLOSED,
            resolved_at=now,
            resolution="Closed at the new deadline.",
        )
        return False
    resolution = (
        f"Target no longer met at the new deadline ({_money(funded, offering.currency)} of "
        f"{_money(offering.target_raise_minor, offering.currency)}): the original deadline "
        f"{early.original_closes_at.isoformat()} is back."
    )
    EarlyClose.objects.filter(pk=early.pk, status=EarlyCloseStatus.SCHEDULED).update(
        status=EarlyCloseStatus.LAPSED, resolved_at=now, resolution=resolution
    )
    offering_services.offering_deadline_move(
        offering=offering, closes_at=early.original_closes_at, actor=actor, reason=resolution
    )
    return True


def _closing_start(
    *, offering_id: int, actor: User | None, close_request: CloseRequest | None, now: datetime
) -> OfferingClosing | None:
    """live → closing with the closing record (the outcome if it can be decided already), or
    the record of a close already started. None: a Reg CF early close lapsed instead. Runs in
    the caller's transaction."""
    offering = _offering_locked(offering_id)
    if offering.status != OfferingStatus.LIVE:
        closing = OfferingClosing.objects.filter(offering_id=offering_id).first()
        if closing is None or close_request is not None:
            raise InvalidTransition(
                f"offering is {offering.status}; only a live offering can be closed.",
                from_status=offering.status,
            )
        return closing
    if close_request is None and now < offering.closes_at:
        raise NotAllowed(
            "Four eyes: before its deadline an offering closes only through a close request "
            "approved by a second staff member.",
            code="close_not_approved",
        )
    _check_closable_early(offering, now)
    if now >= offering.closes_at and _early_close_lapses(offering, actor, now):
        return None
    reason = (
        f"Close request #{close_request.pk} approved." if close_request else "Deadline reached."
    )
    offering_services.offering_closing_start(offering=offering, actor=actor, reason=reason)
    closing = OfferingClosing.objects.create(
        offering=offering,
        trigger=ClosingTrigger.REQUEST if close_request else ClosingTrigger.DEADLINE,
        close_request=close_request,
        target_raise_minor=offering.target_raise_minor,
        currency=offering.currency,
        started_by=actor,
        started_at=now,
    )
    _decide(closing, offering, now)
    return closing


# --- one subscription, one transaction ---------------------------------------------------------


def _authorize_units(offering: Offering, actor: User | None) -> None:
    """Nothing posts the issuer's authorization when an offering goes live, so the first
    issue at closing does: the treasury gets the offering's authorized units, once."""
    key = f"authorize:offering:{offering.pk}"
    if Entry.objects.filter(idempotency_key=key).exists():
        return
    authorized = -ledger.authorized_account(offering).balance  # the counter runs negative
    missing = offering.units_authorized_quanta - authorized
    if missing > 0:
        ledger.units_authorize(offering=offering, quanta=missing, idempotency_key=key, actor=actor)


def close_entry_key(offering_id: int, step: str, subscription_id: int) -> str:
    return f"close:{offering_id}:{step}:{subscription_id}"


def _accept(closing: OfferingClosing, subscription_id: int, actor: User | None) -> bool:
    """funded → accepted: units issued, escrow → proceeds and fees, counters reserved →
    issued. One transaction; False when there was nothing to do (yet)."""
    now = timezone.now()
    with transaction.atomic():
        offering = _offering_locked(closing.offering_id)
        subscription = Subscription.objects.select_related("investor").get(pk=subscription_id)
        if subscription.status != SubscriptionStatus.FUNDED:
            return False
        if in_reflection_period(subscription, now) or reconfirmation_pending(
            subscription_id=subscription.pk
        ):
            return False  # accepted once it can no longer be withdrawn
        escrowed = subscription_escrowed_minor(subscription_id=subscription.pk)
        due = subscription_total_due_minor(subscription)
        if escrowed != due:
            raise Conflict(
                f"Subscription {subscription.pk} holds {_money(escrowed, offering.currency)} in "
                f"escrow, not the {_money(due, offering.currency)} it owes; it cannot be "
                "accepted.",
                code="escrow_mismatch",
            )
        accepted = _subscription_transition(
            subscription,
            from_status=SubscriptionStatus.FUNDED,
            to_status=SubscriptionStatus.ACCEPTED,
            actor=actor,
            reason=f"Offering {closing.offering_id} closed funded: units issued.",
            now=now,
        )
        if not accepted:
            return False
        _post_acceptance(offering, subscription, escrowed, actor)
        changed = Offering.objects.filter(pk=offering.pk).update(
            units_reserved_quanta=F("units_reserved_quanta") - subscription.quanta,
            units_issued_quanta=F("units_issued_quanta") + subscription.quanta,
            updated_at=now,
        )
        assert changed == 1
    return True


def _post_acceptance(
    offering: Offering, subscription: Subscription, escrowed_minor: int, actor: User | None
) -> None:
    """The ledger side of an acceptance, each entry under its deterministic key."""
    investor = subscription.investor
    metadata = {"subscription_id": subscription.pk}
    memo = f"Close of offering {offering.pk}: subscription {subscription.pk} accepted"
    ledger.units_issue(
        offering=offering,
        investor=investor,
        quanta=subscription.quanta,
        cost_minor=subscription.amount_minor,
        idempotency_key=close_entry_key(offering.pk, "issue", subscription.pk),
        actor=actor,
        memo=memo,
    )
    fee = platform_fee_minor(offering, subscription.amount_minor)
    proceeds = subscription.amount_minor - fee
    fees = escrowed_minor - proceeds  # the platform fee and the investor's processing fee
    escrow = ledger.escrow_spec(offering, investor)
    moves = (
        ("proceeds", ledger.issuer_spec(offering.issuer, AccountKind.PROCEEDS, offering.currency)),
        ("fees", ledger.platform_fees_spec(offering.currency)),
    )
    for (step, destination), amount in zip(moves, (proceeds, fees), strict=True):
        if amount:
            ledger.cash_move(
                source=escrow,
                destination=destination,
                amount_minor=amount,
                idempotency_key=close_entry_key(offering.pk, step, subscription.pk),
                actor=actor,
                memo=memo,
                metadata=metadata,
            )


def _refund(closing: OfferingClosing, subscription_id: int, actor: User | None) -> bool:
    """funded → refunded in full (the payments service: escrow → external, units released).
    One transaction; False when there was nothing to do."""
    with transaction.atomic():
        _offering_locked(closing.offering_id)
        subscription = Subscription.objects.select_related("offering", "investor").get(
            pk=subscription_id
        )
        if subscription.status != SubscriptionStatus.FUNDED:
            return False
        try:
            subscription_refund(
                subscription=subscription,
                actor=actor,
                reason=f"Offering {closing.offering_id} closed without reaching its target.",
            )
        except InvalidTransition:
            return False  # it moved meanwhile (a bounce, a revocation): the next pass sees it
    return True


def _cancel(closing: OfferingClosing, subscription_id: int, actor: User | None) -> bool:
    """reserved / signed → cancelled (units released, any part-payment refunded), or
    waitlisted → cancelled. One transaction; False when there was nothing to do."""
    now = timezone.now()
    with transaction.atomic():
        _offering_locked(closing.offering_id)
        subscription = Subscription.objects.select_related("offering", "investor").get(
            pk=subscription_id
        )
        if subscription.status == SubscriptionStatus.WAITLISTED:
            return _subscription_transition(
                subscription,
                from_status=SubscriptionStatus.WAITLISTED,
                to_status=SubscriptionStatus.CANCELLED,
                actor=actor,
                reason=f"Offering {closing.offering_id} closed: no units came free for the "
                "waitlist.",
                now=now,
            )
        if subscription.status not in SUBSCRIPTION_UNFUNDED_STATUSES:
            return False
        try:
            subscription_cancel_unfunded(
                subscription=subscription,
                actor=actor,
                reason=f"Offering {closing.offering_id} closed: the reservation was not funded.",
            )
        except InvalidTransition:
            return False  # funded meanwhile (a payment confirmed): the next pass sees it
    return True


def _handle_subscriptions(closing: OfferingClosing, actor: User | None) -> int:
    """One pass: each subscription in its own step. Returns how many steps changed something."""
    changed = 0
    unfunded = (SubscriptionStatus.WAITLISTED, *SUBSCRIPTION_UNFUNDED_STATUSES)
    for subscription_id in offering_subscription_ids(
        offering_id=closing.offering_id, statuses=unfunded
    ):
        changed += _cancel(closing, subscription_id, actor)
    if not closing.outcome:
        with transaction.atomic():
            _decide(closing, _offering_locked(closing.offering_id), timezone.now())
    if not closing.outcome:
        return changed
    if closing.outcome == ClosingOutcome.FUNDED:
        with transaction.atomic():
            _authorize_units(_offering_locked(closing.offering_id), actor)
    step = _accept if closing.outcome == ClosingOutcome.FUNDED else _refund
    for subscription_id in offering_subscription_ids(
        offering_id=closing.offering_id, statuses=(SubscriptionStatus.FUNDED,)
    ):
        changed += step(closing, subscription_id, actor)
    return changed


# --- finishing -------------------------------------------------------------------------------


def _escrow_left_minor(offering_id: int) -> int:
    total = Account.objects.filter(offering_id=offering_id, kind=AccountKind.ESCROW).aggregate(
        balance=Sum("balance")
    )["balance"]
    return int(total or 0)


def _close_requests_settle(closing: OfferingClosing, now: datetime) -> None:
    """The request that started the close is completed; any other open one is moot."""
    for close_request in CloseRequest.objects.filter(
        offering_id=closing.offering_id, status__in=OPEN_CLOSE_REQUEST_STATUSES
    ):
        if close_request.pk == closing.close_request_id:
            _close_request_transition(
                close_request,
                from_status=CloseRequestStatus.APPROVED,
                to_status=CloseRequestStatus.COMPLETED,
                actor=None,
                reason=f"Offering closed {closing.outcome}.",
                completed_at=now,
            )
        else:
            _close_request_transition(
                close_request,
                from_status=close_request.status,
                to_status=CloseRequestStatus.CANCELLED,
                actor=None,
                reason=f"The offering closed otherwise ({closing.get_trigger_display()}).",
            )


def _finish(closing: OfferingClosing, actor: User | None) -> bool:
    """closing → closed_funded | closed_failed once nothing is left to do. One transaction;
    True when the offering is closed (now or before)."""
    now = timezone.now()
    with transaction.atomic():
        offering = _offering_locked(closing.offering_id)
        if offering.status in CLOSED_STATUSES:
            return True
        _decide(closing, offering, now)
        waiting = Subscription.objects.filter(
            offering_id=offering.pk,
            status__in=(SubscriptionStatus.WAITLISTED, *SUBSCRIPTION_HOLDING_STATUSES),
        )
        if not closing.outcome or waiting.exists():
            return False
        # Post-conditions: nothing reserved, nothing left in escrow.
        if offering.units_reserved_quanta != 0 or _escrow_left_minor(offering.pk) != 0:
            raise Conflict(
                f"Offering {offering.pk} cannot finish closing: "
                f"{offering.units_reserved_quanta} quanta still reserved, "
                f"{_escrow_left_minor(offering.pk)} minor units still in escrow.",
                code="closing_inconsistent",
            )
        is_funded = closing.outcome == ClosingOutcome.FUNDED
        offering_services.offering_closing_finish(
            offering=offering,
            is_funded=is_funded,
            actor=actor,
            reason=f"{offering.units_issued_quanta} quanta issued."
            if is_funded
            else "Target not met: every funded subscription refunded.",
        )
        OfferingClosing.objects.filter(pk=closing.pk).update(completed_at=now)
        closing.refresh_from_db()
        _close_requests_settle(closing, now)
    return True


def offering_close(*, offering: Offering, actor: User | None) -> OfferingClosing | None:
    """Close `offering`, or resume its close: safe to run again (and concurrently). `actor`
    None is the scheduled task (the close's starter is then named on the entries). A live
    offering closes here at or after its deadline; earlier only through an approved close
    request (`close_request_approve`). Returns the closing record (`completed_at` set once the
    offering is closed; unset while it waits on a reflection period or a reconfirmation), or
    None when a Reg CF early close lapsed instead (the target was no longer met)."""
    if actor is not None:
        staff_required(actor)
    with transaction.atomic():
        closing = _closing_start(
            offering_id=offering.pk, actor=actor, close_request=None, now=timezone.now()
        )
    if closing is None:
        return None
    return _closing_run(closing, actor)


def _closing_run(closing: OfferingClosing, actor: User | None) -> OfferingClosing:
    if closing.completed_at is not None:
        return closing
    actor = actor or closing.started_by
    for _ in range(CLOSE_PASSES_MAX):
        closing.refresh_from_db()
        changed = _handle_subscriptions(closing, actor)
        if _finish(closing, actor) or not changed:
            break
    closing.refresh_from_db()
    return closing


def offerings_close_due(*, now: datetime | None = None) -> list[int]:
    """The scheduled task: close every live offering whose deadline has passed and resume
    every close left unfinished (a crash, a reflection period). One offering's refusal is
    logged and never stops the others. Returns the offerings closed (finished) now."""
    moment = now or timezone.now()
    due = Offering.objects.filter(status=OfferingStatus.LIVE, closes_at__lte=moment)
    resuming = Offering.objects.filter(status=OfferingStatus.CLOSING)
    closed: list[int] = []
    for offering in (due | resuming).order_by("closes_at", "pk"):
        try:
            closing = offering_close(offering=offering, actor=None)
        except DomainError:
            logger.exception("closing offering %s failed; the next run retries", offering.pk)
            continue
        if closing is not None and closing.completed_at is not None:
            closed.append(offering.pk)
    return closed


# --- four eyes: close requests ------------------------------------------------------------------


def _close_request_transition(
    close_request: CloseRequest,
    *,
    from_status: str,
    to_status: str,
    actor: User | None,
    reason: str,
    **updates: object,
) -> CloseRequest:
    now = timezone.now()
    changed = CloseRequest.objects.filter(pk=close_request.pk, status=from_status).update(
        status=to_status, updated_at=now, **updates
    )
    if changed != 1:
        current = CloseRequest.objects.filter(pk=close_request.pk).values_list("status", flat=True)
        raise InvalidTransition(
            f"Close request {close_request.pk} is {current.first()}; it cannot become {to_status}.",
            from_status=current.first(),
            to_status=to_status,
        )
    CloseRequestStatusChange.objects.create(
        close_request_id=close_request.pk,
        from_status=from_status,
        to_status=to_status,
        actor=actor,
        reason=reason,
    )
    close_request.refresh_from_db()
    return close_request


def close_request_prepare(*, actor: User, offering_id: int, reason: str) -> CloseRequest:
    """A staff member prepares closing a live offering; another approves it."""
    staff_required(actor)
    if not reason.strip():
        raise ValidationFailed("A close request needs a reason.", code="reason_required")
    with transaction.atomic():
        offering = _offering_locked(offering_id)
        if offering.status != OfferingStatus.LIVE:
            raise InvalidTransition(
                f"offering is {offering.status}; only a live offering can be closed.",
                from_status=offering.status,
            )
        try:
            with transaction.atomic():
                close_request = CloseRequest.objects.create(
                    offering=offering, reason=reason.strip(), requested_by=actor
                )
        except IntegrityError:
            raise Conflict(
                f"Offering {offering_id} already has an open close request.",
                code="close_already_requested",
            ) from None
        CloseRequestStatusChange.objects.create(
            close_request=close_request,
            to_status=CloseRequestStatus.PENDING_APPROVAL,
            actor=actor,
            reason=close_request.reason,
        )
    return close_request


def _close_request_for_decision(*, actor: User, close_request_id: int) -> CloseRequest:
    staff_required(actor)
    close_request = CloseRequest.objects.select_for_update().filter(pk=close_request_id).first()
    if close_request is None:
        from common.errors import NotFound

        raise NotFound(
            f"Close request {close_request_id} not found.", code="close_request_not_found"
        )
    if close_request.requested_by_id == actor.pk:
        raise NotAllowed(
            "Four eyes: another staff member must decide on a close you prepared.",
            code="four_eyes",
        )
    if close_request.status != CloseRequestStatus.PENDING_APPROVAL:
        raise InvalidTransition(
            f"Close request {close_request_id} is {close_request.status}; only a pending one "
            "can be decided.",
            from_status=close_request.status,
        )
    return close_request


def close_request_approve(*, actor: User, close_request_id: int, reason: str = "") -> CloseRequest:
    """A second staff member approves: the offering enters `closing` in the same transaction,
    and the close runs in the background (through the outbox: never lost, safe to run twice;
    without a broker it runs right after the commit)."""
    now = timezone.now()
    with transaction.atomic():
        close_request = _close_request_for_decision(actor=actor, close_request_id=close_request_id)
        close_request = _close_request_transition(
            close_request,
            from_status=CloseRequestStatus.PENDING_APPROVAL,
            to_status=CloseRequestStatus.APPROVED,
            actor=actor,
            reason=reason or "Approved: closing.",
            decided_by=actor,
            decided_at=now,
            decision_reason=reason,
        )
        closing = _closing_start(
            offering_id=close_request.offering_id,
            actor=actor,
            close_request=close_request,
            now=now,
        )
        if closing is None:  # a Reg CF early close lapsed at its deadline: nothing to close
            _close_request_transition(
                close_request,
                from_status=CloseRequestStatus.APPROVED,
                to_status=CloseRequestStatus.CANCELLED,
                actor=None,
                reason="The early close lapsed (target no longer met); the original deadline "
                "is back.",
            )
            return close_request
        outbox_enqueue(
            task_name="captable.close_offering",
            kwargs={"offering_id": close_request.offering_id},
            dedupe_key=f"close-offering:{close_request.offering_id}",
        )
    close_request.refresh_from_db()
    return close_request


def close_request_reject(*, actor: User, close_request_id: int, reason: str) -> CloseRequest:
    if not reason.strip():
        raise ValidationFailed("A rejection needs a reason.", code="reason_required")
    with transaction.atomic():
        close_request = _close_request_for_decision(actor=actor, close_request_id=close_request_id)
        return _close_request_transition(
            close_request,
            from_status=CloseRequestStatus.PENDING_APPROVAL,
            to_status=CloseRequestStatus.REJECTED,
            actor=actor,
            reason=reason.strip(),
            decided_by=actor,
            decided_at=timezone.now(),
            decision_reason=reason.strip(),
        )


# --- Reg CF early close --------------------------------------------------------------------------


def _check_early_close(offering: Offering, closes_at: datetime, now: datetime) -> int:
    """Every Reg CF early-close rule (17 CFR 227.304(b)); returns the amount funded."""
    if offering.exemption != Exemption.REG_CF:
        raise Conflict(
            "Early close with notice is a Reg CF procedure; close other offerings through a "
            "close request once their target is met.",
            code="early_close_not_reg_cf",
        )
    if offering.status != OfferingStatus.LIVE:
        raise InvalidTransition(
            f"offering is {offering.status}; only a live offering can close early.",
            from_status=offering.status,
        )
    if early_close_scheduled(offering_id=offering.pk) is not None:
        raise Conflict("An early close is already scheduled.", code="early_close_scheduled")
    if closes_at >= offering.closes_at:
        raise ValidationFailed(
            f"The new deadline must be before the current one ({offering.closes_at.isoformat()}).",
            code="early_close_not_earlier",
            field="closes_at",
        )
    funded = offering_amount_funded_minor(offering=offering, now=now)
    if funded < offering.target_raise_minor:
        raise Conflict(
            f"An offering closes early only once its target is met "
            f"({_money(funded, offering.currency)} of "
            f"{_money(offering.target_raise_minor, offering.currency)} funded).",
            code="target_not_met",
        )
    went_live_at = offering.went_live_at or offering.opens_at
    live_until = max(went_live_at, offering.opens_at) + timedelta(
        days=REG_CF_EARLY_CLOSE_DAYS_LIVE_MIN
    )
    if closes_at < live_until:
        raise ValidationFailed(
            f"A Reg CF offering stays open at least {REG_CF_EARLY_CLOSE_DAYS_LIVE_MIN} days: "
            f"the earliest deadline is {live_until.isoformat()}.",
            code="early_close_too_soon_after_launch",
            field="closes_at",
        )
    notice_until = business_days_after_notice(
        now, days=REG_CF_NOTICE_BUSINESS_DAYS, time_zone=offering.time_zone
    )
    if closes_at < notice_until:
        raise ValidationFailed(
            f"Investors get at least {REG_CF_NOTICE_BUSINESS_DAYS} business days' notice of "
            f"the new deadline: the earliest is {notice_until.isoformat()}.",
            code="early_close_notice_too_short",
            field="closes_at",
        )
    return funded


def offering_schedule_early_close(
    *, actor: User, offering_id: int, closes_at: datetime, reason: str
) -> EarlyClose:
    """Reg CF early close (staff): once the target is met, after at least 21 days live, a new
    deadline at least 5 business days after this notice. The deadline moves now, so the
    cancellation window follows it (until 48 hours before the new deadline); investors with
    commitments are notified after commit. At the new deadline the target must still be met,
    or the early close lapses and the original deadline is back (`offering_close`)."""
    staff_required(actor)
    if not reason.strip():
        raise ValidationFailed("An early close needs a reason.", code="reason_required")
    if timezone.is_naive(closes_at):
        raise ValidationFailed(
            "closes_at needs a time zone offset.", code="closes_at_naive", field="closes_at"
        )
    now = timezone.now()
    with transaction.atomic():
        offering = _offering_locked(offering_id)
        funded = _check_early_close(offering, closes_at, now)
        early = EarlyClose.objects.create(
            offering=offering,
            original_closes_at=offering.closes_at,
            closes_at=closes_at,
            notice_given_at=now,
            amount_funded_minor=funded,
            scheduled_by=actor,
            reason=reason.strip(),
        )
        offering_services.offering_deadline_move(
            offering=offering,
            closes_at=closes_at,
            actor=actor,
            reason=f"Reg CF early close #{early.pk} (target met): {early.reason}",
        )
        outbox_enqueue(
            task_name="captable.notify_early_close",
            kwargs={"early_close_id": early.pk},
            dedupe_key=f"early-close-notice:{early.pk}",
        )
    return early


def early_close_notify(*, early_close_id: int) -> int:
    """Notice of an early close to every investor with a commitment in the offering (waiting,
    reserved, signed or funded): the new deadline, the right to cancel until 48 hours before
    it, and that commitments are still taken until then. Sent outside any transaction (an
    outbox task); a re-run sends the notice again. Returns the number of investors notified."""
    early = EarlyClose.objects.select_related("offering").get(pk=early_close_id)
    offering = early.offering
    committed = (SubscriptionStatus.WAITLISTED, *SUBSCRIPTION_HOLDING_STATUSES)
    emails = sorted(
        set(
            Subscription.objects.filter(offering_id=offering.pk, status__in=committed)
            .exclude(investor__user__email="")
            .values_list("investor__user__email", flat=True)
        )
    )
    cancel_until = early.closes_at - REG_CF_CANCEL_CUTOFF
    subject = f"{offering.title}: the offering will close early, on {early.closes_at:%Y-%m-%d}"
    body = (
        f"{offering.title} has met its target and will close early.\n\n"
        f"New deadline: {early.closes_at.isoformat()} "
        f"(was {early.original_closes_at.isoformat()}).\n"
        f"You may cancel your commitment for any reason until {cancel_until.isoformat()} "
        "(48 hours before the new deadline).\n"
        "New commitments are accepted until the new deadline.\n"
        "If the target is no longer met at the new deadline, the original deadline applies.\n"
    )
    for email in emails:
        send_mail(subject, body, None, [email])
    return len(emails)
