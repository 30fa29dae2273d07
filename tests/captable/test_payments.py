"""Funding into escrow: starting a payment, the signed webhook (bad or stale signatures and
repeated events change nothing), confirmation external → escrow, over- and under-payment,
bounces, refunds on cancel and expiry, and the refund service closing uses. Real ledger, real
database; the simulated bank's notifications go through the same webhook a provider's would.

The helpers at the top are shared by test_payments_*.py and test_reconfirmation.py."""

from __future__ import annotations

import hashlib
import hmac
import json
from datetime import datetime, timedelta
from typing import Any

import pytest
import time_machine
from django.core.exceptions import ImproperlyConfigured
from django.db import DatabaseError, IntegrityError, connection, transaction
from django.test import Client
from django.utils import timezone

from captable import ledger, payments, subscriptions
from captable.models import (
    Account,
    Entry,
    EntryKind,
    Payment,
    PaymentEvent,
    PaymentStatusChange,
    Posting,
    Subscription,
    SubscriptionStatusChange,
)
from captable.subscription_selectors import subscription_escrowed_minor
from captable.tasks import expire_subscriptions
from captable.verification import ledger_verify
from common.errors import Conflict, InvalidTransition
from investors.models import Investor
from offerings.models import Offering
from tests.captable.test_subscriptions import (
    assert_reservations_consistent,
    kyc_investor,
    open_offering,
    reserved_quanta,
    small_offering,
    statuses,
    subscribe,
)
from tests.conftest import bearer, new_user

pytestmark = [pytest.mark.django_db, pytest.mark.embedded]

BANK = payments.SimulatedBankTransfer()
WEBHOOK = "/api/v1/payments/webhook"


# --- helpers (also used by test_reconfirmation.py) ----------------------------------------------


def at(moment: datetime) -> Any:
    return time_machine.travel(moment, tick=False)


def signed(investor: Investor, offering: Offering, units: int) -> Subscription:
    subscription = subscribe(investor, offering, units)
    return subscriptions.subscription_sign(
        actor=investor.user,
        subscription_id=subscription.pk,
        typed_name=investor.legal_name,
        ip_address="203.0.113.7",
    )


def start_payment(subscription: Subscription) -> Payment:
    payment, _ = payments.subscription_fund(
        actor=subscription.investor.user, subscription_id=subscription.pk
    )
    return payment


def notify(
    payment: Payment,
    event_type: str = "payment.confirmed",
    *,
    amount_minor: int | None = None,
    event_id: str | None = None,
) -> payments.WebhookResult:
    """The simulated bank's notification, signed now, through the webhook service."""
    if event_id is None:
        return payments.payment_simulate(
            payment=payment, event_type=event_type, amount_minor=amount_minor
        )
    body = json.dumps(
        BANK.event_payload(
            payment=payment, event_type=event_type, amount_minor=amount_minor, event_id=event_id
        )
    ).encode()
    headers = payments.webhook_headers(body=body)
    return payments.payment_webhook_receive(
        body=body,
        timestamp=headers[payments.WEBHOOK_TIMESTAMP_HEADER],
        signature=headers[payments.WEBHOOK_SIGNATURE_HEADER],
    )


def funded(investor: Investor, offering: Offering, units: int) -> tuple[Subscription, Payment]:
    """A subscription signed and paid in full (amount plus fee), through the webhook."""
    subscription = signed(investor, offering, units)
    payment = start_payment(subscription)
    notify(payment)
    subscription.refresh_from_db()
    payment.refresh_from_db()
    assert subscription.status == "funded"
    return subscription, payment


def balance(key: str) -> int:
    """The account's balance now (0 before its first posting). The row's balance, kept by the
    posting trigger; equal to the sum of its postings (checked by `ledger_verify`)."""
    account = Account.objects.filter(key=key).first()
    return 0 if account is None else account.balance


def escrow_of(subscription: Subscription) -> int:
    return balance(ledger.escrow_spec(subscription.offering, subscription.investor).key)


def external(currency: str = "USD") -> int:
    return balance(ledger.external_spec(currency).key)


def total_due(subscription: Subscription) -> int:
    return subscription.amount_minor + subscription.fee_minor


