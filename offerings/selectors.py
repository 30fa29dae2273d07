"""Reads. Who may see which offering is decided here, in `offerings_visible_to`, and nowhere
else: an offering the caller may not see is a 404, never a 403 (existence does not leak)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import connection
from django.db.models import Count, Q, QuerySet, Window

from common.errors import NotFound
from common.models import User
from offerings.exemptions import Exemption
from offerings.models import (
    Issuer,
    Offering,
    OfferingDocument,
    OfferingStatus,
    OfferingStatusChange,
    Property,
    Sponsor,
    SponsorMembership,
    SponsorStatus,
)

# Reg D 506(b) forbids general solicitation: only users with a pre-existing relationship see
# such an offering, i.e. whose account is at least this many days older than its launch.
REG_D_506B_RELATIONSHIP_DAYS = 30

# The columns the list shows, fetched as plain rows (no model instances: the list is the
# hot endpoint, and `OfferingListOut` shapes these rows directly).
OFFERING_LIST_COLUMNS = (
    "id",
    "slug",
    "title",
    "status",
    "exemption",
    "security_type",
    "funding_model",
    "currency",
    "price_per_unit_minor",
    "quanta_per_unit",
    "units_authorized_quanta",
    "units_reserved_quanta",
    "units_issued_quanta",
    "min_investment_quanta",
    "target_raise_minor",
    "max_raise_minor",
    "opens_at",
    "closes_at",
    "went_live_at",
    "sponsor_id",
    "sponsor__name",
    "property_id",
    "property__name",
    "property__city",
    "property__region",
    "property__country",
    "property__property_type",
)


def relationship_days() -> int:
    return int(getattr(settings, "REG_D_506B_RELATIONSHIP_DAYS", REG_D_506B_RELATIONSHIP_DAYS))


def signed_in_user(user: Any) -> User | None:
    return user if isinstance(user, User) and user.is_active else None


def _approved_memberships(user: User) -> QuerySet[SponsorMembership]:
    return SponsorMembership.objects.filter(user=user, sponsor__status=SponsorStatus.APPROVED)


def sponsor_ids_of(user: Any) -> frozenset[int]:
    """The approved sponsors `user` is a member of (empty for anonymous users)."""
    member = signed_in_user(user)
    if member is None:
        return frozenset()
    return frozenset(_approved_memberships(member).values_list("sponsor_id", flat=True))


def is_sponsor_member(user: Any, *, sponsor_id: int) -> bool:
    return sponsor_id in sponsor_ids_of(user)


def offerings_visible_to(user: Any) -> QuerySet[Offering]:
    """THE visibility rule.

    - staff: everything;
    - anonymous: live offerings, except Reg D 506(b) (no general solicitation);
    - signed in: live offerings, plus live 506(b) ones when their account predates the launch
      by `REG_D_506B_RELATIONSHIP_DAYS`, plus every offering of their approved sponsors.
    """
    offerings = Offering.objects.all()
    member = signed_in_user(user)
    if member is not None and member.is_staff:
        return offerings
    public = Q(status=OfferingStatus.LIVE) & ~Q(exemption=Exemption.REG_D_506B)
    if member is None:
        return offerings.filter(public)
    related_since: datetime = member.date_joined + timedelta(days=relationship_days())
    private_placement = Q(
        status=OfferingStatus.LIVE,
        exemption=Exemption.REG_D_506B,
        went_live_at__gte=related_since,
    )
    own = Q(sponsor_id__in=_approved_memberships(member).values("sponsor_id"))
    return offerings.filter(public | private_placement | own)


def offering_list_page(
    *,
    user: Any,
    status: str | None = None,
    property_type: str | None = None,
    city: str | None = None,
    limit: int,
    offset: int = 0,
) -> tuple[list[dict[str, Any]], int]:
    """A page of the offerings `user` may see, newest opening first, as flat rows of
    OFFERING_LIST_COLUMNS, and the total count: ONE query (sponsor and property joined in,
    the total from a window function rather than a second COUNT)."""
    offerings = offerings_visible_to(user)
    if status:
        offerings = offerings.filter(status=status)
    if property_type:
        offerings = offerings.filter(property__property_type=property_type)
    if city:
        offerings = offerings.filter(property__city__iexact=city.strip())
    page = list(
        offerings.order_by("-opens_at", "-id")
        .values(*OFFERING_LIST_COLUMNS)
        .annotate(total_count=Window(Count("pk")))[offset : offset + limit]
    )
    if page:
        return page, int(page[0]["total_count"])
    # An empty page (past the end, or nothing matches) carries no window total.
    return page, offerings.count() if offset else 0


def offerings_catalog_version() -> tuple[object, ...]:
    """Changes whenever an offering is created, edited or changes status (those writes set
    `updated_at`; rows are never deleted): two index-only lookups, used to key the cached
    public list page. Counter updates that do not set `updated_at` show after the cache TTL."""
    table = Offering._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT MAX(updated_at), MAX(id) FROM {table}")  # noqa: S608
        row = cursor.fetchone()
    return tuple(row) if row else ()


def offering_get(*, user: Any, offering_id: int) -> Offering:
    offering = (
        offerings_visible_to(user)
        .select_related("sponsor", "issuer", "property")
        .filter(pk=offering_id)
        .first()
    )
    if offering is None:
        raise NotFound(f"Offering {offering_id} not found.", code="offering_not_found")
    return offering


def offering_documents(*, user: Any, offering_id: int) -> QuerySet[OfferingDocument]:
    offering = offering_get(user=user, offering_id=offering_id)
    return offering.documents.select_related("uploaded_by").order_by("kind", "-version")


def offering_history(*, user: Any, offering_id: int) -> QuerySet[OfferingStatusChange]:
    """Status history: staff and the offering's sponsor members only (404 to anyone else)."""
    offering = offering_get(user=user, offering_id=offering_id)
    member = signed_in_user(user)
    if member is None or not (
        member.is_staff or is_sponsor_member(member, sponsor_id=offering.sponsor_id)
    ):
        raise NotFound(f"Offering {offering_id} not found.", code="offering_not_found")
    return offering.status_changes.select_related("actor").order_by("created_at", "id")


