"""HTTP for offerings, sponsors, issuers and properties: schema → one service/selector → schema.

No `from __future__ import annotations` here: ninja reads the parameter annotations at import
time, and `@paginate` re-wraps the view, so string annotations could not be resolved.
"""

import hashlib
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.core.cache import cache
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from ninja import File, Form, Query, Router, Status, UploadedFile
from ninja.pagination import paginate

from common.api_json import api_json
from common.auth import OptionalBearerAuth
from common.errors import NotAuthenticated
from common.models import User
from common.pagination import BoundedLimitOffsetPagination
from common.schemas import ErrorOut
from offerings import selectors, services
from offerings.models import (
    Issuer,
    Offering,
    OfferingDocument,
    OfferingStatusChange,
    Property,
    Sponsor,
)
from offerings.schemas import (
    READ_ERRORS,
    WRITE_ERRORS,
    DocumentOut,
    DocumentUploadIn,
    IssuerIn,
    IssuerOut,
    OfferingCreateIn,
    OfferingFilters,
    OfferingOut,
    OfferingPageOut,
    OfferingUpdateIn,
    OptionalReasonIn,
    PropertyIn,
    PropertyOut,
    ReasonIn,
    SponsorApplyIn,
    SponsorFilters,
    SponsorOut,
    StatusChangeOut,
    offering_list_item,
    units_of,
)

router = Router(tags=["offerings"])
sponsors_router = Router(tags=["sponsors"])
issuers_router = Router(tags=["issuers"])
properties_router = Router(tags=["properties"])

PAGE_SIZE_MAX = 100
# The rendered public (anonymous) list page is cached this long at most; 0 turns it off.
PUBLIC_PAGE_CACHE_SECONDS = 2


def actor_of(request: HttpRequest) -> User:
    user = getattr(request, "auth", None)
    if not isinstance(user, User):  # pragma: no cover - the router's auth guarantees it
        raise NotAuthenticated("Sign in first.")
    return user


# --- offerings ---------------------------------------------------------------------------------


def public_page_cache_seconds() -> int:
    return int(getattr(settings, "OFFERINGS_PUBLIC_LIST_CACHE_SECONDS", PUBLIC_PAGE_CACHE_SECONDS))


def _offering_page_json(request: HttpRequest, query: OfferingFilters) -> bytes:
    rows, count = selectors.offering_list_page(
        user=request.user,
        status=query.status,
        property_type=query.property_type,
        city=query.city,
        limit=query.limit,
        offset=query.offset,
    )
    return api_json({"items": [offering_list_item(row) for row in rows], "count": count})


def _public_page_json(request: HttpRequest, query: OfferingFilters) -> bytes:
    """Anonymous callers all see the same page for the same query, so it is rendered once
    and kept for at most `public_page_cache_seconds()`, keyed by
    `offerings_catalog_version()` (any create, edit or status change shows at once; counters
    that change without `updated_at`, like reserved units, show within the TTL)."""
    seconds = public_page_cache_seconds()
    if seconds <= 0:
        return _offering_page_json(request, query)
    identity = (selectors.offerings_catalog_version(), query.model_dump_json())
    key = "offerings:public-page:" + hashlib.sha256(repr(identity).encode()).hexdigest()
    body: bytes | None = cache.get(key)
    if body is None:
        body = _offering_page_json(request, query)
        cache.set(key, body, seconds)
    return body


@router.get(
    "",
    auth=OptionalBearerAuth(),
    response={200: OfferingPageOut, 401: ErrorOut, 422: READ_ERRORS[422]},
)
def offering_list(request: HttpRequest, query: Query[OfferingFilters]) -> HttpResponse:
    """Live offerings for everyone; sponsors also see their own, staff see all. Paginated
    with `limit` and `offset`; `count` is the total.

    The hot endpoint: rows are rendered straight to JSON (`schemas.offering_list_item`, one
    query per page) instead of through per-object validation."""
    if request.user.is_authenticated:
        body = _offering_page_json(request, query)
    else:
        body = _public_page_json(request, query)
    return HttpResponse(body, content_type="application/json")


@router.get("/{offering_id}", auth=OptionalBearerAuth(), response={200: OfferingOut, **READ_ERRORS})
def offering_detail(request: HttpRequest, offering_id: int) -> Offering:
    return selectors.offering_get(user=request.user, offering_id=offering_id)


