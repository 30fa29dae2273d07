"""API schemas. Inputs are strict (unknown fields are a 422); money is `MoneyIn`/`MoneyOut`;
quantities go in as unit strings ("12.5") and come out both as quanta (int) and units."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any

from ninja import Schema
from pydantic import BaseModel, ConfigDict, Field, HttpUrl, model_validator

from common.money import format_minor_units
from common.schemas import ErrorOut, MoneyIn, MoneyOut, StrictSchema, ValidationErrorOut
from offerings.exemptions import Exemption
from offerings.models import (
    DocumentKind,
    FundingModel,
    Issuer,
    IssuerEntityType,
    Offering,
    OfferingDocument,
    OfferingStatus,
    OfferingStatusChange,
    Property,
    PropertyType,
    SecurityType,
    SponsorStatus,
)
from offerings.photos import photo_url
from offerings.quantities import cost_of_quanta_minor, format_units

UnitsString = Annotated[
    str,
    Field(
        pattern=r"^\d{1,15}(\.\d{1,6})?$",
        examples=["100", "12.5"],
        description="Units as a decimal string; no finer than one quantum of the offering.",
    ),
]
CountryCode = Annotated[str, Field(pattern=r"^[A-Za-z]{2}$", examples=["US"])]
Text200 = Annotated[str, Field(min_length=1, max_length=200)]
Reason = Annotated[str, Field(min_length=1, max_length=2000)]

# Error responses every endpoint of a kind can give, declared so the OpenAPI is honest.
READ_ERRORS: dict[int, type[Schema]] = {401: ErrorOut, 404: ErrorOut, 422: ValidationErrorOut}
WRITE_ERRORS: dict[int, type[Schema]] = {
    400: ErrorOut,
    401: ErrorOut,
    403: ErrorOut,
    404: ErrorOut,
    409: ErrorOut,
    422: ValidationErrorOut,
}


def _money(amount_minor: int, currency: str) -> MoneyOut:
    return MoneyOut.of_minor_units(amount_minor, currency)


# --- sponsors, issuers, properties ------------------------------------------------------------


class SponsorApplyIn(StrictSchema):
    name: Text200
    description: str = Field("", max_length=5000)
    website: HttpUrl | None = None


class ReasonIn(StrictSchema):
    reason: Reason


class OptionalReasonIn(StrictSchema):
    reason: str = Field("", max_length=2000)


class SponsorOut(Schema):
    id: int
    name: str
    description: str
    website: str
    status: SponsorStatus
    decided_at: datetime | None
    decision_reason: str
    created_at: datetime


class SponsorBriefOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    name: str


class SponsorFilters(Schema):
    status: SponsorStatus | None = None


class IssuerIn(StrictSchema):
    legal_name: Text200
    jurisdiction_country: CountryCode
    jurisdiction_region: str = Field("", max_length=100)
    entity_type: IssuerEntityType
    sponsor_id: int | None = Field(None, description="Needed if you belong to several sponsors.")
    affiliate_of_id: int | None = Field(
        None, description="An issuer under common control (its raises count towards the cap)."
    )


class IssuerOut(Schema):
    id: int
    sponsor_id: int
    legal_name: str
    jurisdiction_country: str
    jurisdiction_region: str
    entity_type: IssuerEntityType
    affiliate_of_id: int | None
    created_at: datetime

    @staticmethod
    def resolve_sponsor_id(obj: Issuer) -> int:
        return obj.sponsor_id


class IssuerBriefOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    legal_name: str
    jurisdiction_country: str
    jurisdiction_region: str
    entity_type: IssuerEntityType


BasisPoints = Annotated[int, Field(ge=-100_000, le=1_000_000)]


class PropertyIn(StrictSchema):
    name: Text200
    address_line1: Text200
    address_line2: str = Field("", max_length=200)
    city: Annotated[str, Field(min_length=1, max_length=100)]
    region: str = Field("", max_length=100)
    postal_code: str = Field("", max_length=20)
    country: CountryCode
    property_type: PropertyType
    description: str = Field("", max_length=10_000)
    year_built: int | None = Field(None, ge=1600, le=2200)
    square_feet: int | None = Field(None, ge=1, le=2_000_000_000)
    unit_count: int | None = Field(None, ge=1, le=2_000_000_000)
    purchase_price: MoneyIn | None = None
    projected_irr_bps: BasisPoints | None = None
    projected_cash_yield_bps: BasisPoints | None = None
    projected_equity_multiple_bps: BasisPoints | None = None
    projected_hold_months: int | None = Field(None, ge=1, le=1200)
    sponsor_id: int | None = Field(None, description="Needed if you belong to several sponsors.")


class PropertyOut(Schema):
    id: int
    sponsor_id: int
    name: str
    address_line1: str
    address_line2: str
    city: str
    region: str
    postal_code: str
    country: str
    property_type: PropertyType
    description: str
    year_built: int | None
    square_feet: int | None
    unit_count: int | None
    purchase_price: MoneyOut | None
    projected_irr_bps: int | None
    projected_cash_yield_bps: int | None
    projected_equity_multiple_bps: int | None
    projected_hold_months: int | None
    photo_url: str | None = Field(
        description="The property's photo (JPEG, PNG or WebP), shown to whoever may see an "
        "offering of the property; uploaded by the sponsor in the portal. None: no photo."
    )
    photo_alt_text: str = Field(description="The photo's text alternative ('' without one).")

    @staticmethod
    def resolve_sponsor_id(obj: Property) -> int:
        return obj.sponsor_id

    @staticmethod
    def resolve_photo_url(obj: Property) -> str | None:
        return photo_url(obj.pk, obj.photo.name) or None

    @staticmethod
    def resolve_purchase_price(obj: Property) -> MoneyOut | None:
        if obj.purchase_price_minor is None:
            return None
        return _money(obj.purchase_price_minor, obj.purchase_price_currency)


class PropertyBriefOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    name: str
    city: str
    region: str
    country: str
    property_type: PropertyType


# --- offerings --------------------------------------------------------------------------------


def _one_currency(*amounts: MoneyIn | None) -> None:
    currencies = {amount.currency for amount in amounts if amount is not None}
    if len(currencies) > 1:
        raise ValueError("price_per_unit, target_raise and max_raise must share one currency")


class OfferingCreateIn(StrictSchema):
    title: Text200
    summary: str = Field("", max_length=10_000)
    property_id: int
    issuer_id: int
    security_type: SecurityType
    price_per_unit: MoneyIn
    quanta_per_unit: int = Field(
        1, description="1 for whole units only, 1000 for thousandths (a power of ten ≤ 10^6)."
    )
    units_authorized: UnitsString
    min_investment_units: UnitsString
    max_investment_units: UnitsString | None = Field(None, description="Default: no limit.")
    target_raise: MoneyIn | None = Field(None, description="The minimum raise (Reg CF: required).")
    max_raise: MoneyIn
    funding_model: FundingModel
    exemption: Exemption
    time_zone: str = Field(max_length=64, examples=["America/New_York"])
    opens_at: datetime
    closes_at: datetime

    @model_validator(mode="after")
    def _currencies_agree(self) -> OfferingCreateIn:
        _one_currency(self.price_per_unit, self.target_raise, self.max_raise)
        return self


class OfferingUpdateIn(StrictSchema):
    """Every field optional: only the fields sent change (PATCH)."""

    title: Text200 | None = None
    summary: str | None = Field(None, max_length=10_000)
    property_id: int | None = None
    issuer_id: int | None = None
    security_type: SecurityType | None = None
    price_per_unit: MoneyIn | None = None
    quanta_per_unit: int | None = None
    units_authorized: UnitsString | None = None
    min_investment_units: UnitsString | None = None
    max_investment_units: UnitsString | None = None
    target_raise: MoneyIn | None = None
    max_raise: MoneyIn | None = None
    funding_model: FundingModel | None = None
    exemption: Exemption | None = None
    time_zone: str | None = Field(None, max_length=64)
    opens_at: datetime | None = None
    closes_at: datetime | None = None

    @model_validator(mode="after")
    def _currencies_agree(self) -> OfferingUpdateIn:
        _one_currency(self.price_per_unit, self.target_raise, self.max_raise)
        return self


class OfferingFilters(Schema):
    status: OfferingStatus | None = None
    property_type: PropertyType | None = None
    city: str | None = Field(None, max_length=100, description="Case-insensitive exact match.")
    limit: int = Field(50, ge=1, le=100, description="Page size (at most 100).")
    offset: int = Field(0, ge=0, le=1_000_000)


def units_of(value: str | None) -> Decimal | None:
    return None if value is None else Decimal(value)


class OfferingListOut(BaseModel):
    """Lean on purpose: the list is the hot endpoint. A plain pydantic model (no ORM getter)
    built from the flat rows of `selectors.offering_list_page`, one SELECT for the whole page."""

    id: int
    slug: str
    title: str
    status: OfferingStatus
    exemption: Exemption
    security_type: SecurityType
    funding_model: FundingModel
    price_per_unit: MoneyOut
    quanta_per_unit: int
    units_available_quanta: int
    units_available: str
    min_investment_units: str
    min_investment: MoneyOut
    target_raise: MoneyOut
    max_raise: MoneyOut
    opens_at: datetime
    closes_at: datetime
    went_live_at: datetime | None
    sponsor: SponsorBriefOut
    property: PropertyBriefOut

    @model_validator(mode="before")
    @classmethod
    def _from_row(cls, row: Any) -> Any:
        if not isinstance(row, dict) or "sponsor__name" not in row:
            return row
        return offering_list_item(row)


def offering_list_item(row: dict[str, Any]) -> dict[str, Any]:
    """One row of `selectors.offering_list_page` as the JSON object `OfferingListOut`
    describes. The list endpoint renders these directly (the hot path); a test validates
    them against `OfferingListOut` so the documented schema stays the truth."""
    currency = row["currency"]
    quanta_per_unit = row["quanta_per_unit"]
    price = row["price_per_unit_minor"]
    available = (
        row["units_authorized_quanta"] - row["units_reserved_quanta"] - row["units_issued_quanta"]
    )
    minimum = row["min_investment_quanta"]
    return {
        "id": row["id"],
        "slug": row["slug"],
        "title": row["title"],
        "status": row["status"],
        "exemption": row["exemption"],
        "security_type": row["security_type"],
        "funding_model": row["funding_model"],
        "price_per_unit": _money_dict(price, currency),
        "quanta_per_unit": quanta_per_unit,
        "units_available_quanta": available,
        "units_available": format_units(available, quanta_per_unit),
        "min_investment_units": format_units(minimum, quanta_per_unit),
        "min_investment": _money_dict(
            cost_of_quanta_minor(
                minimum, price_per_unit_minor=price, quanta_per_unit=quanta_per_unit
            ),
            currency,
        ),
        "target_raise": _money_dict(row["target_raise_minor"], currency),
        "max_raise": _money_dict(row["max_raise_minor"], currency),
        "opens_at": row["opens_at"],
        "closes_at": row["closes_at"],
        "went_live_at": row["went_live_at"],
        "sponsor": {"id": row["sponsor_id"], "name": row["sponsor__name"]},
        "property": {
            "id": row["property_id"],
            "name": row["property__name"],
            "city": row["property__city"],
            "region": row["property__region"],
            "country": row["property__country"],
            "property_type": row["property__property_type"],
        },
    }


class OfferingPageOut(BaseModel):
    """A page of the list: the items and the total number of matching offerings."""

    items: list[OfferingListOut]
    count: int


def _money_dict(amount_minor: int, currency: str) -> dict[str, str]:
    return {"amount": format_minor_units(amount_minor, currency), "currency": currency}


def _cost(offering: Offering, quanta: int) -> int:
    return cost_of_quanta_minor(
        quanta,
        price_per_unit_minor=offering.price_per_unit_minor,
        quanta_per_unit=offering.quanta_per_unit,
    )


class OfferingOut(Schema):
    """The full offering (detail, and the answer to every write)."""

    id: int
    slug: str
    title: str
    summary: str
    status: OfferingStatus
    exemption: Exemption
    security_type: SecurityType
    funding_model: FundingModel
    currency: str
    price_per_unit: MoneyOut
    quanta_per_unit: int
    units_authorized_quanta: int
    units_authorized: str
    units_reserved_quanta: int
    units_reserved: str
    units_issued_quanta: int
    units_issued: str
    units_available_quanta: int
    units_available: str
    min_investment_quanta: int
    min_investment_units: str
    min_investment: MoneyOut
    max_investment_quanta: int
    max_investment_units: str
    max_investment: MoneyOut
    target_raise: MoneyOut
    max_raise: MoneyOut
    time_zone: str
    opens_at: datetime
    closes_at: datetime
    went_live_at: datetime | None
    sponsor: SponsorBriefOut
    issuer: IssuerBriefOut
    property: PropertyOut
    created_at: datetime
    updated_at: datetime

    @staticmethod
    def resolve_price_per_unit(obj: Offering) -> MoneyOut:
        return _money(obj.price_per_unit_minor, obj.currency)

    @staticmethod
    def resolve_target_raise(obj: Offering) -> MoneyOut:
        return _money(obj.target_raise_minor, obj.currency)

    @staticmethod
    def resolve_max_raise(obj: Offering) -> MoneyOut:
        return _money(obj.max_raise_minor, obj.currency)

    @staticmethod
    def resolve_units_authorized(obj: Offering) -> str:
        return format_units(obj.units_authorized_quanta, obj.quanta_per_unit)

    @staticmethod
    def resolve_units_reserved(obj: Offering) -> str:
        return format_units(obj.units_reserved_quanta, obj.quanta_per_unit)

    @staticmethod
    def resolve_units_issued(obj: Offering) -> str:
        return format_units(obj.units_issued_quanta, obj.quanta_per_unit)

    @staticmethod
    def resolve_units_available(obj: Offering) -> str:
        return format_units(obj.units_available_quanta, obj.quanta_per_unit)

    @staticmethod
    def resolve_min_investment_units(obj: Offering) -> str:
        return format_units(obj.min_investment_quanta, obj.quanta_per_unit)

    @staticmethod
    def resolve_min_investment(obj: Offering) -> MoneyOut:
        return _money(_cost(obj, obj.min_investment_quanta), obj.currency)

    @staticmethod
    def resolve_max_investment_units(obj: Offering) -> str:
        return format_units(obj.max_investment_quanta, obj.quanta_per_unit)

    @staticmethod
    def resolve_max_investment(obj: Offering) -> MoneyOut:
        return _money(_cost(obj, obj.max_investment_quanta), obj.currency)


class StatusChangeOut(Schema):
    from_status: str
    to_status: str
    actor_id: int | None
    reason: str
    created_at: datetime

    @staticmethod
    def resolve_actor_id(obj: OfferingStatusChange) -> int | None:
        return obj.actor_id


class DocumentUploadIn(StrictSchema):
    kind: DocumentKind


class DocumentOut(Schema):
    id: int
    kind: DocumentKind
    version: int
    original_name: str
    content_type: str
    size_bytes: int
    sha256: str
    uploaded_by_id: int
    uploaded_at: datetime

    @staticmethod
    def resolve_uploaded_by_id(obj: OfferingDocument) -> int:
        return obj.uploaded_by_id
