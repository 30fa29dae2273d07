"""Withdrawals: an investor's available cash paid out to their bank through the payment
provider (`captable/payments.py`: the same provider, the same signed-webhook rules).

    pending ──(provider: paid)──► paid ──(provider: returned)──► returned
       └──────(provider: failed)──► failed

- Requesting (the investor, for their own cash): a positive amount in a currency they hold,
  at most their available cash. In one transaction the withdrawal row is created and the money
  moves available cash → external (key `withdrawal:{id}:out`): it has left the platform's
  books for the provider, so it cannot be withdrawn twice, and the database's no-negative
  balance check backs the comparison under concurrency.
- The provider's notifications arrive on `POST /withdrawals/webhook`, verified exactly as the
  funding webhook (HMAC-SHA256 over "{timestamp}.{body}" with the shared secret, 5-minute
  freshness; `payments.webhook_verify`). Body: {"id": "evt_…", "type": "withdrawal.paid" |
  "withdrawal.failed" | "withdrawal.returned", "data": {"reference": "BB…"}}. An event id
  already recorded changes nothing. Failed (before paying) or returned (after): the money
  comes back external → available cash (key `withdrawal:{id}:back`).
- Locks: the withdrawal row, then (inside the ledger) the accounts.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from django.db import IntegrityError, transaction
from django.db.models import QuerySet
from django.utils import timezone

from captable import ledger
from captable.models import Withdrawal, WithdrawalEvent, WithdrawalStatus
from captable.payments import (
    WEBHOOK_SIGNATURE_HEADER,
    WEBHOOK_TIMESTAMP_HEADER,
    payment_provider,
    webhook_headers,
    webhook_verify,
)
from common.errors import InvalidTransition, LimitExceeded, NotFound, ValidationFailed
from common.models import User
from common.money import SUPPORTED_CURRENCIES, format_minor_units
from investors.selectors import investor_of_user

PAID = "withdrawal.paid"
FAILED = "withdrawal.failed"
RETURNED = "withdrawal.returned"
EVENT_TYPES = (PAID, FAILED, RETURNED)


def withdrawal_request(
    *, actor: User, amount_minor: int, currency: str, payee_account: str
) -> Withdrawal:
    """The investor withdraws `amount_minor` of their available cash to `payee_account`."""
    investor = investor_of_user(user=actor)
    if currency not in SUPPORTED_CURRENCIES:
        raise ValidationFailed(f"Unknown currency {currency!r}.", code="currency_unsupported")
    if isinstance(amount_minor, bool) or not isinstance(amount_minor, int) or amount_minor <= 0:
        raise ValidationFailed("The amount must be more than zero.", code="amount_not_positive")
    if not payee_account.strip():
        raise ValidationFailed("Say which bank account to pay.", code="payee_account_required")
    provider = payment_provider()
    with transaction.atomic():
        cash = ledger.cash_spec(investor, currency)
        available = ledger.lock_accounts([cash])[cash.key].balance
        if amount_minor > available:
            raise LimitExceeded(
                f"Your available cash is {currency} {format_minor_units(available, currency)}; "
                f"you asked for {currency} {format_minor_units(amount_minor, currency)}.",
                code="insufficient_cash",
            )
        withdrawal = Withdrawal.objects.create(
            investor=investor,
            amount_minor=amount_minor,
            currency=currency,
            provider=provider.name,
            provider_reference=provider.new_reference(),
            payee_account=payee_account.strip(),
            requested_by=actor,
        )
        withdrawal.out_entry = ledger.cash_move(
            source=cash,
            destination=ledger.external_spec(currency),
            amount_minor=amount_minor,
            idempotency_key=f"withdrawal:{withdrawal.pk}:out",
            actor=actor,
            memo=f"Withdrawal #{withdrawal.pk} to the investor's bank",
            metadata={"withdrawal_id": withdrawal.pk},
        )
        withdrawal.save(update_fields=["out_entry", "updated_at"])
    return withdrawal


# --- the provider's notifications ------------------------------------------------------------


@dataclass(frozen=True)
class WithdrawalWebhookResult:
    event_id: str
    is_duplicate: bool
    outcome: str


def _parse(body: bytes) -> tuple[dict[str, Any], str, str, str]:
    try:
        payload = json.loads(body)
    except ValueError:
        raise ValidationFailed("The body is not JSON.", code="webhook_payload_invalid") from None
    data = payload.get("data") if isinstance(payload, dict) else None
    event_id = payload.get("id") if isinstance(payload, dict) else None
    event_type = payload.get("type") if isinstance(payload, dict) else None
    reference = data.get("reference") if isinstance(data, Mapping) else None
    if not (isinstance(event_id, str) and 0 < len(event_id) <= 100):
        raise ValidationFailed("The event needs an id.", code="webhook_payload_invalid")
    if event_type not in EVENT_TYPES:
        raise ValidationFailed(
            f"Unknown event type {event_type!r}.", code="webhook_event_type_unknown"
        )
    if not isinstance(reference, str) or not reference:
        raise ValidationFailed("The event needs data.reference.", code="webhook_payload_invalid")
    return payload, event_id, str(event_type), reference


def withdrawal_webhook_receive(
    *, body: bytes, timestamp: str | None, signature: str | None
) -> WithdrawalWebhookResult:
    """A provider's notification about a withdrawal: verified, parsed, applied once."""
    webhook_verify(body=body, timestamp=timestamp, signature=signature, now=timezone.now())
    payload, event_id, event_type, reference = _parse(body)
    provider = payment_provider().name
    try:
        with transaction.atomic():
            withdrawal = (
                Withdrawal.objects.select_for_update()
                .filter(provider=provider, provider_reference=reference)
                .first()
            )
            if withdrawal is None:
                raise NotFound(
                    f"No withdrawal with reference {reference!r}.", code="withdrawal_not_found"
                )
            if WithdrawalEvent.objects.filter(provider=provider, provider_event_id=event_id):
                return WithdrawalWebhookResult(event_id, True, "duplicate: already processed")
            outcome = _apply(withdrawal, event_type)
            WithdrawalEvent.objects.create(
                provider=provider,
                provider_event_id=event_id,
                event_type=event_type,
                withdrawal=withdrawal,
                payload=payload,
                outcome=outcome,
                received_at=timezone.now(),
            )
    except IntegrityError:  # the same event delivered twice at once: the other one won
        if WithdrawalEvent.objects.filter(provider=provider, provider_event_id=event_id):
            return WithdrawalWebhookResult(event_id, True, "duplicate: already processed")
        raise
    return WithdrawalWebhookResult(event_id, False, outcome)


