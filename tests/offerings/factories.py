"""Small factories for offerings tests: everything goes through the services, so the objects
are the ones a real user would get (history rows included)."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from django.test import Client
from django.utils import timezone

from common.models import User
from offerings import services
from offerings.exemptions import Exemption
from offerings.models import (
    FundingModel,
    Issuer,
    Offering,
    Property,
    SecurityType,
    Sponsor,
)
from tests.conftest import new_user


def post_json(client: Client, path: str, body: Any = None, **headers: Any) -> Any:
    data = json.dumps(body) if body is not None else ""
    return client.post(path, data=data, content_type="application/json", **headers)


def patch_json(client: Client, path: str, body: Any, **headers: Any) -> Any:
    return client.patch(path, data=json.dumps(body), content_type="application/json", **headers)


def staff() -> User:
    return new_user(is_staff=True)


def approved_sponsor(*, member: User | None = None, name: str = "Acme Realty") -> Sponsor:
    """A sponsor approved by a staff member; `member` (or a new user) is its owner."""
    applicant = member or new_user()
    sponsor = services.sponsor_apply(actor=applicant, name=name)
    return services.sponsor_approve(actor=staff(), sponsor_id=sponsor.pk)


def member_of(sponsor: Sponsor) -> User:
    return sponsor.memberships.select_related("user").get().user


def issuer_for(
    sponsor: Sponsor,
    *,
    legal_name: str = "Acme Main St SPV LLC",
    affiliate_of: Issuer | None = None,
) -> Issuer:
    return services.issuer_create(
        actor=member_of(sponsor),
        sponsor_id=sponsor.pk,
        legal_name=legal_name,
        jurisdiction_country="US",
        jurisdiction_region="DE",
        entity_type="llc",
        affiliate_of_id=affiliate_of.pk if affiliate_of else None,
    )


def property_for(
    sponsor: Sponsor, *, city: str = "Austin", property_type: str = "multifamily"
) -> Property:
    return services.property_create(
        actor=member_of(sponsor),
        sponsor_id=sponsor.pk,
        details=services.PropertyDetails(
            name=f"{city} Flats",
            address_line1="1 Main St",
            city=city,
            region="TX",
            postal_code="73301",
            country="US",
            property_type=property_type,
            year_built=1998,
            unit_count=120,
            purchase_price_minor=12_500_000_00,
            purchase_price_currency="USD",
            projected_irr_bps=1450,
        ),
    )


def draft_terms(
    *, property_: Property, issuer: Issuer, opens_at: datetime | None = None, **overrides: Any
) -> services.OfferingDraft:
    """Reg CF, $100.00 a unit, 10,000 units, target $100k, max $1M, 60 days from tomorrow."""
    opens = opens_at or timezone.now() + timedelta(days=1)
    draft = services.OfferingDraft(
        title="Main Street Apartments",
        summary="A 120-unit garden apartment community.",
        property_id=property_.pk,
        issuer_id=issuer.pk,
        security_type=SecurityType.EQUITY,
        currency="USD",
        price_per_unit_minor=100_00,
        quanta_per_unit=1,
        units_authorized=Decimal(10_000),
        min_investment_units=Decimal(1),
        max_investment_units=None,
        target_raise_minor=100_000_00,
        max_raise_minor=1_000_000_00,
        funding_model=FundingModel.ALL_OR_NOTHING,
        exemption=Exemption.REG_CF,
        time_zone="America/New_York",
        opens_at=opens,
        closes_at=opens + timedelta(days=60),
    )
    return replace(draft, **overrides)


def new_offering(
    *,
    sponsor: Sponsor | None = None,
    issuer: Issuer | None = None,
    property_: Property | None = None,
    **overrides: Any,
) -> Offering:
    """A draft offering created by a member of (by default) a new approved sponsor."""
    sponsor = sponsor or approved_sponsor()
    issuer = issuer or issuer_for(sponsor)
    property_ = property_ or property_for(sponsor)
    draft = draft_terms(property_=property_, issuer=issuer, **overrides)
    return services.offering_create(actor=member_of(sponsor), draft=draft)


def advance(offering: Offering, *, to: str, reviewer: User | None = None) -> Offering:
    """Walk a draft through the lifecycle to `to` (in_review, approved or live)."""
    path = ["in_review", "approved", "live"]
    reviewer = reviewer or staff()
    member = member_of(offering.sponsor)
    for status in path[: path.index(to) + 1]:
        if status == "in_review":
            offering = services.offering_submit(actor=member, offering_id=offering.pk)
        elif status == "approved":
            offering = services.offering_approve(actor=reviewer, offering_id=offering.pk)
        else:
            offering = services.offering_go_live(actor=reviewer, offering_id=offering.pk)
    return offering


def live_offering(**kwargs: Any) -> Offering:
    return advance(new_offering(**kwargs), to="live")
