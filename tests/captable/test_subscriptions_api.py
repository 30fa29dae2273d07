"""Subscriptions over HTTP: subscribe with an Idempotency-Key, own-only reads, the agreement,
sign and cancel, and the error shapes."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest
from django.test import Client
from django.utils import timezone

from captable import subscriptions
from captable.models import Subscription, SubscriptionAgreement
from captable.subscription_schemas import (
    SubscriptionDetailOut,
    subscription_detail_json,
    subscription_detail_out,
)
from captable.subscription_selectors import subscription_get
from common.idempotency import render_json
from investors.models import Investor
from offerings.models import Offering
from tests.captable.test_subscriptions import (
    ecsp_offering,
    eu_investor,
    kyc_investor,
    open_offering,
    reserved_quanta,
    small_offering,
)
from tests.captable.test_subscriptions import subscribe as service_subscribe
from tests.conftest import bearer, new_user

pytestmark = [pytest.mark.django_db, pytest.mark.embedded]


def post(client: Client, path: str, body: Any, headers: dict[str, str], key: str | None = None):
    extra: dict[str, Any] = dict(headers)
    if key is not None:
        extra["HTTP_IDEMPOTENCY_KEY"] = key
    return client.post(
        f"/api/v1{path}", data=json.dumps(body), content_type="application/json", **extra
    )


def subscribe(client: Client, investor: Investor, offering: Offering, units: str, key: str, **body):
    return post(
        client,
        f"/offerings/{offering.pk}/subscriptions",
        {"units": units, **body},
        bearer(investor.user),
        key,
    )


def test_subscribe_returns_the_subscription_and_a_replay_returns_it_again(api_client):
    offering = open_offering()
    Offering.objects.filter(pk=offering.pk).update(investor_fee_basis_points=100)
    investor = kyc_investor()
    headers = bearer(investor.user)
    path = f"/offerings/{offering.pk}/subscriptions"

    first = post(api_client, path, {"units": "25"}, headers, "order-1")
    replay = post(api_client, path, {"units": "25"}, headers, "order-1")
    reused = post(api_client, path, {"units": "26"}, headers, "order-1")

    assert first.status_code == 201, first.content
    body = first.json()
    assert body["status"] == "reserved"
    assert (body["units"], body["quanta"]) == ("25", 25)
    assert body["amount"] == {"amount": "2500.00", "currency": "USD"}
    assert body["fee"] == {"amount": "25.00", "currency": "USD"}
    assert body["total"] == {"amount": "2525.00", "currency": "USD"}
    assert body["waitlist_position"] is None
    assert body["compliance"]["rule_version"] == "reg-cf-investor-2021-03-15"
    assert body["compliance"]["code"] == "ok"
    assert body["offering_id"] == offering.pk
    assert [h["to_status"] for h in body["history"]] == ["reserved"]
    assert replay.status_code == 201
    assert replay["Idempotent-Replayed"] == "true"
    assert replay.content == first.content
    assert reused.status_code == 409
    assert reused.json()["code"] == "idempotency_key_reused"
    assert Subscription.objects.count() == 1
    assert reserved_quanta(offering) == 25


@pytest.mark.parametrize("supply", [100, 10])  # reserved in one statement; waitlisted
def test_the_subscribe_response_is_what_reading_the_subscription_back_shows(api_client, supply):
    # The response is built from what the service wrote (no read-back): it must be exactly
    # what GET /subscriptions/{id} shows, history and signatures included.
    offering = small_offering(supply)
    Offering.objects.filter(pk=offering.pk).update(investor_fee_basis_points=150)
    if supply == 10:
        assert subscribe(api_client, kyc_investor(), offering, "10", "all").status_code == 201
    investor = kyc_investor()
    created = subscribe(api_client, investor, offering, "3", "read-back")
    assert created.status_code == 201, created.content
    body = created.json()
    read = api_client.get(f"/api/v1/subscriptions/{body['id']}", **bearer(investor.user))
    assert read.status_code == 200, read.content
    # the same bytes: one JSON encoding (common.api_json), UTC written "Z" by both
    assert created.content == read.content
    assert body["created_at"].endswith("Z")
    assert body["status"] == ("reserved" if supply == 100 else "waitlisted")
    assert [change["to_status"] for change in body["history"]] == [body["status"]]
    assert body["signatures"] == []


def test_a_waitlisted_subscription_shows_its_position(api_client):
    offering = small_offering(5)
    assert subscribe(api_client, kyc_investor(), offering, "5", "a").json()["status"] == "reserved"
    first = subscribe(api_client, kyc_investor(), offering, "2", "b").json()
    second = subscribe(api_client, kyc_investor(), offering, "1", "c").json()
    assert (first["status"], first["waitlist_position"]) == ("waitlisted", 1)
    assert (second["status"], second["waitlist_position"]) == ("waitlisted", 2)
    assert first["reserved_at"] is None


def test_a_refusal_is_an_error_with_its_code_and_a_retry_with_the_same_key_runs_again(api_client):
    offering = open_offering()
    investor = kyc_investor(kyc_status="pending", kyc_decided_at=None)

    refused = subscribe(api_client, investor, offering, "1", "try-1")
    assert refused.status_code == 403
    assert refused.json()["code"] == "kyc_not_approved"
    assert not Subscription.objects.exists()

    Investor.objects.filter(pk=investor.pk).update(
        kyc_status="approved", kyc_decided_at=offering.opens_at
    )
    retried = subscribe(api_client, investor, offering, "1", "try-1")
    assert retried.status_code == 201, retried.content


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({"units": "0"}, 400, "units_not_positive"),
        ({"units": "1.5"}, 400, "units_precision"),
        ({"units": "-1"}, 422, "invalid_request"),
        ({"units": "1", "price": "1"}, 422, "invalid_request"),
        ({"units": "20000"}, 422, "above_maximum_investment"),
    ],
)
def test_invalid_subscriptions_are_refused(api_client, body, status, code):
    offering = open_offering()
    response = post(
        api_client,
        f"/offerings/{offering.pk}/subscriptions",
        body,
        bearer(kyc_investor().user),
        "k",
    )
    assert response.status_code == status, response.content
    assert response.json()["code"] == code
    assert not Subscription.objects.exists()


def test_subscribe_needs_a_key_a_token_an_investor_and_a_visible_offering(api_client):
    offering = open_offering()
    investor = kyc_investor()
    path = f"/offerings/{offering.pk}/subscriptions"
    no_key = post(api_client, path, {"units": "1"}, bearer(investor.user))
    assert no_key.status_code == 422
    anonymous = post(api_client, path, {"units": "1"}, {}, "k")
    assert anonymous.status_code == 401
    not_investor = post(api_client, path, {"units": "1"}, bearer(new_user()), "k")
    assert (not_investor.status_code, not_investor.json()["code"]) == (
        404,
        "investor_profile_missing",
    )
    missing = post(
        api_client, "/offerings/999999/subscriptions", {"units": "1"}, bearer(investor.user), "k"
    )
    assert (missing.status_code, missing.json()["code"]) == (404, "offering_not_found")
    assert not Subscription.objects.exists()


def test_investors_see_only_their_own_subscriptions(api_client):
    offering = open_offering()
    alice, bob = kyc_investor(), kyc_investor()
    mine = subscribe(api_client, alice, offering, "1", "a").json()
    subscribe(api_client, alice, offering, "2", "b")
    theirs = subscribe(api_client, bob, offering, "3", "c").json()

    listed = api_client.get("/api/v1/subscriptions", **bearer(alice.user))
    assert listed.status_code == 200
    assert listed.json()["count"] == 2
    assert [item["units"] for item in listed.json()["items"]] == ["2", "1"]  # newest first
    filtered = api_client.get("/api/v1/subscriptions?status=cancelled", **bearer(alice.user))
    assert filtered.json()["count"] == 0

    own = api_client.get(f"/api/v1/subscriptions/{mine['id']}", **bearer(alice.user))
    assert own.status_code == 200
    assert own.json()["id"] == mine["id"]
    other = api_client.get(f"/api/v1/subscriptions/{theirs['id']}", **bearer(alice.user))
    assert (other.status_code, other.json()["code"]) == (404, "subscription_not_found")
    for suffix in ("agreement",):
        response = api_client.get(
            f"/api/v1/subscriptions/{theirs['id']}/{suffix}", **bearer(alice.user)
        )
        assert response.status_code == 404
    for action, body in (("sign", {"typed_name": bob.legal_name}), ("cancel", {})):
        response = post(
            api_client, f"/subscriptions/{theirs['id']}/{action}", body, bearer(alice.user)
        )
        assert response.status_code == 404, action
    assert Subscription.objects.get(pk=theirs["id"]).status == "reserved"


def test_read_the_agreement_sign_it_then_cancel(api_client):
    offering = open_offering()
    investor = kyc_investor(legal_name="Grace Hopper")
    headers = bearer(investor.user)
    subscription = subscribe(api_client, investor, offering, "4", "k").json()

    agreement = api_client.get(f"/api/v1/subscriptions/{subscription['id']}/agreement", **headers)
    assert agreement.status_code == 200
    document = agreement.json()
    assert "Investor: Grace Hopper" in document["text"]

    wrong = post(
        api_client,
        f"/subscriptions/{subscription['id']}/sign",
        {"typed_name": "G. Hopper"},
        headers,
    )
    assert (wrong.status_code, wrong.json()["code"]) == (400, "signature_name_mismatch")
    signed = post(
        api_client,
        f"/subscriptions/{subscription['id']}/sign",
        {"typed_name": "Grace Hopper", "agreement_sha256": document["document_sha256"]},
        {**headers, "REMOTE_ADDR": "192.0.2.44"},
    )
    assert signed.status_code == 200, signed.content
    body = signed.json()
    assert body["status"] == "signed"
    assert body["signatures"] == [
        {
            "typed_name": "Grace Hopper",
            "signed_at": body["signed_at"],
            "ip_address": "192.0.2.44",
            "document_sha256": document["document_sha256"],
            "document_version": document["document_version"],
        }
    ]
    stored = SubscriptionAgreement.objects.get(subscription_id=subscription["id"])
    assert stored.document_text == document["text"]

    cancelled = post(
        api_client, f"/subscriptions/{subscription['id']}/cancel", {"reason": "Too risky."}, headers
    )
    assert cancelled.status_code == 200, cancelled.content
    assert cancelled.json()["status"] == "cancelled"
    assert [h["to_status"] for h in cancelled.json()["history"]] == [
        "reserved",
        "signed",
        "cancelled",
    ]
    assert reserved_quanta(offering) == 0
    again = post(api_client, f"/subscriptions/{subscription['id']}/cancel", None, headers)
    assert (again.status_code, again.json()["code"]) == (409, "invalid_transition")


def test_the_fast_rendering_is_the_schemas_own():
    # The subscribe response is built field by field without validation
    # (`subscription_detail_out`): it must render exactly as the schema validating the
    # subscription does, for every shape (reserved with a reflection period and an
    # acknowledged warning, waitlisted, signed with its signature), whether read back or as
    # the service returns it (history known, nothing read).
    tested = eu_investor(knowledge_test_valid_until=timezone.now() + timedelta(days=700))
    ecsp = service_subscribe(tested, ecsp_offering(), 60, risk_warning_acknowledged=True)
    offering = small_offering(5)
    signer = kyc_investor(legal_name="Ada Lovelace")
    signed = service_subscribe(signer, offering, 5)
    subscriptions.subscription_sign(
        actor=signer.user, subscription_id=signed.pk, typed_name="Ada Lovelace", ip_address=None
    )
    waiting = service_subscribe(kyc_investor(), offering, 2)
    assert ecsp.revocable_until is not None
    assert waiting.status == "waitlisted"
    for created in (ecsp, signed, waiting):
        shown = subscription_get(user=created.investor.user, subscription_id=created.pk)
        expected = render_json(SubscriptionDetailOut.from_orm(shown))
        assert render_json(subscription_detail_out(shown)) == expected
        assert subscription_detail_json(shown) == expected
        if created is not signed:  # (signing changed it since)
            assert render_json(subscription_detail_out(created)) == expected
            assert subscription_detail_json(created) == expected
