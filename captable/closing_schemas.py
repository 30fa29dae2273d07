"""API schemas for closing: close requests (four eyes), the closing record, Reg CF early
closes and an offering's statistics. Inputs are strict; money comes out as `MoneyOut`,
quantities both as unit strings and as quanta (int)."""

from __future__ import annotations

from datetime import datetime

from ninja import Schema
from pydantic import AwareDatetime, BaseModel, Field

from captable.closing_selectors import OfferingStats
from captable.models import CloseRequest, CloseRequestStatusChange, EarlyClose, OfferingClosing
from captable.schemas import Reason, StatusChangeOut
from captable.subscription_selectors import REG_CF_CANCEL_CUTOFF
from common.schemas import MoneyOut, StrictSchema
from offerings.quantities import format_units


class CloseRequestIn(StrictSchema):
    reason: Reason = Field(examples=["Deadline reached; target met."])


class EarlyCloseIn(StrictSchema):
    closes_at: AwareDatetime = Field(
        description="The new deadline, with its offset: at least 5 business days from now, at "
        "least 21 days after the offering went live, before the current deadline."
    )
    reason: Reason


class CloseRequestOut(Schema):
    id: int
    offering_id: int
    status: str
    reason: str
    requested_by_id: int
    decided_by_id: int | None
    decided_at: datetime | None
    decision_reason: str
    created_at: datetime
    completed_at: datetime | None
    history: list[StatusChangeOut]

    @staticmethod
    def resolve_offering_id(obj: CloseRequest) -> int:
        return obj.offering_id

    @staticmethod
    def resolve_requested_by_id(obj: CloseRequest) -> int:
        return obj.requested_by_id

    @staticmethod
    def resolve_decided_by_id(obj: CloseRequest) -> int | None:
        return obj.decided_by_id

    @staticmethod
    def resolve_history(obj: CloseRequest) -> list[CloseRequestStatusChange]:
        return list(obj.status_changes.order_by("created_at", "pk"))


class OfferingClosingOut(BaseModel):
    offering_id: int
    trigger: str
    close_request_id: int | None
    outcome: str | None = Field(description="funded, failed, or null while undecided")
    decided_at: datetime | None
    amount_funded: MoneyOut
    target_raise: MoneyOut
    started_by_id: int | None
    started_at: datetime
    completed_at: datetime | None

    @classmethod
    def of(cls, closing: OfferingClosing) -> OfferingClosingOut:
        return cls(
            offering_id=closing.offering_id,
            trigger=closing.trigger,
            close_request_id=closing.close_request_id,
            outcome=closing.outcome or None,
            decided_at=closing.decided_at,
            amount_funded=MoneyOut.of_minor_units(closing.amount_funded_minor, closing.currency),
            target_raise=MoneyOut.of_minor_units(closing.target_raise_minor, closing.currency),
            started_by_id=closing.started_by_id,
            started_at=closing.started_at,
            completed_at=closing.completed_at,
        )


class EarlyCloseOut(BaseModel):
    id: int
    offering_id: int
    status: str
    original_closes_at: datetime
    closes_at: datetime
    cancel_until: datetime = Field(description="Investors may cancel until then (48 h before).")
    notice_given_at: datetime
    amount_funded: MoneyOut
    reason: str
    resolved_at: datetime | None
    resolution: str

    @classmethod
    def of(cls, early: EarlyClose) -> EarlyCloseOut:
        return cls(
            id=early.pk,
            offering_id=early.offering_id,
            status=early.status,
            original_closes_at=early.original_closes_at,
            closes_at=early.closes_at,
            cancel_until=early.closes_at - REG_CF_CANCEL_CUTOFF,
            notice_given_at=early.notice_given_at,
            amount_funded=MoneyOut.of_minor_units(
                early.amount_funded_minor, early.offering.currency
            ),
            reason=early.reason,
            resolved_at=early.resolved_at,
            resolution=early.resolution,
        )


class OfferingStatsOut(BaseModel):
    """An offering's raise: units reserved (held by subscriptions not issued yet), sold (paid
    for: funded or accepted), issued and still available; the amount raised (paid), the
    number of investors who paid, and the percentage of the target (null without one)."""

    offering_id: int
    quanta_per_unit: int
    units_authorized: str
    units_authorized_quanta: int
    units_reserved: str
    units_reserved_quanta: int
    units_sold: str
    units_sold_quanta: int
    units_issued: str
    units_issued_quanta: int
    units_available: str
    units_available_quanta: int
    amount_raised: MoneyOut
    target_raise: MoneyOut
    investor_count: int
    waitlisted_count: int
    percent_of_target: str | None = Field(examples=["42.5000"])

    @classmethod
    def of(cls, stats: OfferingStats) -> OfferingStatsOut:
        def units(quanta: int) -> str:
            return format_units(quanta, stats.quanta_per_unit)

        percent = stats.percent_of_target
        return cls(
            offering_id=stats.offering_id,
            quanta_per_unit=stats.quanta_per_unit,
            units_authorized=units(stats.units_authorized_quanta),
            units_authorized_quanta=stats.units_authorized_quanta,
            units_reserved=units(stats.units_reserved_quanta),
            units_reserved_quanta=stats.units_reserved_quanta,
            units_sold=units(stats.units_sold_quanta),
            units_sold_quanta=stats.units_sold_quanta,
            units_issued=units(stats.units_issued_quanta),
            units_issued_quanta=stats.units_issued_quanta,
            units_available=units(stats.units_available_quanta),
            units_available_quanta=stats.units_available_quanta,
            amount_raised=MoneyOut.of_minor_units(stats.amount_raised_minor, stats.currency),
            target_raise=MoneyOut.of_minor_units(stats.target_raise_minor, stats.currency),
            investor_count=stats.investor_count,
            waitlisted_count=stats.waitlisted_count,
            percent_of_target=None if percent is None else f"{percent:f}",
        )


class OfferingCloseOut(BaseModel):
    """Everything about an offering's close, for staff."""

    offering_id: int
    offering_status: str
    closes_at: datetime
    closing: OfferingClosingOut | None
    early_close: EarlyCloseOut | None
    stats: OfferingStatsOut
