"""Funding subscriptions into escrow: the payment-provider interface, the built-in provider
that simulates a bank transfer, the signed webhook, and the money a payment moves.

    payment:       pending → confirmed → returned (the transfer bounced) / refunded
                          ↘ failed (no money arrived)
    subscription:  signed → funded (confirmed in full) → signed again (a bounce)

Rules kept here:
- Cash moves only through `captable/ledger.py`, with keys derived from the payment
  (`payment:<id>:funding`, `:excess`, `:return`, `:excess-return`, `:refund`): a retried
  request can never move money twice.
- A confirmation moves what was received external → the investor's escrow for the offering.
  What is due is the subscription's amount plus its processing fee, less what its other
  payments already hold. An over-payment funds the subscription and sends the excess straight
  back out; an under-payment stays in escrow and the subscription stays signed (a further
  payment tops it up, or cancel / expiry refunds it). Money for a subscription that is no
  longer signed (cancelled, expired, already funded) goes straight back out.
- A bounce reverses the funding entry (and the excess refund, if there was one) and puts a
  funded subscription back to signed with a fresh reservation time.
- Webhooks are authenticated by an HMAC-SHA256 over `"{timestamp}.{raw body}"` with the
  shared secret `PAYMENTS_WEBHOOK_SECRET`, compared in constant time; a timestamp more than
  5 minutes away from now is refused (a replay). An event id already recorded is ignored.
- Locks: the subscription row, then its payment rows, then (inside the ledger) the accounts.
  Services that also change the offering's reservations lock the offering row first.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any, Protocol

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db import IntegrityError, transaction
from django.utils import timezone

from captable import ledger
from captable.models import (
    Payment,
    PaymentEvent,
    PaymentEventType,
    PaymentStatus,
    PaymentStatusChange,
    Subscription,
    SubscriptionStatus,
)
from captable.subscription_selectors import (
    reconfirmation_pending,
    subscription_amount_due_minor,
)
from captable.subscriptions import (
    _check_open,
    _lock_and_refresh,
    _offering_locked,
    _own_subscription,
    _transition,
    reservation_ttl,
    subscription_end_holding,
)
from common.errors import (
    Conflict,
    InvalidTransition,
    NotAuthenticated,
    NotFound,
    ValidationFailed,
)
from common.models import User
from common.money import SUPPORTED_CURRENCIES, decimal_to_minor_units, format_minor_units

WEBHOOK_TOLERANCE = timedelta(minutes=5)
WEBHOOK_TIMESTAMP_HEADER = "X-Payments-Timestamp"
WEBHOOK_SIGNATURE_HEADER = "X-Payments-Signature"
# Development only: production sets PAYMENTS_WEBHOOK_SECRET from the environment.
WEBHOOK_SECRET_DEFAULT = "dev-only-payments-webhook-secret"


def _money(amount_minor: int, currency: str) -> str:
    return f"{currency} {format_minor_units(amount_minor, currency)}"


# --- the provider interface -------------------------------------------------------------------


@dataclass(frozen=True)
class PaymentInstructions:
    """What the investor needs to pay: where to, how much, and the reference to quote."""

    provider: str
    reference: str
    amount_minor: int
    currency: str
    beneficiary: str
    account: str
    note: str


@dataclass(frozen=True)
class ProviderEvent:
    """A provider's notification, parsed: which payment (by reference), what happened, and
    for a confirmation the amount received and where it came from."""

    event_id: str
    event_type: str
    reference: str
    amount_minor: int | None
    currency: str | None
    payer_account: str


class PaymentProvider(Protocol):
    name: str

    def new_reference(self) -> str:
        """A fresh reference the payer quotes with the transfer (unique per provider)."""
        ...

    def instructions(self, payment: Payment) -> PaymentInstructions: ...

    def parse_event(self, payload: Mapping[str, Any]) -> ProviderEvent:
        """The provider's notification; a `ValidationFailed` when it is not one."""
        ...


