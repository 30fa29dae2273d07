"""Portal forms: shape and type checks only. Every business rule (password strength, limits,
states) is the services' job; their refusals come back as messages."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from django import forms

from investors import knowledge_test
from offerings.exemptions import Exemption
from offerings.models import FundingModel, PropertyType, SecurityType


class PortalForm(forms.Form):
    """Labels without a trailing colon: they read better, and tests find them by their text."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("label_suffix", "")
        super().__init__(*args, **kwargs)


CURRENCY_CHOICES = [("USD", "US dollar (USD)"), ("EUR", "Euro (EUR)")]


class SignUpForm(PortalForm):
    email = forms.EmailField(max_length=254)
    legal_name = forms.CharField(label="Full legal name", max_length=200)
    country = forms.CharField(
        label="Country of residence (two letters, e.g. US)", max_length=2, min_length=2
    )
    us_state = forms.CharField(
        label="US state (two letters, US residents only)", max_length=2, required=False
    )
    password = forms.CharField(widget=forms.PasswordInput, min_length=1)
    password_again = forms.CharField(label="Password (again)", widget=forms.PasswordInput)

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        if data.get("password") != data.get("password_again"):
            self.add_error("password_again", "The two passwords differ.")
        return data


def _amount_field(label: str) -> forms.DecimalField:
    return forms.DecimalField(
        label=label, min_value=Decimal(0), max_digits=15, decimal_places=2, required=False
    )


class QuestionnaireForm(PortalForm):
    financials_currency = forms.ChoiceField(
        label="Currency of your figures", choices=CURRENCY_CHOICES
    )
    income_year_minus_2 = _amount_field("Income two years ago")
    income_year_minus_1 = _amount_field("Income last year")
    income_current_year_expected = _amount_field("Income expected this year")
    net_worth = _amount_field("Net worth (excluding your primary residence)")
    is_joint_income = forms.BooleanField(
        label="These incomes are joint with a spouse", required=False
    )
    has_securities_license = forms.BooleanField(
        label="I hold a Series 7, 65 or 82 licence", required=False
    )
    self_certify = forms.BooleanField(
        label="I certify that I am an accredited investor (checked against the figures above)",
        required=False,
    )


class KnowledgeTestForm(PortalForm):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        for question in knowledge_test.QUESTIONS:
            self.fields[f"q_{question.id}"] = forms.ChoiceField(
                label=question.prompt, choices=question.choices, widget=forms.RadioSelect
            )

    def answers(self) -> dict[str, str]:
        return {name.removeprefix("q_"): str(value) for name, value in self.cleaned_data.items()}


class UnitsForm(PortalForm):
    units = forms.DecimalField(label="Number of units", min_value=Decimal(0), max_digits=18)


class AcknowledgeForm(PortalForm):
    risk = forms.BooleanField(
        label="I understand that I may lose all the money I invest and that units are hard to sell",
        required=True,
    )
    ecsp_warning = forms.BooleanField(
        label="I have read the ECSP risk warning and still want to invest this amount",
        required=False,
    )


class SignForm(PortalForm):
    typed_name = forms.CharField(label="Type your full legal name to sign", max_length=200)
    agreement_sha256 = forms.CharField(widget=forms.HiddenInput, max_length=64)


class CancelForm(PortalForm):
    reason = forms.CharField(label="Reason (optional)", max_length=500, required=False)


def _percent_field(label: str) -> forms.DecimalField:
    return forms.DecimalField(
        label=label,
        min_value=Decimal(-1000),
        max_value=Decimal(10_000),
        max_digits=7,
        decimal_places=2,
        required=False,
    )


class PropertyForm(PortalForm):
    """The property and its key figures; percentages and the multiple are typed as people
    read them (12.5 %, a multiple of 1.8) and stored in basis points."""

    name = forms.CharField(label="Property name", max_length=200)
    address_line1 = forms.CharField(label="Street address", max_length=200)
    address_line2 = forms.CharField(label="Address line 2", max_length=200, required=False)
    city = forms.CharField(max_length=100)
    region = forms.CharField(label="State or region", max_length=100, required=False)
    postal_code = forms.CharField(max_length=20, required=False)
    country = forms.CharField(label="Country (two letters)", max_length=2, min_length=2)
    property_type = forms.ChoiceField(choices=PropertyType.choices)
    description = forms.CharField(widget=forms.Textarea(attrs={"rows": 3}), required=False)
    year_built = forms.IntegerField(min_value=1600, max_value=2200, required=False)
    square_feet = forms.IntegerField(
        label="Size (square feet)", min_value=1, max_value=2_000_000_000, required=False
    )
    unit_count = forms.IntegerField(
        label="Units in the building", min_value=1, max_value=2_000_000_000, required=False
    )
    purchase_price = forms.DecimalField(
        label="Purchase price",
        min_value=Decimal("0.01"),
        max_digits=15,
        decimal_places=2,
        required=False,
    )
    purchase_price_currency = forms.ChoiceField(
        label="Purchase price currency",
        choices=[("", "—"), *CURRENCY_CHOICES],
        required=False,
    )
    projected_irr = _percent_field("Projected IRR (%)")
    projected_cash_yield = _percent_field("Projected cash yield (%)")
    projected_equity_multiple = forms.DecimalField(
        label="Projected equity multiple (e.g. 1.85)",
        min_value=Decimal(0),
        max_value=Decimal(100),
        max_digits=5,
        decimal_places=2,
        required=False,
    )
    projected_hold_months = forms.IntegerField(
        label="Projected hold (months)", min_value=1, max_value=1200, required=False
    )

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        if data.get("purchase_price") is not None and not data.get("purchase_price_currency"):
            self.add_error("purchase_price_currency", "Choose the purchase price's currency.")
        return data


