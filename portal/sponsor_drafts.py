"""The sponsor console's draft editing: what its forms show of a draft offering and its
property, what they send to the offerings services, and the services' refusals put back on the
field they name. No rule is checked here: the forms check shapes, the services the rules."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from django.db import transaction

from common.models import User
from common.money import decimal_to_minor_units, minor_units_to_decimal
from offerings.models import Offering, Property
from offerings.quantities import quanta_to_units
from offerings.services import (
    OfferingChanges,
    PropertyDetails,
    offering_update,
    property_update,
)

BASIS_POINTS_PER_PERCENT = 100
BASIS_POINTS_PER_MULTIPLE = 10_000


def _basis_points(value: Decimal | None, per: int) -> int | None:
    # At most two decimal places (the form's check), so the product is a whole number.
    return None if value is None else int(value * per)


def _from_basis_points(value: int | None, per: int) -> Decimal | None:
    return None if value is None else Decimal(value) / per


def property_details_of(data: dict[str, Any]) -> PropertyDetails:
    price = data.get("purchase_price")
    currency = data.get("purchase_price_currency") or ""
    return PropertyDetails(
        name=data["name"],
        address_line1=data["address_line1"],
        address_line2=data.get("address_line2", ""),
        city=data["city"],
        region=data["region"],
        postal_code=data["postal_code"],
        country=data["country"].upper(),
        property_type=data["property_type"],
        description=data["description"],
        year_built=data.get("year_built"),
        square_feet=data.get("square_feet"),
        unit_count=data.get("unit_count"),
        purchase_price_minor=None if price is None else decimal_to_minor_units(price, currency),
        purchase_price_currency="" if price is None else currency,
        projected_irr_bps=_basis_points(data.get("projected_irr"), BASIS_POINTS_PER_PERCENT),
        projected_cash_yield_bps=_basis_points(
            data.get("projected_cash_yield"), BASIS_POINTS_PER_PERCENT
        ),
        projected_equity_multiple_bps=_basis_points(
            data.get("projected_equity_multiple"), BASIS_POINTS_PER_MULTIPLE
        ),
        projected_hold_months=data.get("projected_hold_months"),
    )


def property_initial(home: Property) -> dict[str, Any]:
    price = home.purchase_price_minor
    return {
        "name": home.name,
        "address_line1": home.address_line1,
        "address_line2": home.address_line2,
        "city": home.city,
        "region": home.region,
        "postal_code": home.postal_code,
        "country": home.country,
        "property_type": home.property_type,
        "description": home.description,
        "year_built": home.year_built,
        "square_feet": home.square_feet,
        "unit_count": home.unit_count,
        "purchase_price": None
        if price is None
        else minor_units_to_decimal(price, home.purchase_price_currency),
        "purchase_price_currency": home.purchase_price_currency,
        "projected_irr": _from_basis_points(home.projected_irr_bps, BASIS_POINTS_PER_PERCENT),
        "projected_cash_yield": _from_basis_points(
            home.projected_cash_yield_bps, BASIS_POINTS_PER_PERCENT
        ),
        "projected_equity_multiple": _from_basis_points(
            home.projected_equity_multiple_bps, BASIS_POINTS_PER_MULTIPLE
        ),
        "projected_hold_months": home.projected_hold_months,
    }


def _local(moment: datetime, time_zone: str) -> datetime:
    """What the sponsor typed: the offering's local time, without an offset."""
    return moment.astimezone(ZoneInfo(time_zone)).replace(tzinfo=None)


def offering_initial(offering: Offering) -> dict[str, Any]:
    currency = offering.currency

    def units(quanta: int) -> Decimal:
        return quanta_to_units(quanta, quanta_per_unit=offering.quanta_per_unit)

    return {
        "title": offering.title,
        "summary": offering.summary,
        "exemption": offering.exemption,
        "security_type": offering.security_type,
        "funding_model": offering.funding_model,
        "currency": currency,
        "price_per_unit": minor_units_to_decimal(offering.price_per_unit_minor, currency),
        "units_authorized": units(offering.units_authorized_quanta),
        "min_investment_units": units(offering.min_investment_quanta),
        "max_investment_units": units(offering.max_investment_quanta),
        "target_raise": minor_units_to_decimal(offering.target_raise_minor, currency),
        "max_raise": minor_units_to_decimal(offering.max_raise_minor, currency),
        "time_zone": offering.time_zone,
        "opens_at": _local(offering.opens_at, offering.time_zone),
        "closes_at": _local(offering.closes_at, offering.time_zone),
    }


def offering_changes_of(data: dict[str, Any]) -> OfferingChanges:
    currency = data["currency"]
    return OfferingChanges(
        title=data["title"],
        summary=data["summary"],
        exemption=data["exemption"],
        security_type=data["security_type"],
        funding_model=data["funding_model"],
        currency=currency,
        price_per_unit_minor=decimal_to_minor_units(data["price_per_unit"], currency),
        units_authorized=Decimal(data["units_authorized"]),
        min_investment_units=Decimal(data["min_investment_units"]),
        max_investment_units=Decimal(data["max_investment_units"]),
        target_raise_minor=decimal_to_minor_units(data["target_raise"], currency),
        max_raise_minor=decimal_to_minor_units(data["max_raise"], currency),
        time_zone=data["time_zone"],
        # A local time: the service reads it in the (possibly new) time zone.
        opens_at=data["opens_at"].replace(tzinfo=None),
        closes_at=data["closes_at"].replace(tzinfo=None),
    )


def draft_save(
    *, actor: User, offering: Offering, place: dict[str, Any], terms: dict[str, Any]
) -> None:
    """The property and the offering's terms in one transaction: both saved, or neither."""
    with transaction.atomic():
        property_update(
            actor=actor, property_id=offering.property_id, details=property_details_of(place)
        )
        offering_update(actor=actor, offering_id=offering.pk, changes=offering_changes_of(terms))
