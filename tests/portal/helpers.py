"""Shared set-up for the portal tests: offerings and investors made through the services."""

from __future__ import annotations

from typing import Any

from django.test import Client

from common.models import User
from investors.models import Investor
from offerings.models import Offering
from tests.captable.test_subscriptions import kyc_investor, old_user, open_offering

__all__ = ["kyc_investor", "modest_investor", "old_user", "open_offering", "signed_in"]


def signed_in(user: User) -> Client:
    client = Client()
    client.force_login(user)
    return client


def modest_investor(**fields: Any) -> Investor:
    """KYC approved, non-accredited: a Reg CF limit of $2,500 a year."""
    values: dict[str, Any] = {
        "income_current_year_expected_minor": 50_000_00,
        "income_year_minus_1_minor": 50_000_00,
        "net_worth_minor": 50_000_00,
    }
    values.update(fields)
    return kyc_investor(**values)


def offering_in(city: str, **overrides: Any) -> Offering:
    from tests.offerings.factories import approved_sponsor, property_for

    sponsor = approved_sponsor(name=f"{city} Partners")
    property_type = overrides.pop("property_type", "multifamily")
    return open_offering(
        sponsor=sponsor,
        property_=property_for(sponsor, city=city, property_type=property_type),
        **overrides,
    )