def assert_ledger_verifies() -> None:
    report = ledger_verify()
    assert report.ok, report.summary()


def ledger_rows() -> tuple[int, int]:
    return Entry.objects.count(), Posting.objects.count()


def signed_post(
    client: Client,
    body: bytes,
    *,
    timestamp: str | None = None,
    signature: str | None = None,
    now: datetime | None = None,
) -> Any:
    headers = payments.webhook_headers(body=body, now=now)
    extra: dict[str, Any] = {
        "HTTP_X_PAYMENTS_TIMESTAMP": timestamp or headers[payments.WEBHOOK_TIMESTAMP_HEADER],
        "HTTP_X_PAYMENTS_SIGNATURE": signature or headers[payments.WEBHOOK_SIGNATURE_HEADER],
    }
    return client.post(WEBHOOK, data=body, content_type="application/json", **extra)


def confirmation_body(payment: Payment, **kwargs: Any) -> bytes:
    payload = BANK.event_payload(payment=payment, event_type="payment.confirmed", **kwargs)
    return json.dumps(payload).encode()


# --- starting a payment ---------------------------------------------------------------------------


def test_funding_starts_one_pending_payment_for_what_is_due_with_instructions(api_client):
    # given a signed subscription of 10 units at $100.00 with a 1% processing fee
    offering = open_offering()
    Offering.objects.filter(pk=offering.pk).update(investor_fee_basis_points=100)
    investor = kyc_investor()
    subscription = signed(investor, Offering.objects.get(pk=offering.pk), 10)
    path = f"/api/v1/subscriptions/{subscription.pk}/fund"

    # when the investor starts funding it, twice
    first = api_client.post(path, **bearer(investor.user))
    again = api_client.post(path, **bearer(investor.user))

    # then one pending payment for amount + fee, with the reference to quote
    assert (first.status_code, again.status_code) == (201, 200), first.content
    body = first.json()
    assert again.json()["id"] == body["id"]
    assert body["status"] == "pending"
    assert body["amount_expected"] == {"amount": "1010.00", "currency": "USD"}
    instructions = body["instructions"]
    assert instructions["reference"] == body["reference"]
    assert instructions["reference"].startswith("BB")
    assert instructions["amount"] == {"amount": "1010.00", "currency": "USD"}
    assert body["history"][0]["to_status"] == "pending"
    assert Payment.objects.filter(subscription=subscription).count() == 1
    # and no money moved yet
    assert Entry.objects.count() == 0
    # the list shows it
    listed = api_client.get(
        f"/api/v1/subscriptions/{subscription.pk}/payments", **bearer(investor.user)
    )
    assert [p["id"] for p in listed.json()] == [body["id"]]


def test_funding_refusals_change_nothing(api_client):
    offering = open_offering()
    investor, stranger = kyc_investor(), kyc_investor()
    reserved = subscribe(investor, offering, 1)
    subscription = signed(investor, offering, 2)

    def fund(who: Investor, target: Subscription) -> Any:
        return api_client.post(f"/api/v1/subscriptions/{target.pk}/fund", **bearer(who.user))

    not_signed = fund(investor, reserved)
    not_yours = fund(stranger, subscription)
    assert (not_signed.status_code, not_signed.json()["code"]) == (409, "subscription_not_signed")
    assert (not_yours.status_code, not_yours.json()["code"]) == (404, "subscription_not_found")
    assert subscription.expires_at is not None
    with at(subscription.expires_at + timedelta(seconds=1)):
        expired = fund(investor, subscription)
    assert (expired.status_code, expired.json()["code"]) == (409, "reservation_expired")
    assert Payment.objects.count() == 0


# --- the webhook: signatures, freshness, repeats --------------------------------------------------


