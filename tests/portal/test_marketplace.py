"""The public marketplace and the offering page: the API's visibility rule, filters, sorting,
accessibility basics in the HTML, the caller's own limit, and a query count that does not grow
with the number of offerings."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from common.models import User
from offerings.exemptions import Exemption
from tests.conftest import new_user
from tests.offerings.factories import new_offering
from tests.portal.helpers import modest_investor, offering_in, old_user, signed_in

pytestmark = [pytest.mark.django_db, pytest.mark.embedded]


def test_marketplace_shows_live_offerings_as_cards_and_hides_drafts():
    # given
    live = offering_in("Austin", title="Maple Court Apartments")
    draft = new_offering(title="Secret Draft Tower")
    # when
    page = Client().get(reverse("portal:marketplace")).content.decode()
    # then
    assert live.title in page
    assert draft.title not in page
    assert "Austin" in page
    assert "Multifamily" in page
    assert "$100.00" in page  # price per unit
    assert 'alt="Placeholder picture of Austin Flats' in page
    assert 'role="progressbar"' in page
    assert "60</dd>" in page or "59</dd>" in page  # days left


def test_506b_offerings_only_for_signed_in_users_with_a_prior_relationship():
    private = offering_in("Denver", title="Private Placement Lofts", exemption=Exemption.REG_D_506B)
    url = reverse("portal:marketplace")
    assert private.title not in Client().get(url).content.decode()
    assert private.title not in signed_in(new_user()).get(url).content.decode()
    assert private.title in signed_in(old_user()).get(url).content.decode()
    # and the offering page is a 404 exactly where the card is hidden
    detail = reverse("portal:offering", args=[private.pk])
    assert Client().get(detail).status_code == 404
    assert signed_in(old_user()).get(detail).status_code == 200


def test_filters_and_sorting():
    austin = offering_in("Austin", title="Austin Offices", property_type="office")
    boston = offering_in(
        "Boston", title="Boston Homes", price_per_unit_minor=50_00, max_raise_minor=500_000_00
    )
    url = reverse("portal:marketplace")
    by_type = Client().get(url, {"property_type": "office"}).content.decode()
    assert austin.title in by_type
    assert boston.title not in by_type
    by_city = Client().get(url, {"city": "boston"}).content.decode()
    assert boston.title in by_city
    assert austin.title not in by_city
    by_price = Client().get(url, {"sort": "price"}).content.decode()
    assert by_price.index(boston.title) < by_price.index(austin.title)
    # htmx asks for the grid only
    grid = Client().get(url, {"city": "austin"}, HTTP_HX_REQUEST="true").content.decode()
    assert austin.title in grid
    assert "<html" not in grid


def _marketplace_queries(client: Client) -> int:
    with CaptureQueriesContext(connection) as queries:
        response = client.get(reverse("portal:marketplace"))
    assert response.status_code == 200
    return len(queries)


def test_marketplace_query_count_does_not_grow_with_offerings():
    user = old_user()
    client = signed_in(user)
    offering_in("Austin")
    offering_in("Boston")
    few = _marketplace_queries(client)
    for city in ("Chicago", "Dallas", "El Paso", "Fresno", "Georgetown", "Houston"):
        offering_in(city)
    many = _marketplace_queries(client)
    assert many == few
    assert few <= 4  # session, user, the offerings (one query)


def test_offering_page_shows_figures_exemption_and_own_limit():
    offering = offering_in("Austin", title="Maple Court Apartments")
    investor = modest_investor()
    page = signed_in(investor.user).get(reverse("portal:offering", args=[offering.pk]))
    text = page.content.decode()
    assert page.status_code == 200
    assert "Regulation Crowdfunding" in text  # the exemption in plain words
    assert "$12,500,000.00" in text  # purchase price
    assert "14.50%" in text  # projected IRR
    assert "You may invest up to <strong>$2,500.00</strong> more" in text
    assert reverse("portal:invest", args=[offering.pk]) in text


def test_offering_page_of_a_draft_is_a_404_for_others_but_not_its_sponsor():
    draft = new_offering()
    url = reverse("portal:offering", args=[draft.pk])
    assert Client().get(url).status_code == 404
    assert signed_in(new_user()).get(url).status_code == 404
    member = User.objects.get(sponsor_memberships__sponsor=draft.sponsor)
    assert signed_in(member).get(url).status_code == 200


def test_days_left_counts_whole_days_up():
    from portal.marketplace import days_left

    now = timezone.now()
    assert days_left(now + timedelta(hours=1), now) == 1
    assert days_left(now - timedelta(hours=1), now) == 0
    assert days_left(now + timedelta(days=2), now) == 2


def test_money_and_units_filters_never_use_floats():
    from portal.templatetags.portal_tags import money, percent_bps, units

    assert money(123456789, "USD") == "$1,234,567.89"
    assert units(12500, 1000) == "12.5"
    assert percent_bps(1450) == "14.50%"