def _amount_of(value: Any) -> tuple[int, str]:
    """`{"amount": "1000.00", "currency": "USD"}` (the API's money shape) → minor units."""
    if not isinstance(value, Mapping) or set(value) != {"amount", "currency"}:
        raise ValidationFailed(
            'amount must be {"amount": "<decimal string>", "currency": "<code>"}.',
            code="webhook_payload_invalid",
        )
    amount, currency = value["amount"], value["currency"]
    if not isinstance(amount, str) or currency not in SUPPORTED_CURRENCIES:
        raise ValidationFailed(
            "amount.amount must be a decimal string and amount.currency a supported currency.",
            code="webhook_payload_invalid",
        )
    try:
        amount_minor = decimal_to_minor_units(Decimal(amount), currency)
    except InvalidOperation:
        raise ValidationFailed(
            f"amount {amount!r} is not a decimal.", code="webhook_payload_invalid"
        ) from None
    if amount_minor <= 0:
        raise ValidationFailed("amount must be positive.", code="webhook_payload_invalid")
    return amount_minor, currency


def _text(payload: Mapping[str, Any], name: str, *, max_length: int, required: bool = True) -> str:
    value = payload.get(name, "")
    if not isinstance(value, str) or (required and not value) or len(value) > max_length:
        raise ValidationFailed(
            f"{name} must be a string of 1 to {max_length} characters.",
            code="webhook_payload_invalid",
        )
    return value


class SimulatedBankTransfer:
    """The built-in provider: a bank transfer to the platform's escrow account, quoting the
    payment's reference. There is no bank behind it: its notifications are produced by
    `event_payload` (the demo, the tests, or an operator) and arrive through the signed
    webhook exactly like a real provider's would.

    Notification body (JSON): {"id": "evt_…", "type": "payment.confirmed" | "payment.returned"
    | "payment.failed", "data": {"reference": "BB…", "amount": {"amount": "1000.00",
    "currency": "USD"}, "payer_account": "…1234"}} — `amount` only for a confirmation."""

    name = "simulated_bank_transfer"

    def new_reference(self) -> str:
        return f"BB{secrets.token_hex(6).upper()}"

    def instructions(self, payment: Payment) -> PaymentInstructions:
        return PaymentInstructions(
            provider=self.name,
            reference=payment.provider_reference,
            amount_minor=payment.amount_expected_minor,
            currency=payment.currency,
            beneficiary="Brickbook Escrow (simulated bank)",
            account=f"SIM-ESCROW-{payment.currency}",
            note=f"Quote the reference {payment.provider_reference} exactly; the transfer is "
            "matched to your subscription by it.",
        )

    def parse_event(self, payload: Mapping[str, Any]) -> ProviderEvent:
        if not isinstance(payload, Mapping) or not isinstance(payload.get("data"), Mapping):
            raise ValidationFailed(
                "The notification must be an object with id, type and data.",
                code="webhook_payload_invalid",
            )
        event_type = payload.get("type")
        if event_type not in PaymentEventType.values:
            raise ValidationFailed(
                f"Unknown event type {event_type!r}.", code="webhook_event_type_unknown"
            )
        data = payload["data"]
        amount_minor: int | None = None
        currency: str | None = None
        if event_type == PaymentEventType.CONFIRMED:
            amount_minor, currency = _amount_of(data.get("amount"))
        return ProviderEvent(
            event_id=_text(payload, "id", max_length=100),
            event_type=str(event_type),
            reference=_text(data, "reference", max_length=64),
            amount_minor=amount_minor,
            currency=currency,
            payer_account=_text(data, "payer_account", max_length=100, required=False),
        )

    def event_payload(
        self,
        *,
        payment: Payment,
        event_type: str,
        amount_minor: int | None = None,
        event_id: str | None = None,
        payer_account: str = "SIM-PAYER-0001",
    ) -> dict[str, Any]:
        """What the simulated bank sends when the transfer for `payment` arrives (the
        expected amount unless told otherwise), bounces or fails."""
        data: dict[str, Any] = {
            "reference": payment.provider_reference,
            "payer_account": payer_account,
        }
        if event_type == PaymentEventType.CONFIRMED:
            received = payment.amount_expected_minor if amount_minor is None else amount_minor
            data["amount"] = {
                "amount": format_minor_units(received, payment.currency),
                "currency": payment.currency,
            }
        return {"id": event_id or f"evt_{secrets.token_hex(8)}", "type": event_type, "data": data}


