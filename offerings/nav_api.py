"""HTTP for net asset value: the sponsor (or staff) post NAV per unit with an effective date;
whoever may see the offering reads its history and the NAV as of a day. Mounted under the
distributions router (captable/distributions_api.py), which is mounted at the API root.

No `from __future__ import annotations` here: ninja reads the annotations at import time.
"""

from datetime import date, datetime

from django.db.models import QuerySet
from django.http import HttpRequest
from ninja import Query, Router, Schema, Status
from ninja.pagination import paginate
from pydantic import BaseModel, Field

from common.errors import NotFound
from common.pagination import BoundedLimitOffsetPagination
from common.schemas import ErrorOut, MoneyIn, MoneyOut, StrictSchema, ValidationErrorOut
from offerings import nav
from offerings.api import actor_of
from offerings.models import NetAssetValue
from offerings.selectors import offering_get

nav_router = Router(tags=["nav"])

ERRORS: dict[int, type[Schema]] = {
    400: ErrorOut,
    401: ErrorOut,
    403: ErrorOut,
    404: ErrorOut,
    409: ErrorOut,
    422: ValidationErrorOut,
}


class NavIn(StrictSchema):
    nav_per_unit: MoneyIn = Field(description="Per whole unit, in the offering's currency.")
    effective_date: date = Field(description="In force from this day (not in the future).")
    memo: str = Field("", max_length=2000)


class NavOut(BaseModel):
    id: int
    offering_id: int
    effective_date: date
    nav_per_unit: MoneyOut
    memo: str
    posted_by_id: int
    posted_at: datetime

    @classmethod
    def of(cls, row: NetAssetValue) -> "NavOut":
        return cls(
            id=row.pk,
            offering_id=row.offering_id,
            effective_date=row.effective_date,
            nav_per_unit=MoneyOut.of_minor_units(row.nav_per_unit_minor, row.currency),
            memo=row.memo,
            posted_by_id=row.posted_by_id,
            posted_at=row.posted_at,
        )


class AsOfIn(Schema):
    on: date


@nav_router.post("/offerings/{int:offering_id}/nav", response={201: NavOut, **ERRORS})
def nav_post(request: HttpRequest, offering_id: int, payload: NavIn) -> Status[NavOut]:
    """The sponsor (or staff) post the NAV per unit of an offering that closed funded."""
    row = nav.nav_post(
        actor=actor_of(request),
        offering_id=offering_id,
        nav_per_unit_minor=payload.nav_per_unit.to_minor_units(),
        currency=payload.nav_per_unit.currency,
        effective_date=payload.effective_date,
        memo=payload.memo,
    )
    return Status(201, NavOut.of(row))


@nav_router.get("/offerings/{int:offering_id}/nav", response={200: list[NavOut], **ERRORS})
@paginate(BoundedLimitOffsetPagination, max_limit=100)
def nav_list(request: HttpRequest, offering_id: int) -> list[NavOut]:
    """Every NAV posted, newest effective date first (corrections included)."""
    rows: QuerySet[NetAssetValue] = nav.nav_history(user=actor_of(request), offering_id=offering_id)
    return [NavOut.of(row) for row in rows]


@nav_router.get("/offerings/{int:offering_id}/nav/as-of", response={200: NavOut, **ERRORS})
def nav_as_of(request: HttpRequest, offering_id: int, query: Query[AsOfIn]) -> NavOut:
    """The NAV in force on a day (404 before the first one)."""
    offering = offering_get(user=actor_of(request), offering_id=offering_id)
    row = nav.nav_as_of(offering_id=offering.pk, on=query.on)
    if row is None:
        raise NotFound(f"No NAV on or before {query.on}.", code="nav_not_found")
    return NavOut.of(row)
