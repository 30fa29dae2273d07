"""HTTP for withdrawals: the investor withdraws available cash to their bank; the provider
notifies on `POST /withdrawals/webhook` (signed like the funding webhook). Mounted under the
distributions router.

No `from __future__ import annotations` here: ninja reads the annotations at import time.
"""

from datetime import datetime

from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from ninja import Router
from ninja.pagination import paginate
from ninja.params import HeaderEx, P
from pydantic import BaseModel, Field

from captable import withdrawals
from captable.api import actor_of
from captable.models import Withdrawal
from captable.payments import WEBHOOK_SIGNATURE_HEADER, WEBHOOK_TIMESTAMP_HEADER
from captable.schemas import READ_ERRORS, WRITE_ERRORS
from common.idempotency import idempotent
from common.pagination import BoundedLimitOffsetPagination
from common.schemas import ErrorOut, MoneyIn, MoneyOut, StrictSchema

withdrawals_router = Router(tags=["withdrawals"])


class WithdrawalIn(StrictSchema):
    amount: MoneyIn
    payee_account: str = Field(min_length=1, max_length=100, description="Your bank account.")


class WithdrawalOut(BaseModel):
    id: int
    investor_id: int
    amount: MoneyOut
    status: str
    provider: str
    provider_reference: str
    payee_account: str
    created_at: datetime
    completed_at: datetime | None

    @classmethod
    def of(cls, withdrawal: Withdrawal) -> "WithdrawalOut":
        return cls(
            id=withdrawal.pk,
            investor_id=withdrawal.investor_id,
            amount=MoneyOut.of_minor_units(withdrawal.amount_minor, withdrawal.currency),
            status=withdrawal.status,
            provider=withdrawal.provider,
            provider_reference=withdrawal.provider_reference,
            payee_account=withdrawal.payee_account,
            created_at=withdrawal.created_at,
            completed_at=withdrawal.completed_at,
        )


class WithdrawalWebhookOut(BaseModel):
    event_id: str
    duplicate: bool
    outcome: str


@withdrawals_router.post("/withdrawals", response={201: WithdrawalOut, **WRITE_ERRORS})
def withdrawal_create(
    request: HttpRequest,
    payload: WithdrawalIn,
    idempotency_key: HeaderEx[str, P(alias="Idempotency-Key", min_length=1, max_length=255)],
) -> HttpResponse:
    """Withdraw available cash to your bank (status `pending` until the provider reports it
    paid or failed). At most your available cash (409 `insufficient_cash`). Replaying the
    same `Idempotency-Key` and body returns the first response."""
    actor = actor_of(request)

    def operation() -> tuple[int, WithdrawalOut]:
        withdrawal = withdrawals.withdrawal_request(
            actor=actor,
            amount_minor=payload.amount.to_minor_units(),
            currency=payload.amount.currency,
            payee_account=payload.payee_account,
        )
        return 201, WithdrawalOut.of(withdrawal)

    return idempotent(request, operation=operation)


@withdrawals_router.get("/withdrawals", response={200: list[WithdrawalOut], **READ_ERRORS})
@paginate(BoundedLimitOffsetPagination, max_limit=100)
def withdrawal_list(request: HttpRequest) -> list[WithdrawalOut]:
    """Your withdrawals, newest first."""
    rows: QuerySet[Withdrawal] = withdrawals.withdrawals_of(user=actor_of(request))
    return [WithdrawalOut.of(row) for row in rows]


@withdrawals_router.get(
    "/withdrawals/{int:withdrawal_id}", response={200: WithdrawalOut, **READ_ERRORS}
)
def withdrawal_detail(request: HttpRequest, withdrawal_id: int) -> WithdrawalOut:
    """One of your withdrawals (anyone else's: 404)."""
    return WithdrawalOut.of(
        withdrawals.withdrawal_get(user=actor_of(request), withdrawal_id=withdrawal_id)
    )


@withdrawals_router.post(
    "/withdrawals/webhook",
    auth=None,
    response={
        200: WithdrawalWebhookOut,
        400: ErrorOut,
        401: ErrorOut,
        404: ErrorOut,
        409: ErrorOut,
    },
)
def withdrawal_webhook(request: HttpRequest) -> WithdrawalWebhookOut:
    """For the payment provider (no bearer token), signed like `POST /payments/webhook`:
    `withdrawal.paid`, `withdrawal.failed` or `withdrawal.returned` for a reference."""
    result = withdrawals.withdrawal_webhook_receive(
        body=request.body,
        timestamp=request.headers.get(WEBHOOK_TIMESTAMP_HEADER),
        signature=request.headers.get(WEBHOOK_SIGNATURE_HEADER),
    )
    return WithdrawalWebhookOut(
        event_id=result.event_id, duplicate=result.is_duplicate, outcome=result.outcome
    )