def test_a_confirmation_moves_the_money_to_escrow_and_funds_the_subscription(api_client):
    # given a signed subscription with a pending payment
    offering = open_offering()
    investor = kyc_investor()
    subscription = signed(investor, offering, 10)
    payment = start_payment(subscription)

    # when the bank confirms the transfer of the amount due
    response = signed_post(api_client, confirmation_body(payment, event_id="evt_1"))

    # then the cash moved external → the investor's escrow for the offering
    assert response.status_code == 200, response.content
    assert response.json() == {"event_id": "evt_1", "duplicate": False, "outcome": "funded"}
    assert escrow_of(subscription) == total_due(subscription) == 1_000_00
    assert external() == -1_000_00
    # and the subscription is funded, with no expiry left, history recorded
    subscription.refresh_from_db()
    assert (subscription.status, subscription.expires_at) == ("funded", None)
    change = SubscriptionStatusChange.objects.filter(subscription=subscription).last()
    assert change is not None
    assert (change.from_status, change.to_status) == ("signed", "funded")
    payment.refresh_from_db()
    assert payment.status == "confirmed"
    assert (payment.amount_received_minor, payment.amount_over_minor) == (1_000_00, 0)
    assert payment.funding_entry is not None
    assert payment.funding_entry.kind == EntryKind.CASH_IN
    event = PaymentEvent.objects.get()
    assert (event.provider_event_id, event.payment_id, event.outcome) == (
        "evt_1",
        payment.pk,
        "funded",
    )
    assert PaymentStatusChange.objects.filter(payment=payment, to_status="confirmed", event=event)
    assert subscription_escrowed_minor(subscription_id=subscription.pk) == 1_000_00
    assert_ledger_verifies()
    # and the expiry task never expires a funded subscription
    with at(timezone.now() + timedelta(days=30)):
        assert expire_subscriptions.apply().get() == 0
    assert statuses(subscription) == ["funded"]


def test_bad_or_stale_signatures_are_refused_with_no_effect(api_client, settings):
    offering = open_offering()
    subscription = signed(kyc_investor(), offering, 1)
    payment = start_payment(subscription)
    body = confirmation_body(payment)
    assert b'"100.00"' in body
    now = timezone.now()

    settings.PAYMENTS_WEBHOOK_SECRET = "the-shared-secret"
    timestamp = str(int(now.timestamp()))
    wrong_secret = signed_post(
        api_client,
        body,
        timestamp=timestamp,
        signature=payments.webhook_signature(
            timestamp=timestamp, body=body, secret=b"another-secret"
        ),
    )
    good = payments.webhook_headers(body=body, now=now)  # under the shared secret
    tampered = signed_post(
        api_client,
        body.replace(b"100.00", b"999.00"),
        timestamp=good[payments.WEBHOOK_TIMESTAMP_HEADER],
        signature=good[payments.WEBHOOK_SIGNATURE_HEADER],
    )
    unsigned = api_client.post(WEBHOOK, data=body, content_type="application/json")
    garbage = signed_post(api_client, body, signature="not-hex-\u00e9")
    stale = signed_post(api_client, body, now=now - timedelta(minutes=5, seconds=1))
    future = signed_post(api_client, body, now=now + timedelta(minutes=6))

    assert [r.status_code for r in (wrong_secret, tampered, unsigned, garbage)] == [401] * 4
    assert wrong_secret.json()["code"] == "webhook_signature_invalid"
    assert unsigned.json()["code"] == "webhook_signature_missing"
    assert [r.status_code for r in (stale, future)] == [400, 400]
    assert stale.json()["code"] == "webhook_timestamp_stale"
    # nothing happened
    assert (PaymentEvent.objects.count(), Entry.objects.count()) == (0, 0)
    assert Payment.objects.get().status == "pending"
    assert statuses(subscription) == ["signed"]
    # and a fresh, correctly signed delivery (4 minutes old) still works
    fresh = signed_post(api_client, body, now=now - timedelta(minutes=4))
    assert fresh.status_code == 200, fresh.content


def test_a_repeated_event_id_is_ignored(api_client):
    offering = open_offering()
    subscription = signed(kyc_investor(), offering, 3)
    payment = start_payment(subscription)
    body = confirmation_body(payment, event_id="evt_same")

    first = signed_post(api_client, body)
    rows = ledger_rows()
    repeat = signed_post(api_client, body)

    assert first.json()["duplicate"] is False
    assert repeat.status_code == 200
    assert repeat.json() == {
        "event_id": "evt_same",
        "duplicate": True,
        "outcome": "duplicate: already processed",
    }
    assert ledger_rows() == rows
    assert PaymentEvent.objects.count() == 1
    assert escrow_of(subscription) == 300_00
    # another event confirming the same payment again moves nothing either (recorded)
    other = notify(payment, event_id="evt_other")
    assert other.outcome == "ignored: payment is already confirmed"
    assert ledger_rows() == rows
    assert escrow_of(subscription) == 300_00


