"""HTTP for transfers and reversal requests: status codes, units in and out, idempotency,
who sees and decides what."""

from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import time_machine
from django.test import Client
from django.utils import timezone

from captable import ledger
from captable.models import Entry, TransferRequest
from common.models import User
from investors.models import Investor
from offerings.models import Offering
from tests.captable.factories import investors, issue, offering_with_units
from tests.conftest import bearer, new_user
from tests.investors.factories import make_investor
from tests.offerings.factories import post_json

pytestmark = [pytest.mark.django_db, pytest.mark.embedded]

_keys = iter(range(1, 1_000_000))


def issue_days_ago(days: int, offering: Offering, investor: Investor, quanta: int) -> Entry:
    moment: datetime = timezone.now() - timedelta(days=days)
    with time_machine.travel(moment, tick=False):
        return issue(offering, investor, quanta)


def post_transfer(client: Client, seller: Investor, body: dict[str, Any], key: str | None = None):
    return post_json(
        client,
        "/api/v1/transfers",
        body,
        HTTP_IDEMPOTENCY_KEY=key or f"key-{next(_keys)}",
        **bearer(seller.user),
    )


def body_for(offering: Offering, buyer: Investor, units: str, **extra: Any) -> dict[str, Any]:
    return {"offering_id": offering.pk, "buyer_email": buyer.user.email, "units": units, **extra}


EVIDENCE = {
    "exception": "family_member",
    "evidence": {"document_reference": "doc-7", "description": "Marriage certificate."},
}


def staff() -> User:
    return new_user(is_staff=True)


def test_free_units_transfer_at_once(api_client):
    offering = offering_with_units()
    alice, bob = investors(2)
    issue_days_ago(400, offering, alice, 100)
    response = post_transfer(api_client, alice, body_for(offering, bob, "40"))
    assert response.status_code == 201, response.json()
    data = response.json()
    assert (data["status"], data["units"], data["quanta"]) == ("completed", "40", 40)
    assert data["entry_id"] == Entry.objects.get(kind="transfer").pk
    assert [change["to_status"] for change in data["history"]] == ["approved", "completed"]
    assert ledger.holding_account(offering, bob).balance == 40


def test_locked_units_are_a_422_with_the_free_date_and_nothing_changes(api_client):
    offering = offering_with_units()
    alice, bob = investors(2)
    issued = issue_days_ago(182, offering, alice, 100)
    response = post_transfer(api_client, alice, body_for(offering, bob, "10"))
    assert response.status_code == 422
    data = response.json()
    assert data["code"] == "resale_locked"
    issued_on = issued.effective_at.astimezone(ZoneInfo(offering.time_zone)).date()
    assert data["free_on"] == issued_on.replace(year=issued_on.year + 1).isoformat()
    assert data["free_on"] in data["detail"]
    assert not TransferRequest.objects.exists()
    assert ledger.holding_account(offering, bob).balance == 0


def test_fractional_units_go_in_and_out_as_strings(api_client):
    offering = offering_with_units(1_000_000, quanta_per_unit=1_000)
    alice, bob = investors(2)
    issue_days_ago(400, offering, alice, 20_000)
    response = post_transfer(api_client, alice, body_for(offering, bob, "12.5"))
    assert response.status_code == 201, response.json()
    assert (response.json()["units"], response.json()["quanta"]) == ("12.500", 12_500)
    too_fine = post_transfer(api_client, alice, body_for(offering, bob, "0.0001"))
    assert too_fine.status_code == 400
    assert too_fine.json()["code"] == "units_precision"


def test_exception_waits_for_staff_and_the_requester_cannot_approve(api_client):
    offering = offering_with_units()
    alice, bob = investors(2)
    alice.user.is_staff = True
    alice.user.save()
    issue_days_ago(60, offering, alice, 100)
    created = post_transfer(api_client, alice, body_for(offering, bob, "25", **EVIDENCE))
    assert created.status_code == 201, created.json()
    transfer_id = created.json()["id"]
    assert created.json()["status"] == "pending_approval"

    own = post_json(
        api_client, f"/api/v1/transfers/{transfer_id}/approve", None, **bearer(alice.user)
    )
    assert own.status_code == 403
    assert own.json()["code"] == "four_eyes"
    reviewer = staff()
    approved = post_json(
        api_client,
        f"/api/v1/transfers/{transfer_id}/approve",
        {"reason": "Certificate checked."},
        **bearer(reviewer),
    )

    assert approved.status_code == 200, approved.json()
    data = approved.json()
    assert (data["status"], data["decided_by_id"]) == ("completed", reviewer.pk)
    entry = Entry.objects.get(pk=data["entry_id"])
    assert entry.metadata["exception"] == "family_member"
    assert entry.metadata["approved_by"] == reviewer.pk
    assert ledger.holding_account(offering, bob).balance == 25


