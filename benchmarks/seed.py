"""Benchmark data, created through the same services as the API (so it is valid data)."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

from django.db import transaction
from django.utils import timezone

from common.auth import api_token_issue
from common.models import User
from offerings.services import (
    OfferingDraft,
    PropertyDetails,
    issuer_create,
    offering_approve,
    offering_create,
    offering_go_live,
    offering_submit,
    property_create,
    sponsor_apply,
    sponsor_approve,
)

CITIES = ("Austin", "Denver", "Raleigh", "Phoenix", "Tampa", "Columbus", "Boise", "Nashville")
EXEMPTIONS = ("reg_cf", "reg_a_tier2", "reg_d_506c")


@transaction.atomic
def seed_live_offerings(*, count: int) -> None:
    staff = User.objects.create_user(
        username="bench-staff@example.com", email="bench-staff@example.com", is_staff=True
    )
    owner = User.objects.create_user(
        username="bench-sponsor@example.com", email="bench-sponsor@example.com"
    )
    sponsor = sponsor_apply(actor=owner, name="Bench Sponsor")
    sponsor_approve(actor=staff, sponsor_id=sponsor.pk)
    now = timezone.now()
    for number in range(count):
        city = CITIES[number % len(CITIES)]
        # One SPV per property, as in practice (and each within its exemption's issuer cap).
        issuer = issuer_create(
            actor=owner,
            legal_name=f"Bench SPV {number} LLC",
            jurisdiction_country="US",
            entity_type="llc",
        )
        home = property_create(
            actor=owner,
            details=PropertyDetails(
                name=f"Bench Property {number}",
                address_line1=f"{number} Main St",
                city=city,
                region="TX",
                country="US",
                property_type="multifamily",
            ),
        )
        offering = offering_create(
            actor=owner,
            draft=OfferingDraft(
                title=f"Bench offering {number} in {city}",
                property_id=home.pk,
                issuer_id=issuer.pk,
                security_type="equity",
                currency="USD",
                price_per_unit_minor=50_00,
                quanta_per_unit=1_000,
                units_authorized=Decimal(50_000),
                min_investment_units=Decimal(10),
                target_raise_minor=500_000_00,
                max_raise_minor=2_500_000_00,
                funding_model="all_or_nothing",
                exemption=EXEMPTIONS[number % len(EXEMPTIONS)],
                time_zone="America/Chicago",
                opens_at=now,
                closes_at=now + timedelta(days=90),
            ),
        )
        offering_submit(actor=owner, offering_id=offering.pk)
        offering_approve(actor=staff, offering_id=offering.pk)
        offering_go_live(actor=staff, offering_id=offering.pk)


def investor_token() -> str:
    """A bearer token for a signed-in investor-like account (an ordinary user)."""
    user = User.objects.create_user(
        username="bench-investor@example.com", email="bench-investor@example.com"
    )
    return api_token_issue(user=user, ttl=timedelta(hours=1)).token