def test_unknown_references_and_wrong_currencies_are_refused_with_no_effect(api_client):
    offering = open_offering()
    subscription = signed(kyc_investor(), offering, 1)
    payment = start_payment(subscription)
    unknown = json.dumps(
        {
            "id": "evt_x",
            "type": "payment.confirmed",
            "data": {"reference": "BBNOPE", "amount": {"amount": "1.00", "currency": "USD"}},
        }
    ).encode()
    euros = json.dumps(
        {
            "id": "evt_y",
            "type": "payment.confirmed",
            "data": {
                "reference": payment.provider_reference,
                "amount": {"amount": "100.00", "currency": "EUR"},
            },
        }
    ).encode()
    responses = [
        signed_post(api_client, unknown),
        signed_post(api_client, euros),
        signed_post(api_client, b"{not json"),
        signed_post(
            api_client, json.dumps({"id": "e", "type": "payment.won", "data": {}}).encode()
        ),
    ]
    assert [r.status_code for r in responses] == [404, 400, 400, 400]
    assert [r.json()["code"] for r in responses] == [
        "payment_not_found",
        "webhook_currency_mismatch",
        "webhook_payload_invalid",
        "webhook_event_type_unknown",
    ]
    assert (PaymentEvent.objects.count(), Entry.objects.count()) == (0, 0)


# --- over- and under-payment ----------------------------------------------------------------------


def test_an_over_payment_funds_the_subscription_and_sends_the_excess_back_exactly():
    offering = open_offering()
    subscription = signed(kyc_investor(), offering, 5)
    payment = start_payment(subscription)

    result = notify(payment, amount_minor=500_00 + 123_45)

    assert result.outcome == "funded; USD 123.45 over-paid and sent back"
    assert statuses(subscription) == ["funded"]
    assert escrow_of(subscription) == 500_00
    assert external() == -500_00
    payment.refresh_from_db()
    assert (payment.amount_received_minor, payment.amount_over_minor) == (623_45, 123_45)
    assert payment.amount_refunded_minor == 123_45
    assert payment.excess_refund_entry is not None
    excess = {p.account.kind: p.amount for p in payment.excess_refund_entry.postings.all()}
    assert excess == {"escrow": -123_45, "external": 123_45}
    assert_ledger_verifies()


def test_an_under_payment_stays_in_escrow_and_a_top_up_funds_the_subscription():
    offering = open_offering()
    subscription = signed(kyc_investor(), offering, 10)
    first = start_payment(subscription)

    result = notify(first, amount_minor=600_00)

    # the money is in escrow, the shortfall recorded, the subscription still signed
    assert result.outcome == "under-paid: USD 400.00 still due"
    assert statuses(subscription) == ["signed"]
    assert escrow_of(subscription) == 600_00
    first.refresh_from_db()
    assert (first.status, first.amount_short_minor) == ("confirmed", 400_00)

    # a second payment is for the shortfall; paying it funds the subscription
    second = start_payment(subscription)
    assert second.pk != first.pk
    assert second.amount_expected_minor == 400_00
    assert notify(second).outcome == "funded"
    assert statuses(subscription) == ["funded"]
    assert escrow_of(subscription) == 1_000_00 == -external()
    assert_ledger_verifies()


