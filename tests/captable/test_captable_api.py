"""GET /offerings/{id}/captable: who may read it, and the numbers as of now and as of the past."""

from datetime import datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
from django.utils import timezone

from captable.selectors import captable_as_of
from tests.captable.factories import investors, issue, offering_with_units, transfer
from tests.conftest import bearer, new_user
from tests.investors.factories import make_investor
from tests.offerings.factories import approved_sponsor, member_of, staff

pytestmark = [pytest.mark.django_db, pytest.mark.embedded]


def url(offering_id: int) -> str:
    return f"/api/v1/offerings/{offering_id}/captable"


@pytest.fixture
def book():
    """10,000 units at $100: alice 300 ($30,000), then bob 100 ($10,000), then alice sells
    bob 50 (first in, first out: $5,000 of cost moves with them)."""
    offering = offering_with_units(10_000)
    alice, bob = investors(2)
    first = issue(offering, alice, 300, cost_minor=30_000_00)
    second = issue(offering, bob, 100, cost_minor=10_000_00)
    transfer(offering, alice, bob, 50)
    assert second.effective_at > first.effective_at
    return offering, alice, bob, first, second


def test_sponsor_member_reads_the_cap_table_as_of_now(api_client, book):
    offering, alice, bob, _, _ = book
    response = api_client.get(url(offering.pk), **bearer(member_of(offering.sponsor)))
    assert response.status_code == 200
    body = response.json()
    assert body["offering_id"] == offering.pk
    assert (body["authorized_units"], body["authorized_quanta"]) == ("10000", 10_000)
    assert (body["treasury_units"], body["treasury_quanta"]) == ("9600", 9_600)
    assert (body["issued_units"], body["issued_quanta"]) == ("400", 400)
    assert body["cost_basis_total"] == {"amount": "40000.00", "currency": "USD"}
    assert body["rows"] == [
        {
            "investor_id": alice.pk,
            "investor_legal_name": alice.legal_name,
            "units": "250",
            "quanta": 250,
            "percent": "62.5000",
            "cost_basis": {"amount": "25000.00", "currency": "USD"},
        },
        {
            "investor_id": bob.pk,
            "investor_legal_name": bob.legal_name,
            "units": "150",
            "quanta": 150,
            "percent": "37.5000",
            "cost_basis": {"amount": "15000.00", "currency": "USD"},
        },
    ]
    # the same numbers as the selector it shapes
    table = captable_as_of(offering=offering)
    assert [(r["investor_id"], r["quanta"]) for r in body["rows"]] == [
        (row.investor_id, row.quanta) for row in table.rows
    ]


def test_as_of_between_two_issues_shows_only_the_first(api_client, book):
    offering, alice, _, first, _ = book
    response = api_client.get(
        url(offering.pk),
        {"as_of": first.effective_at.isoformat()},
        **bearer(member_of(offering.sponsor)),
    )
    assert response.status_code == 200
    body = response.json()
    assert body["issued_quanta"] == 300
    assert body["treasury_quanta"] == 9_700
    assert [(r["investor_id"], r["units"], r["percent"]) for r in body["rows"]] == [
        (alice.pk, "300", "100.0000")
    ]
    assert body["as_of"] == first.effective_at.astimezone(ZoneInfo("UTC")).isoformat()


def test_naive_as_of_is_wall_clock_time_in_the_offering_time_zone(api_client, book):
    offering, _, _, first, _ = book
    zone = ZoneInfo(offering.time_zone)
    local = first.effective_at.astimezone(zone)
    naive_just_before = (local - timedelta(microseconds=1)).replace(tzinfo=None)
    naive_at = local.replace(tzinfo=None)
    headers = bearer(member_of(offering.sponsor))

    before = api_client.get(url(offering.pk), {"as_of": naive_just_before.isoformat()}, **headers)
    at = api_client.get(url(offering.pk), {"as_of": naive_at.isoformat()}, **headers)

    assert before.json()["issued_quanta"] == 0
    assert before.json()["rows"] == []
    assert at.json()["issued_quanta"] == 300


def test_a_bare_date_means_the_end_of_that_day_and_before_any_entry_is_empty(api_client, book):
    offering, _, _, first, _ = book
    local_day = first.effective_at.astimezone(ZoneInfo(offering.time_zone)).date()
    headers = bearer(member_of(offering.sponsor))
    day_before = api_client.get(
        url(offering.pk), {"as_of": (local_day - timedelta(days=1)).isoformat()}, **headers
    )
    assert day_before.status_code == 200
    assert day_before.json()["issued_quanta"] == 0
    assert day_before.json()["rows"] == []


def test_a_future_as_of_is_answered_as_of_now(api_client, book):
    offering, *_ = book
    future = (timezone.now() + timedelta(days=30)).isoformat()
    started = timezone.now()
    response = api_client.get(
        url(offering.pk), {"as_of": future}, **bearer(member_of(offering.sponsor))
    )
    body = response.json()
    assert response.status_code == 200
    assert body["issued_quanta"] == 400
    assert started <= datetime.fromisoformat(body["as_of"]) <= timezone.now()


def test_an_unparseable_as_of_is_a_400(api_client, book):
    offering, *_ = book
    response = api_client.get(
        url(offering.pk), {"as_of": "last tuesday"}, **bearer(member_of(offering.sponsor))
    )
    assert response.status_code == 400
    assert response.json()["code"] == "as_of_invalid"


def test_staff_reads_any_cap_table(api_client, book):
    offering, *_ = book
    response = api_client.get(url(offering.pk), **bearer(staff()))
    assert response.status_code == 200
    assert Decimal(response.json()["issued_units"]) == 400


def test_another_sponsor_gets_404(api_client, book):
    offering, *_ = book
    other = member_of(approved_sponsor(name="Other Realty"))
    response = api_client.get(url(offering.pk), **bearer(other))
    assert response.status_code == 404
    assert response.json()["code"] == "offering_not_found"


def test_a_plain_investor_gets_404_even_a_holder(api_client, book):
    offering, alice, *_ = book
    outsider = make_investor()
    for user in (outsider.user, alice.user, new_user()):
        response = api_client.get(url(offering.pk), **bearer(user))
        assert response.status_code == 404


def test_unknown_offering_is_the_same_404(api_client, book):
    offering, *_ = book
    hidden = api_client.get(url(offering.pk), **bearer(new_user()))
    missing = api_client.get(url(offering.pk + 10_000), **bearer(staff()))
    assert hidden.status_code == missing.status_code == 404
    assert hidden.json()["code"] == missing.json()["code"]


def test_no_token_is_401(api_client, book):
    offering, *_ = book
    assert api_client.get(url(offering.pk)).status_code == 401