@router.post("", response={201: OfferingOut, **WRITE_ERRORS})
def offering_create(request: HttpRequest, payload: OfferingCreateIn) -> Status[Offering]:
    draft = services.OfferingDraft(
        title=payload.title,
        summary=payload.summary,
        property_id=payload.property_id,
        issuer_id=payload.issuer_id,
        security_type=payload.security_type,
        currency=payload.price_per_unit.currency,
        price_per_unit_minor=payload.price_per_unit.to_minor_units(),
        quanta_per_unit=payload.quanta_per_unit,
        units_authorized=Decimal(payload.units_authorized),
        min_investment_units=Decimal(payload.min_investment_units),
        max_investment_units=units_of(payload.max_investment_units),
        target_raise_minor=payload.target_raise.to_minor_units() if payload.target_raise else 0,
        max_raise_minor=payload.max_raise.to_minor_units(),
        funding_model=payload.funding_model,
        exemption=payload.exemption,
        time_zone=payload.time_zone,
        opens_at=payload.opens_at,
        closes_at=payload.closes_at,
    )
    offering = services.offering_create(actor=actor_of(request), draft=draft)
    return Status(201, selectors.offering_get(user=request.user, offering_id=offering.pk))


@router.patch("/{offering_id}", response={200: OfferingOut, **WRITE_ERRORS})
def offering_update(request: HttpRequest, offering_id: int, payload: OfferingUpdateIn) -> Offering:
    money = payload.price_per_unit or payload.target_raise or payload.max_raise
    changes = services.OfferingChanges(
        title=payload.title,
        summary=payload.summary,
        property_id=payload.property_id,
        issuer_id=payload.issuer_id,
        security_type=payload.security_type,
        currency=money.currency if money else None,
        price_per_unit_minor=_minor_or_none(payload.price_per_unit),
        quanta_per_unit=payload.quanta_per_unit,
        units_authorized=units_of(payload.units_authorized),
        min_investment_units=units_of(payload.min_investment_units),
        max_investment_units=units_of(payload.max_investment_units),
        target_raise_minor=_minor_or_none(payload.target_raise),
        max_raise_minor=_minor_or_none(payload.max_raise),
        funding_model=payload.funding_model,
        exemption=payload.exemption,
        time_zone=payload.time_zone,
        opens_at=payload.opens_at,
        closes_at=payload.closes_at,
    )
    services.offering_update(actor=actor_of(request), offering_id=offering_id, changes=changes)
    return selectors.offering_get(user=request.user, offering_id=offering_id)


def _minor_or_none(money: Any) -> int | None:
    return None if money is None else int(money.to_minor_units())


@router.post("/{offering_id}/submit", response={200: OfferingOut, **WRITE_ERRORS})
def offering_submit(request: HttpRequest, offering_id: int) -> Offering:
    """draft → in_review (sponsor member); every rule is checked, the issuer cap included."""
    services.offering_submit(actor=actor_of(request), offering_id=offering_id)
    return selectors.offering_get(user=request.user, offering_id=offering_id)


@router.post("/{offering_id}/approve", response={200: OfferingOut, **WRITE_ERRORS})
def offering_approve(
    request: HttpRequest, offering_id: int, payload: OptionalReasonIn | None = None
) -> Offering:
    """in_review → approved (staff)."""
    reason = payload.reason if payload else ""
    services.offering_approve(actor=actor_of(request), offering_id=offering_id, reason=reason)
    return selectors.offering_get(user=request.user, offering_id=offering_id)


@router.post("/{offering_id}/reject", response={200: OfferingOut, **WRITE_ERRORS})
def offering_reject(request: HttpRequest, offering_id: int, payload: ReasonIn) -> Offering:
    """in_review → draft (staff), with the reason."""
    services.offering_reject(
        actor=actor_of(request), offering_id=offering_id, reason=payload.reason
    )
    return selectors.offering_get(user=request.user, offering_id=offering_id)


@router.post("/{offering_id}/launch", response={200: OfferingOut, **WRITE_ERRORS})
def offering_launch(request: HttpRequest, offering_id: int) -> Offering:
    """approved → live (staff). Approved offerings also go live by themselves at opens_at."""
    services.offering_go_live(actor=actor_of(request), offering_id=offering_id)
    return selectors.offering_get(user=request.user, offering_id=offering_id)


@router.post("/{offering_id}/cancel", response={200: OfferingOut, **WRITE_ERRORS})
def offering_cancel(request: HttpRequest, offering_id: int, payload: ReasonIn) -> Offering:
    """Sponsor member or staff; from draft, in_review, approved or live."""
    services.offering_cancel(
        actor=actor_of(request), offering_id=offering_id, reason=payload.reason
    )
    return selectors.offering_get(user=request.user, offering_id=offering_id)


@router.get("/{offering_id}/history", response={200: list[StatusChangeOut], **READ_ERRORS})
def offering_history(request: HttpRequest, offering_id: int) -> QuerySet[OfferingStatusChange]:
    """Every status change (sponsor members and staff)."""
    return selectors.offering_history(user=request.user, offering_id=offering_id)