def test_the_expiry_of_a_part_paid_subscription_refunds_it(settings):
    settings.SUBSCRIPTION_RESERVATION_TTL_HOURS = 2
    offering = small_offering(10)
    investor, waiting_investor = kyc_investor(), kyc_investor()
    subscription = signed(investor, offering, 10)
    waiting = subscribe(waiting_investor, offering, 4)
    notify(start_payment(subscription), amount_minor=250_00)
    assert escrow_of(subscription) == 250_00

    with at(timezone.now() + timedelta(hours=3)):
        assert expire_subscriptions.apply().get() == 1

    assert statuses(subscription, waiting) == ["expired", "reserved"]
    assert escrow_of(subscription) == 0
    assert external() == 0  # the 250.00 went back out
    payment = Payment.objects.get(subscription=subscription)
    assert (payment.status, payment.amount_refunded_minor) == ("refunded", 250_00)
    assert payment.refund_entry is not None
    assert payment.refund_entry.kind == EntryKind.CASH_OUT
    assert reserved_quanta(offering) == 4
    assert_reservations_consistent(offering)
    assert_ledger_verifies()


# --- bounces ------------------------------------------------------------------------------------


def test_a_bounce_reverses_the_funding_and_the_subscription_is_signed_again(settings):
    settings.SUBSCRIPTION_RESERVATION_TTL_HOURS = 24
    offering = open_offering()
    subscription, payment = funded(kyc_investor(), offering, 4)
    assert escrow_of(subscription) == 400_00

    result = notify(payment, "payment.returned")

    assert result.outcome == "returned: funding reversed, the subscription is signed again"
    payment.refresh_from_db()
    assert payment.status == "returned"
    assert payment.return_entry is not None
    assert payment.return_entry.kind == EntryKind.REVERSAL
    assert payment.return_entry.reverses_id == payment.funding_entry_id
    assert escrow_of(subscription) == 0
    assert external() == 0
    subscription.refresh_from_db()
    assert subscription.status == "signed"
    assert subscription.expires_at is not None
    assert subscription.expires_at > timezone.now() + timedelta(hours=23)
    change = SubscriptionStatusChange.objects.filter(subscription=subscription).last()
    assert change is not None
    assert (change.from_status, change.to_status) == ("funded", "signed")
    assert reserved_quanta(offering) == 4  # still reserved, waiting for the money again
    assert_ledger_verifies()
    # the same bounce again changes nothing; the investor can pay again
    assert notify(payment, "payment.returned").outcome == "ignored: payment is returned"
    assert notify(start_payment(subscription)).outcome == "funded"
    assert escrow_of(subscription) == 400_00


def test_a_bounce_after_an_over_payment_reverses_the_excess_refund_too():
    offering = open_offering()
    subscription = signed(kyc_investor(), offering, 2)
    payment = start_payment(subscription)
    notify(payment, amount_minor=250_00)

    notify(payment, "payment.returned")

    payment.refresh_from_db()
    assert payment.status == "returned"
    assert payment.excess_return_entry is not None
    assert payment.excess_return_entry.reverses_id == payment.excess_refund_entry_id
    assert (escrow_of(subscription), external()) == (0, 0)
    assert statuses(subscription) == ["signed"]
    assert_ledger_verifies()


def test_a_failed_transfer_moves_nothing_and_a_new_payment_can_start():
    offering = open_offering()
    subscription = signed(kyc_investor(), offering, 1)
    payment = start_payment(subscription)

    assert notify(payment, "payment.failed").outcome == "failed"

    payment.refresh_from_db()
    assert payment.status == "failed"
    assert Entry.objects.count() == 0
    assert start_payment(subscription).pk != payment.pk


# --- cancel and refund ----------------------------------------------------------------------------


def test_cancelling_a_funded_subscription_refunds_exactly_what_was_paid():
    # given a funded subscription paid in two transfers (60 + 40), and someone waiting
    offering = small_offering(10)
    investor, waiting_investor = kyc_investor(), kyc_investor()
    subscription = signed(investor, offering, 10)
    notify(start_payment(subscription), amount_minor=600_00)
    notify(start_payment(subscription), amount_minor=400_00)
    waiting = subscribe(waiting_investor, offering, 3)
    assert statuses(subscription, waiting) == ["funded", "waitlisted"]
    assert external() == -1_000_00

    # when the investor cancels
    cancelled = subscriptions.subscription_cancel(
        actor=investor.user, subscription_id=subscription.pk, reason="Changed my mind."
    )

    # then each payment went back out on the ledger, exactly what it brought
    assert cancelled.status == "cancelled"
    assert escrow_of(subscription) == 0
    assert external() == 0
    refunds = [
        (p.status, p.amount_refunded_minor, p.refund_entry.kind if p.refund_entry else None)
        for p in Payment.objects.filter(subscription=subscription).order_by("pk")
    ]
    assert refunds == [("refunded", 600_00, "cash_out"), ("refunded", 400_00, "cash_out")]
    # and the units went to the waitlist
    assert statuses(waiting) == ["reserved"]
    assert_reservations_consistent(offering)
    assert_ledger_verifies()

    # cancelling again changes nothing more
    rows = ledger_rows()
    with pytest.raises(InvalidTransition):
        subscriptions.subscription_cancel(actor=investor.user, subscription_id=subscription.pk)
    assert ledger_rows() == rows
    assert external() == 0


