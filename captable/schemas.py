"""API schemas for transfers and four-eyes ledger requests. Inputs are strict; quantities go in
as unit strings of the offering ("12.5") and come out both as units and as quanta (int)."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Annotated, Literal

from ninja import Schema
from pydantic import Field

from captable.models import (
    ReversalRequest,
    ReversalRequestStatusChange,
    TransferRequest,
    TransferRequestStatusChange,
)
from common.schemas import ErrorOut, StrictSchema, ValidationErrorOut
from offerings.quantities import format_units, units_to_quanta

UnitsString = Annotated[
    str,
    Field(
        pattern=r"^\d{1,15}(\.\d{1,6})?$",
        examples=["100", "12.5"],
        description="Units as a decimal string; no finer than one quantum of the offering.",
    ),
]
Reason = Annotated[str, Field(min_length=1, max_length=2000)]
DocumentReference = Annotated[str, Field(min_length=1, max_length=200)]

ExceptionName = Literal[
    "none", "issuer", "accredited_investor", "family_member", "trust", "registered_offering"
]
LegalBasisName = Literal["court_order", "death", "divorce", "other"]

READ_ERRORS: dict[int, type[Schema]] = {
    401: ErrorOut,
    403: ErrorOut,
    404: ErrorOut,
    422: ValidationErrorOut,
}
WRITE_ERRORS: dict[int, type[Schema]] = {
    400: ErrorOut,
    401: ErrorOut,
    403: ErrorOut,
    404: ErrorOut,
    409: ErrorOut,
    422: ValidationErrorOut,
}


def quanta_of(units: str, *, quanta_per_unit: int) -> int:
    return units_to_quanta(Decimal(units), quanta_per_unit=quanta_per_unit, field="units")


class EvidenceIn(StrictSchema):
    document_reference: DocumentReference = Field(examples=["doc-2025-117"])
    description: str = Field("", max_length=2000)


class TransferCreateIn(StrictSchema):
    offering_id: int
    units: UnitsString
    buyer_email: str | None = Field(
        None, max_length=254, description="The recipient investor's email."
    )
    buyer_investor_id: int | None = Field(
        None, description="Staff only: the recipient by investor id instead of email."
    )
    exception: ExceptionName = Field(
        "none",
        description="Reg CF resale-lock exception claimed for units issued less than a year "
        "ago; needs evidence and staff approval.",
    )
    evidence: EvidenceIn | None = None


class ForcedTransferIn(StrictSchema):
    offering_id: int
    seller_investor_id: int
    buyer_investor_id: int
    units: UnitsString
    legal_basis: LegalBasisName
    reason: Reason
    document_reference: DocumentReference


class ReasonIn(StrictSchema):
    reason: Reason


class OptionalReasonIn(StrictSchema):
    reason: str = Field("", max_length=2000)


class StatusChangeOut(Schema):
    from_status: str
    to_status: str
    actor_id: int | None
    reason: str
    created_at: datetime

    @staticmethod
    def resolve_actor_id(
        obj: TransferRequestStatusChange | ReversalRequestStatusChange,
    ) -> int | None:
        return obj.actor_id


class TransferOut(Schema):
    id: int
    kind: str
    status: str
    offering_id: int
    seller_investor_id: int
    buyer_investor_id: int
    units: str
    quanta: int
    exception: str
    evidence_reference: str
    evidence_description: str
    legal_basis: str
    reason: str
    requested_by_id: int
    decided_by_id: int | None
    decided_at: datetime | None
    decision_reason: str
    entry_id: int | None
    created_at: datetime
    updated_at: datetime
    completed_at: datetime | None

    @staticmethod
    def resolve_offering_id(obj: TransferRequest) -> int:
        return obj.offering_id

    @staticmethod
    def resolve_seller_investor_id(obj: TransferRequest) -> int:
        return obj.seller_id

    @staticmethod
    def resolve_buyer_investor_id(obj: TransferRequest) -> int:
        return obj.buyer_id

    @staticmethod
    def resolve_units(obj: TransferRequest) -> str:
        return format_units(obj.quanta, obj.offering.quanta_per_unit)

    @staticmethod
    def resolve_requested_by_id(obj: TransferRequest) -> int:
        return obj.requested_by_id

    @staticmethod
    def resolve_decided_by_id(obj: TransferRequest) -> int | None:
        return obj.decided_by_id

    @staticmethod
    def resolve_entry_id(obj: TransferRequest) -> int | None:
        return obj.entry_id


class TransferDetailOut(TransferOut):
    history: list[StatusChangeOut]

    @staticmethod
    def resolve_history(obj: TransferRequest) -> list[TransferRequestStatusChange]:
        return list(obj.status_changes.order_by("created_at", "pk"))


class ReversalRequestOut(Schema):
    id: int
    entry_id: int
    status: str
    reason: str
    requested_by_id: int
    decided_by_id: int | None
    decided_at: datetime | None
    decision_reason: str
    reversal_entry_id: int | None
    created_at: datetime
    completed_at: datetime | None
    history: list[StatusChangeOut]

    @staticmethod
    def resolve_entry_id(obj: ReversalRequest) -> int:
        return obj.entry_id

    @staticmethod
    def resolve_requested_by_id(obj: ReversalRequest) -> int:
        return obj.requested_by_id

    @staticmethod
    def resolve_decided_by_id(obj: ReversalRequest) -> int | None:
        return obj.decided_by_id

    @staticmethod
    def resolve_reversal_entry_id(obj: ReversalRequest) -> int | None:
        return obj.reversal_entry_id

    @staticmethod
    def resolve_history(obj: ReversalRequest) -> list[ReversalRequestStatusChange]:
        return list(obj.status_changes.order_by("created_at", "pk"))
