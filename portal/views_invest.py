"""The invest flow, on the subscription services in the order they allow:

    units → review (amount, fee, rule and limit left) + acknowledgements → subscribe (the
    units are reserved, or the subscription waits on the waitlist) → sign the agreement →
    funding instructions and status; cancel while the window is open.

Amounts are always recomputed on the server from the units and the offering's terms; the
page never sends an amount. Subscribing is idempotent: the review page carries a one-time
token that becomes the `Idempotency-Key` of `common/idempotency.py`, so a double click or a
refresh of the POST replays the first result instead of subscribing twice."""

from __future__ import annotations

import secrets
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
from common.idempotency import IDEMPOTENCY_HEADER, idempotent
from investors.models import Investor
from offerings.models import Offering
from offerings.quantities import units_to_quanta
from offerings.selectors import offering_get
from portal.errors import Refused, or_404, refusals_as_messages
from portal.forms import AcknowledgeForm, CancelForm, SignForm, UnitsForm
from portal.offering_page import investor_of, own_limit, review_of

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
    form: AcknowledgeForm | None = None,
    status: int = 200,
) -> HttpResponse:
    now = timezone.now()
    try:
        with refusals_as_messages(request):
            quanta = _quanta(units, offering)
    except Refused:
        return redirect("portal:invest", offering_id=offering.pk)
    context = {
        "offering": offering,
        "units": units,
        "review": review_of(investor=investor, offering=offering, quanta=quanta, now=now),
        "limit": own_limit(investor=investor, offering=offering, now=now),
        "deadline": cancel_deadline(offering=offering),
        "form": form or AcknowledgeForm(),
        "token": secrets.token_urlsafe(24),
    }
    return render(request, "portal/invest_review.html", context, status=status)


@login_required
@require_POST
def invest_subscribe(request: HttpRequest, offering_id: int) -> HttpResponse:
    investor = _investor_or_404(request)
    offering = or_404(offering_get, user=request.user, offering_id=offering_id)
    units_form = UnitsForm(request.POST)
    form = AcknowledgeForm(request.POST)
    token = request.POST.get("token", "")
    if not units_form.is_valid() or not token:
        return redirect("portal:invest", offering_id=offering.pk)
    units = units_form.cleaned_data["units"]
    if not form.is_valid():
        return _review_page(request, investor, offering, units, form, status=422)
    try:
        with refusals_as_messages(request):
            subscription_id = _subscribe_once(
                request,
                offering=offering,
                quanta=_quanta(units, offering),
                acknowledged=form.cleaned_data["ecsp_warning"],
                token=token,
            )
    except Refused:
        return _review_page(request, investor, offering, units, form, status=422)
    return redirect("portal:subscription", subscription_id=subscription_id)


def _subscribe_once(
    request: HttpRequest, *, offering: Offering, quanta: int, acknowledged: bool, token: str
) -> int:
    """The API's idempotency (`common/idempotency.py`), keyed on the page's one-time token: the
    first POST subscribes, a repeat of it (same token, same choices) gets the first
    subscription back; the same token with other choices is refused (409)."""
    keyed = HttpRequest()
    keyed.method = "POST"
    keyed.path = request.path
    keyed.META[f"HTTP_{IDEMPOTENCY_HEADER.upper().replace('-', '_')}"] = f"portal-{token}"
    # What the fingerprint covers: the choices, not the form's rotating CSRF token.
    keyed._body = orjson.dumps({"quanta": quanta, "acknowledged": acknowledged})
    keyed.auth = request.user  # type: ignore[attr-defined]  # idempotent() keys on it

    def operation() -> tuple[int, dict[str, int]]:
        subscription = subscription_create(
            actor=request.user,  # type: ignore[arg-type]  # login_required
            offering_id=offering.pk,
            quanta=quanta,
            risk_warning_acknowledged=acknowledged,
        )
        return 201, {"subscription_id": subscription.pk}

    response = idempotent(keyed, operation=operation)
    return int(orjson.loads(response.content)["subscription_id"])


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
    deadline = subscription.revocable_until or cancel_deadline(offering=offering)
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
