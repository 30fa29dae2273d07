"""Payments under concurrency on PostgreSQL: real threads, each with its own connection.

- the same webhook event delivered 20 times at once moves the money once;
- confirmations racing the investor's cancellation: whichever wins, every cent ends back
  outside and nothing is left in escrow;
- confirmations racing the expiry task: a subscription ends either funded with exactly its
  amount in escrow, or expired with nothing in escrow.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable
from datetime import timedelta
from functools import partial
from typing import Any

import pytest
from django.utils import timezone

from captable import payments, subscriptions
from captable.models import Entry, EntryKind, Payment, PaymentEvent, Subscription
from captable.subscriptions import subscriptions_expire_due
from tests.captable.test_payments import (
    assert_ledger_verifies,
    escrow_of,
    external,
    signed,
    start_payment,
    total_due,
)
from tests.captable.test_subscriptions import (
    assert_reservations_consistent,
    kyc_investor,
    open_offering,
)
from tests.captable.test_subscriptions_concurrency import race

pytestmark = [pytest.mark.postgres_only, pytest.mark.django_db(transaction=True)]

BANK = payments.SimulatedBankTransfer()


def deliver(body: bytes) -> payments.WebhookResult:
    headers = payments.webhook_headers(body=body)
    return payments.payment_webhook_receive(
        body=body,
        timestamp=headers[payments.WEBHOOK_TIMESTAMP_HEADER],
        signature=headers[payments.WEBHOOK_SIGNATURE_HEADER],
    )


def confirmation(payment: Payment, event_id: str | None = None) -> bytes:
    payload = BANK.event_payload(payment=payment, event_type="payment.confirmed", event_id=event_id)
    return json.dumps(payload).encode()


def test_one_event_delivered_twenty_times_at_once_moves_the_money_once():
    offering = open_offering()
    subscription = signed(kyc_investor(), offering, 7)
    payment = start_payment(subscription)
    body = confirmation(payment, event_id="evt_storm")
    results: list[payments.WebhookResult] = []

    def call() -> None:
        results.append(deliver(body))

    outcomes = race([call] * 20)

    assert outcomes == ["ok"] * 20
    assert Counter(result.is_duplicate for result in results) == {True: 19, False: 1}
    assert PaymentEvent.objects.count() == 1
    assert Entry.objects.filter(kind=EntryKind.CASH_IN).count() == 1
    assert escrow_of(subscription) == total_due(subscription) == 700_00
    assert Subscription.objects.get(pk=subscription.pk).status == "funded"
    assert_ledger_verifies()


def test_confirmations_racing_cancellations_leave_nothing_in_escrow():
    offering = open_offering()
    pairs = []
    for _ in range(10):
        investor = kyc_investor()
        subscription = signed(investor, offering, 2)
        pairs.append((investor, subscription, start_payment(subscription)))
    calls: list[Callable[[], Any]] = []
    for investor, subscription, payment in pairs:
        calls.append(partial(deliver, confirmation(payment)))
        calls.append(
            partial(
                subscriptions.subscription_cancel,
                actor=investor.user,
                subscription_id=subscription.pk,
            )
        )

    outcomes = race(calls)

    assert outcomes == ["ok"] * 20
    for _, subscription, payment in pairs:
        assert Subscription.objects.get(pk=subscription.pk).status == "cancelled"
        assert escrow_of(subscription) == 0
        payment.refresh_from_db()
        # confirmed after the cancel: all of it sent straight back; before: refunded
        assert payment.amount_refunded_minor == payment.amount_received_minor == 200_00
    assert external() == 0
    assert_reservations_consistent(offering)
    assert_ledger_verifies()


def test_confirmations_racing_the_expiry_task_end_funded_or_expired_never_between(settings):
    settings.SUBSCRIPTION_RESERVATION_TTL_HOURS = 1
    offering = open_offering()
    subscriptions_ = [signed(kyc_investor(), offering, 1) for _ in range(12)]
    bodies = [confirmation(start_payment(subscription)) for subscription in subscriptions_]
    # the reservations are past their time when the money arrives
    Subscription.objects.filter(pk__in=[s.pk for s in subscriptions_]).update(
        expires_at=timezone.now() - timedelta(seconds=1)
    )
    calls: list[Callable[[], Any]] = [partial(deliver, body) for body in bodies]
    calls += [subscriptions_expire_due] * 3

    outcomes = race(calls)

    assert outcomes == ["ok"] * len(calls)
    ended: Counter[str] = Counter()
    for subscription in subscriptions_:
        status = Subscription.objects.get(pk=subscription.pk).status
        ended[status] += 1
        assert status in ("funded", "expired")
        assert escrow_of(subscription) == (100_00 if status == "funded" else 0)
    assert sum(ended.values()) == 12
    assert external() == -100_00 * ended["funded"]
    assert_reservations_consistent(offering)
    assert_ledger_verifies()