def test_staff_reject_with_a_reason(api_client):
    offering = offering_with_units()
    alice, bob = investors(2)
    issue_days_ago(60, offering, alice, 100)
    transfer_id = post_transfer(
        api_client, alice, body_for(offering, bob, "25", **EVIDENCE)
    ).json()["id"]
    path = f"/api/v1/transfers/{transfer_id}/reject"
    assert post_json(api_client, path, {}, **bearer(staff())).status_code == 422  # reason needed
    rejected = post_json(api_client, path, {"reason": "Not a family member."}, **bearer(staff()))
    assert rejected.status_code == 200
    assert rejected.json()["status"] == "rejected"
    again = post_json(api_client, path, {"reason": "Twice."}, **bearer(staff()))
    assert again.status_code == 409


def test_recipient_without_kyc_is_a_clear_400(api_client):
    offering = offering_with_units()
    (alice,) = investors(1)
    newcomer = make_investor()
    issue_days_ago(400, offering, alice, 100)
    response = post_transfer(api_client, alice, body_for(offering, newcomer, "10"))
    assert response.status_code == 400
    assert response.json()["code"] == "recipient_not_kyc_approved"
    assert "KYC" in response.json()["detail"]
    assert not TransferRequest.objects.exists()


def test_available_units_consider_pending_requests(api_client):
    offering = offering_with_units()
    alice, bob, carol = investors(3)
    issue_days_ago(60, offering, alice, 100)
    assert (
        post_transfer(api_client, alice, body_for(offering, bob, "70", **EVIDENCE)).status_code
        == 201
    )
    response = post_transfer(api_client, alice, body_for(offering, carol, "31", **EVIDENCE))
    assert response.status_code == 422
    assert response.json()["code"] == "insufficient_available_units"
    assert response.json()["available_quanta"] == 30


def test_idempotent_post(api_client):
    offering = offering_with_units()
    alice, bob = investors(2)
    issue_days_ago(400, offering, alice, 100)
    first = post_transfer(api_client, alice, body_for(offering, bob, "10"), key="same")
    replay = post_transfer(api_client, alice, body_for(offering, bob, "10"), key="same")
    assert (first.status_code, replay.status_code) == (201, 200)
    assert replay.json()["id"] == first.json()["id"]
    assert replay["Idempotent-Replayed"] == "true"
    different = post_transfer(api_client, alice, body_for(offering, bob, "11"), key="same")
    assert different.status_code == 409
    assert different.json()["code"] == "idempotency_key_reused"
    missing = post_json(
        api_client, "/api/v1/transfers", body_for(offering, bob, "1"), **bearer(alice.user)
    )
    assert missing.status_code == 422
    assert TransferRequest.objects.count() == 1
    assert ledger.holding_account(offering, bob).balance == 10


def test_unknown_fields_are_refused(api_client):
    offering = offering_with_units()
    alice, bob = investors(2)
    response = post_transfer(api_client, alice, body_for(offering, bob, "1", price="5"))
    assert response.status_code == 422


def test_other_investors_cannot_see_or_decide_a_transfer(api_client):
    offering = offering_with_units()
    alice, bob, mallory = investors(3)
    issue_days_ago(60, offering, alice, 100)
    transfer_id = post_transfer(api_client, alice, body_for(offering, bob, "5", **EVIDENCE)).json()[
        "id"
    ]
    detail = f"/api/v1/transfers/{transfer_id}"
    assert api_client.get(detail, **bearer(mallory.user)).status_code == 404
    assert api_client.get(detail, **bearer(bob.user)).status_code == 200  # the buyer sees it
    assert api_client.get("/api/v1/transfers", **bearer(mallory.user)).json()["count"] == 0
    listed = api_client.get("/api/v1/transfers", **bearer(bob.user)).json()
    assert [item["id"] for item in listed["items"]] == [transfer_id]
    assert (
        post_json(api_client, f"{detail}/approve", None, **bearer(mallory.user)).status_code == 403
    )
    assert (
        post_json(api_client, f"{detail}/cancel", None, **bearer(mallory.user)).status_code == 404
    )
    assert post_json(api_client, f"{detail}/cancel", None, **bearer(bob.user)).status_code == 403
    cancelled = post_json(api_client, f"{detail}/cancel", None, **bearer(alice.user))
    assert cancelled.status_code == 200
    assert cancelled.json()["status"] == "cancelled"


