"""HTTP for funding: `POST /subscriptions/{id}/fund`, `GET /subscriptions/{id}/payments` and
the provider's `POST /payments/webhook`. Mounted at the API root (its paths are absolute).

No `from __future__ import annotations` here: ninja reads the parameter annotations at import
time.
"""

from django.db.models import QuerySet
from django.http import HttpRequest
from ninja import Router, Status

from captable import payments
from captable.api import actor_of
from captable.models import Payment
from captable.payment_schemas import PaymentOut, WebhookOut
from captable.schemas import READ_ERRORS, WRITE_ERRORS
from captable.subscription_selectors import payments_of_subscription
from common.schemas import ErrorOut

payments_router = Router(tags=["payments"])


@payments_router.post(
    "/subscriptions/{int:subscription_id}/fund",
    response={200: PaymentOut, 201: PaymentOut, **WRITE_ERRORS},
)
def subscription_fund(request: HttpRequest, subscription_id: int) -> Status[Payment]:
    """Start paying for your signed subscription: returns the payment with its instructions
    (where to transfer, the amount still due, the reference to quote). 201 when it is
    started now; 200 with the payment already pending. The subscription becomes `funded`
    when the provider confirms the money (`POST /payments/webhook`)."""
    payment, created = payments.subscription_fund(
        actor=actor_of(request), subscription_id=subscription_id
    )
    return Status(201 if created else 200, payment)


@payments_router.get(
    "/subscriptions/{int:subscription_id}/payments",
    response={200: list[PaymentOut], **READ_ERRORS},
)
def subscription_payments(request: HttpRequest, subscription_id: int) -> QuerySet[Payment]:
    """The payments of one of your subscriptions, newest first, with their history."""
    return payments_of_subscription(user=actor_of(request), subscription_id=subscription_id)


@payments_router.post(
    "/payments/webhook",
    auth=None,
    response={200: WebhookOut, 400: ErrorOut, 401: ErrorOut, 404: ErrorOut},
)
def payment_webhook(request: HttpRequest) -> WebhookOut:
    """For the payment provider (no bearer token): a JSON notification signed with
    `X-Payments-Signature` = hex HMAC-SHA256 of `"{X-Payments-Timestamp}.{raw body}"` under
    the shared secret. Unsigned or wrongly signed: 401; timestamp more than 5 minutes off:
    400; an event id already processed: 200 with `duplicate: true` and no effect."""
    result = payments.payment_webhook_receive(
        body=request.body,
        timestamp=request.headers.get(payments.WEBHOOK_TIMESTAMP_HEADER),
        signature=request.headers.get(payments.WEBHOOK_SIGNATURE_HEADER),
    )
    return WebhookOut(
        event_id=result.event_id, duplicate=result.is_duplicate, outcome=result.outcome
    )
