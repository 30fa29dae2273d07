"""The invest flow, on the subscription services:

    units → review (amount, fee, rule and limit left) → acknowledgements → the subscription
    agreement (its text and hash shown, the investor types their name) → ONE submit that
    subscribes and signs → funding instructions and status; cancel while the window is open.

The final submit runs `subscription_create` then `subscription_sign` in one transaction, so a
refusal by either (over the limit, a wrong name, an agreement that changed since it was shown)
writes nothing. Sold out: the subscription joins the waitlist unsigned and is signed on its
own page once units are reserved for it.

The agreement cannot be generated word for word before subscribing: its text carries the
subscription's number (and, under ECSP, the reflection deadline that starts at signing). The
review page shows the text with the number left open and the SHA-256 of that text; the submit
regenerates it from the new subscription's figures and refuses a different hash, then signs
the full text (number included), whose own hash is stored with the signature.

Amounts are always recomputed on the server from the units and the offering's terms; the
page never sends an amount. The submit is idempotent: the review page carries a one-time
token that becomes the `Idempotency-Key` of `common/idempotency.py`, so a double click or a
refresh of the POST replays the first result instead of subscribing twice."""

from __future__ import annotations

import secrets
from dataclasses import asdict, dataclass
from decimal import Decimal

import orjson
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils import timezone
from django.views.decorators.http import require_POST

from captable.models import Payment, PaymentStatus, Subscription, SubscriptionStatus
from captable.payments import payment_provider, subscription_fund
from captable.subscription_selectors import (
    cancel_deadline,
    subscription_agreement_document,
    subscription_get,
    waitlist_position,
)
from captable.subscriptions import subscription_cancel, subscription_create, subscription_sign
from common.auth import client_ip_of
from common.errors import Conflict, DomainError
from common.idempotency import IDEMPOTENCY_HEADER, idempotent
from common.models import User
from investors.models import Investor
from offerings.models import Offering
from offerings.quantities import units_to_quanta
from offerings.selectors import offering_get
from portal.errors import Refused, or_404, refusal_shown, refusals_as_messages
from portal.forms import AcknowledgeForm, CancelForm, SignForm, UnitsForm
from portal.offering_page import agreement_preview, investor_of, own_limit, review_of

CANCELLABLE = (
    SubscriptionStatus.WAITLISTED,
    SubscriptionStatus.RESERVED,
    SubscriptionStatus.SIGNED,
    SubscriptionStatus.FUNDED,
)


def _investor_or_404(request: HttpRequest) -> Investor:
    investor = investor_of(request.user)
    if investor is None:
        raise Http404("No investor profile.")
    return investor


def _quanta(units: Decimal, offering: Offering) -> int:
    return units_to_quanta(units, quanta_per_unit=offering.quanta_per_unit, field="units")


@login_required
def invest_units(request: HttpRequest, offering_id: int) -> HttpResponse:
    investor = _investor_or_404(request)
    offering = or_404(offering_get, user=request.user, offering_id=offering_id)
    form = UnitsForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        units = form.cleaned_data["units"]
        try:
            with refusals_as_messages(request):
                _quanta(units, offering)
        except Refused:
            pass
        else:
            return redirect(f"{request.path}review/?units={units}")
    context = {
        "offering": offering,
        "form": form,
        "limit": own_limit(investor=investor, offering=offering, now=timezone.now()),
    }
    return render(request, "portal/invest_units.html", context)


@login_required
def invest_review(request: HttpRequest, offering_id: int) -> HttpResponse:
    investor = _investor_or_404(request)
    offering = or_404(offering_get, user=request.user, offering_id=offering_id)
    units_form = UnitsForm(request.GET)
    if not units_form.is_valid():
        return redirect("portal:invest", offering_id=offering.pk)
    return _review_page(request, investor, offering, units_form.cleaned_data["units"])