def test_cancel_over_http_refunds_a_funded_subscription(api_client):
    offering = open_offering()
    investor = kyc_investor()
    subscription, _ = funded(investor, offering, 2)

    response = api_client.post(
        f"/api/v1/subscriptions/{subscription.pk}/cancel",
        data=json.dumps({"reason": "No longer interested."}),
        content_type="application/json",
        **bearer(investor.user),
    )
    again = api_client.post(
        f"/api/v1/subscriptions/{subscription.pk}/cancel",
        data="{}",
        content_type="application/json",
        **bearer(investor.user),
    )

    assert response.status_code == 200, response.content
    assert response.json()["status"] == "cancelled"
    assert (again.status_code, again.json()["code"]) == (409, "invalid_transition")
    assert (escrow_of(subscription), external()) == (0, 0)
    listed = api_client.get(
        f"/api/v1/subscriptions/{subscription.pk}/payments", **bearer(investor.user)
    )
    assert [p["status"] for p in listed.json()] == ["refunded"]
    assert listed.json()[0]["amount_refunded"] == {"amount": "200.00", "currency": "USD"}


def test_reg_cf_cancel_of_a_funded_subscription_until_48_hours_before_the_deadline():
    offering = open_offering()
    deadline = offering.closes_at
    investor = kyc_investor()
    with at(deadline - timedelta(hours=60)):
        early, _ = funded(investor, offering, 1)
        late, _ = funded(investor, offering, 2)

    with at(deadline - timedelta(hours=49)):
        subscriptions.subscription_cancel(actor=investor.user, subscription_id=early.pk)
    with at(deadline - timedelta(hours=47)), pytest.raises(Conflict) as caught:
        subscriptions.subscription_cancel(actor=investor.user, subscription_id=late.pk)

    assert caught.value.code == "cancel_window_closed"
    assert statuses(early, late) == ["cancelled", "funded"]
    assert escrow_of(late) == 200_00  # the late one's money stays in escrow
    assert external() == -200_00
    assert reserved_quanta(offering) == 2


def test_money_arriving_for_a_cancelled_subscription_goes_straight_back():
    offering = open_offering()
    investor = kyc_investor()
    subscription = signed(investor, offering, 1)
    payment = start_payment(subscription)
    subscriptions.subscription_cancel(actor=investor.user, subscription_id=subscription.pk)

    result = notify(payment)

    assert result.outcome == "refunded: the subscription is cancelled"
    payment.refresh_from_db()
    assert (payment.status, payment.amount_over_minor) == ("confirmed", 100_00)
    assert (escrow_of(subscription), external()) == (0, 0)
    assert statuses(subscription) == ["cancelled"]
    # a later bounce of it reverses both legs, still nothing in escrow
    assert notify(payment, "payment.returned").outcome == "returned: funding reversed"
    assert (escrow_of(subscription), external()) == (0, 0)
    assert_ledger_verifies()