def _apply(withdrawal: Withdrawal, event_type: str) -> str:
    """Under the withdrawal's lock: the status change, and the money back if it came back."""
    allowed = {
        PAID: ((WithdrawalStatus.PENDING,), WithdrawalStatus.PAID),
        FAILED: ((WithdrawalStatus.PENDING,), WithdrawalStatus.FAILED),
        RETURNED: ((WithdrawalStatus.PAID,), WithdrawalStatus.RETURNED),
    }
    from_statuses, to_status = allowed[event_type]
    if withdrawal.status not in from_statuses:
        raise InvalidTransition(
            f"Withdrawal {withdrawal.provider_reference} is {withdrawal.status}; "
            f"{event_type} does not apply.",
            from_status=withdrawal.status,
            to_status=to_status,
        )
    fields: dict[str, Any] = {"status": to_status, "completed_at": timezone.now()}
    if to_status != WithdrawalStatus.PAID:
        fields["back_entry"] = ledger.cash_move(
            source=ledger.external_spec(withdrawal.currency),
            destination=ledger.cash_spec(withdrawal.investor, withdrawal.currency),
            amount_minor=withdrawal.amount_minor,
            idempotency_key=f"withdrawal:{withdrawal.pk}:back",
            memo=f"Withdrawal #{withdrawal.pk} {to_status}: money back in available cash",
            metadata={"withdrawal_id": withdrawal.pk},
        )
    changed = Withdrawal.objects.filter(pk=withdrawal.pk, status=withdrawal.status).update(**fields)
    assert changed == 1, "status changes happen under the withdrawal's lock"
    return str(to_status)


def withdrawal_simulate(*, withdrawal: Withdrawal, event_type: str) -> WithdrawalWebhookResult:
    """The simulated bank notifies about `withdrawal`, signed and delivered through the same
    verification as a webhook (the demo, the tests, operators)."""
    body = json.dumps(
        {
            "id": f"evt_{secrets.token_hex(8)}",
            "type": event_type,
            "data": {"reference": withdrawal.provider_reference},
        }
    ).encode()
    headers = webhook_headers(body=body)
    return withdrawal_webhook_receive(
        body=body,
        timestamp=headers[WEBHOOK_TIMESTAMP_HEADER],
        signature=headers[WEBHOOK_SIGNATURE_HEADER],
    )


# --- reads ----------------------------------------------------------------------------------


def withdrawals_of(*, user: Any) -> QuerySet[Withdrawal]:
    """The signed-in investor's own withdrawals, newest first (staff: everyone's)."""
    if isinstance(user, User) and user.is_staff:
        return Withdrawal.objects.order_by("-created_at", "-id")
    investor = investor_of_user(user=user)
    return Withdrawal.objects.filter(investor=investor).order_by("-created_at", "-id")


def withdrawal_get(*, user: Any, withdrawal_id: int) -> Withdrawal:
    withdrawal = withdrawals_of(user=user).filter(pk=withdrawal_id).first()
    if withdrawal is None:
        raise NotFound(f"Withdrawal {withdrawal_id} not found.", code="withdrawal_not_found")
    return withdrawal
