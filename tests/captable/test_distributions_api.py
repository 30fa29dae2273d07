"""Distributions over HTTP: declare (sponsor), approve (another person, staff), fund, pay; the
detail with paginated payouts and totals as the sponsor, staff and an investor (own payout
only) see it; the list scoped the same way; errors as `{"detail", "code"}`."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest
from django.test import Client

from captable.models import Distribution, DistributionStatus
from captable.verification import ledger_verify
from investors.models import Investor
from offerings.models import Offering
from tests.captable.test_distributions import after_payment_date, closed_offering, today_in
from tests.conftest import bearer, new_user
from tests.offerings.factories import member_of

pytestmark = [pytest.mark.django_db, pytest.mark.embedded]


def post(client: Client, path: str, user: Any, body: Any = None) -> Any:
    headers: Any = bearer(user)
    data = json.dumps(body) if body is not None else ""
    return client.post(f"/api/v1{path}", data=data, content_type="application/json", **headers)


def get(client: Client, path: str, user: Any) -> Any:
    headers: Any = bearer(user)
    return client.get(f"/api/v1{path}", **headers)


def declare_body(offering: Offering, amount: str = "1000.01", **overrides: Any) -> dict[str, Any]:
    today = today_in(offering)
    return {
        "amount": {"amount": amount, "currency": "USD"},
        "kind": "income",
        "record_date": today.isoformat(),
        "payment_date": (today + timedelta(days=1)).isoformat(),
    } | overrides


def test_declare_approve_fund_pay_and_read_back(
    api_client: Client, django_capture_on_commit_callbacks: Any
) -> None:
    # given: three holders with a W-9 each
    offering, holders = closed_offering([1, 1, 1])
    Investor.objects.filter(pk__in=[h.pk for h in holders]).update(tax_form="w9")
    sponsor, approver = member_of(offering.sponsor), new_user(is_staff=True)
    # when: declared by the sponsor
    declared = post(
        api_client, f"/offerings/{offering.pk}/distributions", sponsor, declare_body(offering)
    )
    assert declared.status_code == 201, declared.content
    body = declared.json()
    assert body["status"] == "draft"
    assert body["amount"] == {"amount": "1000.01", "currency": "USD"}
    assert body["return_of_capital"] == {"amount": "0.00", "currency": "USD"}
    distribution_id = body["id"]
    # the sponsor cannot approve; staff can
    refused = post(api_client, f"/distributions/{distribution_id}/approve", sponsor)
    assert refused.status_code == 403
    assert refused.json()["code"] == "staff_only"
    approved = post(api_client, f"/distributions/{distribution_id}/approve", approver)
    assert approved.status_code == 200, approved.content
    assert approved.json()["approved_by_id"] == approver.pk
    funded = post(api_client, f"/distributions/{distribution_id}/fund", sponsor)
    assert funded.status_code == 200, funded.content
    assert funded.json()["status"] == "funded"
    payer = new_user(is_staff=True)
    distribution = Distribution.objects.get(pk=distribution_id)
    with after_payment_date(distribution), django_capture_on_commit_callbacks(execute=True):
        started = post(api_client, f"/distributions/{distribution_id}/pay", payer)
    assert started.status_code == 202, started.content
    assert Distribution.objects.get(pk=distribution_id).status == DistributionStatus.PAID
    # then: the sponsor sees every payout, paginated, and the totals
    detail = get(api_client, f"/distributions/{distribution_id}?limit=2&offset=0", sponsor)
    assert detail.status_code == 200, detail.content
    page = detail.json()
    assert page["distribution"]["status"] == "paid"
    assert page["totals"]["gross"] == {"amount": "1000.01", "currency": "USD"}
    assert page["totals"]["payouts"] == page["totals"]["payouts_paid"] == 3
    assert page["payouts"]["count"] == 3
    assert [p["net"]["amount"] for p in page["payouts"]["items"]] == ["333.34", "333.34"]
    rest = get(api_client, f"/distributions/{distribution_id}?limit=2&offset=2", sponsor).json()
    assert [p["net"]["amount"] for p in rest["payouts"]["items"]] == ["333.33"]
    assert [h["to_status"] for h in page["history"]][-1] == "paid"
    # an investor sees only their own payout
    mine = get(api_client, f"/distributions/{distribution_id}", holders[2].user).json()
    assert [p["investor_id"] for p in mine["payouts"]["items"]] == [holders[2].pk]
    assert mine["totals"]["gross"]["amount"] == "333.33"
    assert ledger_verify().ok


def test_the_declarer_cannot_approve(api_client: Client) -> None:
    offering, _ = closed_offering([1])
    declarer = new_user(is_staff=True)
    declared = post(
        api_client, f"/offerings/{offering.pk}/distributions", declarer, declare_body(offering)
    )
    assert declared.status_code == 201
    refused = post(api_client, f"/distributions/{declared.json()['id']}/approve", declarer)
    assert refused.status_code == 403
    assert refused.json()["code"] == "four_eyes"


def test_list_is_scoped(api_client: Client) -> None:
    offering, _ = closed_offering([1])
    other, _ = closed_offering([1])
    for each in (offering, other):
        assert (
            post(
                api_client,
                f"/offerings/{each.pk}/distributions",
                member_of(each.sponsor),
                declare_body(each),
            ).status_code
            == 201
        )
    sponsor_view = get(api_client, "/distributions", member_of(offering.sponsor)).json()
    assert [d["offering_id"] for d in sponsor_view["items"]] == [offering.pk]
    assert get(api_client, "/distributions", new_user(is_staff=True)).json()["count"] == 2
    assert get(api_client, "/distributions", new_user()).json()["count"] == 0


def test_strangers_get_404_and_bad_input_is_refused(api_client: Client) -> None:
    offering, _ = closed_offering([1])
    declared = post(
        api_client,
        f"/offerings/{offering.pk}/distributions",
        member_of(offering.sponsor),
        declare_body(offering),
    )
    distribution_id = declared.json()["id"]
    assert get(api_client, f"/distributions/{distribution_id}", new_user()).status_code == 404
    stranger = post(
        api_client, f"/offerings/{offering.pk}/distributions", new_user(), declare_body(offering)
    )
    assert stranger.status_code == 404
    unknown_field = post(
        api_client,
        f"/offerings/{offering.pk}/distributions",
        member_of(offering.sponsor),
        declare_body(offering, surprise=1),
    )
    assert unknown_field.status_code == 422
    zero = post(
        api_client,
        f"/offerings/{offering.pk}/distributions",
        member_of(offering.sponsor),
        declare_body(offering, amount="0.00"),
    )
    assert zero.status_code == 400
    assert zero.json()["code"] == "amount_not_positive"
    mixed = post(
        api_client,
        f"/offerings/{offering.pk}/distributions",
        member_of(offering.sponsor),
        declare_body(offering, kind="mixed", income={"amount": "400.00", "currency": "USD"}),
    )
    assert mixed.status_code == 201, mixed.content
    assert mixed.json()["return_of_capital"]["amount"] == "600.01"
