"""HTTP for transfers (`/transfers`) and four-eyes ledger requests (`/ledger`): schema → one
service or selector → schema.

No `from __future__ import annotations` here: ninja reads the parameter annotations at import
time, and `@paginate` re-wraps the view, so string annotations could not be resolved.
"""

from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from ninja import Router, Status
from ninja.pagination import paginate
from ninja.params import HeaderEx, P

from captable import transfers
from captable.models import ReversalRequest, TransferRequest
from captable.schemas import (
    READ_ERRORS,
    WRITE_ERRORS,
    ForcedTransferIn,
    OptionalReasonIn,
    ReasonIn,
    ReversalRequestOut,
    TransferCreateIn,
    TransferDetailOut,
    TransferOut,
    quanta_of,
)
from common.errors import NotAuthenticated, NotFound
from common.models import User
from common.pagination import BoundedLimitOffsetPagination
from common.ratelimit import THROTTLED_RESPONSE, rate_limited
from offerings.models import Offering

router = Router(tags=["transfers"])
ledger_router = Router(tags=["ledger"])

PAGE_SIZE_MAX = 100


def actor_of(request: HttpRequest) -> User:
    user = getattr(request, "auth", None)
    if not isinstance(user, User):  # pragma: no cover - the router's auth guarantees it
        raise NotAuthenticated("Sign in first.")
    return user


def _quanta_per_unit(offering_id: int) -> int:
    quanta_per_unit = (
        Offering.objects.filter(pk=offering_id).values_list("quanta_per_unit", flat=True).first()
    )
    if quanta_per_unit is None:
        raise NotFound(f"Offering {offering_id} not found.", code="offering_not_found")
    return int(quanta_per_unit)


def _reason(payload: OptionalReasonIn | None) -> str:
    return payload.reason if payload else ""


# --- transfers --------------------------------------------------------------------------------


@router.post(
    "",
    response={200: TransferDetailOut, 201: TransferDetailOut, **WRITE_ERRORS, **THROTTLED_RESPONSE},
)
@rate_limited("transfer")
def transfer_create(
    request: HttpRequest,
    response: HttpResponse,
    payload: TransferCreateIn,
    idempotency_key: HeaderEx[str, P(alias="Idempotency-Key", min_length=1, max_length=200)],
) -> Status[TransferRequest]:
    """Transfer units you hold to another KYC-approved investor. Without an exception the
    transfer completes at once (201, status `completed`); with a Reg CF resale-lock exception
    it waits for staff approval (`pending_approval`). Replaying the same `Idempotency-Key`
    with the same body returns the first request (200, header `Idempotent-Replayed: true`);
    with another body it is a 409."""
    quanta = quanta_of(payload.units, quanta_per_unit=_quanta_per_unit(payload.offering_id))
    evidence = payload.evidence
    transfer, created = transfers.transfer_request_create(
        actor=actor_of(request),
        offering_id=payload.offering_id,
        quanta=quanta,
        idempotency_key=idempotency_key,
        buyer_email=payload.buyer_email,
        buyer_investor_id=payload.buyer_investor_id,
        exception=payload.exception,
        evidence_reference=evidence.document_reference if evidence else "",
        evidence_description=evidence.description if evidence else "",
    )
    if not created:
        response["Idempotent-Replayed"] = "true"
    return Status(201 if created else 200, transfer)


@router.get("", response={200: list[TransferOut], **READ_ERRORS})
@paginate(BoundedLimitOffsetPagination, max_limit=PAGE_SIZE_MAX)
def transfer_list(request: HttpRequest, status: str | None = None) -> QuerySet[TransferRequest]:
    """Your transfers as seller or buyer (staff: all), newest first; filter by `status`."""
    requests = transfers.transfer_requests_visible_to(user=actor_of(request))
    return requests.filter(status=status) if status else requests


@router.get("/{int:transfer_id}", response={200: TransferDetailOut, **READ_ERRORS})
def transfer_detail(request: HttpRequest, transfer_id: int) -> TransferRequest:
    return transfers.transfer_request_get(user=actor_of(request), transfer_id=transfer_id)


@router.post("/{int:transfer_id}/approve", response={200: TransferDetailOut, **WRITE_ERRORS})
def transfer_approve(
    request: HttpRequest, transfer_id: int, payload: OptionalReasonIn | None = None
) -> TransferRequest:
    """Staff (never the requester): approve a pending transfer; the units move now."""
    return transfers.transfer_request_approve(
        actor=actor_of(request), transfer_id=transfer_id, reason=_reason(payload)
    )