PROVIDERS: dict[str, PaymentProvider] = {SimulatedBankTransfer.name: SimulatedBankTransfer()}


def payment_provider(name: str | None = None) -> PaymentProvider:
    """The provider named, or the configured one (setting PAYMENTS_PROVIDER)."""
    chosen = str(name or getattr(settings, "PAYMENTS_PROVIDER", SimulatedBankTransfer.name))
    provider = PROVIDERS.get(chosen)
    if provider is None:
        raise ValidationFailed(f"Unknown payment provider {chosen!r}.", code="provider_unknown")
    return provider


# --- webhook signatures -----------------------------------------------------------------------


def webhook_secret() -> bytes:
    """The shared secret (setting PAYMENTS_WEBHOOK_SECRET). In production there is no
    fallback: a webhook anyone could sign with the public development secret is refused."""
    configured = str(getattr(settings, "PAYMENTS_WEBHOOK_SECRET", "") or "")
    if not configured and getattr(settings, "IS_PRODUCTION", False):
        raise ImproperlyConfigured("PAYMENTS_WEBHOOK_SECRET must be set in production")
    return (configured or WEBHOOK_SECRET_DEFAULT).encode()


def webhook_signature(*, timestamp: str, body: bytes, secret: bytes | None = None) -> str:
    """Hex HMAC-SHA256 over `"{timestamp}.{body}"` (the raw body, byte for byte)."""
    message = timestamp.encode() + b"." + body
    return hmac.new(secret or webhook_secret(), message, hashlib.sha256).hexdigest()


def webhook_headers(*, body: bytes, now: datetime | None = None) -> dict[str, str]:
    """The headers a provider sends with `body`, signed now (for the simulated bank)."""
    timestamp = str(int((now or timezone.now()).timestamp()))
    return {
        WEBHOOK_TIMESTAMP_HEADER: timestamp,
        WEBHOOK_SIGNATURE_HEADER: webhook_signature(timestamp=timestamp, body=body),
    }


def webhook_verify(
    *, body: bytes, timestamp: str | None, signature: str | None, now: datetime
) -> None:
    """Refuse a notification that is unsigned, signed with another secret or over another
    body (NotAuthenticated), or whose signed timestamp is more than 5 minutes away from now
    (ValidationFailed: a replay of an old notification, or a wrong clock)."""
    if not timestamp or not signature:
        raise NotAuthenticated(
            f"The {WEBHOOK_TIMESTAMP_HEADER} and {WEBHOOK_SIGNATURE_HEADER} headers are required.",
            code="webhook_signature_missing",
        )
    expected = webhook_signature(timestamp=timestamp, body=body)
    if not hmac.compare_digest(expected.encode(), signature.strip().lower().encode()):
        raise NotAuthenticated(
            "The webhook signature does not match.", code="webhook_signature_invalid"
        )
    try:
        sent_at = int(timestamp)
    except ValueError:
        raise ValidationFailed(
            "The webhook timestamp must be Unix seconds.", code="webhook_timestamp_invalid"
        ) from None
    if abs(now.timestamp() - sent_at) > WEBHOOK_TOLERANCE.total_seconds():
        raise ValidationFailed(
            "The webhook timestamp is more than 5 minutes away from now: refused as stale.",
            code="webhook_timestamp_stale",
        )


