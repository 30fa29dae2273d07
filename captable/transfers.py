"""Secondary transfers and the ledger changes that need four eyes: services and selectors.

Transfers between investors (`transfer_request_*`):
- the seller is the calling investor; the recipient is a KYC-approved investor, named by
  email (or, for staff, by investor id);
- a request never exceeds the seller's *available* quanta: held quanta minus the quanta of
  the seller's other open (pending or approved, not completed) requests in that offering;
- Reg CF (17 CFR 227.501): units may not be resold within one year of their issue, except to
  the issuer, an accredited investor, a family member or a trust, or in a registered offering.
  A lot keeps its issue date through transfers. A request whose first-in-first-out lots
  include locked quanta needs an exception with evidence; it then waits for a staff member
  (never its requester) to approve it, and the exception is recorded on the ledger entry.
  A request without an exception is approved automatically and completes at once;
- the other exemptions have no resale lock here: Reg D's holding periods (Rule 144) and the
  Reg A / ECSP secondary-market rules are a future rule pack.

Forced transfers (court order, death, …) and reversals are prepared by one staff member and
approved by another; a forced transfer ignores the resale lock, never the units held.

Every status change is a compare-and-swap with a history row. Approval posts the ledger entry
(through `captable.ledger`, the only writer of ledger rows) in the same transaction as the
status change, so a request is completed exactly when its entry exists.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

from django.db import IntegrityError, transaction
from django.db.models import Q, QuerySet, Sum
from django.utils import timezone

from captable import ledger
from captable.models import (
    OPEN_TRANSFER_STATUSES,
    Account,
    AccountKind,
    Entry,
    EntryKind,
    LegalBasis,
    ResaleException,
    ReversalRequest,
    ReversalRequestStatusChange,
    ReversalStatus,
    TransferKind,
    TransferRequest,
    TransferRequestStatusChange,
    TransferStatus,
)
from common.auth import staff_required
from common.errors import (
    Conflict,
    InvalidTransition,
    LimitExceeded,
    NotAllowed,
    NotFound,
    ValidationFailed,
)
from common.models import User
from investors.compliance import accredited_investor_test
from investors.models import AccreditationStatus, Investor, InvestorKind, KycStatus
from investors.selectors import investor_facts, investor_of_user
from offerings.exemptions import Exemption
from offerings.models import Offering
from offerings.quantities import format_units
from offerings.selectors import offerings_visible_to

IDEMPOTENCY_KEY_LENGTH_MAX = 200

# --- the resale lock --------------------------------------------------------------------------


def one_calendar_year_after(moment: datetime, *, time_zone: str) -> datetime:
    """The same wall-clock time one calendar year later in `time_zone` (the offering's).
    29 February moves to 1 March: never earlier than a full year."""
    local = moment.astimezone(ZoneInfo(time_zone))
    try:
        later = local.replace(year=local.year + 1)
    except ValueError:  # 29 February
        later = local.replace(year=local.year + 1, month=3, day=1)
    return later.astimezone(UTC)


def offering_has_resale_lock(offering: Offering) -> bool:
    return offering.exemption == Exemption.REG_CF


@dataclass(frozen=True)
class Availability:
    """What the seller can transfer now, and how much of a request the resale lock holds."""

    held_quanta: int
    open_quanta: int  # in the seller's other open requests for this offering
    locked_quanta: int  # of the requested quanta: issued less than a year ago
    free_at: datetime | None  # when the last of those locked quanta becomes free

    @property
    def available_quanta(self) -> int:
        return max(self.held_quanta - self.open_quanta, 0)


def _open_quanta(offering: Offering, seller: Investor, *, excluding_id: int | None) -> int:
    requests = TransferRequest.objects.filter(
        offering=offering, seller=seller, status__in=OPEN_TRANSFER_STATUSES
    )
    if excluding_id is not None:
        requests = requests.exclude(pk=excluding_id)
    return int(requests.aggregate(total=Sum("quanta"))["total"] or 0)


def transfer_availability(
    *,
    offering: Offering,
    seller: Investor,
    quanta: int,
    now: datetime,
    excluding_id: int | None = None,
) -> Availability:
    """Lots are consumed first in first out: the seller's other open requests take the oldest
    quanta, this request the next `quanta`. Those issued less than a year before `now` (Reg CF
    only) are locked."""
    holding = ledger.holding_account(offering, seller)
    lots = ledger.open_lots(holding)
    open_quanta = _open_quanta(offering, seller, excluding_id=excluding_id)
    locked, free_at = 0, None
    if offering_has_resale_lock(offering):
        start, end, position = open_quanta, open_quanta + quanta, 0
        for lot in lots:
            overlap = min(end, position + lot.quanta) - max(start, position)
            position += lot.quanta
            lot_free_at = one_calendar_year_after(lot.issued_at, time_zone=offering.time_zone)
            if overlap > 0 and lot_free_at > now:
                locked += overlap
                free_at = lot_free_at if free_at is None else max(free_at, lot_free_at)
    return Availability(sum(lot.quanta for lot in lots), open_quanta, locked, free_at)


def _units(quanta: int, offering: Offering) -> str:
    return format_units(quanta, offering.quanta_per_unit)


def _check_available(offering: Offering, availability: Availability, quanta: int) -> None:
    if quanta > availability.available_quanta:
        raise LimitExceeded(
            f"You can transfer at most {_units(availability.available_quanta, offering)} units "
            f"of this offering: {_units(availability.held_quanta, offering)} held, "
            f"{_units(availability.open_quanta, offering)} in other open transfer requests.",
            code="insufficient_available_units",
            available_quanta=availability.available_quanta,
            held_quanta=availability.held_quanta,
            open_quanta=availability.open_quanta,
        )


def _check_resale_lock(offering: Offering, availability: Availability) -> None:
    if availability.locked_quanta == 0 or availability.free_at is None:
        return
    free_date = availability.free_at.astimezone(ZoneInfo(offering.time_zone)).date()
    raise LimitExceeded(
        f"{_units(availability.locked_quanta, offering)} of these units were issued less than "
        f"a year ago: Reg CF units cannot be resold until one year after issue "
        f"(these become free on {free_date.isoformat()}). Transfer fewer units, wait, or "
        "claim an exception (issuer, accredited investor, family member, trust, registered "
        "offering) with evidence for staff approval.",
        code="resale_locked",
        locked_quanta=availability.locked_quanta,
        free_at=availability.free_at.isoformat(),
        free_on=free_date.isoformat(),
    )


# --- parties and exceptions -------------------------------------------------------------------


def _check_recipient(buyer: Investor) -> None:
    if buyer.kyc_status != KycStatus.APPROVED:
        raise ValidationFailed(
            "The recipient has not passed KYC: units can only be transferred to a "
            "KYC-approved investor.",
            code="recipient_not_kyc_approved",
        )


def _recipient(*, actor: User, buyer_email: str | None, buyer_investor_id: int | None) -> Investor:
    if (buyer_email is None) == (buyer_investor_id is None):
        raise ValidationFailed(
            "Name the recipient by buyer_email (or, staff only, by buyer_investor_id).",
            code="recipient_required",
        )
    if buyer_investor_id is not None:
        if not actor.is_staff:
            raise NotAllowed(
                "Only staff may name the recipient by investor id; use buyer_email.",
                code="staff_only",
            )
        buyer = Investor.objects.filter(pk=buyer_investor_id).first()
    else:
        email = (buyer_email or "").strip()
        buyer = Investor.objects.filter(user__email__iexact=email, user__is_active=True).first()
    if buyer is None:
        raise ValidationFailed(
            "No investor with that email or id: the recipient must register as an investor "
            "and pass KYC first.",
            code="recipient_not_investor",
        )
    _check_recipient(buyer)
    return buyer


def _buyer_is_accredited(buyer: Investor, *, now: datetime) -> bool:
    if buyer.accreditation_status == AccreditationStatus.SELF_CERTIFIED:
        return True
    if buyer.accreditation_status == AccreditationStatus.VERIFIED:
        expires_at = buyer.accreditation_expires_at
        if expires_at is not None and expires_at > now:
            return True
    return accredited_investor_test(investor_facts(buyer), now.date()).allowed


def _check_exception(
    *, exception: str, evidence_reference: str, buyer: Investor, now: datetime
) -> None:
    if exception not in ResaleException.values:
        raise ValidationFailed(f"Unknown exception {exception!r}.", code="exception_invalid")
    if exception == ResaleException.NONE:
        return
    if not evidence_reference.strip():
        raise ValidationFailed(
            "An exception needs evidence: a document reference.", code="evidence_required"
        )
    if exception == ResaleException.ACCREDITED_INVESTOR and not _buyer_is_accredited(
        buyer, now=now
    ):
        raise LimitExceeded(
            "The recipient is not an accredited investor (neither certified, verified nor "
            "meeting the accredited-investor test), so this exception does not apply.",
            code="recipient_not_accredited",
        )
    if exception == ResaleException.TRUST and buyer.kind != InvestorKind.TRUST:
        raise ValidationFailed(
            "The trust exception needs a recipient registered as a trust.",
            code="recipient_not_trust",
        )


def _offering_for_seller(*, actor: User, offering_id: int, seller: Investor) -> Offering:
    """The offering, if the caller may see it or the seller has ever held its units (a closed
    offering is not public, but its holders trade it); otherwise 404."""
    offering = Offering.objects.filter(pk=offering_id).first()
    if offering is None:
        raise NotFound(f"Offering {offering_id} not found.", code="offering_not_found")
    visible = offerings_visible_to(actor).filter(pk=offering_id).exists()
    holder = Account.objects.filter(
        kind=AccountKind.HOLDING, offering=offering, investor=seller
    ).exists()
    if not (visible or holder):
        raise NotFound(f"Offering {offering_id} not found.", code="offering_not_found")
    return offering


def _positive_quanta(quanta: int) -> int:
    if isinstance(quanta, bool) or not isinstance(quanta, int) or quanta <= 0:
        raise ValidationFailed("The quantity must be positive.", code="invalid_quantity")
    return quanta


# --- status changes ---------------------------------------------------------------------------


def _transfer_transition(
    transfer: TransferRequest,
    *,
    allowed_from: tuple[str, ...],
    to_status: str,
    actor: User | None,
    reason: str = "",
    **updates: Any,
) -> TransferRequest:
    """Compare-and-swap the status and write the history row (inside the caller's atomic)."""
    expected = transfer.status
    if expected in allowed_from:
        now = timezone.now()
        changed = TransferRequest.objects.filter(pk=transfer.pk, status=expected).update(
            status=to_status, updated_at=now, **updates
        )
    else:
        changed = 0
    if changed != 1:
        current = TransferRequest.objects.filter(pk=transfer.pk).values_list("status", flat=True)
        raise InvalidTransition(
            f"Transfer request {transfer.pk} is {current.first()}; it cannot become {to_status}.",
            from_status=current.first(),
            to_status=to_status,
        )
    TransferRequestStatusChange.objects.create(
        transfer_id=transfer.pk,
        from_status=expected,
        to_status=to_status,
        actor=actor,
        reason=reason,
    )
    transfer.refresh_from_db()
    return transfer


def _entry_metadata(transfer: TransferRequest) -> dict[str, Any]:
    """Ids, kinds and document references only (the entry is permanent; free text such as
    the evidence description stays on the request)."""
    metadata: dict[str, Any] = {
        "transfer_request": transfer.pk,
        "kind": transfer.kind,
        "exception": transfer.exception,
        "evidence": transfer.evidence_reference,
        "approved_by": transfer.decided_by_id,
    }
    if transfer.kind == TransferKind.FORCED:
        metadata.update(
            legal_basis=transfer.legal_basis,
            reason=transfer.reason,
            prepared_by=transfer.requested_by_id,
        )
    return metadata


def _complete(transfer: TransferRequest, *, actor: User) -> TransferRequest:
    """approved → completed: post the ledger entry and point the request at it."""
    entry = ledger.units_transfer(
        offering=transfer.offering,
        seller=transfer.seller,
        buyer=transfer.buyer,
        quanta=transfer.quanta,
        idempotency_key=f"transfer-request:{transfer.pk}",
        actor=actor,
        memo=f"Transfer request #{transfer.pk} ({transfer.kind})",
        metadata=_entry_metadata(transfer),
    )
    return _transfer_transition(
        transfer,
        allowed_from=(TransferStatus.APPROVED,),
        to_status=TransferStatus.COMPLETED,
        actor=actor,
        reason=f"Posted as ledger entry #{entry.pk}.",
        entry=entry,
        completed_at=timezone.now(),
    )


def _lock_holdings(offering: Offering, seller: Investor, buyer: Investor) -> None:
    """Both holdings, in the ledger's lock order like every writer: concurrent requests of
    one seller queue here, so two of them cannot both count the same available units."""
    ledger.lock_accounts(
        [ledger.holding_account(offering, seller), ledger.holding_account(offering, buyer)]
    )


# --- voluntary transfers ----------------------------------------------------------------------


def _request_digest(body: Mapping[str, Any]) -> str:
    return hashlib.sha256(json.dumps(body, sort_keys=True, default=str).encode()).hexdigest()


def _replayed(*, actor: User, idempotency_key: str, digest: str) -> TransferRequest | None:
    existing = TransferRequest.objects.filter(
        requested_by=actor, idempotency_key=idempotency_key
    ).first()
    if existing is not None and existing.request_digest != digest:
        raise Conflict(
            f"Idempotency key {idempotency_key!r} was already used for a different request.",
            code="idempotency_key_reused",
        )
    return existing


def transfer_request_create(
    *,
    actor: User,
    offering_id: int,
    quanta: int,
    idempotency_key: str,
    buyer_email: str | None = None,
    buyer_investor_id: int | None = None,
    exception: str = ResaleException.NONE,
    evidence_reference: str = "",
    evidence_description: str = "",
) -> tuple[TransferRequest, bool]:
    """The calling investor asks to transfer `quanta` to another investor. Returns the request
    and whether it was created now (False: a replay of the same idempotency key and body).
    Without an exception it completes at once; with one it waits for staff approval."""
    _positive_quanta(quanta)
    if not idempotency_key or len(idempotency_key) > IDEMPOTENCY_KEY_LENGTH_MAX:
        raise ValidationFailed(
            "An Idempotency-Key of 1 to 200 characters is required.", code="idempotency_key"
        )
    seller = investor_of_user(user=actor)
    digest = _request_digest(
        {
            "offering": offering_id,
            "quanta": quanta,
            "buyer_email": (buyer_email or "").strip().lower(),
            "buyer_investor": buyer_investor_id,
            "exception": exception,
            "evidence_reference": evidence_reference,
            "evidence_description": evidence_description,
        }
    )
    with transaction.atomic():
        replay = _replayed(actor=actor, idempotency_key=idempotency_key, digest=digest)
        if replay is not None:
            return replay, False
        offering = _offering_for_seller(actor=actor, offering_id=offering_id, seller=seller)
        buyer = _recipient(
            actor=actor, buyer_email=buyer_email, buyer_investor_id=buyer_investor_id
        )
        if buyer.pk == seller.pk:
            raise ValidationFailed("You cannot transfer units to yourself.", code="self_transfer")
        now = timezone.now()
        _check_exception(
            exception=exception, evidence_reference=evidence_reference, buyer=buyer, now=now
        )
        _lock_holdings(offering, seller, buyer)
        availability = transfer_availability(
            offering=offering, seller=seller, quanta=quanta, now=now
        )
        _check_available(offering, availability, quanta)
        if exception == ResaleException.NONE:
            _check_resale_lock(offering, availability)
        status = (
            TransferStatus.APPROVED
            if exception == ResaleException.NONE
            else TransferStatus.PENDING_APPROVAL
        )
        try:
            with transaction.atomic():
                transfer = TransferRequest.objects.create(
                    kind=TransferKind.VOLUNTARY,
                    offering=offering,
                    seller=seller,
                    buyer=buyer,
                    quanta=quanta,
                    status=status,
                    exception=exception,
                    evidence_reference=evidence_reference.strip(),
                    evidence_description=evidence_description,
                    requested_by=actor,
                    idempotency_key=idempotency_key,
                    request_digest=digest,
                )
        except IntegrityError:  # the same key, committed concurrently
            replay = _replayed(actor=actor, idempotency_key=idempotency_key, digest=digest)
            if replay is None:
                raise
            return replay, False
        TransferRequestStatusChange.objects.create(
            transfer=transfer,
            to_status=status,
            actor=actor,
            reason="No exception needed: approved automatically."
            if status == TransferStatus.APPROVED
            else f"Exception claimed ({exception}): awaiting staff approval.",
        )
        if status == TransferStatus.APPROVED:
            transfer = _complete(transfer, actor=actor)
    return transfer, True


def _transfer_for_decision(*, actor: User, transfer_id: int) -> TransferRequest:
    staff_required(actor)
    transfer = (
        TransferRequest.objects.select_related("offering", "seller", "buyer")
        .filter(pk=transfer_id)
        .first()
    )
    if transfer is None:
        raise NotFound(f"Transfer request {transfer_id} not found.", code="transfer_not_found")
    if transfer.requested_by_id == actor.pk:
        raise NotAllowed(
            "Four eyes: another staff member must decide on a request you made.",
            code="four_eyes",
        )
    if actor.pk in (transfer.seller.user_id, transfer.buyer.user_id):
        raise NotAllowed(
            "You are a party to this transfer; another staff member must decide on it.",
            code="four_eyes",
        )
    return transfer


def transfer_request_approve(*, actor: User, transfer_id: int, reason: str = "") -> TransferRequest:
    """pending_approval → approved → completed (staff, not the requester), posting the entry
    in the same transaction. Availability is checked again now; a forced transfer ignores the
    resale lock and other requests, never the units held."""
    with transaction.atomic():
        transfer = _transfer_for_decision(actor=actor, transfer_id=transfer_id)
        now = timezone.now()
        transfer = _transfer_transition(
            transfer,
            allowed_from=(TransferStatus.PENDING_APPROVAL,),
            to_status=TransferStatus.APPROVED,
            actor=actor,
            reason=reason or "Approved.",
            decided_by=actor,
            decided_at=now,
            decision_reason=reason,
        )
        offering, seller, buyer = transfer.offering, transfer.seller, transfer.buyer
        _check_recipient(buyer)
        _lock_holdings(offering, seller, buyer)
        availability = transfer_availability(
            offering=offering,
            seller=seller,
            quanta=transfer.quanta,
            now=now,
            excluding_id=transfer.pk,
        )
        if transfer.kind == TransferKind.FORCED:
            if transfer.quanta > availability.held_quanta:
                raise LimitExceeded(
                    f"The holder has {_units(availability.held_quanta, offering)} units; "
                    f"this forced transfer needs {_units(transfer.quanta, offering)}.",
                    code="insufficient_units",
                    held_quanta=availability.held_quanta,
                )
        else:
            _check_exception(
                exception=transfer.exception,
                evidence_reference=transfer.evidence_reference,
                buyer=buyer,
                now=now,
            )
            _check_available(offering, availability, transfer.quanta)
        return _complete(transfer, actor=actor)


def transfer_request_reject(*, actor: User, transfer_id: int, reason: str) -> TransferRequest:
    """pending_approval → rejected (staff, not the requester), with the reason."""
    if not reason.strip():
        raise ValidationFailed("A rejection needs a reason.", code="reason_required")
    with transaction.atomic():
        transfer = _transfer_for_decision(actor=actor, transfer_id=transfer_id)
        return _transfer_transition(
            transfer,
            allowed_from=(TransferStatus.PENDING_APPROVAL,),
            to_status=TransferStatus.REJECTED,
            actor=actor,
            reason=reason,
            decided_by=actor,
            decided_at=timezone.now(),
            decision_reason=reason,
        )


def transfer_request_cancel(*, actor: User, transfer_id: int, reason: str = "") -> TransferRequest:
    """pending_approval → cancelled, by whoever made the request (the seller, or the staff
    member who prepared a forced transfer)."""
    with transaction.atomic():
        transfer = transfer_request_get(user=actor, transfer_id=transfer_id)
        if transfer.requested_by_id != actor.pk:
            raise NotAllowed("Only whoever made the request can cancel it.", code="not_requester")
        return _transfer_transition(
            transfer,
            allowed_from=(TransferStatus.PENDING_APPROVAL,),
            to_status=TransferStatus.CANCELLED,
            actor=actor,
            reason=reason or "Cancelled by the requester.",
        )


# --- forced transfers -------------------------------------------------------------------------


def forced_transfer_prepare(
    *,
    actor: User,
    offering_id: int,
    seller_investor_id: int,
    buyer_investor_id: int,
    quanta: int,
    legal_basis: str,
    reason: str,
    document_reference: str,
) -> TransferRequest:
    """Staff prepare a transfer the holder did not ask for (court order, death, divorce);
    a second staff member approves it with `forced_transfer_approve`."""
    staff_required(actor)
    _positive_quanta(quanta)
    if legal_basis not in LegalBasis.values or legal_basis == LegalBasis.NONE:
        raise ValidationFailed(
            "A forced transfer needs its legal basis (court_order, death, divorce or other).",
            code="legal_basis_required",
        )
    if not reason.strip() or not document_reference.strip():
        raise ValidationFailed(
            "A forced transfer needs a reason and a document reference.",
            code="reason_required",
        )
    if seller_investor_id == buyer_investor_id:
        raise ValidationFailed("Seller and buyer are the same investor.", code="self_transfer")
    with transaction.atomic():
        offering = Offering.objects.filter(pk=offering_id).first()
        parties = Investor.objects.in_bulk([seller_investor_id, buyer_investor_id])
        seller, buyer = parties.get(seller_investor_id), parties.get(buyer_investor_id)
        if offering is None or seller is None or buyer is None:
            raise NotFound("Offering or investor not found.", code="not_found")
        _check_recipient(buyer)
        held = ledger.holding_account(offering, seller).balance
        if quanta > held:
            raise LimitExceeded(
                f"The holder has {_units(held, offering)} units; this forced transfer needs "
                f"{_units(quanta, offering)}.",
                code="insufficient_units",
                held_quanta=held,
            )
        transfer = TransferRequest.objects.create(
            kind=TransferKind.FORCED,
            offering=offering,
            seller=seller,
            buyer=buyer,
            quanta=quanta,
            status=TransferStatus.PENDING_APPROVAL,
            legal_basis=legal_basis,
            reason=reason.strip(),
            evidence_reference=document_reference.strip(),
            requested_by=actor,
        )
        TransferRequestStatusChange.objects.create(
            transfer=transfer,
            to_status=TransferStatus.PENDING_APPROVAL,
            actor=actor,
            reason=f"Forced transfer prepared ({legal_basis}): {reason.strip()}",
        )
    return transfer


def forced_transfer_approve(*, actor: User, transfer_id: int, reason: str = "") -> TransferRequest:
    """A second staff member approves a forced transfer: the units move now."""
    staff_required(actor)
    kind = TransferRequest.objects.filter(pk=transfer_id).values_list("kind", flat=True).first()
    if kind != TransferKind.FORCED:
        raise NotFound(f"Forced transfer {transfer_id} not found.", code="transfer_not_found")
    return transfer_request_approve(actor=actor, transfer_id=transfer_id, reason=reason)


# --- reversals --------------------------------------------------------------------------------


def _reversal_transition(
    reversal: ReversalRequest,
    *,
    to_status: str,
    actor: User,
    reason: str,
    **updates: Any,
) -> ReversalRequest:
    now = timezone.now()
    changed = ReversalRequest.objects.filter(
        pk=reversal.pk, status=ReversalStatus.PENDING_APPROVAL
    ).update(status=to_status, updated_at=now, **updates)
    if changed != 1:
        current = ReversalRequest.objects.filter(pk=reversal.pk).values_list("status", flat=True)
        raise InvalidTransition(
            f"Reversal request {reversal.pk} is {current.first()}; it cannot become {to_status}.",
            from_status=current.first(),
            to_status=to_status,
        )
    ReversalRequestStatusChange.objects.create(
        reversal_id=reversal.pk,
        from_status=ReversalStatus.PENDING_APPROVAL,
        to_status=to_status,
        actor=actor,
        reason=reason,
    )
    reversal.refresh_from_db()
    return reversal


def reversal_prepare(*, actor: User, entry_id: int, reason: str) -> ReversalRequest:
    """Staff propose reversing a posted entry; a second staff member approves it."""
    staff_required(actor)
    if not reason.strip():
        raise ValidationFailed("A reversal needs a reason.", code="reason_required")
    with transaction.atomic():
        entry = Entry.objects.filter(pk=entry_id).first()
        if entry is None:
            raise NotFound(f"Entry {entry_id} not found.", code="entry_not_found")
        if entry.kind == EntryKind.REVERSAL:
            raise Conflict("A reversal cannot be reversed; post the entry again.", code="reversal")
        if Entry.objects.filter(reverses=entry).exists():
            raise Conflict(f"Entry {entry_id} is already reversed.", code="already_reversed")
        try:
            with transaction.atomic():
                reversal = ReversalRequest.objects.create(
                    entry=entry, reason=reason.strip(), requested_by=actor
                )
        except IntegrityError:
            raise Conflict(
                f"Entry {entry_id} already has an open reversal request.",
                code="reversal_already_requested",
            ) from None
        ReversalRequestStatusChange.objects.create(
            reversal=reversal,
            to_status=ReversalStatus.PENDING_APPROVAL,
            actor=actor,
            reason=reversal.reason,
        )
    return reversal


def _reversal_for_decision(*, actor: User, reversal_id: int) -> ReversalRequest:
    staff_required(actor)
    reversal = ReversalRequest.objects.select_for_update().filter(pk=reversal_id).first()
    if reversal is None:
        raise NotFound(f"Reversal request {reversal_id} not found.", code="reversal_not_found")
    if reversal.requested_by_id == actor.pk:
        raise NotAllowed(
            "Four eyes: another staff member must decide on a reversal you prepared.",
            code="four_eyes",
        )
    return reversal


def reversal_approve(*, actor: User, reversal_id: int, reason: str = "") -> ReversalRequest:
    """pending_approval → completed (a second staff member): the reversing entry is posted in
    the same transaction."""
    with transaction.atomic():
        reversal = _reversal_for_decision(actor=actor, reversal_id=reversal_id)
        if reversal.status != ReversalStatus.PENDING_APPROVAL:
            raise InvalidTransition(
                f"Reversal request {reversal_id} is {reversal.status}; it cannot be approved.",
                from_status=reversal.status,
            )
        now = timezone.now()
        reversing = ledger.entry_reverse(
            entry_id=reversal.entry_id,
            idempotency_key=f"reversal-request:{reversal.pk}",
            actor=actor,
            reason=f"Reversal request #{reversal.pk}: {reversal.reason}",
        )
        return _reversal_transition(
            reversal,
            to_status=ReversalStatus.COMPLETED,
            actor=actor,
            reason=reason or f"Approved; reversing entry #{reversing.pk} posted.",
            decided_by=actor,
            decided_at=now,
            decision_reason=reason,
            reversal_entry=reversing,
            completed_at=now,
        )


def reversal_reject(*, actor: User, reversal_id: int, reason: str) -> ReversalRequest:
    if not reason.strip():
        raise ValidationFailed("A rejection needs a reason.", code="reason_required")
    with transaction.atomic():
        reversal = _reversal_for_decision(actor=actor, reversal_id=reversal_id)
        return _reversal_transition(
            reversal,
            to_status=ReversalStatus.REJECTED,
            actor=actor,
            reason=reason,
            decided_by=actor,
            decided_at=timezone.now(),
            decision_reason=reason,
        )


# --- selectors --------------------------------------------------------------------------------


def transfer_requests_visible_to(*, user: Any) -> QuerySet[TransferRequest]:
    """Staff: every request; anyone else: those they sell, receive or made. Newest first."""
    requests = TransferRequest.objects.select_related("offering").order_by("-created_at", "-pk")
    if not isinstance(user, User):
        return requests.none()
    if user.is_staff:
        return requests
    return requests.filter(Q(seller__user=user) | Q(buyer__user=user) | Q(requested_by=user))


def transfer_request_get(*, user: Any, transfer_id: int) -> TransferRequest:
    """404 for a request the user may not see: existence never leaks."""
    transfer = (
        transfer_requests_visible_to(user=user)
        .select_related("seller", "buyer")
        .filter(pk=transfer_id)
        .first()
    )
    if transfer is None:
        raise NotFound(f"Transfer request {transfer_id} not found.", code="transfer_not_found")
    return transfer


def transfer_request_history(*, transfer: TransferRequest) -> list[TransferRequestStatusChange]:
    return list(transfer.status_changes.order_by("created_at", "pk"))


def reversal_requests(*, user: Any) -> QuerySet[ReversalRequest]:
    staff_required(user)
    return ReversalRequest.objects.order_by("-created_at", "-pk")


def reversal_request_get(*, user: Any, reversal_id: int) -> ReversalRequest:
    reversal = reversal_requests(user=user).filter(pk=reversal_id).first()
    if reversal is None:
        raise NotFound(f"Reversal request {reversal_id} not found.", code="reversal_not_found")
    return reversal
