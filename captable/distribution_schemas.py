"""API schemas for distributions. Inputs are strict; money goes in and out as
`{"amount": "1000.00", "currency": "USD"}`; units of record as a decimal string and quanta."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Literal

from ninja import Schema
from pydantic import BaseModel, Field

from captable.distribution_selectors import PayoutTotals
from captable.models import Distribution, DistributionStatusChange, Payout, WaterfallTerms
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
    method: Literal["pro_rata", "waterfall"] = Field(
        "pro_rata",
        description="waterfall: through the offering's waterfall terms; declare it `mixed` "
        "without an income part (the tiers decide income and return of capital).",
    )
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


class PayoutTierOut(BaseModel):
    tier: str = Field(description="return_of_capital, preferred_return, catch_up or promote.")
    index: int = Field(description="Promote tiers: 0, 1, 2 … in the terms' order.")
    investor: MoneyOut
    sponsor: MoneyOut


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
    promote: MoneyOut = Field(description="Waterfall: the sponsor's share of these units' part.")
    tiers: list[PayoutTierOut] = Field(description="Waterfall: the breakdown by tier.")
    reinvested_quanta: int = Field(description="Reinvestment: quanta bought at NAV.")
    reinvested: MoneyOut = Field(description="Reinvestment: what those quanta cost.")
    reinvestment_note: str
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
            promote=money(payout.promote_minor),
            tiers=[
                PayoutTierOut(
                    tier=tier["tier"],
                    index=tier["index"],
                    investor=money(tier["investor_minor"]),
                    sponsor=money(tier["sponsor_minor"]),
                )
                for tier in payout.tiers
            ],
            reinvested_quanta=payout.reinvested_quanta,
            reinvested=money(payout.reinvested_minor),
            reinvestment_note=payout.reinvestment_note,
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
    promote: MoneyOut

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
            promote=money(totals.promote_minor),
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


class PromoteTierIn(StrictSchema):
    sponsor_share: Decimal = Field(ge=0, le=1, description="0.20 for an 80/20 split.")
    hurdle_kind: Literal["lp_irr", "equity_multiple"] | None = Field(
        None, description="Until the investor reaches this hurdle; none on the last tier."
    )
    hurdle_value: Decimal | None = Field(None, ge=0, description="0.15 (IRR) or 2.0 (multiple).")


class WaterfallTermsIn(StrictSchema):
    preferred_return_rate: Decimal = Field(ge=0, le=1, description="0.08 for 8% a year.")
    pref_compounding: Literal["simple", "annual"] = "simple"
    catch_up_sponsor_share: Decimal = Field(
        Decimal(1), ge=0, le=1, description="1 for 100/0, 0.5 for 50/50."
    )
    sponsor_profit_target: Decimal = Field(
        Decimal(0), ge=0, le=1, description="The sponsor's target share of profit; 0: none."
    )
    promote_tiers: list[PromoteTierIn] = Field(min_length=1, max_length=10)


class WaterfallTermsOut(BaseModel):
    offering_id: int
    preferred_return_rate: Decimal
    pref_compounding: str
    catch_up_sponsor_share: Decimal
    sponsor_profit_target: Decimal
    promote_tiers: list[dict[str, str]]
    updated_at: datetime

    @classmethod
    def of(cls, terms: WaterfallTerms) -> WaterfallTermsOut:
        return cls(
            offering_id=terms.offering_id,
            preferred_return_rate=terms.preferred_return_rate,
            pref_compounding=terms.pref_compounding,
            catch_up_sponsor_share=terms.catch_up_sponsor_share,
            sponsor_profit_target=terms.sponsor_profit_target,
            promote_tiers=terms.promote_tiers,
            updated_at=terms.updated_at,
        )
