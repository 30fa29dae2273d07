"""The marketplace's reads: live offerings the caller may see (the API's visibility rule,
`offerings_visible_to`, never a copy of it), filtered and sorted, as flat rows in ONE query,
shaped into cards without touching the database again."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db.models import F, QuerySet
from django.urls import reverse

from offerings.exemptions import Exemption
from offerings.models import Offering, OfferingStatus, PropertyType
from offerings.quantities import cost_of_quanta_minor
from offerings.selectors import OFFERING_LIST_COLUMNS, offerings_visible_to
from portal.formatting import money_text
from portal.photos import property_photo_url

PAGE_SIZE = 60

# Sort keys offered to investors → ORDER BY (a stable tie-break on id last).
SORTS: dict[str, tuple[str, str]] = {
    "newest": ("Newest", "-opens_at"),
    "closing": ("Closing soonest", "closes_at"),
    "price": ("Lowest price per unit", "price_per_unit_minor"),
    "minimum": ("Lowest minimum investment", "minimum_investment_minor"),
    "target": ("Largest target", "-target_raise_minor"),
}
DEFAULT_SORT = "newest"
PHOTO_COLUMNS = ("property__photo", "property__photo_alt_text")


@dataclass(frozen=True)
class MarketplaceFilters:
    property_type: str = ""
    city: str = ""
    exemption: str = ""
    sort: str = DEFAULT_SORT

    @classmethod
    def from_query(cls, query: Any) -> MarketplaceFilters:
        """Unknown values are ignored rather than refused: a stale link still shows a page."""
        property_type = query.get("property_type", "")
        exemption = query.get("exemption", "")
        sort = query.get("sort", DEFAULT_SORT)
        return cls(
            property_type=property_type if property_type in PropertyType.values else "",
            city=query.get("city", "").strip()[:100],
            exemption=exemption if exemption in Exemption.values else "",
            sort=sort if sort in SORTS else DEFAULT_SORT,
        )


@dataclass(frozen=True)
class OfferingCard:
    id: int
    url: str
    title: str
    sponsor_name: str
    property_name: str
    city: str
    region: str
    property_type: str
    exemption: str
    price_per_unit: str
    minimum_investment: str
    target: str
    progress_percent: int
    days_left: int
    photo_url: str  # '' when the property has none: the card shows the placeholder
    photo_alt_text: str


def live_offerings(*, user: Any, filters: MarketplaceFilters) -> QuerySet[Offering]:
    offerings = offerings_visible_to(user).filter(status=OfferingStatus.LIVE)
    if filters.property_type:
        offerings = offerings.filter(property__property_type=filters.property_type)
    if filters.city:
        offerings = offerings.filter(property__city__iexact=filters.city)
    if filters.exemption:
        offerings = offerings.filter(exemption=filters.exemption)
    return offerings


def marketplace_rows(
    *, user: Any, filters: MarketplaceFilters, limit: int = PAGE_SIZE, offset: int = 0
) -> list[dict[str, Any]]:
    """One query: the offering, its sponsor and property joined in, as plain rows."""
    order = SORTS[filters.sort][1]
    rows = (
        live_offerings(user=user, filters=filters)
        .annotate(
            minimum_investment_minor=F("min_investment_quanta")
            * F("price_per_unit_minor")
            / F("quanta_per_unit")
        )
        .order_by(order, "id")
        .values(*OFFERING_LIST_COLUMNS, *PHOTO_COLUMNS)[offset : offset + limit]
    )
    return list(rows)


def _cost(row: dict[str, Any], quanta: int) -> int:
    return cost_of_quanta_minor(
        quanta,
        price_per_unit_minor=row["price_per_unit_minor"],
        quanta_per_unit=row["quanta_per_unit"],
    )


def progress_percent(committed_minor: int, target_minor: int) -> int:
    """Whole percent of the target committed so far (reserved or issued units), capped at 100
    for the bar; with no target, of the maximum raise."""
    if target_minor <= 0:
        return 0
    return min(100, committed_minor * 100 // target_minor)


def days_left(closes_at: datetime, now: datetime) -> int:
    seconds = (closes_at - now).total_seconds()
    return max(0, math.ceil(seconds / 86_400))


def card_of(row: dict[str, Any], now: datetime) -> OfferingCard:
    currency = row["currency"]
    committed = _cost(row, row["units_reserved_quanta"] + row["units_issued_quanta"])
    goal = row["target_raise_minor"] or row["max_raise_minor"]
    return OfferingCard(
        id=row["id"],
        url=reverse("portal:offering", args=[row["id"]]),
        title=row["title"],
        sponsor_name=row["sponsor__name"],
        property_name=row["property__name"],
        city=row["property__city"],
        region=row["property__region"],
        property_type=PropertyType(row["property__property_type"]).label,
        exemption=Exemption(row["exemption"]).label,
        price_per_unit=money_text(row["price_per_unit_minor"], currency),
        minimum_investment=money_text(_cost(row, row["min_investment_quanta"]), currency),
        target=money_text(goal, currency),
        progress_percent=progress_percent(committed, goal),
        days_left=days_left(row["closes_at"], now),
        photo_url=property_photo_url(row["property_id"], row["property__photo"]),
        photo_alt_text=row["property__photo_alt_text"],
    )
