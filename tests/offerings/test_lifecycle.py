"""The offering and sponsor lifecycles: compare-and-swap transitions with history rows."""

from __future__ import annotations

from datetime import timedelta

import pytest
import time_machine
from django.utils import timezone

from common.errors import InvalidTransition, NotAllowed, NotFound, ValidationFailed
from offerings import services
from offerings.models import (
    Offering,
    OfferingStatus,
    OfferingStatusChange,
    SponsorStatus,
    SponsorStatusChange,
)
from offerings.tasks import open_due
from tests.conftest import new_user
from tests.offerings.factories import (
    advance,
    approved_sponsor,
    live_offering,
    member_of,
    new_offering,
    staff,
)

pytestmark = [pytest.mark.django_db, pytest.mark.embedded]


def history(offering: Offering) -> list[tuple[str, str, int | None, str]]:
    return [
        (change.from_status, change.to_status, change.actor_id, change.reason)
        for change in OfferingStatusChange.objects.filter(offering=offering).order_by("id")
    ]


def test_happy_path_writes_who_what_and_why():
    # given a draft by a sponsor member
    offering = new_offering()
    member = member_of(offering.sponsor)
    reviewer = staff()

    # when it is submitted, rejected, fixed, resubmitted, approved and launched
    services.offering_submit(actor=member, offering_id=offering.pk)
    services.offering_reject(actor=reviewer, offering_id=offering.pk, reason="Add a Form C")
    services.offering_submit(actor=member, offering_id=offering.pk)
    services.offering_approve(actor=reviewer, offering_id=offering.pk, reason="looks good")
    live = services.offering_go_live(actor=reviewer, offering_id=offering.pk)

    # then
    assert live.status == OfferingStatus.LIVE
    assert live.went_live_at is not None
    assert history(offering) == [
        ("", "draft", member.pk, ""),
        ("draft", "in_review", member.pk, ""),
        ("in_review", "draft", reviewer.pk, "Add a Form C"),
        ("draft", "in_review", member.pk, ""),
        ("in_review", "approved", reviewer.pk, "looks good"),
        ("approved", "live", reviewer.pk, ""),
    ]


def test_invalid_transition_names_the_current_status():
    offering = live_offering()
    with pytest.raises(InvalidTransition) as refused:
        services.offering_submit(actor=member_of(offering.sponsor), offering_id=offering.pk)
    assert refused.value.detail == "offering is live; only a draft can be submitted."
    assert len(history(offering)) == 4  # nothing written


def test_only_a_draft_can_be_edited():
    offering = advance(new_offering(), to="in_review")
    with pytest.raises(InvalidTransition) as refused:
        services.offering_update(
            actor=member_of(offering.sponsor),
            offering_id=offering.pk,
            changes=services.OfferingChanges(title="Sneaky"),
        )
    assert "only a draft can be edited" in refused.value.detail
    offering.refresh_from_db()
    assert offering.title == "Main Street Apartments"


def test_only_staff_approve_and_launch():
    offering = advance(new_offering(), to="in_review")
    member = member_of(offering.sponsor)
    with pytest.raises(NotAllowed):
        services.offering_approve(actor=member, offering_id=offering.pk)
    with pytest.raises(NotAllowed):
        services.offering_go_live(actor=member, offering_id=offering.pk)
    offering.refresh_from_db()
    assert offering.status == OfferingStatus.IN_REVIEW


def test_another_sponsor_cannot_see_or_touch_a_draft():
    offering = new_offering()
    other_member = member_of(approved_sponsor(name="Rival"))
    with pytest.raises(NotFound):
        services.offering_submit(actor=other_member, offering_id=offering.pk)
    with pytest.raises(NotFound):
        services.offering_cancel(actor=other_member, offering_id=offering.pk, reason="x")


def test_cancel_needs_a_reason_and_is_final():
    offering = live_offering()
    member = member_of(offering.sponsor)
    with pytest.raises(ValidationFailed) as refused:
        services.offering_cancel(actor=member, offering_id=offering.pk, reason="  ")
    assert refused.value.code == "reason_required"

    cancelled = services.offering_cancel(
        actor=member, offering_id=offering.pk, reason="Lender pulled out"
    )
    assert cancelled.status == OfferingStatus.CANCELLED
    assert history(offering)[-1] == ("live", "cancelled", member.pk, "Lender pulled out")
    with pytest.raises(InvalidTransition):
        services.offering_cancel(actor=staff(), offering_id=offering.pk, reason="again")


def test_staff_can_cancel_an_offering_in_review():
    offering = advance(new_offering(), to="in_review")
    reviewer = staff()
    cancelled = services.offering_cancel(actor=reviewer, offering_id=offering.pk, reason="fraud")
    assert cancelled.status == OfferingStatus.CANCELLED
    assert history(offering)[-1] == ("in_review", "cancelled", reviewer.pk, "fraud")