# --- payment state -------------------------------------------------------------------------------


def _payment_transition(
    payment: Payment,
    *,
    to_status: str,
    actor: User | None,
    reason: str,
    event: PaymentEvent | None = None,
    **updates: Any,
) -> None:
    """Compare-and-swap the payment's status (exactly one row) with a history row."""
    expected = payment.status
    changed = Payment.objects.filter(pk=payment.pk, status=expected).update(
        status=to_status, updated_at=timezone.now(), **updates
    )
    if changed != 1:
        raise InvalidTransition(
            f"payment {payment.pk} is no longer {expected}.", from_status=expected
        )
    PaymentStatusChange.objects.create(
        payment=payment,
        from_status=expected,
        to_status=to_status,
        event=event,
        actor=actor,
        reason=reason,
    )
    payment.status = to_status
    for name, value in updates.items():
        setattr(payment, name, value)


def _escrow_and_external(subscription: Subscription) -> tuple[ledger.AccountSpec, ...]:
    return (
        ledger.escrow_spec(subscription.offering, subscription.investor),
        ledger.external_spec(subscription.currency),
    )


def _metadata(payment: Payment) -> dict[str, Any]:
    return {"payment_id": payment.pk, "subscription_id": payment.subscription_id}


def payments_refund_escrowed(*, subscription: Subscription, actor: User | None, reason: str) -> int:
    """Send the money this subscription's payments hold in escrow back out where it came
    from: one ledger entry per payment (escrow → external), each payment → refunded. Runs in
    the caller's transaction, which holds the subscription's row; returns the total."""
    escrow, external = _escrow_and_external(subscription)
    refunded = 0
    payments = Payment.objects.select_for_update().filter(
        subscription_id=subscription.pk, status=PaymentStatus.CONFIRMED
    )
    for payment in payments.order_by("pk"):
        amount = payment.amount_received_minor - payment.amount_refunded_minor
        if amount == 0:
            continue  # everything it brought went straight back (all excess)
        entry = ledger.cash_move(
            source=escrow,
            destination=external,
            amount_minor=amount,
            idempotency_key=f"payment:{payment.pk}:refund",
            actor=actor,
            memo=f"Refund of payment {payment.provider_reference}: {reason}",
            metadata=_metadata(payment),
        )
        _payment_transition(
            payment,
            to_status=PaymentStatus.REFUNDED,
            actor=actor,
            reason=f"{_money(amount, payment.currency)} refunded to "
            f"{payment.payer_account or 'the payer'}: {reason}",
            refund_entry=entry,
            amount_refunded_minor=payment.amount_received_minor,
        )
        refunded += amount
    return refunded


# --- start a payment --------------------------------------------------------------------------


def _check_fundable(subscription: Subscription, now: datetime) -> None:
    status = subscription.status
    if status in (SubscriptionStatus.WAITLISTED, SubscriptionStatus.RESERVED):
        raise Conflict(
            "Sign the subscription agreement first: only a signed subscription can be funded.",
            code="subscription_not_signed",
        )
    if status == SubscriptionStatus.FUNDED:
        raise Conflict("This subscription is already funded.", code="subscription_funded")
    if status != SubscriptionStatus.SIGNED:
        raise InvalidTransition(
            f"subscription is {status}; it can no longer be funded.", from_status=status
        )
    if subscription.expires_at is not None and subscription.expires_at <= now:
        raise Conflict(
            f"The reservation expired at {subscription.expires_at.isoformat()}.",
            code="reservation_expired",
        )
    if reconfirmation_pending(subscription_id=subscription.pk) is not None:
        raise Conflict(
            "The offering changed: reconfirm (sign the new agreement) before funding.",
            code="reconfirmation_required",
        )
    _check_open(subscription.offering, now)