def test_subscription_refund_for_closing_is_one_entry_per_payment_and_idempotent():
    offering = small_offering(10)
    investor = kyc_investor()
    subscription = signed(investor, offering, 5)
    notify(start_payment(subscription), amount_minor=100_00)
    notify(start_payment(subscription))
    assert statuses(subscription) == ["funded"]

    refunded = payments.subscription_refund(
        subscription=subscription, actor=None, reason="Target missed (all or nothing)."
    )
    rows = ledger_rows()
    again = payments.subscription_refund(
        subscription=Subscription.objects.get(pk=subscription.pk), actor=None, reason="Re-run."
    )

    assert (refunded.status, again.status) == ("refunded", "refunded")
    assert ledger_rows() == rows
    assert Entry.objects.filter(kind=EntryKind.CASH_OUT).count() == 2
    assert (escrow_of(subscription), external()) == (0, 0)
    assert reserved_quanta(offering) == 0
    assert_ledger_verifies()
    # a subscription that ended otherwise is refused
    other = _cancelled(investor, offering)
    with pytest.raises(InvalidTransition):
        payments.subscription_refund(subscription=other, actor=None, reason="Cancelled already.")


def _cancelled(investor: Investor, offering: Offering) -> Subscription:
    subscription = subscribe(investor, offering, 1)
    return subscriptions.subscription_cancel(actor=investor.user, subscription_id=subscription.pk)


# --- the database keeps the rules -----------------------------------------------------------------


def test_events_and_payment_history_are_append_only():
    offering = open_offering()
    payment = start_payment(signed(kyc_investor(), offering, 1))
    notify(payment)
    for table, column in (
        ("captable_paymentevent", "outcome"),
        ("captable_paymentstatuschange", "reason"),
    ):
        with (
            pytest.raises(DatabaseError) as caught,
            transaction.atomic(),
            connection.cursor() as cursor,
        ):
            cursor.execute(f"UPDATE {table} SET {column} = 'forged'")
        assert "append-only" in str(caught.value)


def test_the_database_refuses_impossible_payments():
    offering = open_offering()
    subscription = signed(kyc_investor(), offering, 1)
    payment = start_payment(subscription)
    base = {"subscription": subscription, "provider": "simulated_bank_transfer", "currency": "USD"}
    impossible = [
        {"provider_reference": "A", "amount_expected_minor": 0},
        {"provider_reference": payment.provider_reference, "amount_expected_minor": 1},
        # a second pending payment for the same subscription
        {"provider_reference": "B", "amount_expected_minor": 1},
        # confirmed without money or a funding entry
        {"provider_reference": "C", "amount_expected_minor": 1, "status": "confirmed"},
        {"provider_reference": "D", "amount_expected_minor": 1, "status": "bogus"},
    ]
    for fields in impossible:
        with pytest.raises(IntegrityError), transaction.atomic():
            Payment.objects.create(**base, **fields)
    with pytest.raises(IntegrityError), transaction.atomic():
        Payment.objects.filter(pk=payment.pk).update(status="returned")


def test_payments_are_read_only_in_the_back_office(api_client):
    offering = open_offering()
    _, payment = funded(kyc_investor(), offering, 1)
    staff = new_user(is_staff=True)
    staff.is_superuser = True
    staff.save()
    api_client.force_login(staff)

    pages = [
        "/admin/captable/payment/",
        f"/admin/captable/payment/{payment.pk}/change/",
        "/admin/captable/paymentevent/",
        "/admin/captable/paymentstatuschange/",
        "/admin/captable/subscriptionreconfirmation/",
    ]
    assert [api_client.get(page).status_code for page in pages] == [200] * len(pages)
    assert payment.provider_reference in api_client.get(pages[0]).content.decode()
    assert api_client.get("/admin/captable/payment/add/").status_code == 403
    response = api_client.post(pages[1], {"status": "refunded"})
    assert response.status_code == 403
    assert Payment.objects.get(pk=payment.pk).status == "confirmed"


def test_production_never_falls_back_to_the_development_secret(settings):
    body = b"{}"
    settings.IS_PRODUCTION = True
    settings.PAYMENTS_WEBHOOK_SECRET = ""
    with pytest.raises(ImproperlyConfigured):
        payments.webhook_signature(timestamp="1", body=body)
    settings.PAYMENTS_WEBHOOK_SECRET = "from-the-environment"
    assert (
        payments.webhook_signature(timestamp="1", body=body)
        == hmac.new(b"from-the-environment", b"1.{}", hashlib.sha256).hexdigest()
    )
