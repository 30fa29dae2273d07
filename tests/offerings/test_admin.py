"""Back-office actions go through the services, so they leave history rows."""

from __future__ import annotations

import pytest
from django.test import Client

from offerings.models import (
    OfferingStatus,
    OfferingStatusChange,
    SponsorStatus,
    SponsorStatusChange,
)
from offerings.services import sponsor_apply
from tests.conftest import new_user
from tests.offerings.factories import advance, new_offering

pytestmark = [pytest.mark.django_db, pytest.mark.embedded]


@pytest.fixture
def admin_client_logged_in() -> tuple[Client, object]:
    user = new_user(is_staff=True)
    user.is_superuser = True
    user.save()
    client = Client()
    client.force_login(user)
    return client, user


def test_approve_selected_sponsors_writes_history(admin_client_logged_in):
    client, reviewer = admin_client_logged_in
    sponsor = sponsor_apply(actor=new_user(), name="Admin Approved")
    response = client.post(
        "/admin/offerings/sponsor/",
        {"action": "approve_selected", "_selected_action": [sponsor.pk]},
    )
    assert response.status_code == 302
    sponsor.refresh_from_db()
    assert sponsor.status == SponsorStatus.APPROVED
    assert SponsorStatusChange.objects.filter(
        sponsor=sponsor, to_status="approved", actor=reviewer
    ).exists()


def test_approve_and_launch_offerings_from_the_admin(admin_client_logged_in):
    client, reviewer = admin_client_logged_in
    offering = advance(new_offering(), to="in_review")
    for action in ("approve_selected", "launch_selected"):
        response = client.post(
            "/admin/offerings/offering/",
            {"action": action, "_selected_action": [offering.pk]},
        )
        assert response.status_code == 302
    offering.refresh_from_db()
    assert offering.status == OfferingStatus.LIVE
    assert list(
        OfferingStatusChange.objects.filter(offering=offering, actor=reviewer)
        .order_by("id")
        .values_list("to_status", flat=True)
    ) == ["approved", "live"]


def test_admin_pages_render_and_history_is_read_only(admin_client_logged_in):
    client, _ = admin_client_logged_in
    offering = advance(new_offering(), to="in_review")
    change = OfferingStatusChange.objects.filter(offering=offering).first()
    assert change is not None
    assert client.get(f"/admin/offerings/offering/{offering.pk}/change/").status_code == 200
    for model in ("sponsor", "issuer", "property", "offering", "offeringstatuschange"):
        assert client.get(f"/admin/offerings/{model}/").status_code == 200
    assert client.get("/admin/offerings/offeringstatuschange/add/").status_code == 403
    delete = client.post(
        f"/admin/offerings/offeringstatuschange/{change.pk}/delete/", {"post": "yes"}
    )
    assert delete.status_code == 403
    assert OfferingStatusChange.objects.filter(pk=change.pk).exists()
