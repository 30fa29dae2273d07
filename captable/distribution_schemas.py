"""API schemas for distributions. Inputs are strict; money goes in and out as
`{"amount": "1000.00", "currency": "USD"}`; units of record as a decimal string and quanta."""

from __future__ import annotations

from datetime import date, datetime
from typing import Literal

from ninja import Schema
from pydantic import BaseModel, Field

from captable.distribution_selectors import PayoutTotals
from captable.models import Distribution, DistributionStatusChange, Payout
from common.schemas import MoneyIn, MoneyOut, StrictSchema
from offerings.quantities import format_units


class DistributionDeclareIn(StrictSchema):
    amount: MoneyIn = Field(description="The whole amount, in the offering's currency.")
    kind: Literal["income", "return_of_capital", "mixed"]
    income: MoneyIn | None = Field(
        None,
        description="Mixed only: the income part (the rest is return of capital). Withholding "
        "applies to income only.",
    )
    record_date: date = Field(
        description="Holders of record at the end of this day in the offering's time zone."
    )
    payment_date: date = Field(description="On or after the record date; not in the past.")
    method: Literal["pro_rata"] = "pro_rata"
    memo: str = Field("", max_length=2000)


class DistributionStatusChangeOut(Schema):
    from_status: str
    to_status: str
    actor_id: int | None
    reason: str
    created_at: datetime

    @staticmethod
    def resolve_actor_id(obj: DistributionStatusChange) -> int | None:
        return obj.actor_id


class DistributionOut(Schema):
    id: int
    offering_id: int
    status: str
    kind: str
    method: str
    amount: MoneyOut
    income: MoneyOut
    return_of_capital: MoneyOut
    record_date: date
    record_at: datetime = Field(description="The end of the record date, offering time zone.")
    payment_date: date
    memo: str
    declared_by_id: int
    approved_by_id: int | None
    approved_at: datetime | None
    funded_at: datetime | None
    payouts_computed_at: datetime | None
    paid_at: datetime | None
    created_at: datetime

    @staticmethod
    def resolve_offering_id(obj: Distribution) -> int:
        return obj.offering_id

    @staticmethod
    def resolve_amount(obj: Distribution) -> MoneyOut:
        return MoneyOut.of_minor_units(obj.amount_minor, obj.currency)

    @staticmethod
    def resolve_income(obj: Distribution) -> MoneyOut:
        return MoneyOut.of_minor_units(obj.income_minor, obj.currency)

    @staticmethod
    def resolve_return_of_capital(obj: Distribution) -> MoneyOut:
        return MoneyOut.of_minor_units(obj.amount_minor - obj.income_minor, obj.currency)

    @staticmethod
    def resolve_declared_by_id(obj: Distribution) -> int:
        return obj.declared_by_id

    @staticmethod
    def resolve_approved_by_id(obj: Distribution) -> int | None:
        return obj.approved_by_id


class PayoutOut(BaseModel):
    """Built explicitly (a page of up to 100 rows), never read off the ORM by ninja."""

    investor_id: int
    units: str = Field(description="Units held at the record date.")
    quanta: int
    gross: MoneyOut
    income: MoneyOut
    return_of_capital: MoneyOut
    tax_form: str = Field(description="The tax form on file when the payouts were computed.")
    withholding_rate_basis_points: int
    withholding: MoneyOut
    net: MoneyOut = Field(description="Paid to the investor's available cash.")
    entry_id: int | None
    paid_at: datetime | None

    @classmethod
    def of(cls, payout: Payout, *, currency: str, quanta_per_unit: int) -> PayoutOut:
        def money(amount_minor: int) -> MoneyOut:
            return MoneyOut.of_minor_units(amount_minor, currency)

        return cls(
            investor_id=payout.investor_id,
            units=format_units(payout.quanta, quanta_per_unit),
            quanta=payout.quanta,
            gross=money(payout.gross_minor),
            income=money(payout.income_minor),
            return_of_capital=money(payout.return_of_capital_minor),
            tax_form=payout.tax_form,
            withholding_rate_basis_points=payout.withholding_rate_basis_points,
            withholding=money(payout.withholding_minor),
            net=money(payout.net_minor),
            entry_id=payout.entry_id,
            paid_at=payout.paid_at,
        )


class PayoutTotalsOut(BaseModel):
    payouts: int
    payouts_paid: int
    gross: MoneyOut
    income: MoneyOut
    return_of_capital: MoneyOut
    withholding: MoneyOut
    net: MoneyOut

    @classmethod
    def of(cls, totals: PayoutTotals, *, currency: str) -> PayoutTotalsOut:
        def money(amount_minor: int) -> MoneyOut:
            return MoneyOut.of_minor_units(amount_minor, currency)

        return cls(
            payouts=totals.payouts,
            payouts_paid=totals.payouts_paid,
            gross=money(totals.gross_minor),
            income=money(totals.income_minor),
            return_of_capital=money(totals.return_of_capital_minor),
            withholding=money(totals.withholding_minor),
            net=money(totals.net_minor),
        )


class PayoutPageOut(BaseModel):
    items: list[PayoutOut]
    count: int
    limit: int
    offset: int


class DistributionDetailOut(BaseModel):
    distribution: DistributionOut
    history: list[DistributionStatusChangeOut]
    totals: PayoutTotalsOut = Field(
        description="Over the payouts you may see (all of them for the sponsor and staff; "
        "your own for an investor)."
    )
    payouts: PayoutPageOut