@router.post("/{offering_id}/documents", response={201: DocumentOut, **WRITE_ERRORS})
def offering_document_upload(
    request: HttpRequest,
    offering_id: int,
    payload: Form[DocumentUploadIn],
    file: File[UploadedFile],
) -> Status[OfferingDocument]:
    """Upload a new version of a document (multipart: `kind`, `file`)."""
    document = services.offering_document_upload(
        actor=actor_of(request),
        offering_id=offering_id,
        kind=payload.kind,
        file=file,
        content_type=file.content_type or "",
    )
    return Status(201, document)


@router.get(
    "/{offering_id}/documents",
    auth=OptionalBearerAuth(),
    response={200: list[DocumentOut], **READ_ERRORS},
)
def offering_document_list(request: HttpRequest, offering_id: int) -> QuerySet[OfferingDocument]:
    return selectors.offering_documents(user=request.user, offering_id=offering_id)


# --- sponsors ----------------------------------------------------------------------------------


@sponsors_router.post("", response={201: SponsorOut, **WRITE_ERRORS})
def sponsor_apply(request: HttpRequest, payload: SponsorApplyIn) -> Status[Sponsor]:
    """Any signed-in user applies; they become the sponsor's owner, pending staff review."""
    sponsor = services.sponsor_apply(
        actor=actor_of(request),
        name=payload.name,
        description=payload.description,
        website=str(payload.website) if payload.website else "",
    )
    return Status(201, sponsor)


@sponsors_router.get("", response={200: list[SponsorOut], **READ_ERRORS})
@paginate(BoundedLimitOffsetPagination, max_limit=PAGE_SIZE_MAX)
def sponsor_list(request: HttpRequest, filters: Query[SponsorFilters]) -> QuerySet[Sponsor]:
    """Staff: every sponsor (filter `status=pending` for the review queue); others: their own."""
    return selectors.sponsor_list(user=actor_of(request), status=filters.status)


@sponsors_router.get(
    "/{sponsor_id}", auth=OptionalBearerAuth(), response={200: SponsorOut, **READ_ERRORS}
)
def sponsor_detail(request: HttpRequest, sponsor_id: int) -> Sponsor:
    return selectors.sponsor_get(user=request.user, sponsor_id=sponsor_id)


@sponsors_router.post("/{sponsor_id}/approve", response={200: SponsorOut, **WRITE_ERRORS})
def sponsor_approve(
    request: HttpRequest, sponsor_id: int, payload: OptionalReasonIn | None = None
) -> Sponsor:
    reason = payload.reason if payload else ""
    return services.sponsor_approve(actor=actor_of(request), sponsor_id=sponsor_id, reason=reason)


@sponsors_router.post("/{sponsor_id}/reject", response={200: SponsorOut, **WRITE_ERRORS})
def sponsor_reject(request: HttpRequest, sponsor_id: int, payload: ReasonIn) -> Sponsor:
    return services.sponsor_reject(
        actor=actor_of(request), sponsor_id=sponsor_id, reason=payload.reason
    )


# --- issuers and properties ------------------------------------------------------------------


@issuers_router.post("", response={201: IssuerOut, **WRITE_ERRORS})
def issuer_create(request: HttpRequest, payload: IssuerIn) -> Status[Issuer]:
    issuer = services.issuer_create(
        actor=actor_of(request),
        legal_name=payload.legal_name,
        jurisdiction_country=payload.jurisdiction_country,
        jurisdiction_region=payload.jurisdiction_region,
        entity_type=payload.entity_type,
        sponsor_id=payload.sponsor_id,
        affiliate_of_id=payload.affiliate_of_id,
    )
    return Status(201, issuer)


@issuers_router.get("", response={200: list[IssuerOut], **READ_ERRORS})
@paginate(BoundedLimitOffsetPagination, max_limit=PAGE_SIZE_MAX)
def issuer_list(request: HttpRequest) -> QuerySet[Issuer]:
    """The issuers of your approved sponsors."""
    return selectors.issuer_list(user=actor_of(request))


@properties_router.post("", response={201: PropertyOut, **WRITE_ERRORS})
def property_create(request: HttpRequest, payload: PropertyIn) -> Status[Property]:
    details = services.PropertyDetails(
        **payload.model_dump(exclude={"purchase_price", "sponsor_id"}),
        purchase_price_minor=_minor_or_none(payload.purchase_price),
        purchase_price_currency=payload.purchase_price.currency if payload.purchase_price else "",
    )
    property_ = services.property_create(
        actor=actor_of(request), details=details, sponsor_id=payload.sponsor_id
    )
    return Status(201, property_)


@properties_router.get("", response={200: list[PropertyOut], **READ_ERRORS})
@paginate(BoundedLimitOffsetPagination, max_limit=PAGE_SIZE_MAX)
def property_list(request: HttpRequest) -> QuerySet[Property]:
    """The properties of your approved sponsors."""
    return selectors.property_list(user=actor_of(request))
