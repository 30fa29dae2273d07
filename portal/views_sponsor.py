"""The sponsor console: a sponsor's own offerings (a member of an approved sponsor sees only
theirs; anyone else's is a 404), create and edit a draft with its property (its key figures,
and its photo at any time), submit it for review, follow the raise, declare a distribution and
see its payouts, download the cap table (CSV / XLSX) and the cap-table report PDF."""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.db import transaction
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils import timezone
from django.views.decorators.http import require_POST

from captable.captable_api import offering_for_captable
from captable.closing_selectors import offering_stats
from captable.distribution_selectors import (
    distributions_visible_to,
    payout_totals,
    payouts_visible_to,
)
from captable.distributions import distribution_declare
from captable.models import Subscription, SubscriptionStatus
from common.errors import DomainError
from common.models import User
from common.money import decimal_to_minor_units
from offerings.models import Offering, OfferingStatus, SponsorStatus
from offerings.selectors import sponsor_ids_of, sponsor_list
from offerings.services import (
    OfferingDraft,
    issuer_create,
    offering_create,
    offering_submit,
    property_create,
    property_photo_set,
    sponsor_apply,
)
from portal.errors import Refused, or_404, refusal_shown, refusals_as_messages
from portal.forms import (
    DistributionForm,
    OfferingForm,
    OfferingTermsForm,
    PropertyForm,
    PropertyPhotoForm,
)
from portal.photos import property_photo_url
from portal.sponsor_drafts import (
    draft_save,
    offering_initial,
    property_details_of,
    property_initial,
)
from reports.exports import captable_export_response
from reports.kinds import StatementScope
from reports.models import StatementKind
from reports.periods import last_day_over, period_parse
from reports.services import statement_generate


def _user(request: HttpRequest) -> User:
    assert isinstance(request.user, User)  # login_required
    return request.user


@login_required
def sponsor_home(request: HttpRequest) -> HttpResponse:
    user = _user(request)
    if request.method == "POST":
        name = request.POST.get("name", "").strip()
        try:
            with refusals_as_messages(request):
                sponsor_apply(actor=user, name=name)
        except Refused:
            pass
        else:
            messages.success(request, "Application sent: our staff will review it.")
        return redirect("portal:sponsor_home")
    sponsor_ids = sponsor_ids_of(user)
    context = {
        "sponsors": sponsor_list(user=user) if not user.is_staff else [],
        "is_member": bool(sponsor_ids),
        "offerings": Offering.objects.filter(sponsor_id__in=sponsor_ids)
        .select_related("property")
        .order_by("-created_at", "-pk"),
        "approved": SponsorStatus.APPROVED,
    }
    return render(request, "portal/sponsor_home.html", context)


def _own_offering(request: HttpRequest, offering_id: int) -> Offering:
    """The offering when the caller is a member of its approved sponsor (or staff): the same
    rule as the cap-table API; 404 otherwise."""
    return or_404(offering_for_captable, user=request.user, offering_id=offering_id)


def _aware(moment: datetime, time_zone: str) -> datetime:
    """A date-time typed in the form is in the offering's own time zone."""
    if timezone.is_aware(moment):
        return moment
    try:
        zone = ZoneInfo(time_zone)
    except (ZoneInfoNotFoundError, ValueError):
        zone = ZoneInfo("UTC")  # the service refuses the unknown time zone itself
    return timezone.make_aware(moment, zone)


def _draft(data: dict[str, Any], *, property_id: int, issuer_id: int) -> OfferingDraft:
    currency = data["currency"]
    price_minor = decimal_to_minor_units(data["price_per_unit"], currency)
    return OfferingDraft(
        title=data["title"],
        summary=data["summary"],
        property_id=property_id,
        issuer_id=issuer_id,
        security_type=data["security_type"],
        currency=currency,
        price_per_unit_minor=price_minor,
        quanta_per_unit=1,
        units_authorized=Decimal(data["units_authorized"]),
        min_investment_units=Decimal(data["min_investment_units"]),
        target_raise_minor=decimal_to_minor_units(data["target_raise"], currency),
        max_raise_minor=decimal_to_minor_units(data["max_raise"], currency),
        funding_model=data["funding_model"],
        exemption=data["exemption"],
        time_zone=data["time_zone"],
        opens_at=_aware(data["opens_at"], data["time_zone"]),
        closes_at=_aware(data["closes_at"], data["time_zone"]),
    )


