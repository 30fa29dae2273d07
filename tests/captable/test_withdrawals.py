"""Withdrawals: available cash → external through the payment provider, with the funding
webhook's rules (signature, freshness, each event once); failed or returned money comes back;
never more than the available cash; an investor sees only their own; over HTTP with an
Idempotency-Key."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest
from django.test import Client
from django.utils import timezone

from captable import ledger
from captable.models import Withdrawal, WithdrawalEvent, WithdrawalStatus
from captable.payments import webhook_headers
from captable.verification import ledger_verify
from captable.withdrawals import (
    FAILED,
    PAID,
    RETURNED,
    withdrawal_get,
    withdrawal_request,
    withdrawal_simulate,
    withdrawal_webhook_receive,
)
from common.errors import (
    InvalidTransition,
    LimitExceeded,
    NotAuthenticated,
    NotFound,
    ValidationFailed,
)
from investors.models import Investor
from tests.captable.factories import investors, key
from tests.captable.test_distributions import balance, cash_of
from tests.captable.test_distributions_api import get
from tests.conftest import bearer

pytestmark = [pytest.mark.django_db, pytest.mark.embedded]


def with_cash(amount_minor: int) -> Investor:
    """An investor with `amount_minor` of available USD (as a paid distribution leaves it)."""
    (investor,) = investors(1)
    ledger.cash_move(
        source=ledger.external_spec("USD"),
        destination=ledger.cash_spec(investor, "USD"),
        amount_minor=amount_minor,
        idempotency_key=key("cash"),
    )
    return investor


def withdraw(investor: Investor, amount_minor: int) -> Withdrawal:
    return withdrawal_request(
        actor=investor.user, amount_minor=amount_minor, currency="USD", payee_account="…1234"
    )


def external() -> int:
    return balance(ledger.external_spec("USD"))


def test_withdrawal_paid() -> None:
    investor = with_cash(500_00)
    before = external()
    withdrawal = withdraw(investor, 200_00)
    assert withdrawal.status == WithdrawalStatus.PENDING
    assert cash_of(investor) == 300_00
    assert external() == before + 200_00
    result = withdrawal_simulate(withdrawal=withdrawal, event_type=PAID)
    assert result.outcome == "paid"
    withdrawal.refresh_from_db()
    assert withdrawal.status == WithdrawalStatus.PAID
    assert withdrawal.completed_at is not None
    assert cash_of(investor) == 300_00
    assert ledger_verify().ok


@pytest.mark.parametrize("events", [[FAILED], [PAID, RETURNED]])
def test_failed_or_returned_money_comes_back(events: list[str]) -> None:
    investor = with_cash(500_00)
    withdrawal = withdraw(investor, 500_00)
    assert cash_of(investor) == 0
    for event in events:
        withdrawal_simulate(withdrawal=withdrawal, event_type=event)
    withdrawal.refresh_from_db()
    assert withdrawal.status in (WithdrawalStatus.FAILED, WithdrawalStatus.RETURNED)
    assert withdrawal.back_entry is not None
    assert cash_of(investor) == 500_00
    with pytest.raises(InvalidTransition):
        withdrawal_simulate(withdrawal=withdrawal, event_type=PAID)
    assert cash_of(investor) == 500_00


def test_never_more_than_the_available_cash() -> None:
    investor = with_cash(100_00)
    withdraw(investor, 60_00)
    with pytest.raises(LimitExceeded, match=r"40\.00"):
        withdraw(investor, 40_01)
    assert cash_of(investor) == 40_00
    assert Withdrawal.objects.count() == 1


@pytest.mark.parametrize(
    ("change", "code"),
    [
        ({"amount_minor": 0}, "amount_not_positive"),
        ({"currency": "GBP"}, "currency_unsupported"),
        ({"payee_account": " "}, "payee_account_required"),
    ],
)
def test_bad_input_is_refused_without_effect(change: dict[str, Any], code: str) -> None:
    investor = with_cash(100_00)
    terms: dict[str, Any] = {
        "actor": investor.user,
        "amount_minor": 10_00,
        "currency": "USD",
        "payee_account": "…1234",
    }
    with pytest.raises(ValidationFailed) as raised:
        withdrawal_request(**(terms | change))
    assert raised.value.code == code
    assert not Withdrawal.objects.exists()


def signed(body: dict[str, Any], **overrides: Any) -> dict[str, Any]:
    raw = json.dumps(body).encode()
    headers = webhook_headers(body=raw, now=overrides.pop("now", None))
    return {
        "body": raw,
        "timestamp": headers["X-Payments-Timestamp"],
        "signature": headers["X-Payments-Signature"],
    } | overrides


def test_webhook_rules_are_the_funding_webhooks() -> None:
    investor = with_cash(100_00)
    withdrawal = withdraw(investor, 100_00)
    event = {"id": "evt_1", "type": FAILED, "data": {"reference": withdrawal.provider_reference}}
    with pytest.raises(NotAuthenticated):
        withdrawal_webhook_receive(**signed(event, signature="0" * 64))
    with pytest.raises(ValidationFailed, match="stale"):
        withdrawal_webhook_receive(**signed(event, now=timezone.now() - timedelta(minutes=6)))
    with pytest.raises(NotFound):
        withdrawal_webhook_receive(**signed(event | {"data": {"reference": "BBNOPE"}}))
    first = withdrawal_webhook_receive(**signed(event))
    again = withdrawal_webhook_receive(**signed(event))
    assert (first.is_duplicate, again.is_duplicate) == (False, True)
    assert WithdrawalEvent.objects.count() == 1
    assert cash_of(investor) == 100_00  # the money came back once


def test_an_investor_sees_only_their_own() -> None:
    mine, theirs = with_cash(10_00), with_cash(10_00)
    withdrawal = withdraw(theirs, 10_00)
    with pytest.raises(NotFound):
        withdrawal_get(user=mine.user, withdrawal_id=withdrawal.pk)


def test_over_http(api_client: Client) -> None:
    investor = with_cash(100_00)
    headers: Any = bearer(investor.user) | {"HTTP_IDEMPOTENCY_KEY": "w-1"}
    body = {"amount": {"amount": "25.00", "currency": "USD"}, "payee_account": "…1234"}

    def post(payload: Any) -> Any:
        return api_client.post(
            "/api/v1/withdrawals", json.dumps(payload), content_type="application/json", **headers
        )

    created = post(body)
    assert created.status_code == 201, created.content
    replay = post(body)
    assert replay.json() == created.json()
    assert cash_of(investor) == 75_00
    assert post(body | {"extra": 1}).status_code == 422
    listed = get(api_client, "/withdrawals", investor.user).json()
    assert [row["id"] for row in listed["items"]] == [created.json()["id"]]
    other = with_cash(1)
    assert get(api_client, f"/withdrawals/{created.json()['id']}", other.user).status_code == 404
    # the provider's webhook, over HTTP
    event = json.dumps(
        {"id": "evt_h", "type": PAID, "data": {"reference": created.json()["provider_reference"]}}
    ).encode()
    signed_headers = webhook_headers(body=event)
    response = api_client.post(
        "/api/v1/withdrawals/webhook",
        event,
        content_type="application/json",
        HTTP_X_PAYMENTS_TIMESTAMP=signed_headers["X-Payments-Timestamp"],
        HTTP_X_PAYMENTS_SIGNATURE=signed_headers["X-Payments-Signature"],
    )
    assert response.status_code == 200, response.content
    assert get(api_client, f"/withdrawals/{created.json()['id']}", investor.user).json()[
        "status"
    ] == ("paid")