def _review_page(
    request: HttpRequest,
    investor: Investor,
    offering: Offering,
    units: Decimal,
    forms: tuple[AcknowledgeForm, SignForm] | None = None,
    status: int = 200,
) -> HttpResponse:
    now = timezone.now()
    try:
        with refusals_as_messages(request):
            quanta = _quanta(units, offering)
    except Refused:
        return redirect("portal:invest", offering_id=offering.pk)
    agreement = agreement_preview(investor=investor, offering=offering, quanta=quanta)
    # The template writes the hash of the text on this page itself (never a stale one).
    acknowledge_form, sign_form = forms or (AcknowledgeForm(), SignForm())
    context = {
        "offering": offering,
        "units": units,
        "review": review_of(investor=investor, offering=offering, quanta=quanta, now=now),
        "limit": own_limit(investor=investor, offering=offering, now=now),
        "deadline": cancel_deadline(offering=offering),
        "form": acknowledge_form,
        "sign_form": sign_form,
        "agreement": agreement,
        "investor": investor,
        "token": secrets.token_urlsafe(24),
    }
    return render(request, "portal/invest_review.html", context, status=status)


@login_required
@require_POST
def invest_subscribe(request: HttpRequest, offering_id: int) -> HttpResponse:
    investor = _investor_or_404(request)
    offering = or_404(offering_get, user=request.user, offering_id=offering_id)
    units_form = UnitsForm(request.POST)
    acknowledge_form, sign_form = AcknowledgeForm(request.POST), SignForm(request.POST)
    token = request.POST.get("token", "")
    if not units_form.is_valid() or not token:
        return redirect("portal:invest", offering_id=offering.pk)
    units = units_form.cleaned_data["units"]
    forms = (acknowledge_form, sign_form)
    if not (acknowledge_form.is_valid() and sign_form.is_valid()):
        return _review_page(request, investor, offering, units, forms, status=422)
    try:
        choice = Choice(
            quanta=_quanta(units, offering),
            acknowledged=acknowledge_form.cleaned_data["ecsp_warning"],
            typed_name=sign_form.cleaned_data["typed_name"],
            agreement_sha256=sign_form.cleaned_data["agreement_sha256"],
        )
        subscription_id = _subscribe_and_sign_once(request, offering=offering, choice=choice)
    except DomainError as error:
        refusal_shown(request, error, sign_form)
        return _review_page(request, investor, offering, units, forms, status=422)
    return redirect("portal:subscription", subscription_id=subscription_id)


@dataclass(frozen=True)
class Choice:
    """What the investor submitted on the review page (never an amount)."""

    quanta: int
    acknowledged: bool
    typed_name: str
    agreement_sha256: str


def _subscribe_and_sign_once(request: HttpRequest, *, offering: Offering, choice: Choice) -> int:
    """The API's idempotency (`common/idempotency.py`), keyed on the page's one-time token: the
    first POST subscribes and signs, a repeat of it (same token, same choices) gets the first
    subscription back; the same token with other choices is refused (409). The operation runs
    inside the idempotency record's transaction: any refusal rolls all of it back."""
    keyed = HttpRequest()
    keyed.method = "POST"
    keyed.path = request.path
    token = request.POST.get("token", "")
    keyed.META[f"HTTP_{IDEMPOTENCY_HEADER.upper().replace('-', '_')}"] = f"portal-{token}"
    # What the fingerprint covers: the choices, not the form's rotating CSRF token.
    keyed._body = orjson.dumps(asdict(choice))
    keyed.auth = request.user  # type: ignore[attr-defined]  # idempotent() keys on it
    actor = request.user
    assert isinstance(actor, User)  # login_required

    def operation() -> tuple[int, dict[str, int]]:
        subscription = subscription_create(
            actor=actor,
            offering_id=offering.pk,
            quanta=choice.quanta,
            risk_warning_acknowledged=choice.acknowledged,
        )
        _check_agreement_shown(subscription, choice.agreement_sha256)
        if subscription.status == SubscriptionStatus.RESERVED:
            subscription_sign(
                actor=actor,
                subscription_id=subscription.pk,
                typed_name=choice.typed_name,
                ip_address=client_ip_of(request),
                # The full text (with the new number) is generated and hashed by the service in
                # this same transaction, after the check that its terms are the ones shown.
                agreement_sha256=None,
            )
        return 201, {"subscription_id": subscription.pk}

    response = idempotent(keyed, operation=operation)
    return int(orjson.loads(response.content)["subscription_id"])