@login_required
def offering_new(request: HttpRequest) -> HttpResponse:
    user = _user(request)
    if not sponsor_ids_of(user):
        raise Http404("Not a member of an approved sponsor.")
    property_form = PropertyForm(request.POST or None, prefix="property")
    offering_form = OfferingForm(request.POST or None, prefix="offering")
    if request.method == "POST" and property_form.is_valid() and offering_form.is_valid():
        try:
            with transaction.atomic():
                offering = _create_draft(
                    user, property_form.cleaned_data, offering_form.cleaned_data
                )
        except DomainError as error:
            refusal_shown(request, error, property_form, offering_form)
        else:
            messages.success(request, "Draft saved. Check it, then submit it for review.")
            return redirect("portal:sponsor_offering", offering_id=offering.pk)
    context = {"property_form": property_form, "offering_form": offering_form}
    return render(request, "portal/sponsor_offering_new.html", context)


def _create_draft(user: User, place: dict[str, Any], terms: dict[str, Any]) -> Offering:
    issuer = issuer_create(
        actor=user,
        legal_name=terms["issuer_legal_name"],
        jurisdiction_country=terms["issuer_country"].upper(),
        entity_type="llc",
    )
    home = property_create(actor=user, details=property_details_of(place))
    return offering_create(
        actor=user, draft=_draft(terms, property_id=home.pk, issuer_id=issuer.pk)
    )


@login_required
def sponsor_offering(request: HttpRequest, offering_id: int) -> HttpResponse:
    return _console_page(request, _own_offering(request, offering_id))


def _console_page(
    request: HttpRequest,
    offering: Offering,
    *,
    photo_form: PropertyPhotoForm | None = None,
    status: int = 200,
) -> HttpResponse:
    subscriptions = list(
        Subscription.objects.filter(offering=offering).select_related("investor").order_by("pk")
    )
    # First come, first served: the waitlist is in id order (captable/subscriptions.py).
    waiting = [s for s in subscriptions if s.status == SubscriptionStatus.WAITLISTED]
    positions = {subscription.pk: number for number, subscription in enumerate(waiting, 1)}
    distributions = [
        (
            distribution,
            payout_totals(payouts_visible_to(user=request.user, distribution=distribution)),
        )
        for distribution in distributions_visible_to(user=request.user, offering_id=offering.pk)
    ]
    context = {
        "offering": offering,
        "stats": offering_stats(offering=offering),
        "subscriptions": [(s, positions.get(s.pk)) for s in subscriptions],
        "distributions": distributions,
        "is_draft": offering.status == OfferingStatus.DRAFT,
        "can_distribute": offering.status == OfferingStatus.CLOSED_FUNDED,
        "distribution_form": DistributionForm(),
        "photo_form": photo_form or PropertyPhotoForm(),
        "photo_url": property_photo_url(offering.property_id, offering.property.photo.name),
    }
    return render(request, "portal/sponsor_offering.html", context, status=status)


@login_required
def offering_edit(request: HttpRequest, offering_id: int) -> HttpResponse:
    """The draft offering and its property, saved together (one transaction)."""
    offering = _own_offering(request, offering_id)
    data = request.POST or None
    property_form = PropertyForm(
        data, prefix="property", initial=property_initial(offering.property)
    )
    terms_form = OfferingTermsForm(data, prefix="offering", initial=offering_initial(offering))
    if request.method == "POST" and property_form.is_valid() and terms_form.is_valid():
        try:
            draft_save(
                actor=_user(request),
                offering=offering,
                place=property_form.cleaned_data,
                terms=terms_form.cleaned_data,
            )
        except DomainError as error:
            refusal_shown(request, error, property_form, terms_form)
        else:
            messages.success(request, "Draft updated.")
            return redirect("portal:sponsor_offering", offering_id=offering.pk)
    context = {"offering": offering, "property_form": property_form, "terms_form": terms_form}
    status = 422 if request.method == "POST" else 200
    return render(request, "portal/sponsor_offering_edit.html", context, status=status)