class PropertyPhotoForm(PortalForm):
    photo = forms.FileField(
        label="Photo (JPEG, PNG or WebP, up to 8 MB)",
        widget=forms.ClearableFileInput(attrs={"accept": "image/jpeg,image/png,image/webp"}),
    )
    photo_alt_text = forms.CharField(
        label="Describe the photo for people who cannot see it", max_length=200
    )


class OfferingTermsForm(PortalForm):
    """A draft's terms as the sponsor edits them (the issuer is chosen when it is created)."""

    title = forms.CharField(max_length=200)
    summary = forms.CharField(widget=forms.Textarea(attrs={"rows": 3}), required=False)
    exemption = forms.ChoiceField(choices=Exemption.choices)
    security_type = forms.ChoiceField(choices=SecurityType.choices)
    funding_model = forms.ChoiceField(choices=FundingModel.choices)
    currency = forms.ChoiceField(choices=CURRENCY_CHOICES)
    price_per_unit = forms.DecimalField(
        label="Price per unit", min_value=Decimal("0.01"), max_digits=15, decimal_places=2
    )
    units_authorized = forms.IntegerField(label="Units offered", min_value=1)
    min_investment_units = forms.IntegerField(label="Minimum units per investor", min_value=1)
    max_investment_units = forms.IntegerField(label="Maximum units per investor", min_value=1)
    target_raise = forms.DecimalField(
        label="Target raise", min_value=Decimal(0), max_digits=15, decimal_places=2
    )
    max_raise = forms.DecimalField(
        label="Maximum raise", min_value=Decimal("0.01"), max_digits=15, decimal_places=2
    )
    time_zone = forms.CharField(label="Time zone (IANA, e.g. America/New_York)", max_length=64)
    opens_at = forms.DateTimeField(
        label="Opens at (the offering's local time)",
        widget=forms.DateTimeInput(attrs={"type": "datetime-local"}, format="%Y-%m-%dT%H:%M"),
    )
    closes_at = forms.DateTimeField(
        label="Closes at (the offering's local time)",
        widget=forms.DateTimeInput(attrs={"type": "datetime-local"}, format="%Y-%m-%dT%H:%M"),
    )


class OfferingForm(PortalForm):
    title = forms.CharField(max_length=200)
    summary = forms.CharField(widget=forms.Textarea(attrs={"rows": 3}), required=False)
    issuer_legal_name = forms.CharField(label="Issuer (SPV) legal name", max_length=200)
    issuer_country = forms.CharField(label="Issuer country (two letters)", max_length=2)
    exemption = forms.ChoiceField(choices=Exemption.choices)
    security_type = forms.ChoiceField(choices=SecurityType.choices)
    funding_model = forms.ChoiceField(choices=FundingModel.choices)
    currency = forms.ChoiceField(choices=CURRENCY_CHOICES)
    price_per_unit = forms.DecimalField(
        label="Price per unit", min_value=Decimal("0.01"), max_digits=15, decimal_places=2
    )
    units_authorized = forms.IntegerField(label="Units offered", min_value=1)
    min_investment_units = forms.IntegerField(label="Minimum units per investor", min_value=1)
    target_raise = forms.DecimalField(
        label="Target raise", min_value=Decimal(0), max_digits=15, decimal_places=2
    )
    max_raise = forms.DecimalField(
        label="Maximum raise", min_value=Decimal("0.01"), max_digits=15, decimal_places=2
    )
    time_zone = forms.CharField(label="Time zone (IANA, e.g. America/New_York)", max_length=64)
    opens_at = forms.DateTimeField(
        label="Opens at (the offering's local time)",
        widget=forms.DateTimeInput(attrs={"type": "datetime-local"}),
    )
    closes_at = forms.DateTimeField(
        label="Closes at (the offering's local time)",
        widget=forms.DateTimeInput(attrs={"type": "datetime-local"}),
    )


class DistributionForm(PortalForm):
    amount = forms.DecimalField(
        label="Amount to distribute", min_value=Decimal("0.01"), max_digits=15, decimal_places=2
    )
    record_date = forms.DateField(widget=forms.DateInput(attrs={"type": "date"}))
    payment_date = forms.DateField(widget=forms.DateInput(attrs={"type": "date"}))
    kind = forms.ChoiceField(
        choices=[("income", "Income"), ("return_of_capital", "Return of capital")]
    )
    description = forms.CharField(max_length=200, required=False)
