"""Public pages: the marketplace and an offering's page."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils import timezone

from captable.closing_selectors import offering_stats
from offerings.exemptions import Exemption
from offerings.models import DocumentKind, OfferingDocument, OfferingStatus, PropertyType
from offerings.selectors import offering_get
from portal.errors import or_404
from portal.marketplace import (
    PAGE_SIZE,
    SORTS,
    MarketplaceFilters,
    card_of,
    days_left,
    marketplace_rows,
)
from portal.offering_page import EXEMPTION_IN_PLAIN_WORDS, investor_of, own_limit
from portal.photos import property_photo_url


def marketplace(request: HttpRequest) -> HttpResponse:
    filters = MarketplaceFilters.from_query(request.GET)
    page = max(1, _int(request.GET.get("page"), 1))
    rows = marketplace_rows(
        user=request.user, filters=filters, limit=PAGE_SIZE + 1, offset=(page - 1) * PAGE_SIZE
    )
    now = timezone.now()
    context = {
        "cards": [card_of(row, now) for row in rows[:PAGE_SIZE]],
        "filters": filters,
        "page": page,
        "has_next": len(rows) > PAGE_SIZE,
        "sorts": [(key, label) for key, (label, _) in SORTS.items()],
        "property_types": PropertyType.choices,
        "exemptions": Exemption.choices,
    }
    # htmx swaps only the results when a filter changes; a plain request gets the whole page.
    is_htmx = bool(getattr(request, "htmx", False))  # set by django_htmx's middleware
    template = "portal/_offering_grid.html" if is_htmx else "portal/marketplace.html"
    return render(request, template, context)


def offering_detail(request: HttpRequest, offering_id: int) -> HttpResponse:
    offering = or_404(offering_get, user=request.user, offering_id=offering_id)
    now = timezone.now()
    investor = investor_of(request.user)
    documents: dict[str, OfferingDocument] = {}
    for document in offering.documents.order_by("kind", "-version"):
        documents.setdefault(document.kind, document)  # the latest version of each kind
    context = {
        "offering": offering,
        "property": offering.property,
        "photo_url": property_photo_url(offering.property_id, offering.property.photo.name),
        "stats": offering_stats(offering=offering),
        "days_left": days_left(offering.closes_at, now),
        "is_live": offering.status == OfferingStatus.LIVE,
        "exemption_text": EXEMPTION_IN_PLAIN_WORDS.get(offering.exemption, ""),
        "documents": [(DocumentKind(kind).label, doc) for kind, doc in documents.items()],
        "investor": investor,
        "limit": own_limit(investor=investor, offering=offering, now=now) if investor else None,
    }
    return render(request, "portal/offering_detail.html", context)


def _int(text: str | None, default: int) -> int:
    try:
        return int(text or default)
    except ValueError:
        return default
