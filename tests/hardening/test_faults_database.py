"""The database connection dropped in the middle of a request leaves no partial write.

A real gunicorn serves the request on the test database (the server of
tests/captable/test_subscriptions_http.py). A temporary trigger makes one INSERT of the request
sleep, so the request is caught inside its transaction after it has written (PostgreSQL gave
the transaction an id: `backend_xid`); another session then terminates that backend
(`pg_terminate_backend`), as a failover or an administrator would. Afterwards nothing the
request wrote is left, and the client's retry with the same Idempotency-Key (or the provider's
redelivery of the same event) does the work exactly once."""

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
import requests
from django.db import connection

from captable import payments
from captable.models import (
    Entry,
    Payment,
    PaymentEvent,
    Subscription,
    SubscriptionStatusChange,
)
from captable.seals import ledger_seal_all
from captable.verification import ledger_verify
from common.models import IdempotencyRecord
from tests.captable import test_subscriptions_http as subscriptions_http
from tests.captable.test_payments import BANK, WEBHOOK, escrow_of, signed, start_payment
from tests.captable.test_subscriptions import kyc_investor, open_offering, reserved_quanta
from tests.conftest import bearer

pytestmark = [pytest.mark.postgres_only, pytest.mark.django_db(transaction=True)]

server = subscriptions_http.server  # gunicorn on the test database, for this module


@contextmanager
def stalled_insert(table: str) -> Iterator[None]:
    """Every INSERT into `table` sleeps for a minute (long past the test's patience)."""
    with connection.cursor() as cursor:
        cursor.execute(
            "CREATE FUNCTION hardening_stall() RETURNS trigger LANGUAGE plpgsql AS "
            "$$ BEGIN PERFORM pg_sleep(60); RETURN NEW; END $$"
        )
        cursor.execute(
            f"CREATE TRIGGER hardening_stall BEFORE INSERT ON {table} "
            "FOR EACH ROW EXECUTE FUNCTION hardening_stall()"
        )
    try:
        yield
    finally:
        with connection.cursor() as cursor:
            cursor.execute(f"DROP TRIGGER IF EXISTS hardening_stall ON {table}")
            cursor.execute("DROP FUNCTION IF EXISTS hardening_stall()")


def stalled_backend(timeout_seconds: float = 60) -> tuple[int, str | None]:
    """(pid, transaction id) of the server's backend sleeping in the trigger."""
    deadline = time.monotonic() + timeout_seconds
    while time.monotonic() < deadline:
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT pid, backend_xid::text FROM pg_stat_activity "
                "WHERE datname = current_database() AND wait_event = 'PgSleep' "
                "AND pid <> pg_backend_pid()"
            )
            row = cursor.fetchone()
        if row is not None:
            return int(row[0]), row[1]
        time.sleep(0.05)
    pytest.fail("no request reached the stalled insert")


def terminated_mid_request(table: str, send: Any) -> int:
    """Send a request in the background; once it sleeps inside its transaction after having
    written, terminate its database backend. Returns the HTTP status the client got."""
    replies: list[Any] = []
    with stalled_insert(table):
        thread = threading.Thread(target=lambda: replies.append(send()))
        thread.start()
        pid, transaction_id = stalled_backend()
        assert transaction_id is not None, "the request had written nothing yet: no test"
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_terminate_backend(%s)", [pid])
            assert cursor.fetchone() == (True,)
        thread.join(timeout=60)
    assert replies, "the request never answered"
    reply = replies[0]
    return reply if isinstance(reply, int) else reply.status_code


def post(url: str, body: Any, headers: dict[str, str]) -> Any:
    try:
        return requests.post(url, json=body, headers=headers, timeout=90)
    except requests.ConnectionError:
        return 0  # the server closed the connection without an answer: also no partial write


def test_subscribe_dropped_mid_transaction_leaves_nothing_and_the_retry_subscribes_once(server):
    offering = open_offering()
    investor = kyc_investor()
    reserved_before = reserved_quanta(offering)
    url = f"{server}/api/v1/offerings/{offering.pk}/subscriptions"
    headers = {
        "Authorization": bearer(investor.user)["HTTP_AUTHORIZATION"],
        "Idempotency-Key": "order-1",
    }
    # when the connection drops after the reservation and the subscription row were written,
    # in the middle of the status history insert
    status = terminated_mid_request(
        "captable_subscriptionstatuschange", lambda: post(url, {"units": "7"}, headers)
    )
    # then the client got a server error (or no answer), and nothing of the request is left
    assert status in (0, 500), status
    assert not Subscription.objects.filter(investor=investor).exists()
    assert not SubscriptionStatusChange.objects.exists()
    assert not IdempotencyRecord.objects.filter(user=investor.user).exists()
    assert reserved_quanta(offering) == reserved_before
    # and the retry with the same key subscribes exactly once
    retry = requests.post(url, json={"units": "7"}, headers=headers, timeout=60)
    assert retry.status_code == 201, retry.text
    assert Subscription.objects.filter(investor=investor).count() == 1
    assert reserved_quanta(offering) == reserved_before + 7
    again = requests.post(url, json={"units": "7"}, headers=headers, timeout=60)
    assert again.status_code == 201
    assert again.headers["Idempotent-Replayed"] == "true"
    assert Subscription.objects.filter(investor=investor).count() == 1


def test_funding_dropped_mid_ledger_write_leaves_nothing_and_the_redelivery_funds_once(server):
    offering = open_offering()
    investor = kyc_investor()
    subscription = signed(investor, offering, 3)
    payment = start_payment(subscription)
    body = BANK.event_payload(
        payment=payment, event_type="payment.confirmed", amount_minor=None, event_id="evt-drop-1"
    )
    events_before = PaymentEvent.objects.count()

    def deliver() -> Any:
        raw = json.dumps(body).encode()
        headers = {**payments.webhook_headers(body=raw), "Content-Type": "application/json"}
        try:
            return requests.post(f"{server}{WEBHOOK}", data=raw, headers=headers, timeout=90)
        except requests.ConnectionError:
            return 0

    # when the connection drops while the cash-in entry's postings are being written
    status = terminated_mid_request("captable_posting", deliver)
    # then nothing moved: no entry, no escrow, the payment and subscription as they were
    assert status in (0, 500), status
    assert not Entry.objects.filter(kind="cash_in").exists()
    assert escrow_of(subscription) == 0
    assert Payment.objects.get(pk=payment.pk).status == payment.status
    assert Subscription.objects.get(pk=subscription.pk).status == "signed"
    assert PaymentEvent.objects.count() == events_before
    # and the provider's redelivery of the same event funds it exactly once
    for _ in range(2):
        response = deliver()
        assert response.status_code == 200, response.text
    assert Subscription.objects.get(pk=subscription.pk).status == "funded"
    assert Entry.objects.filter(kind="cash_in").count() == 1
    assert escrow_of(subscription) == subscription.amount_minor + subscription.fee_minor
    ledger_seal_all()
    report = ledger_verify()
    assert report.ok, report.summary()