@login_required
@require_POST
def property_photo_upload(request: HttpRequest, offering_id: int) -> HttpResponse:
    """The photo of the offering's property (at any status: a photo is not a term)."""
    offering = _own_offering(request, offering_id)
    form = PropertyPhotoForm(request.POST, request.FILES)
    if form.is_valid():
        try:
            property_photo_set(
                actor=_user(request),
                property_id=offering.property_id,
                file=form.cleaned_data["photo"],
                alt_text=form.cleaned_data["photo_alt_text"],
            )
        except DomainError as error:
            refusal_shown(request, error, form)
        else:
            messages.success(request, "Photo saved.")
            return redirect("portal:sponsor_offering", offering_id=offering.pk)
    return _console_page(request, offering, photo_form=form, status=422)


@login_required
@require_POST
def offering_submit_view(request: HttpRequest, offering_id: int) -> HttpResponse:
    offering = _own_offering(request, offering_id)
    try:
        with refusals_as_messages(request):
            offering_submit(actor=_user(request), offering_id=offering.pk)
    except Refused:
        pass
    else:
        messages.success(request, "Submitted: our staff will review the offering.")
    return redirect("portal:sponsor_offering", offering_id=offering.pk)


@login_required
@require_POST
def distribution_declare_view(request: HttpRequest, offering_id: int) -> HttpResponse:
    offering = _own_offering(request, offering_id)
    form = DistributionForm(request.POST)
    if not form.is_valid():
        messages.error(request, "Check the distribution's amount and dates.")
        return redirect("portal:sponsor_offering", offering_id=offering.pk)
    data = form.cleaned_data
    try:
        with refusals_as_messages(request):
            distribution_declare(
                actor=_user(request),
                offering_id=offering.pk,
                amount_minor=decimal_to_minor_units(data["amount"], offering.currency),
                currency=offering.currency,
                kind=data["kind"],
                record_date=data["record_date"],
                payment_date=data["payment_date"],
                memo=data["description"],
            )
    except Refused:
        pass
    else:
        messages.success(request, "Distribution declared: staff approve and pay it.")
    return redirect("portal:sponsor_offering", offering_id=offering.pk)


@login_required
def captable_download(request: HttpRequest, offering_id: int, file_format: str) -> HttpResponse:
    offering = _own_offering(request, offering_id)
    if file_format not in ("csv", "xlsx"):
        raise Http404("Unknown format.")
    return captable_export_response(
        offering=offering,
        as_of=timezone.now(),
        file_format=file_format,  # type: ignore[arg-type]
    )


@login_required
@require_POST
def captable_report(request: HttpRequest, offering_id: int) -> HttpResponse:
    """The cap-table report PDF as of the end of yesterday in the offering's time zone, or of
    the day before when yesterday is not over everywhere yet (a report covers a day that is
    over, so its figures never change; the service refuses any other); generated once."""
    offering = _own_offering(request, offering_id)
    now = timezone.now()
    yesterday = now.astimezone(ZoneInfo(offering.time_zone)).date() - timedelta(days=1)
    day = min(yesterday, last_day_over(now))
    try:
        with refusals_as_messages(request):
            generated = statement_generate(
                scope=StatementScope(
                    kind=StatementKind.CAPTABLE_REPORT,
                    period=period_parse(day.isoformat()),
                    offering_id=offering.pk,
                )
            )
    except Refused:
        return redirect("portal:sponsor_offering", offering_id=offering.pk)
    return redirect("portal:statement_pdf", statement_id=generated.statement.pk)