def subscription_fund(*, actor: User, subscription_id: int) -> tuple[Payment, bool]:
    """Start paying for a signed subscription (the investor's own): a pending payment for
    what is still due, with the provider's reference. A pending payment already started is
    returned as it is (False: not created now). One transaction."""
    now = timezone.now()
    provider = payment_provider()
    with transaction.atomic():
        subscription = _own_subscription(actor, subscription_id)
        _lock_and_refresh(subscription, "status", "expires_at")
        _check_fundable(subscription, now)
        pending = Payment.objects.filter(
            subscription=subscription, status=PaymentStatus.PENDING
        ).first()
        if pending is not None:
            return pending, False
        due = subscription_amount_due_minor(subscription)
        assert due > 0, "a signed subscription always has money due (else it is funded)"
        payment = Payment.objects.create(
            subscription=subscription,
            provider=provider.name,
            provider_reference=provider.new_reference(),
            currency=subscription.currency,
            amount_expected_minor=due,
            created_by=actor,
        )
        PaymentStatusChange.objects.create(
            payment=payment,
            from_status="",
            to_status=PaymentStatus.PENDING,
            actor=actor,
            reason=f"Payment of {_money(due, payment.currency)} started "
            f"({provider.name}, reference {payment.provider_reference}).",
        )
    return payment, True


# --- the webhook ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class WebhookResult:
    event_id: str
    is_duplicate: bool
    outcome: str


Record = Callable[[str], PaymentEvent]


def _confirm(
    payment: Payment, subscription: Subscription, event: ProviderEvent, record: Record
) -> str:
    """Money received: into escrow; the subscription funded if this completes it; any
    excess (or all of it, when the subscription no longer takes money) straight back out."""
    if payment.status != PaymentStatus.PENDING:
        return record(f"ignored: payment is already {payment.status}").outcome
    assert event.amount_minor is not None
    assert event.currency is not None
    if event.currency != payment.currency:
        raise ValidationFailed(
            f"Payment {payment.provider_reference} is in {payment.currency}, not {event.currency}.",
            code="webhook_currency_mismatch",
        )
    received = event.amount_minor
    takes_money = subscription.status == SubscriptionStatus.SIGNED
    due = subscription_amount_due_minor(subscription) if takes_money else 0
    over, short = max(received - due, 0), max(due - received, 0)
    if not takes_money:
        outcome = f"refunded: the subscription is {subscription.status}"
    elif over:
        outcome = f"funded; {_money(over, payment.currency)} over-paid and sent back"
    elif short:
        outcome = f"under-paid: {_money(short, payment.currency)} still due"
    else:
        outcome = "funded"
    recorded = record(outcome)
    escrow, external = _escrow_and_external(subscription)
    funding = ledger.cash_move(
        source=external,
        destination=escrow,
        amount_minor=received,
        idempotency_key=f"payment:{payment.pk}:funding",
        memo=f"Payment {payment.provider_reference} received for subscription {subscription.pk}",
        metadata=_metadata(payment),
    )
    excess = None
    if over:
        excess = ledger.cash_move(
            source=escrow,
            destination=external,
            amount_minor=over,
            idempotency_key=f"payment:{payment.pk}:excess",
            memo=f"Excess of payment {payment.provider_reference} sent back",
            metadata=_metadata(payment),
        )
    _payment_transition(
        payment,
        to_status=PaymentStatus.CONFIRMED,
        actor=None,
        reason=f"{_money(received, payment.currency)} received: {outcome}.",
        event=recorded,
        funding_entry=funding,
        excess_refund_entry=excess,
        amount_received_minor=received,
        amount_over_minor=over,
        amount_short_minor=short,
        amount_refunded_minor=over,
        payer_account=event.payer_account,
        confirmed_at=timezone.now(),
    )
    if takes_money and short == 0:
        _transition(
            subscription,
            allowed_from=(SubscriptionStatus.SIGNED,),
            to_status=SubscriptionStatus.FUNDED,
            actor=None,
            reason=f"Funded: payment {payment.provider_reference} received "
            f"({_money(received, payment.currency)}).",
            now=timezone.now(),
            expires_at=None,
        )
    return outcome