def issuer_group_raises(
    *,
    issuer: Issuer,
    exemption: str,
    opens_after: datetime,
    opens_before: datetime,
    exclude_offering_id: int | None,
) -> list[tuple[datetime, int]]:
    """(opens_at, max_raise_minor) of the offerings that count towards the issuer group's cap."""
    root_id = issuer.affiliate_of_id or issuer.pk
    offerings = Offering.objects.filter(
        Q(issuer_id=root_id) | Q(issuer__affiliate_of_id=root_id),
        exemption=exemption,
        opens_at__gt=opens_after,
        opens_at__lt=opens_before,
    ).exclude(status__in=(OfferingStatus.CANCELLED, OfferingStatus.CLOSED_FAILED))
    if exclude_offering_id is not None:
        offerings = offerings.exclude(pk=exclude_offering_id)
    return list(offerings.values_list("opens_at", "max_raise_minor"))


def sponsor_get(*, user: Any, sponsor_id: int) -> Sponsor:
    """Approved sponsors are public; pending or rejected ones only to members and staff."""
    sponsor = Sponsor.objects.filter(pk=sponsor_id).first()
    member = signed_in_user(user)
    visible = sponsor is not None and (
        sponsor.status == SponsorStatus.APPROVED
        or (member is not None and member.is_staff)
        or (member is not None and sponsor.memberships.filter(user=member).exists())
    )
    if sponsor is None or not visible:
        raise NotFound(f"Sponsor {sponsor_id} not found.", code="sponsor_not_found")
    return sponsor


def sponsor_list(*, user: User, status: str | None = None) -> QuerySet[Sponsor]:
    """Staff: every sponsor (the review queue); anyone else: the sponsors they belong to."""
    sponsors = Sponsor.objects.all()
    if not user.is_staff:
        sponsors = sponsors.filter(memberships__user=user)
    if status:
        sponsors = sponsors.filter(status=status)
    return sponsors.order_by("-created_at", "-id")


def issuer_list(*, user: User) -> QuerySet[Issuer]:
    return Issuer.objects.filter(sponsor_id__in=sponsor_ids_of(user)).order_by("legal_name", "id")


def property_list(*, user: User) -> QuerySet[Property]:
    return Property.objects.filter(sponsor_id__in=sponsor_ids_of(user)).order_by("name", "id")
