"""The HTTP API end to end: status codes, error codes, JSON shapes."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from offerings.models import Issuer, Offering, OfferingStatusChange, Property, Sponsor
from tests.conftest import bearer, new_user
from tests.offerings.factories import (
    advance,
    approved_sponsor,
    issuer_for,
    live_offering,
    member_of,
    new_offering,
    patch_json,
    post_json,
    property_for,
    staff,
)

pytestmark = [pytest.mark.django_db, pytest.mark.embedded]

BASE = "/api/v1"


def offering_body(issuer: Issuer, property_: Property, **overrides: object) -> dict[str, object]:
    opens = timezone.now() + timedelta(days=2)
    body: dict[str, object] = {
        "title": "Lakeside Lofts",
        "summary": "Value-add multifamily.",
        "property_id": property_.pk,
        "issuer_id": issuer.pk,
        "security_type": "equity",
        "price_per_unit": {"amount": "250.00", "currency": "USD"},
        "quanta_per_unit": 1000,
        "units_authorized": "4000",
        "min_investment_units": "0.5",
        "max_investment_units": "400",
        "target_raise": {"amount": "250000.00", "currency": "USD"},
        "max_raise": {"amount": "1000000.00", "currency": "USD"},
        "funding_model": "all_or_nothing",
        "exemption": "reg_cf",
        "time_zone": "America/Chicago",
        "opens_at": opens.isoformat(),
        "closes_at": (opens + timedelta(days=45)).isoformat(),
    }
    body.update(overrides)
    return body


@pytest.fixture
def sponsor() -> Sponsor:
    return approved_sponsor()


def test_sponsor_member_creates_a_draft(api_client, sponsor):
    headers = bearer(member_of(sponsor))
    body = offering_body(issuer_for(sponsor), property_for(sponsor, city="Chicago"))

    response = post_json(api_client, f"{BASE}/offerings", body, **headers)

    assert response.status_code == 201, response.content
    data = response.json()
    assert data["status"] == "draft"
    assert data["slug"] == "lakeside-lofts"
    assert data["price_per_unit"] == {"amount": "250.00", "currency": "USD"}
    assert data["units_authorized_quanta"] == 4_000_000
    assert data["units_authorized"] == "4000.000"
    assert data["units_available"] == "4000.000"
    assert data["min_investment_units"] == "0.500"
    assert data["min_investment"] == {"amount": "125.00", "currency": "USD"}
    assert data["max_investment"] == {"amount": "100000.00", "currency": "USD"}
    assert data["target_raise"] == {"amount": "250000.00", "currency": "USD"}
    assert data["property"]["city"] == "Chicago"
    assert data["issuer"]["legal_name"] == "Acme Main St SPV LLC"
    assert data["sponsor"] == {"id": sponsor.pk, "name": "Acme Realty"}


def test_validation_error_is_400_with_code_and_field(api_client, sponsor):
    body = offering_body(issuer_for(sponsor), property_for(sponsor))
    body["closes_at"] = body["opens_at"]
    response = post_json(api_client, f"{BASE}/offerings", body, **bearer(member_of(sponsor)))
    assert response.status_code == 400
    assert response.json()["code"] == "dates_out_of_order"
    assert response.json()["field"] == "closes_at"


def test_issuer_cap_is_422_with_the_rule_version(api_client, sponsor):
    issuer, property_ = issuer_for(sponsor), property_for(sponsor)
    headers = bearer(member_of(sponsor))
    big = offering_body(
        issuer,
        property_,
        units_authorized="20000",
        max_raise={"amount": "4500000.00", "currency": "USD"},
    )
    assert post_json(api_client, f"{BASE}/offerings", big, **headers).status_code == 201

    response = post_json(
        api_client, f"{BASE}/offerings", offering_body(issuer, property_), **headers
    )

    assert response.status_code == 422
    assert response.json()["code"] == "issuer_cap_exceeded"
    assert response.json()["rule_version"] == "reg-cf-2021-03-15"


def test_unknown_field_is_422(api_client, sponsor):
    body = offering_body(issuer_for(sponsor), property_for(sponsor), status="live")
    response = post_json(api_client, f"{BASE}/offerings", body, **bearer(member_of(sponsor)))
    assert response.status_code == 422
    assert response.json()["code"] == "invalid_request"
    assert "status" in response.json()["detail"]
    assert not Offering.objects.exists()


def test_mixed_currencies_are_422(api_client, sponsor):
    body = offering_body(
        issuer_for(sponsor), property_for(sponsor), max_raise={"amount": "10", "currency": "EUR"}
    )
    response = post_json(api_client, f"{BASE}/offerings", body, **bearer(member_of(sponsor)))
    assert response.status_code == 422
    assert "one currency" in response.json()["detail"]


def test_no_token_is_401(api_client, sponsor):
    body = offering_body(issuer_for(sponsor), property_for(sponsor))
    assert post_json(api_client, f"{BASE}/offerings", body).status_code == 401
    offering = advance(new_offering(sponsor=sponsor), to="in_review")
    response = post_json(api_client, f"{BASE}/offerings/{offering.pk}/approve")
    assert response.status_code == 401
    assert response.json()["code"] == "not_authenticated"


def test_bad_token_on_a_public_read_is_401_not_anonymous(api_client):
    response = api_client.get(f"{BASE}/offerings", HTTP_AUTHORIZATION="Bearer bb_forged")
    assert response.status_code == 401


def test_investor_calling_approve_is_403(api_client):
    offering = advance(new_offering(), to="in_review")
    response = post_json(
        api_client, f"{BASE}/offerings/{offering.pk}/approve", **bearer(new_user())
    )
    assert response.status_code == 403
    assert response.json()["code"] == "staff_only"
    offering.refresh_from_db()
    assert offering.status == "in_review"


def test_lifecycle_over_http(api_client, sponsor):
    member_headers = bearer(member_of(sponsor))
    staff_headers = bearer(staff())
    offering = new_offering(sponsor=sponsor)
    url = f"{BASE}/offerings/{offering.pk}"

    submitted = post_json(api_client, f"{url}/submit", **member_headers)
    assert submitted.status_code == 200, submitted.content
    assert submitted.json()["status"] == "in_review"

    rejected = post_json(
        api_client, f"{url}/reject", {"reason": "Fix the summary"}, **staff_headers
    )
    assert rejected.json()["status"] == "draft"

    patched = patch_json(api_client, url, {"summary": "Fixed."}, **member_headers)
    assert patched.status_code == 200, patched.content
    assert patched.json()["summary"] == "Fixed."

    post_json(api_client, f"{url}/submit", **member_headers)
    approved = post_json(api_client, f"{url}/approve", {"reason": "ok"}, **staff_headers)
    assert approved.json()["status"] == "approved"
    launched = post_json(api_client, f"{url}/launch", **staff_headers)
    assert launched.status_code == 200
    assert launched.json()["status"] == "live"
    assert launched.json()["went_live_at"] is not None

    again = post_json(api_client, f"{url}/launch", **staff_headers)
    assert again.status_code == 409
    assert again.json()["code"] == "invalid_transition"
    assert again.json()["detail"] == "offering is live; only an approved offering can go live."

    history = api_client.get(f"{url}/history", **member_headers)
    assert [row["to_status"] for row in history.json()] == [
        "draft",
        "in_review",
        "draft",
        "in_review",
        "approved",
        "live",
    ]
    assert history.json()[2]["reason"] == "Fix the summary"

    cancelled = post_json(
        api_client, f"{url}/cancel", {"reason": "Deal fell through"}, **member_headers
    )
    assert cancelled.json()["status"] == "cancelled"
    assert OfferingStatusChange.objects.filter(offering=offering).count() == 7


def test_submitting_twice_is_409(api_client, sponsor):
    headers = bearer(member_of(sponsor))
    offering = new_offering(sponsor=sponsor)
    assert (
        post_json(api_client, f"{BASE}/offerings/{offering.pk}/submit", **headers).status_code
        == 200
    )
    response = post_json(api_client, f"{BASE}/offerings/{offering.pk}/submit", **headers)
    assert response.status_code == 409
    assert response.json()["detail"] == "offering is in_review; only a draft can be submitted."


def test_sponsor_cannot_read_or_patch_another_sponsors_draft(api_client, sponsor):
    draft = new_offering(sponsor=sponsor)
    rival_headers = bearer(member_of(approved_sponsor(name="Rival")))
    url = f"{BASE}/offerings/{draft.pk}"

    assert api_client.get(url, **rival_headers).status_code == 404
    response = patch_json(api_client, url, {"title": "Mine now"}, **rival_headers)
    assert response.status_code == 404
    assert response.json()["code"] == "offering_not_found"
    draft.refresh_from_db()
    assert draft.title == "Main Street Apartments"
    # the owner still sees it
    assert api_client.get(url, **bearer(member_of(sponsor))).status_code == 200


def test_unknown_offering_is_404(api_client):
    assert api_client.get(f"{BASE}/offerings/999999").status_code == 404


def test_patch_of_a_live_offering_by_its_sponsor_is_409(api_client, sponsor):
    offering = live_offering(sponsor=sponsor)
    response = patch_json(
        api_client,
        f"{BASE}/offerings/{offering.pk}",
        {"title": "Renamed"},
        **bearer(member_of(sponsor)),
    )
    assert response.status_code == 409


def test_patch_of_a_visible_offering_by_a_non_member_is_403(api_client):
    offering = live_offering()
    response = patch_json(
        api_client, f"{BASE}/offerings/{offering.pk}", {"title": "x"}, **bearer(new_user())
    )
    assert response.status_code == 403


def test_sponsor_apply_and_approve_over_http(api_client):
    applicant = new_user()
    applied = post_json(
        api_client,
        f"{BASE}/sponsors",
        {"name": "Harbor Capital", "website": "https://harbor.example.com"},
        **bearer(applicant),
    )
    assert applied.status_code == 201, applied.content
    sponsor_id = applied.json()["id"]
    assert applied.json()["status"] == "pending"

    # pending: hidden from strangers, visible to its member
    assert api_client.get(f"{BASE}/sponsors/{sponsor_id}").status_code == 404
    assert api_client.get(f"{BASE}/sponsors/{sponsor_id}", **bearer(applicant)).status_code == 200

    assert (
        post_json(
            api_client, f"{BASE}/sponsors/{sponsor_id}/approve", **bearer(applicant)
        ).status_code
        == 403
    )
    reviewer_headers = bearer(staff())
    queue = api_client.get(f"{BASE}/sponsors?status=pending", **reviewer_headers)
    assert [item["id"] for item in queue.json()["items"]] == [sponsor_id]
    approved = post_json(api_client, f"{BASE}/sponsors/{sponsor_id}/approve", **reviewer_headers)
    assert approved.json()["status"] == "approved"
    assert api_client.get(f"{BASE}/sponsors/{sponsor_id}").json()["name"] == "Harbor Capital"


def test_issuers_and_properties_are_per_sponsor(api_client, sponsor):
    headers = bearer(member_of(sponsor))
    issuer = post_json(
        api_client,
        f"{BASE}/issuers",
        {
            "legal_name": "Harbor 1 LLC",
            "jurisdiction_country": "us",
            "jurisdiction_region": "DE",
            "entity_type": "llc",
        },
        **headers,
    )
    assert issuer.status_code == 201, issuer.content
    assert issuer.json()["jurisdiction_country"] == "US"
    property_ = post_json(
        api_client,
        f"{BASE}/properties",
        {
            "name": "Harbor Point",
            "address_line1": "9 Dock Rd",
            "city": "Boston",
            "country": "US",
            "property_type": "office",
            "purchase_price": {"amount": "8000000.00", "currency": "USD"},
            "projected_irr_bps": 1200,
        },
        **headers,
    )
    assert property_.status_code == 201, property_.content
    assert property_.json()["purchase_price"] == {"amount": "8000000.00", "currency": "USD"}

    assert api_client.get(f"{BASE}/issuers", **headers).json()["count"] == 1
    assert api_client.get(f"{BASE}/properties", **headers).json()["count"] == 1
    rival_headers = bearer(member_of(approved_sponsor(name="Rival")))
    assert api_client.get(f"{BASE}/issuers", **rival_headers).json()["count"] == 0
    assert api_client.get(f"{BASE}/properties", **rival_headers).json()["count"] == 0

    outsider = post_json(
        api_client,
        f"{BASE}/issuers",
        {"legal_name": "X", "jurisdiction_country": "US", "entity_type": "llc"},
        **bearer(new_user()),
    )
    assert outsider.status_code == 403
