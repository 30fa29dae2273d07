"""Account pages: sign up, the investor questionnaire, the EU knowledge test, KYC status.
Sign in / out and password reset are Django's own views (see urls.py)."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from django.contrib import messages
from django.contrib.auth import login
from django.contrib.auth.decorators import login_required
from django.db import transaction
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils import timezone

from common.money import decimal_to_minor_units
from investors.models import AccreditationStatus, Investor, KycStatus
from investors.selectors import investor_decisions
from investors.services import (
    MoneyFigure,
    investor_accreditation_self_certify,
    investor_register,
    investor_update_profile,
    knowledge_test_submit,
)
from portal.errors import Refused, refusals_as_messages
from portal.forms import KnowledgeTestForm, QuestionnaireForm, SignUpForm
from portal.offering_page import investor_of

MONEY_FIELDS = (
    "income_year_minus_2",
    "income_year_minus_1",
    "income_current_year_expected",
    "net_worth",
)


def signup(request: HttpRequest) -> HttpResponse:
    form = SignUpForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        try:
            with refusals_as_messages(request):
                investor = investor_register(
                    email=data["email"],
                    password=data["password"],
                    legal_name=data["legal_name"],
                    country=data["country"],
                    us_state=data.get("us_state") or "",
                )
        except Refused:
            return render(request, "portal/signup.html", {"form": form}, status=422)
        login(request, investor.user, backend="django.contrib.auth.backends.ModelBackend")
        messages.success(request, "Welcome! Tell us about your finances to see your limits.")
        return redirect("portal:profile")
    return render(request, "portal/signup.html", {"form": form})


def _initial(investor: Investor) -> dict[str, Any]:
    initial: dict[str, Any] = {
        "financials_currency": investor.financials_currency or "USD",
        "is_joint_income": investor.is_joint_income,
        "has_securities_license": investor.has_securities_license,
    }
    for name in MONEY_FIELDS:
        minor = getattr(investor, f"{name}_minor")
        if minor is not None:
            initial[name] = Decimal(minor).scaleb(-2)
    return initial


def _changes(data: dict[str, Any]) -> dict[str, object]:
    currency = data["financials_currency"]
    changes: dict[str, object] = {
        "financials_currency": currency,
        "is_joint_income": data["is_joint_income"],
        "has_securities_license": data["has_securities_license"],
    }
    for name in MONEY_FIELDS:
        amount = data.get(name)
        changes[name] = (
            None
            if amount is None
            else MoneyFigure(decimal_to_minor_units(amount, currency), currency)
        )
    return changes


@login_required
def profile(request: HttpRequest) -> HttpResponse:
    investor = investor_of(request.user)
    if investor is None:
        return render(request, "portal/no_investor.html", status=404)
    form = QuestionnaireForm(request.POST or None, initial=_initial(investor))
    if request.method == "POST" and form.is_valid():
        try:
            with refusals_as_messages(request), transaction.atomic():
                investor = investor_update_profile(
                    investor=investor, changes=_changes(form.cleaned_data)
                )
                if form.cleaned_data["self_certify"]:
                    investor = investor_accreditation_self_certify(investor=investor)
        except Refused:
            return _profile_page(request, investor, form, status=422)
        messages.success(request, "Your questionnaire is saved.")
        return redirect("portal:profile")
    return _profile_page(request, investor, form)


def _profile_page(
    request: HttpRequest, investor: Investor, form: QuestionnaireForm, status: int = 200
) -> HttpResponse:
    context = {
        "investor": investor,
        "form": form,
        "missing": kyc_missing(investor),
        "decisions": investor_decisions(investor=investor)[-10:],
        "is_accredited": investor.accreditation_status
        in (AccreditationStatus.SELF_CERTIFIED, AccreditationStatus.VERIFIED),
        "knowledge_test_valid": bool(
            investor.knowledge_test_valid_until
            and investor.knowledge_test_valid_until > timezone.now()
        ),
    }
    return render(request, "portal/profile.html", context, status=status)


def kyc_missing(investor: Investor) -> list[str]:
    """What still stands between this investor and investing, in plain words."""
    missing = []
    if investor.net_worth_minor is None or investor.income_year_minus_1_minor is None:
        missing.append("Your income and net worth (the questionnaire below).")
    if investor.kyc_status == KycStatus.PENDING:
        missing.append("Our identity check (KYC): we review new accounts within one business day.")
    elif investor.kyc_status != KycStatus.APPROVED:
        missing.append(f"Your identity check was {investor.kyc_status}: {investor.kyc_reason}")
    return missing


@login_required
def knowledge_test_page(request: HttpRequest) -> HttpResponse:
    investor = investor_of(request.user)
    if investor is None:
        return render(request, "portal/no_investor.html", status=404)
    form = KnowledgeTestForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        attempt = knowledge_test_submit(investor=investor, answers=form.answers())
        if attempt.passed:
            messages.success(request, f"Passed ({attempt.score}/{attempt.max_score}).")
            return redirect("portal:profile")
        messages.error(
            request, f"Not passed ({attempt.score}/{attempt.max_score}); read and try again."
        )
    return render(request, "portal/knowledge_test.html", {"form": form})
