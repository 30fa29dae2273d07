"""HTTP for closing: `POST /offerings/{id}/close` (prepared by one staff member) and
`.../close/{request_id}/approve` (by another), early closes, and an offering's statistics.
Schema → one service or selector → schema. Mounted at the API root (its paths are absolute).

No `from __future__ import annotations` here: ninja reads the parameter annotations at import
time.
"""

from django.http import HttpRequest
from ninja import Router, Status

# Approving a close enqueues `captable.close_offering` through the outbox, which the embedded
# default runs in this process: its tasks must be registered here, not only in workers.
from captable import closing, tasks  # noqa: F401
from captable.api import actor_of
from captable.closing_schemas import (
    CloseRequestIn,
    CloseRequestOut,
    EarlyCloseIn,
    EarlyCloseOut,
    OfferingCloseOut,
    OfferingClosingOut,
    OfferingStatsOut,
)
from captable.closing_selectors import (
    close_request_get,
    close_requests_of,
    early_close_latest,
    offering_closing_of,
    offering_stats,
    offering_stats_get,
)
from captable.models import CloseRequest
from captable.schemas import READ_ERRORS, WRITE_ERRORS, OptionalReasonIn, ReasonIn
from common.auth import OptionalBearerAuth, staff_required
from offerings.selectors import offering_get

closing_router = Router(tags=["closing"])


@closing_router.post(
    "/offerings/{int:offering_id}/close", response={201: CloseRequestOut, **WRITE_ERRORS}
)
def close_request_prepare(
    request: HttpRequest, offering_id: int, payload: CloseRequestIn
) -> Status[CloseRequest]:
    """Staff prepare closing a live offering; a second staff member approves it
    (`.../close/{request_id}/approve`). Reg CF offerings close at their deadline (earlier only
    through an early close); the others before it once their target is met."""
    close_request = closing.close_request_prepare(
        actor=actor_of(request), offering_id=offering_id, reason=payload.reason
    )
    return Status(201, close_request)


@closing_router.get(
    "/offerings/{int:offering_id}/close/requests",
    response={200: list[CloseRequestOut], **READ_ERRORS},
)
def close_request_list(request: HttpRequest, offering_id: int) -> list[CloseRequest]:
    """The offering's close requests, newest first (staff)."""
    return list(close_requests_of(user=actor_of(request), offering_id=offering_id))


@closing_router.post(
    "/offerings/{int:offering_id}/close/{int:close_request_id}/approve",
    response={200: CloseRequestOut, **WRITE_ERRORS},
)
def close_request_approve(
    request: HttpRequest,
    offering_id: int,
    close_request_id: int,
    payload: OptionalReasonIn | None = None,
) -> CloseRequest:
    """A second staff member (never the one who prepared it: 403 `four_eyes`) approves: the
    offering enters `closing` and the close runs in the background (`GET .../close`)."""
    actor = actor_of(request)
    close_request_get(user=actor, offering_id=offering_id, close_request_id=close_request_id)
    return closing.close_request_approve(
        actor=actor, close_request_id=close_request_id, reason=payload.reason if payload else ""
    )


@closing_router.post(
    "/offerings/{int:offering_id}/close/{int:close_request_id}/reject",
    response={200: CloseRequestOut, **WRITE_ERRORS},
)
def close_request_reject(
    request: HttpRequest, offering_id: int, close_request_id: int, payload: ReasonIn
) -> CloseRequest:
    actor = actor_of(request)
    close_request_get(user=actor, offering_id=offering_id, close_request_id=close_request_id)
    return closing.close_request_reject(
        actor=actor, close_request_id=close_request_id, reason=payload.reason
    )


@closing_router.get(
    "/offerings/{int:offering_id}/close", response={200: OfferingCloseOut, **READ_ERRORS}
)
def offering_close_detail(request: HttpRequest, offering_id: int) -> OfferingCloseOut:
    """Staff: the close (outcome, progress), the latest early close and the statistics."""
    actor = staff_required(actor_of(request))
    offering = offering_get(user=actor, offering_id=offering_id)
    record = offering_closing_of(offering_id=offering_id)
    early = early_close_latest(offering_id=offering_id)
    return OfferingCloseOut(
        offering_id=offering.pk,
        offering_status=offering.status,
        closes_at=offering.closes_at,
        closing=OfferingClosingOut.of(record) if record else None,
        early_close=EarlyCloseOut.of(early) if early else None,
        stats=OfferingStatsOut.of(offering_stats(offering=offering)),
    )


@closing_router.post(
    "/offerings/{int:offering_id}/early-close", response={201: EarlyCloseOut, **WRITE_ERRORS}
)
def early_close_schedule(
    request: HttpRequest, offering_id: int, payload: EarlyCloseIn
) -> Status[EarlyCloseOut]:
    """Reg CF early close (staff): once the target is met, a new deadline at least 5 business
    days from now and at least 21 days after launch. Investors with commitments are notified;
    they may cancel until 48 hours before the new deadline. If the target is no longer met at
    the new deadline, the original deadline comes back."""
    early = closing.offering_schedule_early_close(
        actor=actor_of(request),
        offering_id=offering_id,
        closes_at=payload.closes_at,
        reason=payload.reason,
    )
    return Status(201, EarlyCloseOut.of(early))


@closing_router.get(
    "/offerings/{int:offering_id}/stats",
    auth=OptionalBearerAuth(),
    response={200: OfferingStatsOut, **READ_ERRORS},
)
def offering_stats_detail(request: HttpRequest, offering_id: int) -> OfferingStatsOut:
    """Units reserved, sold (paid for), issued and available; amount raised, number of
    investors, percentage of the target. Whoever may see the offering may see these."""
    return OfferingStatsOut.of(offering_stats_get(user=request.user, offering_id=offering_id))