def _return(payment: Payment, subscription: Subscription, record: Record) -> str:
    """The transfer bounced: reverse what it moved; a funded subscription is signed again."""
    if payment.status != PaymentStatus.CONFIRMED:
        attention = " (needs staff attention)" if payment.status == PaymentStatus.REFUNDED else ""
        return record(f"ignored: payment is {payment.status}{attention}").outcome
    holds_money = payment.amount_received_minor > payment.amount_refunded_minor
    takes_back = (SubscriptionStatus.SIGNED, SubscriptionStatus.FUNDED)
    if holds_money and subscription.status not in takes_back:
        outcome = f"ignored: the subscription is {subscription.status} (needs staff attention)"
        return record(outcome).outcome
    # Only money the subscription counted on unfunds it (not an excess sent straight back).
    is_funded = holds_money and subscription.status == SubscriptionStatus.FUNDED
    outcome = "returned: funding reversed" + (
        ", the subscription is signed again" if is_funded else ""
    )
    recorded = record(outcome)
    reason = f"Payment {payment.provider_reference} returned by the bank"
    excess_return = None
    if payment.excess_refund_entry_id is not None:
        excess_return = ledger.entry_reverse(
            entry_id=payment.excess_refund_entry_id,
            idempotency_key=f"payment:{payment.pk}:excess-return",
            reason=f"{reason}: its excess was never received",
        )
    assert payment.funding_entry_id is not None
    funding_return = ledger.entry_reverse(
        entry_id=payment.funding_entry_id,
        idempotency_key=f"payment:{payment.pk}:return",
        reason=reason,
    )
    _payment_transition(
        payment,
        to_status=PaymentStatus.RETURNED,
        actor=None,
        reason=f"{reason}: funding reversed.",
        event=recorded,
        return_entry=funding_return,
        excess_return_entry=excess_return,
    )
    if is_funded:
        now = timezone.now()
        _transition(
            subscription,
            allowed_from=(SubscriptionStatus.FUNDED,),
            to_status=SubscriptionStatus.SIGNED,
            actor=None,
            reason=f"{reason}: no longer funded.",
            now=now,
            expires_at=now + reservation_ttl(),
        )
    return outcome


def _fail(payment: Payment, record: Record) -> str:
    if payment.status != PaymentStatus.PENDING:
        return record(f"ignored: payment is {payment.status}").outcome
    _payment_transition(
        payment,
        to_status=PaymentStatus.FAILED,
        actor=None,
        reason=f"Payment {payment.provider_reference} failed: no money arrived.",
        event=record("failed"),
    )
    return "failed"


def _event_recorded(provider: str, event_id: str) -> bool:
    return PaymentEvent.objects.filter(provider=provider, provider_event_id=event_id).exists()


def _apply(
    provider: PaymentProvider, event: ProviderEvent, payload: Mapping[str, Any], payment_id: int
) -> WebhookResult:
    """Under the subscription's row lock: the event is recorded with what it does (before
    the writes it causes, so their history rows can name it), then applied."""
    with transaction.atomic():
        subscription_id = Payment.objects.values_list("subscription_id", flat=True).get(
            pk=payment_id
        )
        subscription = (
            Subscription.objects.select_for_update(of=("self",))
            .select_related("offering", "investor")
            .get(pk=subscription_id)
        )
        if _event_recorded(provider.name, event.event_id):  # a concurrent delivery won
            return WebhookResult(event.event_id, True, "duplicate: already processed")
        payment = Payment.objects.select_for_update().get(pk=payment_id)

        def record(outcome: str) -> PaymentEvent:
            return PaymentEvent.objects.create(
                provider=provider.name,
                provider_event_id=event.event_id,
                event_type=event.event_type,
                payment=payment,
                amount_minor=event.amount_minor,
                payload=dict(payload),
                outcome=outcome,
                received_at=timezone.now(),
            )

        if event.event_type == PaymentEventType.CONFIRMED:
            outcome = _confirm(payment, subscription, event, record)
        elif event.event_type == PaymentEventType.RETURNED:
            outcome = _return(payment, subscription, record)
        else:
            outcome = _fail(payment, record)
    return WebhookResult(event.event_id, False, outcome)