def _check_agreement_shown(subscription: Subscription, shown_sha256: str) -> None:
    """The agreement regenerated for the new subscription (number still open) is the one the
    investor read; the offering row is locked by the reservation, so no document lands in
    between."""
    offering = Offering.objects.select_related("issuer").get(pk=subscription.offering_id)
    current = agreement_preview(
        investor=subscription.investor, offering=offering, quanta=subscription.quanta
    )
    if current.sha256 != shown_sha256.lower():
        raise Conflict(
            "The agreement changed since it was shown to you (the offering's documents or "
            "terms changed): read it again below, then sign.",
            code="agreement_changed",
        )


# --- one subscription ----------------------------------------------------------------------------


def _subscription(request: HttpRequest, subscription_id: int) -> Subscription:
    return or_404(subscription_get, user=request.user, subscription_id=subscription_id)


@login_required
def subscription_detail(request: HttpRequest, subscription_id: int) -> HttpResponse:
    subscription = _subscription(request, subscription_id)
    return _subscription_page(request, subscription)


def _subscription_page(
    request: HttpRequest, subscription: Subscription, sign_form: SignForm | None = None
) -> HttpResponse:
    offering = subscription.offering
    agreement = None
    if subscription.status == SubscriptionStatus.RESERVED:
        agreement = subscription_agreement_document(subscription)
        sign_form = sign_form or SignForm(initial={"agreement_sha256": agreement.sha256})
    payment = (
        Payment.objects.filter(subscription=subscription, status=PaymentStatus.PENDING)
        .order_by("-pk")
        .first()
    )
    # Cancellable until the exemption's deadline, or inside an ECSP reflection period that
    # ends later (captable's `_check_cancel_window`): the later of the two.
    deadline = max(
        cancel_deadline(offering=offering), subscription.revocable_until or offering.opens_at
    )
    context = {
        "subscription": subscription,
        "offering": offering,
        "position": waitlist_position(subscription),
        "agreement": agreement,
        "sign_form": sign_form,
        "instructions": payment_provider(payment.provider).instructions(payment)
        if payment
        else None,
        "payments": subscription.payments.order_by("-pk"),
        "signed": subscription.agreements.order_by("-signed_at", "-pk").first(),
        "cancel_deadline": deadline,
        "can_cancel": subscription.status in CANCELLABLE and timezone.now() < deadline,
        "cancel_form": CancelForm(),
        "total_minor": subscription.amount_minor + subscription.fee_minor,
    }
    return render(request, "portal/subscription.html", context)


@login_required
@require_POST
def subscription_sign_view(request: HttpRequest, subscription_id: int) -> HttpResponse:
    subscription = _subscription(request, subscription_id)
    form = SignForm(request.POST)
    if form.is_valid():
        try:
            with refusals_as_messages(request):
                subscription_sign(
                    actor=request.user,  # type: ignore[arg-type]  # login_required
                    subscription_id=subscription.pk,
                    typed_name=form.cleaned_data["typed_name"],
                    ip_address=client_ip_of(request),
                    agreement_sha256=form.cleaned_data["agreement_sha256"],
                )
        except Refused:
            return _subscription_page(request, subscription, form)
        messages.success(request, "Agreement signed. Now fund your subscription.")
    return redirect("portal:subscription", subscription_id=subscription.pk)


@login_required
@require_POST
def subscription_fund_view(request: HttpRequest, subscription_id: int) -> HttpResponse:
    subscription = _subscription(request, subscription_id)
    try:
        with refusals_as_messages(request):
            subscription_fund(actor=request.user, subscription_id=subscription.pk)  # type: ignore[arg-type]
    except Refused:
        pass
    return redirect("portal:subscription", subscription_id=subscription.pk)


@login_required
@require_POST
def subscription_cancel_view(request: HttpRequest, subscription_id: int) -> HttpResponse:
    subscription = _subscription(request, subscription_id)
    form = CancelForm(request.POST)
    reason = form.cleaned_data["reason"] if form.is_valid() else ""
    try:
        with refusals_as_messages(request):
            subscription_cancel(
                actor=request.user,  # type: ignore[arg-type]  # login_required
                subscription_id=subscription.pk,
                reason=reason or "Cancelled by the investor in the portal.",
            )
    except Refused:
        pass
    else:
        messages.success(
            request, "Your subscription is cancelled; any money in escrow is refunded."
        )
    return redirect("portal:subscription", subscription_id=subscription.pk)
