"""HTTP for subscriptions: `POST /offerings/{id}/subscriptions` and `/subscriptions/...`.
Schema → one service or selector → schema. Mounted at the API root (its paths are absolute).

No `from __future__ import annotations` here: ninja reads the parameter annotations at import
time, and `@paginate` re-wraps the view, so string annotations could not be resolved.
"""

from decimal import Decimal

from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from ninja import Router
from ninja.pagination import paginate
from ninja.params import HeaderEx, P

from captable import subscriptions
from captable.api import actor_of
from captable.models import Subscription, SubscriptionReconfirmation
from captable.payment_schemas import ReconfirmationOut
from captable.schemas import READ_ERRORS, WRITE_ERRORS
from captable.subscription_schemas import (
    AgreementOut,
    SubscriptionCancelIn,
    SubscriptionCreateIn,
    SubscriptionDetailOut,
    SubscriptionOut,
    SubscriptionSignIn,
    subscription_detail_json,
    subscription_detail_out,
)
from captable.subscription_selectors import (
    reconfirmations_of_subscription,
    subscription_agreement_document,
    subscription_get,
    subscriptions_of_user,
)
from common.auth import DeferredBearerAuth, client_ip_of
from common.idempotency import Claim, ClaimedRead, idempotent_rate_limited
from common.pagination import BoundedLimitOffsetPagination
from common.ratelimit import THROTTLED_RESPONSE
from common.sql import Rider

subscriptions_router = Router(tags=["subscriptions"])

PAGE_SIZE_MAX = 100


@subscriptions_router.post(
    "/offerings/{int:offering_id}/subscriptions",
    response={201: SubscriptionDetailOut, **WRITE_ERRORS, **THROTTLED_RESPONSE},
    auth=DeferredBearerAuth(),
)
def subscription_create(
    request: HttpRequest,
    offering_id: int,
    payload: SubscriptionCreateIn,
    idempotency_key: HeaderEx[str, P(alias="Idempotency-Key", min_length=1, max_length=255)],
) -> HttpResponse:
    """Subscribe for units of a live offering (investors). The units are reserved (status
    `reserved`, until `expires_at` unless funded) or, when supply has run out, the subscription
    joins the waitlist (`waitlisted`, with its `waitlist_position`). Replaying the same
    `Idempotency-Key` with the same body returns the first response (header
    `Idempotent-Replayed: true`); the same key with another body is a 409. Refusals (KYC,
    minimum/maximum, the exemption's investor limits) are 403/409/422 with a `code` and
    change nothing. Rate-limited per user (429 with `Retry-After`)."""
    read_ahead = subscriptions.subscription_read_ahead(offering_id)

    def operation(claim: Claim | None) -> tuple[int, SubscriptionDetailOut | None]:
        actor = actor_of(request)  # the token is looked up by then (`DeferredBearerAuth`)

        def stored_with_the_write(subscription: Subscription) -> Rider:
            assert claim is not None
            return claim.rider(201, subscription_detail_json(subscription))

        read = (read_ahead, claim.read_row) if read_ahead and claim and claim.read_row else None
        subscription = subscriptions.subscription_create(
            actor=actor,
            offering_id=offering_id,
            units=Decimal(payload.units),
            risk_warning_acknowledged=payload.risk_warning_acknowledged,
            savepoint=False,  # inside the rate limiter's transaction, which rolls back on error
            read_ahead=read,
            rider_for=stored_with_the_write if read is not None else None,
        )
        if claim is not None and claim.stored() is not None:
            return 201, None  # the response went with the write
        return 201, subscription_detail_out(subscription)

    # One transaction: the rate count, the idempotency record and the subscription; on
    # PostgreSQL the token's user, the count, the key's claim, the investor's row lock and the
    # facts the checks need in one statement, and the response stored by the subscription's
    # own write.
    return idempotent_rate_limited(
        request,
        scope="subscribe",
        operation=operation,
        read=ClaimedRead(read_ahead.sql, read_ahead.params) if read_ahead else None,
    )