def test_open_due_task_launches_approved_offerings_once():
    opens_at = timezone.now() + timedelta(days=1)
    due = advance(new_offering(opens_at=opens_at), to="approved")
    not_yet = advance(new_offering(opens_at=opens_at + timedelta(days=5)), to="approved")
    draft = new_offering(opens_at=opens_at)

    with time_machine.travel(opens_at + timedelta(hours=1), tick=False):
        assert open_due.apply().get() == [due.pk]
        # idempotent: a second run finds nothing to do
        assert open_due.apply().get() == []

    due.refresh_from_db()
    not_yet.refresh_from_db()
    draft.refresh_from_db()
    assert due.status == OfferingStatus.LIVE
    assert due.went_live_at == opens_at + timedelta(hours=1)
    assert history(due)[-1] == ("approved", "live", None, "opens_at reached")
    assert not_yet.status == OfferingStatus.APPROVED
    assert draft.status == OfferingStatus.DRAFT


def test_an_offering_past_its_deadline_cannot_go_live():
    opens_at = timezone.now() + timedelta(days=1)
    offering = advance(new_offering(opens_at=opens_at), to="approved")
    with time_machine.travel(opens_at + timedelta(days=61), tick=False):
        with pytest.raises(ValidationFailed) as refused:
            services.offering_go_live(actor=staff(), offering_id=offering.pk)
        assert refused.value.code == "closes_at_in_past"
        assert open_due.apply().get() == []
    offering.refresh_from_db()
    assert offering.status == OfferingStatus.APPROVED


def test_sponsor_application_approval_and_history():
    applicant = new_user()
    sponsor = services.sponsor_apply(actor=applicant, name="  Brick & Co  ", website="")
    assert sponsor.status == SponsorStatus.PENDING
    assert sponsor.name == "Brick & Co"
    assert list(sponsor.members.all()) == [applicant]

    with pytest.raises(NotAllowed):
        services.sponsor_approve(actor=applicant, sponsor_id=sponsor.pk)

    reviewer = staff()
    approved = services.sponsor_approve(actor=reviewer, sponsor_id=sponsor.pk, reason="KYB ok")
    assert approved.status == SponsorStatus.APPROVED
    assert approved.decided_by == reviewer
    assert approved.decided_at is not None
    with pytest.raises(InvalidTransition):
        services.sponsor_reject(actor=reviewer, sponsor_id=sponsor.pk, reason="changed my mind")
    assert [
        (c.from_status, c.to_status, c.actor_id, c.reason)
        for c in SponsorStatusChange.objects.filter(sponsor=sponsor).order_by("id")
    ] == [("", "pending", applicant.pk, ""), ("pending", "approved", reviewer.pk, "KYB ok")]


def test_sponsor_rejection_needs_a_reason():
    sponsor = services.sponsor_apply(actor=new_user(), name="Shady LLC")
    with pytest.raises(ValidationFailed):
        services.sponsor_reject(actor=staff(), sponsor_id=sponsor.pk, reason="")
    rejected = services.sponsor_reject(actor=staff(), sponsor_id=sponsor.pk, reason="No KYB")
    assert rejected.status == SponsorStatus.REJECTED
    assert rejected.decision_reason == "No KYB"


def test_fees_the_sponsor_sets_on_the_draft_and_staff_agree_at_approval():
    # given a draft with an investor processing fee of 1% capped at $50
    offering = new_offering(investor_fee_basis_points=100, investor_fee_cap_minor=50_00)
    member = member_of(offering.sponsor)
    services.offering_submit(actor=member, offering_id=offering.pk)
    reviewer = staff()

    # when staff approve it with a bad platform fee, then with 2.5%
    with pytest.raises(ValidationFailed) as refused:
        services.offering_approve(
            actor=reviewer, offering_id=offering.pk, platform_fee_basis_points=10_001
        )
    offering.refresh_from_db()
    assert refused.value.code == "basis_points_invalid"
    assert offering.status == OfferingStatus.IN_REVIEW
    assert offering.platform_fee_basis_points == 0
    approved = services.offering_approve(
        actor=reviewer, offering_id=offering.pk, platform_fee_basis_points=250
    )

    # then both fees are on the offering
    approved.refresh_from_db()
    assert approved.status == OfferingStatus.APPROVED
    assert (approved.investor_fee_basis_points, approved.investor_fee_cap_minor) == (100, 50_00)
    assert approved.platform_fee_basis_points == 250


def test_a_draft_with_an_impossible_investor_fee_is_refused():
    with pytest.raises(ValidationFailed) as refused:
        new_offering(investor_fee_basis_points=-1)
    assert refused.value.code == "basis_points_invalid"
    with pytest.raises(ValidationFailed) as refused:
        new_offering(investor_fee_cap_minor=-5)
    assert refused.value.code == "fee_cap_invalid"