def test_staff_list_every_transfer_paginated(api_client):
    offering = offering_with_units()
    alice, bob = investors(2)
    issue_days_ago(400, offering, alice, 100)
    for _ in range(3):
        post_transfer(api_client, alice, body_for(offering, bob, "1"))
    page = api_client.get("/api/v1/transfers?limit=2&offset=0", **bearer(staff())).json()
    assert page["count"] == 3
    assert len(page["items"]) == 2
    assert page["items"][0]["id"] > page["items"][1]["id"]  # newest first


def test_forced_transfer_needs_a_second_staff_member(api_client):
    offering = offering_with_units()
    estate, heir = investors(2)
    issue_days_ago(30, offering, estate, 100)
    body = {
        "offering_id": offering.pk,
        "seller_investor_id": estate.pk,
        "buyer_investor_id": heir.pk,
        "units": "100",
        "legal_basis": "death",
        "reason": "Units pass to the heir under the will.",
        "document_reference": "probate-77",
    }
    assert (
        post_json(api_client, "/api/v1/transfers/forced", body, **bearer(estate.user)).status_code
        == 403
    )
    first, second = staff(), staff()
    prepared = post_json(api_client, "/api/v1/transfers/forced", body, **bearer(first))
    assert prepared.status_code == 201, prepared.json()
    path = f"/api/v1/transfers/forced/{prepared.json()['id']}/approve"
    same = post_json(api_client, path, None, **bearer(first))
    assert same.status_code == 403
    assert ledger.holding_account(offering, heir).balance == 0

    approved = post_json(api_client, path, {"reason": "Probate checked."}, **bearer(second))

    assert approved.status_code == 200, approved.json()
    assert approved.json()["status"] == "completed"
    entry = Entry.objects.get(pk=approved.json()["entry_id"])
    assert (entry.metadata["prepared_by"], entry.metadata["approved_by"]) == (first.pk, second.pk)
    assert ledger.holding_account(offering, heir).balance == 100


def test_reversal_request_four_eyes(api_client):
    offering = offering_with_units()
    alice, bob = investors(2)
    issue_days_ago(400, offering, alice, 100)
    entry_id = post_transfer(api_client, alice, body_for(offering, bob, "10")).json()["entry_id"]
    first, second = staff(), staff()
    path = f"/api/v1/ledger/entries/{entry_id}/reversal-requests"
    assert (
        post_json(api_client, path, {"reason": "Mistake."}, **bearer(alice.user)).status_code == 403
    )
    prepared = post_json(api_client, path, {"reason": "Wrong recipient."}, **bearer(first))
    assert prepared.status_code == 201, prepared.json()
    reversal_id = prepared.json()["id"]
    assert post_json(api_client, path, {"reason": "Again."}, **bearer(second)).status_code == 409
    approve = f"/api/v1/ledger/reversal-requests/{reversal_id}/approve"
    assert post_json(api_client, approve, None, **bearer(first)).status_code == 403
    assert ledger.holding_account(offering, bob).balance == 10

    approved = post_json(api_client, approve, None, **bearer(second))

    assert approved.status_code == 200, approved.json()
    data = approved.json()
    assert data["status"] == "completed"
    assert Entry.objects.get(pk=data["reversal_entry_id"]).reverses_id == entry_id
    assert ledger.holding_account(offering, bob).balance == 0
    assert [change["to_status"] for change in data["history"]] == ["pending_approval", "completed"]
    listing = api_client.get("/api/v1/ledger/reversal-requests", **bearer(alice.user))
    assert listing.status_code == 403
    assert api_client.get("/api/v1/ledger/reversal-requests", **bearer(first)).json()["count"] == 1