@router.post("/{int:transfer_id}/reject", response={200: TransferDetailOut, **WRITE_ERRORS})
def transfer_reject(request: HttpRequest, transfer_id: int, payload: ReasonIn) -> TransferRequest:
    return transfers.transfer_request_reject(
        actor=actor_of(request), transfer_id=transfer_id, reason=payload.reason
    )


@router.post("/{int:transfer_id}/cancel", response={200: TransferDetailOut, **WRITE_ERRORS})
def transfer_cancel(
    request: HttpRequest, transfer_id: int, payload: OptionalReasonIn | None = None
) -> TransferRequest:
    """The requester withdraws a transfer still waiting for approval."""
    return transfers.transfer_request_cancel(
        actor=actor_of(request), transfer_id=transfer_id, reason=_reason(payload)
    )


@router.post("/forced", response={201: TransferDetailOut, **WRITE_ERRORS})
def forced_transfer_prepare(
    request: HttpRequest, payload: ForcedTransferIn
) -> Status[TransferRequest]:
    """Staff prepare a forced transfer (court order, death, divorce); another staff member
    approves it with `POST /transfers/forced/{id}/approve`."""
    quanta = quanta_of(payload.units, quanta_per_unit=_quanta_per_unit(payload.offering_id))
    transfer = transfers.forced_transfer_prepare(
        actor=actor_of(request),
        offering_id=payload.offering_id,
        seller_investor_id=payload.seller_investor_id,
        buyer_investor_id=payload.buyer_investor_id,
        quanta=quanta,
        legal_basis=payload.legal_basis,
        reason=payload.reason,
        document_reference=payload.document_reference,
    )
    return Status(201, transfer)


@router.post("/forced/{int:transfer_id}/approve", response={200: TransferDetailOut, **WRITE_ERRORS})
def forced_transfer_approve(
    request: HttpRequest, transfer_id: int, payload: OptionalReasonIn | None = None
) -> TransferRequest:
    """A second staff member approves a forced transfer: the units move, resale lock aside."""
    return transfers.forced_transfer_approve(
        actor=actor_of(request), transfer_id=transfer_id, reason=_reason(payload)
    )


# --- reversals (four eyes) --------------------------------------------------------------------


@ledger_router.post(
    "/entries/{int:entry_id}/reversal-requests", response={201: ReversalRequestOut, **WRITE_ERRORS}
)
def reversal_prepare(
    request: HttpRequest, entry_id: int, payload: ReasonIn
) -> Status[ReversalRequest]:
    """Staff prepare the reversal of a posted entry; another staff member approves it."""
    reversal = transfers.reversal_prepare(
        actor=actor_of(request), entry_id=entry_id, reason=payload.reason
    )
    return Status(201, reversal)


@ledger_router.get("/reversal-requests", response={200: list[ReversalRequestOut], **READ_ERRORS})
@paginate(BoundedLimitOffsetPagination, max_limit=PAGE_SIZE_MAX)
def reversal_list(request: HttpRequest) -> QuerySet[ReversalRequest]:
    return transfers.reversal_requests(user=actor_of(request))


@ledger_router.get(
    "/reversal-requests/{int:reversal_id}", response={200: ReversalRequestOut, **READ_ERRORS}
)
def reversal_detail(request: HttpRequest, reversal_id: int) -> ReversalRequest:
    return transfers.reversal_request_get(user=actor_of(request), reversal_id=reversal_id)


@ledger_router.post(
    "/reversal-requests/{int:reversal_id}/approve",
    response={200: ReversalRequestOut, **WRITE_ERRORS},
)
def reversal_approve(
    request: HttpRequest, reversal_id: int, payload: OptionalReasonIn | None = None
) -> ReversalRequest:
    """A second staff member approves: the reversing entry is posted now."""
    return transfers.reversal_approve(
        actor=actor_of(request), reversal_id=reversal_id, reason=_reason(payload)
    )


@ledger_router.post(
    "/reversal-requests/{int:reversal_id}/reject",
    response={200: ReversalRequestOut, **WRITE_ERRORS},
)
def reversal_reject(request: HttpRequest, reversal_id: int, payload: ReasonIn) -> ReversalRequest:
    return transfers.reversal_reject(
        actor=actor_of(request), reversal_id=reversal_id, reason=payload.reason
    )
