"""HTTP for closing: prepare and approve (four eyes), the close's state, early close, and the
offering statistics, with their status codes and refusal codes."""

from __future__ import annotations

from datetime import timedelta

import pytest

from captable.models import CloseRequest
from tests.captable.test_closing import after_deadline, fresh, staff, success_scenario
from tests.captable.test_subscriptions import kyc_investor
from tests.conftest import bearer
from tests.offerings.factories import post_json

pytestmark = [pytest.mark.django_db, pytest.mark.embedded]


def close_path(offering_id: int, suffix: str = "") -> str:
    return f"/api/v1/offerings/{offering_id}/close{suffix}"


def test_close_prepared_by_one_member_of_staff_and_approved_by_another(
    api_client, django_capture_on_commit_callbacks
):
    offering, _ = success_scenario()
    preparer, approver = staff(), staff()
    # prepared
    response = post_json(
        api_client, close_path(offering.pk), {"reason": "Deadline reached."}, **bearer(preparer)
    )
    assert response.status_code == 201, response.content
    body = response.json()
    request_id = body["id"]
    assert body["status"] == "pending_approval"
    assert body["requested_by_id"] == preparer.pk
    assert [change["to_status"] for change in body["history"]] == ["pending_approval"]
    approve = close_path(offering.pk, f"/{request_id}/approve")
    with after_deadline(offering):
        # the preparer cannot approve it, nor can an investor
        response = post_json(api_client, approve, None, **bearer(preparer))
        assert response.status_code == 403
        assert response.json()["code"] == "four_eyes"
        response = post_json(api_client, approve, None, **bearer(kyc_investor().user))
        assert response.status_code == 403
        assert response.json()["code"] == "staff_only"
        assert CloseRequest.objects.get(pk=request_id).status == "pending_approval"
        # another member of staff approves: the close runs after the commit
        with django_capture_on_commit_callbacks(execute=True):
            response = post_json(
                api_client, approve, {"reason": "Checked the raise."}, **bearer(approver)
            )
        assert response.status_code == 200, response.content
        assert response.json()["decided_by_id"] == approver.pk
        # the close's state: completed, funded, with its figures
        response = api_client.get(close_path(offering.pk), **bearer(approver))
    assert response.status_code == 200
    detail = response.json()
    assert detail["offering_status"] == "closed_funded"
    assert detail["closing"]["outcome"] == "funded"
    assert detail["closing"]["close_request_id"] == request_id
    assert detail["closing"]["amount_funded"] == {"amount": "90.09", "currency": "USD"}
    assert detail["stats"]["units_issued"] == "9"
    assert detail["stats"]["percent_of_target"] == "180.0000"
    assert CloseRequest.objects.get(pk=request_id).status == "completed"


def test_close_refusals_over_http(api_client):
    offering, _ = success_scenario()
    preparer, other = staff(), staff()
    investor = kyc_investor()
    response = post_json(
        api_client, close_path(offering.pk), {"reason": "x"}, **bearer(investor.user)
    )
    assert response.status_code == 403
    response = post_json(
        api_client, close_path(offering.pk), {"reason": "x", "force": True}, **bearer(preparer)
    )
    assert response.status_code == 422
    request_id = post_json(
        api_client, close_path(offering.pk), {"reason": "Early?"}, **bearer(preparer)
    ).json()["id"]
    response = post_json(api_client, close_path(offering.pk), {"reason": "y"}, **bearer(other))
    assert response.status_code == 409
    assert response.json()["code"] == "close_already_requested"
    # Reg CF: not before the deadline
    response = post_json(
        api_client, close_path(offering.pk, f"/{request_id}/approve"), None, **bearer(other)
    )
    assert response.status_code == 409
    assert response.json()["code"] == "reg_cf_close_before_deadline"
    # a request of another offering is a 404 under this one
    other_offering, _ = success_scenario()
    response = post_json(
        api_client, close_path(other_offering.pk, f"/{request_id}/approve"), None, **bearer(other)
    )
    assert response.status_code == 404
    # rejecting needs a reason
    reject = close_path(offering.pk, f"/{request_id}/reject")
    assert post_json(api_client, reject, {}, **bearer(other)).status_code == 422
    response = post_json(api_client, reject, {"reason": "Wait."}, **bearer(other))
    assert response.status_code == 200
    assert response.json()["status"] == "rejected"
    listing = api_client.get(close_path(offering.pk, "/requests"), **bearer(other))
    assert [item["status"] for item in listing.json()] == ["rejected"]
    assert api_client.get(close_path(offering.pk), **bearer(investor.user)).status_code == 403
    assert fresh(offering).status == "live"


def test_offering_stats_are_public_while_the_offering_is_live(api_client):
    offering, _ = success_scenario()
    response = api_client.get(f"/api/v1/offerings/{offering.pk}/stats")
    assert response.status_code == 200
    stats = response.json()
    assert stats["units_sold"] == "9"
    assert stats["units_reserved"] == "10"  # 9 funded + 1 signed
    assert stats["units_available"] == "0"
    assert stats["amount_raised"] == {"amount": "90.09", "currency": "USD"}
    assert stats["target_raise"] == {"amount": "50.05", "currency": "USD"}
    assert stats["investor_count"] == 3
    assert stats["waitlisted_count"] == 1
    assert stats["percent_of_target"] == "180.0000"
    assert api_client.get("/api/v1/offerings/999999/stats").status_code == 404


def test_early_close_over_http(api_client):
    offering, _ = success_scenario()
    path = f"/api/v1/offerings/{offering.pk}/early-close"
    member = staff()
    closes_at = (fresh(offering).closes_at - timedelta(days=5)).isoformat()
    # an offset is required
    naive = closes_at.replace("+00:00", "")
    response = post_json(api_client, path, {"closes_at": naive, "reason": "x"}, **bearer(member))
    assert response.status_code == 422
    # the offering opened an hour ago and closes in 60 days: 5 days earlier keeps every rule
    response = post_json(
        api_client, path, {"closes_at": closes_at, "reason": "Target met."}, **bearer(member)
    )
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["status"] == "scheduled"
    assert body["closes_at"].startswith(closes_at[:19])
    assert body["amount_funded"] == {"amount": "90.09", "currency": "USD"}
    response = post_json(
        api_client, path, {"closes_at": closes_at, "reason": "Again."}, **bearer(member)
    )
    assert response.status_code == 409
    assert response.json()["code"] == "early_close_scheduled"
