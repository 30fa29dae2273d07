"""Reconfirmation after a material change: business days, who is asked, re-signing, and the
expiry (with a controlled clock) that cancels and refunds those who did not reconfirm."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from django.core.files.base import ContentFile
from django.utils import timezone
from hypothesis import given
from hypothesis import strategies as st

from captable import payments, subscriptions
from captable.models import (
    Payment,
    Subscription,
    SubscriptionAgreement,
    SubscriptionReconfirmation,
)
from captable.subscription_selectors import subscription_agreement_document
from captable.tasks import expire_reconfirmations, expire_subscriptions, require_reconfirmation
from common.business_days import add_business_days, end_of_business_days
from common.errors import Conflict, ValidationFailed
from investors.models import Investor
from offerings import services as offering_services
from offerings.models import Offering, OfferingDocument
from tests.captable.test_payments import (
    assert_ledger_verifies,
    at,
    escrow_of,
    external,
    funded,
    signed,
    start_payment,
)
from tests.captable.test_subscriptions import (
    assert_reservations_consistent,
    kyc_investor,
    open_offering,
    reserved_quanta,
    small_offering,
    statuses,
    subscribe,
)
from tests.conftest import bearer
from tests.offerings.factories import member_of

pytestmark = [pytest.mark.django_db, pytest.mark.embedded, pytest.mark.usefixtures("_media")]

# Monday 23 November 2026, 15:00 in New York (the factories' offering time zone).
MONDAY_AFTERNOON = datetime(2026, 11, 23, 20, 0, tzinfo=UTC)


@pytest.fixture
def _media(settings: Any, tmp_path: Any) -> None:
    settings.MEDIA_ROOT = tmp_path


def new_version(offering: Offering, text: bytes = b"Subscription agreement, revised") -> Any:
    return offering_services.offering_document_upload(
        actor=member_of(offering.sponsor),
        offering_id=offering.pk,
        kind="subscription_agreement_template",
        file=ContentFile(text, name="agreement.pdf"),
    )


def material_change(offering: Offering, text: bytes = b"revised") -> list[int]:
    """A new document version, then the hook, as the upload path would call it."""
    document = new_version(offering, text)
    return subscriptions.subscriptions_require_reconfirmation(
        offering=offering, actor=document.uploaded_by, document=document
    )


def reconfirm(investor: Investor, subscription: Subscription, **kwargs: Any) -> Subscription:
    return subscriptions.subscription_reconfirm(
        actor=investor.user,
        subscription_id=subscription.pk,
        typed_name=kwargs.pop("typed_name", investor.legal_name),
        ip_address="198.51.100.4",
        **kwargs,
    )


def pending_of(subscription: Subscription) -> SubscriptionReconfirmation:
    return SubscriptionReconfirmation.objects.get(subscription=subscription, status="pending")


# --- business days --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("start", "days", "expected"),
    [
        (date(2026, 11, 23), 5, date(2026, 11, 30)),  # Monday → next Monday
        (date(2026, 11, 27), 1, date(2026, 11, 30)),  # Friday → Monday
        (date(2026, 11, 27), 5, date(2026, 12, 4)),  # Friday → next Friday
        (date(2026, 11, 28), 1, date(2026, 11, 30)),  # Saturday → Monday
        (date(2026, 11, 29), 5, date(2026, 12, 4)),  # Sunday → Friday
        (date(2026, 11, 28), 0, date(2026, 11, 28)),
        (date(2026, 12, 30), 3, date(2027, 1, 4)),  # over a year end (holidays not known)
    ],
)
def test_add_business_days_worked_examples(start, days, expected):
    assert add_business_days(start, days) == expected


def test_add_business_days_refuses_a_negative_count():
    with pytest.raises(ValueError, match="negative"):
        add_business_days(date(2026, 11, 23), -1)


@given(st.dates(min_value=date(2000, 1, 1), max_value=date(2100, 1, 1)), st.integers(0, 400))
def test_add_business_days_counts_exactly_the_weekdays_in_between(start, days):
    end = add_business_days(start, days)
    between = [start + timedelta(days=n) for n in range(1, (end - start).days + 1)]
    assert sum(day.weekday() < 5 for day in between) == days
    assert days == 0 or end.weekday() < 5
    assert (end - start).days <= days // 5 * 7 + 7


def test_the_deadline_is_the_end_of_the_business_day_in_the_offering_time_zone():
    # 03:00 UTC on Friday 27 November: still Thursday evening in New York, Friday in Berlin
    moment = datetime(2026, 11, 27, 3, 0, tzinfo=UTC)
    # New York: Thursday + 1 business day = Friday; the deadline is the midnight after it
    assert end_of_business_days(moment, 1, "America/New_York") == datetime(
        2026, 11, 28, 5, 0, tzinfo=UTC
    )
    # Berlin: Friday + 1 business day = Monday 30 November
    assert end_of_business_days(moment, 1, "Europe/Berlin") == datetime(
        2026, 11, 30, 23, 0, tzinfo=UTC
    )
    assert end_of_business_days(moment, 5, "America/New_York") == datetime(
        2026, 12, 4, 5, 0, tzinfo=UTC
    )


# --- who is asked ---------------------------------------------------------------------------------


def test_a_new_document_version_asks_signed_and_funded_subscriptions_to_reconfirm():
    with at(MONDAY_AFTERNOON):
        offering = open_offering()
        reserved = subscribe(kyc_investor(), offering, 1)
        signed_one = signed(kyc_investor(), offering, 2)
        funded_one, _ = funded(kyc_investor(), offering, 3)

        asked = material_change(offering)

        assert asked == [signed_one.pk, funded_one.pk]
        for subscription in (signed_one, funded_one):
            pending = pending_of(subscription)
            current = subscription_agreement_document(Subscription.objects.get(pk=subscription.pk))
            assert pending.agreement_sha256 == current.sha256
            assert pending.previous_agreement_sha256 != current.sha256
            assert pending.document == OfferingDocument.objects.get(offering=offering, version=1)
            # end of Monday 30 November in New York
            assert pending.due_at == datetime(2026, 12, 1, 5, 0, tzinfo=UTC)
        assert not SubscriptionReconfirmation.objects.filter(subscription=reserved).exists()
        # asked once: running the hook again (say, the task retried) asks nobody new
        assert (
            subscriptions.subscriptions_require_reconfirmation(offering=offering, actor=None) == []
        )
        assert SubscriptionReconfirmation.objects.count() == 2

    # a second change two days later supersedes the pending request, with a new deadline
    with at(MONDAY_AFTERNOON + timedelta(days=2)):
        assert material_change(offering, b"revised again") == [signed_one.pk, funded_one.pk]
    superseded = SubscriptionReconfirmation.objects.filter(status="superseded")
    assert sorted(superseded.values_list("subscription_id", flat=True)) == [
        signed_one.pk,
        funded_one.pk,
    ]
    assert pending_of(signed_one).due_at == datetime(2026, 12, 3, 5, 0, tzinfo=UTC)


def test_the_outbox_task_asks_for_reconfirmation(settings):
    offering = open_offering()
    subscription = signed(kyc_investor(), offering, 1)
    document = new_version(offering)

    asked = require_reconfirmation.apply(
        kwargs={"offering_id": offering.pk, "document_id": document.pk}
    ).get()

    assert asked == 1
    assert pending_of(subscription).document_id == document.pk


# --- reconfirming ---------------------------------------------------------------------------------


def test_reconfirming_signs_the_new_agreement(api_client):
    offering = open_offering()
    investor = kyc_investor()
    subscription, _ = funded(investor, offering, 2)
    shown_before = subscription_agreement_document(subscription)
    material_change(offering)

    # a stale hash or another name is refused, changing nothing
    with pytest.raises(Conflict) as stale:
        reconfirm(investor, subscription, agreement_sha256=shown_before.sha256)
    assert stale.value.code == "agreement_changed"
    with pytest.raises(ValidationFailed):
        reconfirm(investor, subscription, typed_name="Someone Else")
    assert SubscriptionAgreement.objects.filter(subscription=subscription).count() == 1

    # over HTTP, with the hash of the agreement just read
    headers = bearer(investor.user)
    agreement = api_client.get(f"/api/v1/subscriptions/{subscription.pk}/agreement", **headers)
    response = api_client.post(
        f"/api/v1/subscriptions/{subscription.pk}/reconfirm",
        data=json.dumps(
            {
                "typed_name": investor.legal_name,
                "agreement_sha256": agreement.json()["document_sha256"],
            }
        ),
        content_type="application/json",
        **headers,
    )

    assert response.status_code == 200, response.content
    assert response.json()["status"] == "funded"  # unchanged: still funded
    assert len(response.json()["signatures"]) == 2
    listed = api_client.get(f"/api/v1/subscriptions/{subscription.pk}/reconfirmations", **headers)
    (only,) = listed.json()
    assert only["status"] == "reconfirmed"
    assert only["agreement_sha256"] == agreement.json()["document_sha256"]
    record = SubscriptionReconfirmation.objects.get(subscription=subscription)
    assert record.agreement is not None
    assert record.agreement.document_sha256 == record.agreement_sha256
    assert record.agreement.document_version == "agreement-1/template-v1"
    # nothing left to reconfirm
    with pytest.raises(Conflict) as nothing:
        reconfirm(investor, subscription)
    assert nothing.value.code == "no_reconfirmation_pending"


def test_funding_waits_for_the_reconfirmation():
    offering = open_offering()
    investor = kyc_investor()
    subscription = signed(investor, offering, 1)
    material_change(offering)

    with pytest.raises(Conflict) as caught:
        start_payment(subscription)
    assert caught.value.code == "reconfirmation_required"

    reconfirm(investor, subscription)
    assert start_payment(subscription).amount_expected_minor == 100_00


# --- expiry: cancelled and refunded ---------------------------------------------------------------


def test_not_reconfirming_in_time_cancels_and_refunds(settings):
    settings.SUBSCRIPTION_RESERVATION_TTL_HOURS = 24 * 30
    with at(MONDAY_AFTERNOON):
        offering = small_offering(10)
        paid_investor, signed_investor, loyal_investor = (
            kyc_investor(),
            kyc_investor(),
            kyc_investor(),
        )
        paid, payment = funded(paid_investor, offering, 4)
        unpaid = signed(signed_investor, offering, 3)
        loyal, _ = funded(loyal_investor, offering, 3)
        waiting = subscribe(kyc_investor(), offering, 5)
        assert external() == -700_00
        material_change(offering)
    due_at = pending_of(paid).due_at
    assert due_at == datetime(2026, 12, 1, 5, 0, tzinfo=UTC)

    with at(MONDAY_AFTERNOON + timedelta(days=3)):
        reconfirm(loyal_investor, loyal)
    with at(due_at - timedelta(seconds=1)):
        assert expire_reconfirmations.apply().get() == 0
    assert statuses(paid, unpaid, loyal, waiting) == ["funded", "signed", "funded", "waitlisted"]

    # at the deadline: too late to reconfirm, and the task cancels and refunds
    with at(due_at):
        with pytest.raises(Conflict) as late:
            reconfirm(paid_investor, paid)
        assert late.value.code == "reconfirmation_lapsed"
        assert expire_reconfirmations.apply().get() == 2
    assert statuses(paid, unpaid, loyal, waiting) == [
        "cancelled",
        "cancelled",
        "funded",
        "reserved",
    ]
    # the paid one's money went back out where it came from; the loyal one's stays
    payment.refresh_from_db()
    assert (payment.status, payment.amount_refunded_minor) == ("refunded", 400_00)
    assert escrow_of(paid) == 0
    assert escrow_of(loyal) == 300_00
    assert external() == -300_00
    assert dict(SubscriptionReconfirmation.objects.values_list("subscription_id", "status")) == {
        paid.pk: "lapsed",
        unpaid.pk: "lapsed",
        loyal.pk: "reconfirmed",
    }
    assert reserved_quanta(offering) == 3 + 5
    assert_reservations_consistent(offering)
    assert_ledger_verifies()
    # running it again changes nothing
    with at(due_at + timedelta(hours=1)):
        assert expire_reconfirmations.apply().get() == 0
    assert external() == -300_00


def test_cancel_is_open_while_a_reconfirmation_is_pending_even_inside_48_hours():
    offering = open_offering()  # Reg CF
    investor, other = kyc_investor(), kyc_investor()
    deadline = offering.closes_at
    with at(deadline - timedelta(hours=60)):
        asked, _ = funded(investor, offering, 2)
        unasked = subscribe(other, offering, 1)
        material_change(offering)

    with at(deadline - timedelta(hours=47)):
        subscriptions.subscription_cancel(actor=investor.user, subscription_id=asked.pk)
        with pytest.raises(Conflict) as caught:
            subscriptions.subscription_cancel(actor=other.user, subscription_id=unasked.pk)

    assert caught.value.code == "cancel_window_closed"
    assert statuses(asked, unasked) == ["cancelled", "reserved"]
    assert (escrow_of(asked), external()) == (0, 0)
    # the pending request ended with the subscription
    assert SubscriptionReconfirmation.objects.get(subscription=asked).status == "void"


def test_a_subscription_that_expires_meanwhile_is_refunded_once(settings):
    settings.SUBSCRIPTION_RESERVATION_TTL_HOURS = 1
    offering = open_offering()
    subscription = signed(kyc_investor(), offering, 2)
    payment = start_payment(subscription)
    notify_partial = payments.SimulatedBankTransfer().event_payload(
        payment=payment, event_type="payment.confirmed", amount_minor=50_00
    )
    body = json.dumps(notify_partial).encode()
    headers = payments.webhook_headers(body=body)
    payments.payment_webhook_receive(
        body=body,
        timestamp=headers[payments.WEBHOOK_TIMESTAMP_HEADER],
        signature=headers[payments.WEBHOOK_SIGNATURE_HEADER],
    )
    material_change(offering)

    later = timezone.now() + timedelta(days=30)
    with at(later):
        assert expire_subscriptions.apply().get() == 1
        assert expire_reconfirmations.apply().get() == 0

    assert statuses(subscription) == ["expired"]
    assert SubscriptionReconfirmation.objects.get(subscription=subscription).status == "void"
    assert Payment.objects.get(subscription=subscription).amount_refunded_minor == 50_00
    assert (escrow_of(subscription), external()) == (0, 0)