def payment_webhook_receive(
    *, body: bytes, timestamp: str | None, signature: str | None
) -> WebhookResult:
    """A provider's notification: verified (signature, freshness), parsed, and applied once.
    A repeated event id changes nothing. One transaction for the event and its effects."""
    now = timezone.now()
    webhook_verify(body=body, timestamp=timestamp, signature=signature, now=now)
    try:
        payload = json.loads(body)
    except ValueError:
        raise ValidationFailed(
            "The notification body is not JSON.", code="webhook_payload_invalid"
        ) from None
    provider = payment_provider()
    event = provider.parse_event(payload)
    if _event_recorded(provider.name, event.event_id):
        return WebhookResult(event.event_id, True, "duplicate: already processed")
    payment_id = (
        Payment.objects.filter(provider=provider.name, provider_reference=event.reference)
        .values_list("pk", flat=True)
        .first()
    )
    if payment_id is None:
        raise NotFound(f"No payment with reference {event.reference!r}.", code="payment_not_found")
    try:
        return _apply(provider, event, payload, payment_id)
    except IntegrityError:
        if _event_recorded(provider.name, event.event_id):
            return WebhookResult(event.event_id, True, "duplicate: already processed")
        raise


def payment_simulate(
    *, payment: Payment, event_type: str, amount_minor: int | None = None
) -> WebhookResult:
    """The simulated bank notifies about `payment` (a transfer arrived — the expected amount
    unless told otherwise —, bounced or failed), signed and delivered through the same
    verification and processing as a webhook (for the demo and operators)."""
    provider = payment_provider(payment.provider)
    if not isinstance(provider, SimulatedBankTransfer):
        raise ValidationFailed(
            f"Payment {payment.provider_reference} is with {payment.provider}: only the simulated "
            "bank's payments can be simulated.",
            code="provider_not_simulated",
        )
    body = json.dumps(
        provider.event_payload(payment=payment, event_type=event_type, amount_minor=amount_minor)
    ).encode()
    headers = webhook_headers(body=body)
    return payment_webhook_receive(
        body=body,
        timestamp=headers[WEBHOOK_TIMESTAMP_HEADER],
        signature=headers[WEBHOOK_SIGNATURE_HEADER],
    )


# --- refunds ----------------------------------------------------------------------------------


def subscription_refund(
    *, subscription: Subscription, actor: User | None, reason: str
) -> Subscription:
    """Refund a subscription in full and end it (→ refunded): every payment's money in escrow
    goes back out where it came from (one ledger entry per payment) and its units are
    released. For closing (an all-or-nothing offering that missed its target) and staff.
    Takes funded subscriptions, and unfunded ones with money in escrow; already refunded: a
    no-op (safe to run again). One transaction (joins the caller's)."""
    if not reason.strip():
        raise ValidationFailed("A refund needs a reason.", code="reason_required")
    with transaction.atomic():
        _offering_locked(subscription.offering_id)
        _lock_and_refresh(subscription)
        if subscription.status == SubscriptionStatus.REFUNDED:
            return subscription
        subscription_end_holding(
            subscription,
            allowed_from=(
                SubscriptionStatus.FUNDED,
                SubscriptionStatus.SIGNED,
                SubscriptionStatus.RESERVED,
            ),
            to_status=SubscriptionStatus.REFUNDED,
            actor=actor,
            reason=reason.strip(),
            now=timezone.now(),
        )
    return subscription