@subscriptions_router.get("/subscriptions", response={200: list[SubscriptionOut], **READ_ERRORS})
@paginate(BoundedLimitOffsetPagination, max_limit=PAGE_SIZE_MAX)
def subscription_list(
    request: HttpRequest, status: str | None = None, offering_id: int | None = None
) -> QuerySet[Subscription]:
    """Your subscriptions, newest first; filter by `status` or `offering_id`."""
    return subscriptions_of_user(user=actor_of(request), status=status, offering_id=offering_id)


@subscriptions_router.get(
    "/subscriptions/{int:subscription_id}", response={200: SubscriptionDetailOut, **READ_ERRORS}
)
def subscription_detail(request: HttpRequest, subscription_id: int) -> Subscription:
    """One of your subscriptions, with its history and signatures (anyone else's: 404)."""
    return subscription_get(user=actor_of(request), subscription_id=subscription_id)


@subscriptions_router.get(
    "/subscriptions/{int:subscription_id}/agreement", response={200: AgreementOut, **READ_ERRORS}
)
def subscription_agreement(request: HttpRequest, subscription_id: int) -> AgreementOut:
    """The agreement to sign, generated from the offering's current terms and documents, and
    its SHA-256 (send it back when signing to be sure you sign what you read)."""
    subscription = subscription_get(user=actor_of(request), subscription_id=subscription_id)
    document = subscription_agreement_document(subscription)
    return AgreementOut(
        subscription_id=subscription.pk,
        document_version=document.version,
        document_sha256=document.sha256,
        text=document.text,
    )


@subscriptions_router.post(
    "/subscriptions/{int:subscription_id}/sign",
    response={200: SubscriptionDetailOut, **WRITE_ERRORS},
)
def subscription_sign(
    request: HttpRequest, subscription_id: int, payload: SubscriptionSignIn
) -> Subscription:
    """Click-to-sign a reserved subscription: type your legal name. The agreement's SHA-256,
    the time and your IP address are recorded."""
    actor = actor_of(request)
    subscriptions.subscription_sign(
        actor=actor,
        subscription_id=subscription_id,
        typed_name=payload.typed_name,
        ip_address=client_ip_of(request),
        agreement_sha256=payload.agreement_sha256,
    )
    return subscription_get(user=actor, subscription_id=subscription_id)


@subscriptions_router.post(
    "/subscriptions/{int:subscription_id}/cancel",
    response={200: SubscriptionDetailOut, **WRITE_ERRORS},
)
def subscription_cancel(
    request: HttpRequest, subscription_id: int, payload: SubscriptionCancelIn | None = None
) -> Subscription:
    """Cancel a subscription: waitlisted ones while the offering is live; reserved, signed or
    funded ones until `cancel_deadline` (Reg CF: 48 hours before the offering deadline),
    inside the ECSP reflection period, or while a reconfirmation is pending. Money in escrow
    goes back to where it came from (see `GET /subscriptions/{id}/payments`)."""
    actor = actor_of(request)
    subscriptions.subscription_cancel(
        actor=actor, subscription_id=subscription_id, reason=payload.reason if payload else ""
    )
    return subscription_get(user=actor, subscription_id=subscription_id)


@subscriptions_router.post(
    "/subscriptions/{int:subscription_id}/reconfirm",
    response={200: SubscriptionDetailOut, **WRITE_ERRORS},
)
def subscription_reconfirm(
    request: HttpRequest, subscription_id: int, payload: SubscriptionSignIn
) -> Subscription:
    """After a material change to the offering (a new document version), sign the agreement
    as it now stands (`GET /subscriptions/{id}/agreement`) before the reconfirmation's
    `due_at`, or the subscription is cancelled and refunded."""
    actor = actor_of(request)
    subscriptions.subscription_reconfirm(
        actor=actor,
        subscription_id=subscription_id,
        typed_name=payload.typed_name,
        ip_address=client_ip_of(request),
        agreement_sha256=payload.agreement_sha256,
    )
    return subscription_get(user=actor, subscription_id=subscription_id)


@subscriptions_router.get(
    "/subscriptions/{int:subscription_id}/reconfirmations",
    response={200: list[ReconfirmationOut], **READ_ERRORS},
)
def subscription_reconfirmations(
    request: HttpRequest, subscription_id: int
) -> QuerySet[SubscriptionReconfirmation]:
    """The reconfirmations asked of one of your subscriptions, newest first."""
    return reconfirmations_of_subscription(user=actor_of(request), subscription_id=subscription_id)
