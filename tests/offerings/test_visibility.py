"""Who sees which offering, list filters, pagination and the list's constant query count."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from common.models import User
from offerings import services
from offerings.exemptions import Exemption
from offerings.models import Offering
from offerings.schemas import OfferingPageOut
from tests.conftest import bearer, new_user
from tests.offerings.factories import (
    advance,
    approved_sponsor,
    issuer_for,
    live_offering,
    member_of,
    new_offering,
    property_for,
    staff,
)

pytestmark = [pytest.mark.django_db, pytest.mark.embedded]

LIST = "/api/v1/offerings"


def listed_ids(api_client, user: User | None = None, query: str = "") -> set[int]:
    headers = bearer(user) if user else {}
    response = api_client.get(f"{LIST}{query}", **headers)
    assert response.status_code == 200, response.content
    return {item["id"] for item in response.json()["items"]}


def user_joined(days_ago: int) -> User:
    user = new_user()
    User.objects.filter(pk=user.pk).update(date_joined=timezone.now() - timedelta(days=days_ago))
    user.refresh_from_db()
    return user


@pytest.fixture
def private_placement() -> Offering:
    return live_offering(exemption=Exemption.REG_D_506B)


def test_anonymous_sees_live_offerings_except_506b(api_client, private_placement):
    public = live_offering()
    draft = new_offering()
    approved = advance(new_offering(), to="approved")

    assert listed_ids(api_client) == {public.pk}
    assert api_client.get(f"{LIST}/{private_placement.pk}").status_code == 404
    assert api_client.get(f"{LIST}/{draft.pk}").status_code == 404
    assert api_client.get(f"{LIST}/{approved.pk}").status_code == 404
    assert api_client.get(f"{LIST}/{public.pk}").status_code == 200


def test_506b_needs_a_pre_existing_relationship(api_client, private_placement):
    old_account = user_joined(days_ago=31)
    new_account = user_joined(days_ago=1)

    assert private_placement.pk in listed_ids(api_client, old_account)
    assert (
        api_client.get(f"{LIST}/{private_placement.pk}", **bearer(old_account)).status_code == 200
    )

    assert private_placement.pk not in listed_ids(api_client, new_account)
    assert (
        api_client.get(f"{LIST}/{private_placement.pk}", **bearer(new_account)).status_code == 404
    )


def test_506b_relationship_period_is_a_setting(api_client, private_placement, settings):
    settings.REG_D_506B_RELATIONSHIP_DAYS = 0
    assert private_placement.pk in listed_ids(api_client, user_joined(days_ago=1))


def test_sponsor_members_see_their_own_offerings_in_any_status(api_client):
    sponsor = approved_sponsor()
    draft = new_offering(sponsor=sponsor)
    in_review = advance(
        new_offering(sponsor=sponsor, opens_at=timezone.now() + timedelta(days=3)), to="in_review"
    )
    rival_draft = new_offering()

    seen = listed_ids(api_client, member_of(sponsor))
    assert {draft.pk, in_review.pk} <= seen
    assert rival_draft.pk not in seen


def test_staff_see_everything(api_client, private_placement):
    draft = new_offering()
    assert {draft.pk, private_placement.pk} <= listed_ids(api_client, staff())


def test_filters_status_property_type_and_city(api_client):
    sponsor = approved_sponsor()
    austin = live_offering(
        sponsor=sponsor, property_=property_for(sponsor, city="Austin", property_type="office")
    )
    denver = live_offering(
        sponsor=sponsor,
        issuer=issuer_for(sponsor, legal_name="Denver SPV LLC"),
        property_=property_for(sponsor, city="Denver"),
    )
    draft = new_offering(sponsor=sponsor, issuer=issuer_for(sponsor, legal_name="Draft SPV"))
    member = member_of(sponsor)

    assert listed_ids(api_client, query="?city=aUsTiN") == {austin.pk}
    assert listed_ids(api_client, query="?property_type=multifamily") == {denver.pk}
    assert listed_ids(api_client, member, "?status=draft") == {draft.pk}
    assert listed_ids(api_client, member, "?status=live") == {austin.pk, denver.pk}
    assert api_client.get(f"{LIST}?status=bogus").status_code == 422


def test_list_is_paginated_and_ordered_deterministically(api_client):
    sponsor = approved_sponsor()
    opens = timezone.now() + timedelta(days=1)
    offerings = [
        live_offering(
            sponsor=sponsor,
            issuer=issuer_for(sponsor, legal_name=f"SPV {n}"),
            exemption=Exemption.REG_D_506C,
            opens_at=opens,
        )
        for n in range(3)
    ]
    first = api_client.get(f"{LIST}?limit=2").json()
    second = api_client.get(f"{LIST}?limit=2&offset=2").json()
    assert first["count"] == 3
    # same opens_at: ties broken by id, newest first
    assert [item["id"] for item in first["items"] + second["items"]] == sorted(
        (o.pk for o in offerings), reverse=True
    )
    assert api_client.get(f"{LIST}?limit=101").status_code == 422


def make_live_offerings(count: int) -> None:
    sponsor = approved_sponsor()
    issuer = issuer_for(sponsor)
    for n in range(count):
        live_offering(
            sponsor=sponsor,
            issuer=issuer,
            property_=property_for(sponsor, city=f"City {n}"),
            exemption=Exemption.REG_D_506C,
        )


@pytest.mark.parametrize("signed_in", [False, True])
def test_list_query_count_does_not_grow_with_rows(api_client, signed_in, settings):
    settings.OFFERINGS_PUBLIC_LIST_CACHE_SECONDS = 0  # measure the uncached path
    headers = bearer(user_joined(days_ago=40)) if signed_in else {}

    def queries_for_page() -> tuple[int, int]:
        with CaptureQueriesContext(connection) as captured:
            response = api_client.get(f"{LIST}?limit=50", **headers)
        assert response.status_code == 200
        return len(captured.captured_queries), len(response.json()["items"])

    make_live_offerings(5)
    few, items_few = queries_for_page()
    make_live_offerings(45)
    many, items_many = queries_for_page()

    assert (items_few, items_many) == (5, 50)
    assert few == many
    # one query for the page and its total (plus the token lookup when signed in)
    assert many == (2 if signed_in else 1)


def test_list_row_shape(api_client, django_assert_num_queries, settings):
    settings.OFFERINGS_PUBLIC_LIST_CACHE_SECONDS = 0
    offering = live_offering(quanta_per_unit=100, min_investment_units=Decimal(2))
    with django_assert_num_queries(1):
        item = api_client.get(LIST).json()["items"][0]
    assert item["id"] == offering.pk
    assert item["units_available_quanta"] == 1_000_000
    assert item["units_available"] == "10000.00"
    assert item["min_investment"] == {"amount": "200.00", "currency": "USD"}
    assert item["property"]["property_type"] == "multifamily"
    assert "summary" not in item  # detail only


def test_public_page_is_cached_until_the_catalog_changes(api_client, django_assert_num_queries):
    first = live_offering()
    with django_assert_num_queries(2):  # catalog version, page with its total
        assert listed_ids(api_client) == {first.pk}
    with django_assert_num_queries(1):  # catalog version only
        cached = api_client.get(LIST)
    assert cached.json()["items"][0]["id"] == first.pk
    assert cached["Content-Type"].startswith("application/json")

    # a status change shows at once
    second = live_offering(exemption=Exemption.REG_D_506C)
    assert listed_ids(api_client) == {first.pk, second.pk}
    services.offering_cancel(actor=staff(), offering_id=first.pk, reason="withdrawn")
    assert listed_ids(api_client) == {second.pk}
    # filters are part of the key
    assert listed_ids(api_client, query="?city=Nowhere") == set()


def test_signed_in_pages_are_never_cached(api_client, django_assert_num_queries):
    live_offering()
    user = user_joined(days_ago=1)
    headers = bearer(user)
    for _ in range(2):
        with django_assert_num_queries(2):  # token, page with its total
            api_client.get(LIST, **headers)


@pytest.mark.parametrize("signed_in", [False, True])
def test_rendered_page_matches_the_documented_schema(api_client, settings, signed_in):
    # The list renders rows straight to JSON for speed; the OpenAPI schema must stay true.
    settings.OFFERINGS_PUBLIC_LIST_CACHE_SECONDS = 0
    make_live_offerings(3)
    headers = bearer(user_joined(days_ago=40)) if signed_in else {}
    body = api_client.get(f"{LIST}?limit=2", **headers).json()
    page = OfferingPageOut.model_validate(body)
    assert page.count == 3
    assert len(page.items) == 2
    assert body["items"][0]["price_per_unit"]["amount"] == page.items[0].price_per_unit.amount


def test_a_page_past_the_end_still_reports_the_total(api_client, settings):
    settings.OFFERINGS_PUBLIC_LIST_CACHE_SECONDS = 0
    make_live_offerings(3)
    body = api_client.get(f"{LIST}?limit=2&offset=10").json()
    assert body == {"items": [], "count": 3}
    assert api_client.get(f"{LIST}?status=draft").json() == {"items": [], "count": 0}
