"""The cap-table back office: the ledger is read-only, the cap table and lots are visible to
staff, and transfer and reversal requests are decided through the services (four eyes)."""

from datetime import timedelta

import pytest
import time_machine
from django.contrib import admin
from django.test import Client
from django.utils import timezone

from captable import ledger
from captable.models import (
    Account,
    ChainSeal,
    Entry,
    Lot,
    Posting,
    ReversalRequest,
    SealedEntry,
    TransferRequest,
)
from captable.transfers import forced_transfer_prepare, reversal_prepare
from common.models import User
from tests.captable.factories import investors, issue, offering_with_units, transfer
from tests.conftest import new_user

pytestmark = [pytest.mark.django_db, pytest.mark.embedded]

LEDGER_MODELS = (Account, Entry, Posting, Lot, ChainSeal, SealedEntry)


def superuser() -> User:
    user = new_user(is_staff=True)
    user.is_superuser = True
    user.save()
    return user


def signed_in(user: User) -> Client:
    client = Client()
    client.force_login(user)
    return client


def test_ledger_models_cannot_be_added_changed_or_deleted_in_the_admin(rf):
    request = rf.get("/admin/")
    request.user = superuser()
    for model in LEDGER_MODELS:
        model_admin = admin.site._registry[model]
        assert not model_admin.has_add_permission(request), model
        assert not model_admin.has_change_permission(request), model
        assert not model_admin.has_delete_permission(request), model


def test_ledger_pages_render_read_only_with_postings_inline():
    offering = offering_with_units(1_000)
    alice, bob = investors(2)
    issue(offering, alice, 100, cost_minor=10_000)
    moved = transfer(offering, alice, bob, 40)
    client = signed_in(superuser())
    for model in LEDGER_MODELS:
        url = f"/admin/captable/{model._meta.model_name}/"
        assert client.get(url).status_code == 200, url
    page = client.get(f"/admin/captable/entry/{moved.pk}/change/")
    assert page.status_code == 200
    body = page.content.decode()
    assert "Postings" in body
    assert 'name="_save"' not in body  # no save button: read-only
    assert client.get("/admin/captable/entry/add/").status_code == 403
    assert client.post(f"/admin/captable/entry/{moved.pk}/delete/").status_code == 403
    assert Entry.objects.filter(pk=moved.pk).exists()


def test_cap_table_view_shows_holders_units_and_percentages():
    offering = offering_with_units(1_000)
    alice, bob = investors(2)
    issue(offering, alice, 300, cost_minor=30_000)
    issue(offering, bob, 100, cost_minor=10_000)
    client = signed_in(superuser())
    page = client.get(f"/admin/captable/account/cap-table/{offering.pk}/")
    assert page.status_code == 200
    body = page.content.decode()
    assert alice.legal_name in body
    assert "75.0000" in body
    assert "25.0000" in body
    assert "USD 300.00" in body
    # as of a day before the issue, nobody holds anything
    yesterday = (timezone.now() - timedelta(days=2)).date().isoformat()
    earlier = client.get(f"/admin/captable/account/cap-table/{offering.pk}/?as_of={yesterday}")
    assert "No holders." in earlier.content.decode()


def test_cap_table_view_is_for_staff_only():
    offering = offering_with_units(1_000)
    client = signed_in(new_user())
    page = client.get(f"/admin/captable/account/cap-table/{offering.pk}/")
    assert page.status_code == 302  # to the admin login
    assert "/admin/login/" in page["Location"]


def test_lots_filter_by_investor_shows_their_positions():
    offering = offering_with_units(1_000)
    alice, bob = investors(2)
    with time_machine.travel(timezone.now() - timedelta(days=40), tick=False):
        issue(offering, alice, 70)
    issue(offering, bob, 30)
    client = signed_in(superuser())
    page = client.get(f"/admin/captable/lot/?holding__investor__id__exact={alice.pk}")
    assert page.status_code == 200
    changelist = page.context["cl"]
    assert [lot.holding.investor_id for lot in changelist.result_list] == [alice.pk]
    assert changelist.result_list[0].remaining == 70


def post_action(client: Client, model: str, action: str, pk: int):
    return client.post(
        f"/admin/captable/{model}/",
        {"action": action, "_selected_action": [pk]},
        follow=True,
    )


def test_forced_transfer_is_approved_in_the_admin_only_by_a_second_staff_member():
    offering = offering_with_units(1_000)
    estate, heir = investors(2)
    issue(offering, estate, 50)
    preparer, approver = superuser(), superuser()
    forced = forced_transfer_prepare(
        actor=preparer,
        offering_id=offering.pk,
        seller_investor_id=estate.pk,
        buyer_investor_id=heir.pk,
        quanta=50,
        legal_basis="court_order",
        reason="Court order 2025-CV-118.",
        document_reference="court-2025-cv-118",
    )
    refused = post_action(signed_in(preparer), "transferrequest", "approve", forced.pk)
    assert "Four eyes" in refused.content.decode()
    forced.refresh_from_db()
    assert forced.status == "pending_approval"

    post_action(signed_in(approver), "transferrequest", "approve", forced.pk)

    forced.refresh_from_db()
    assert forced.status == "completed"
    assert forced.decided_by == approver
    assert ledger.holding_account(offering, heir).balance == 50


def test_transfer_request_rejected_in_the_admin():
    offering = offering_with_units(1_000)
    estate, heir = investors(2)
    issue(offering, estate, 50)
    forced = forced_transfer_prepare(
        actor=superuser(),
        offering_id=offering.pk,
        seller_investor_id=estate.pk,
        buyer_investor_id=heir.pk,
        quanta=50,
        legal_basis="other",
        reason="Estate settlement.",
        document_reference="doc-1",
    )
    post_action(signed_in(superuser()), "transferrequest", "reject", forced.pk)
    forced.refresh_from_db()
    assert forced.status == "rejected"
    assert "Rejected in the admin" in forced.decision_reason
    assert TransferRequest.objects.get(pk=forced.pk).entry is None


def test_reversal_is_approved_in_the_admin_by_a_second_staff_member():
    offering = offering_with_units(1_000)
    alice, bob = investors(2)
    issue(offering, alice, 100)
    moved = transfer(offering, alice, bob, 40)
    preparer, approver = superuser(), superuser()
    reversal = reversal_prepare(actor=preparer, entry_id=moved.pk, reason="Keyed the wrong buyer.")
    refused = post_action(signed_in(preparer), "reversalrequest", "approve", reversal.pk)
    assert "Four eyes" in refused.content.decode()
    assert ledger.holding_account(offering, bob).balance == 40

    post_action(signed_in(approver), "reversalrequest", "approve", reversal.pk)

    reversal = ReversalRequest.objects.get(pk=reversal.pk)
    assert reversal.status == "completed"
    assert reversal.reversal_entry is not None
    assert ledger.holding_account(offering, bob).balance == 0
    assert ledger.holding_account(offering, alice).balance == 100
