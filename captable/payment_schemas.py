"""API schemas for funding (payments, their instructions, the provider's webhook) and for the
reconfirmations a material change asks of signed subscriptions. Money out as `MoneyOut`."""

from __future__ import annotations

from datetime import datetime

from ninja import Schema
from pydantic import Field

from captable.models import Payment, PaymentStatusChange, SubscriptionReconfirmation
from captable.payments import payment_provider
from common.schemas import MoneyOut


class PaymentInstructionsOut(Schema):
    provider: str
    reference: str = Field(description="Quote it exactly with the transfer.")
    amount: MoneyOut
    beneficiary: str
    account: str
    note: str


class PaymentStatusChangeOut(Schema):
    from_status: str
    to_status: str
    reason: str
    created_at: datetime


class PaymentOut(Schema):
    id: int
    subscription_id: int
    status: str = Field(description="pending, confirmed, returned, failed or refunded.")
    provider: str
    reference: str
    amount_expected: MoneyOut
    amount_received: MoneyOut
    amount_over: MoneyOut = Field(description="Over-paid: sent straight back.")
    amount_short: MoneyOut = Field(description="Under-paid when it was confirmed.")
    amount_refunded: MoneyOut = Field(description="Sent back out to the payer in all.")
    created_at: datetime
    confirmed_at: datetime | None
    instructions: PaymentInstructionsOut | None = Field(
        description="How to pay, while the payment is pending."
    )
    history: list[PaymentStatusChangeOut]

    @staticmethod
    def resolve_reference(obj: Payment) -> str:
        return obj.provider_reference

    @staticmethod
    def resolve_amount_expected(obj: Payment) -> MoneyOut:
        return MoneyOut.of_minor_units(obj.amount_expected_minor, obj.currency)

    @staticmethod
    def resolve_amount_received(obj: Payment) -> MoneyOut:
        return MoneyOut.of_minor_units(obj.amount_received_minor, obj.currency)

    @staticmethod
    def resolve_amount_over(obj: Payment) -> MoneyOut:
        return MoneyOut.of_minor_units(obj.amount_over_minor, obj.currency)

    @staticmethod
    def resolve_amount_short(obj: Payment) -> MoneyOut:
        return MoneyOut.of_minor_units(obj.amount_short_minor, obj.currency)

    @staticmethod
    def resolve_amount_refunded(obj: Payment) -> MoneyOut:
        return MoneyOut.of_minor_units(obj.amount_refunded_minor, obj.currency)

    @staticmethod
    def resolve_instructions(obj: Payment) -> PaymentInstructionsOut | None:
        if obj.status != "pending":
            return None
        given = payment_provider(obj.provider).instructions(obj)
        return PaymentInstructionsOut(
            provider=given.provider,
            reference=given.reference,
            amount=MoneyOut.of_minor_units(given.amount_minor, given.currency),
            beneficiary=given.beneficiary,
            account=given.account,
            note=given.note,
        )

    @staticmethod
    def resolve_history(obj: Payment) -> list[PaymentStatusChange]:
        return list(obj.status_changes.order_by("created_at", "pk"))


class WebhookOut(Schema):
    event_id: str
    duplicate: bool = Field(description="True: this event id was processed before; no effect.")
    outcome: str


class ReconfirmationOut(Schema):
    id: int
    subscription_id: int
    status: str = Field(description="pending, reconfirmed, lapsed, superseded or void.")
    document_id: int | None = Field(description="The new offering document version, if any.")
    agreement_sha256: str = Field(description="The agreement to sign to reconfirm.")
    requested_at: datetime
    due_at: datetime = Field(
        description="Reconfirm before this (end of the 5th business day), or the subscription "
        "is cancelled and refunded."
    )
    resolved_at: datetime | None

    @staticmethod
    def resolve_document_id(obj: SubscriptionReconfirmation) -> int | None:
        return obj.document_id
