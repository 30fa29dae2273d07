"""The sponsor console: create a draft with its property, edit it, submit it; follow the raise;
download the cap table; another sponsor's offering is a 404."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
import time_machine
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from offerings.models import Offering, OfferingStatus
from tests.conftest import new_user
from tests.offerings.factories import approved_sponsor, member_of, new_offering
from tests.portal.helpers import kyc_investor, offering_in, signed_in

pytestmark = [pytest.mark.django_db, pytest.mark.embedded]


def _draft_form() -> dict[str, str]:
    opens = timezone.now() + timedelta(days=2)
    return {
        "property-name": "Harbor Lofts",
        "property-address_line1": "9 Harbor Way",
        "property-city": "Portland",
        "property-region": "OR",
        "property-postal_code": "97201",
        "property-country": "us",
        "property-property_type": "mixed_use",
        "property-description": "Lofts over shops.",
        "offering-title": "Harbor Lofts — community round",
        "offering-summary": "Reg CF round for the ground-floor retail fit-out.",
        "offering-issuer_legal_name": "Harbor Lofts SPV LLC",
        "offering-issuer_country": "US",
        "offering-exemption": "reg_cf",
        "offering-security_type": "equity",
        "offering-funding_model": "all_or_nothing",
        "offering-currency": "USD",
        "offering-price_per_unit": "250.00",
        "offering-units_authorized": "4000",
        "offering-min_investment_units": "2",
        "offering-target_raise": "250000.00",
        "offering-max_raise": "1000000.00",
        "offering-time_zone": "America/Los_Angeles",
        "offering-opens_at": opens.strftime("%Y-%m-%dT%H:%M"),
        "offering-closes_at": (opens + timedelta(days=45)).strftime("%Y-%m-%dT%H:%M"),
    }


def _edit_form(**changes: str) -> dict[str, str]:
    """The edit page's form: the draft's property and terms (no issuer: it is kept)."""
    form = {name: value for name, value in _draft_form().items() if "issuer" not in name} | {
        "offering-max_investment_units": "4000"
    }
    return form | {name.replace("__", "-"): value for name, value in changes.items()}


def test_sponsor_creates_edits_and_submits_a_draft():
    member = member_of(approved_sponsor())
    client = signed_in(member)
    response = client.post(reverse("portal:sponsor_offering_new"), _draft_form())
    assert response.status_code == 302
    offering = Offering.objects.get(title="Harbor Lofts — community round")
    assert offering.status == OfferingStatus.DRAFT
    assert offering.price_per_unit_minor == 250_00
    assert offering.property.city == "Portland"
    edit = reverse("portal:sponsor_offering_edit", args=[offering.pk])
    saved = client.post(edit, _edit_form(offering__title="Harbor Lofts — first round"))
    assert saved.status_code == 302
    client.post(reverse("portal:sponsor_offering_submit", args=[offering.pk]))
    offering.refresh_from_db()
    assert offering.title == "Harbor Lofts — first round"
    assert offering.status == OfferingStatus.IN_REVIEW
    page = client.get(reverse("portal:sponsor_home")).content.decode()
    assert "Harbor Lofts — first round" in page


def _new_draft(client: Client) -> Offering:
    assert client.post(reverse("portal:sponsor_offering_new"), _draft_form()).status_code == 302
    return Offering.objects.get(title="Harbor Lofts — community round")


def test_the_edit_page_shows_the_draft_and_its_property_as_they_are():
    client = signed_in(member_of(approved_sponsor()))
    offering = _new_draft(client)
    page = client.get(reverse("portal:sponsor_offering_edit", args=[offering.pk]))
    text = page.content.decode()
    assert 'name="property-address_line1" value="9 Harbor Way"' in text
    assert 'name="offering-price_per_unit" value="250.00"' in text
    assert 'name="offering-units_authorized" value="4000"' in text
    local_opens = offering.opens_at.astimezone(ZoneInfo("America/Los_Angeles"))
    assert f'value="{local_opens:%Y-%m-%dT%H:%M}"' in text


def test_editing_a_draft_changes_its_terms_and_its_propertys_key_figures():
    client = signed_in(member_of(approved_sponsor()))
    offering = _new_draft(client)
    form = _edit_form(
        property__address_line1="11 Harbor Way",
        property__city="Salem",
        property__property_type="multifamily",
        property__year_built="1924",
        property__square_feet="48000",
        property__unit_count="36",
        property__purchase_price="6500000.00",
        property__purchase_price_currency="USD",
        property__projected_irr="14.25",
        property__projected_cash_yield="-1.5",
        property__projected_equity_multiple="1.85",
        property__projected_hold_months="60",
        offering__price_per_unit="200.00",
        offering__max_raise="800000.00",
    )
    response = client.post(reverse("portal:sponsor_offering_edit", args=[offering.pk]), form)
    assert response.status_code == 302
    offering.refresh_from_db()
    home = offering.property
    assert (home.address_line1, home.city, home.property_type) == (
        "11 Harbor Way",
        "Salem",
        "multifamily",
    )
    assert (home.year_built, home.square_feet, home.unit_count) == (1924, 48000, 36)
    assert (home.purchase_price_minor, home.purchase_price_currency) == (6_500_000_00, "USD")
    assert home.projected_irr_bps == 1425
    assert home.projected_cash_yield_bps == -150
    assert home.projected_equity_multiple_bps == 18500
    assert home.projected_hold_months == 60
    assert (offering.price_per_unit_minor, offering.max_raise_minor) == (200_00, 800_000_00)
    # the figures as investors will read them
    page = signed_in(member_of(offering.sponsor)).get(
        reverse("portal:offering", args=[offering.pk])
    )
    text = page.content.decode()
    for shown in (
        "1924",
        "48000 sq ft",
        "$6,500,000.00",
        "14.25%",
        "-1.50%",
        "1.85\u00d7",
        "60 months",
    ):
        assert shown in text, shown


def test_a_refused_edit_shows_each_error_under_its_field_and_writes_nothing():
    client = signed_in(member_of(approved_sponsor()))
    offering = _new_draft(client)
    url = reverse("portal:sponsor_offering_edit", args=[offering.pk])
    # shape errors (the form) on both parts at once
    response = client.post(
        url, _edit_form(property__year_built="1200", offering__price_per_unit="abc")
    )
    assert response.status_code == 422
    errors = _field_errors(response.content.decode())
    assert "year_built" in errors
    assert "price_per_unit" in errors
    # a rule (the service): a target above the maximum raise, with a new city that must not stick
    response = client.post(
        url, _edit_form(property__city="Salem", offering__target_raise="2000000.00")
    )
    assert response.status_code == 422
    errors = _field_errors(response.content.decode())
    assert "target_raise" in errors
    # a purchase price without its currency
    response = client.post(
        url, _edit_form(property__purchase_price="10.00", property__purchase_price_currency="")
    )
    assert "purchase_price_currency" in _field_errors(response.content.decode())
    offering.refresh_from_db()
    assert offering.property.city == "Portland"
    assert offering.target_raise_minor == 250_000_00


def _field_errors(page: str) -> dict[str, str]:
    """Django's form errors, keyed by the field they are rendered with (id_<prefix>-<name>)."""
    errors = {}
    for match in re.finditer(
        r'<ul class="errorlist" id="id_\w+-(\w+)_error">(.*?)</ul>', page, re.DOTALL
    ):
        errors[match[1]] = re.sub(r"<[^>]+>", "", match[2]).strip()
    return errors


def test_a_submitted_offerings_property_can_no_longer_be_edited():
    client = signed_in(member_of(approved_sponsor()))
    offering = _new_draft(client)
    client.post(reverse("portal:sponsor_offering_submit", args=[offering.pk]))
    response = client.post(
        reverse("portal:sponsor_offering_edit", args=[offering.pk]),
        _edit_form(property__city="Salem"),
    )
    assert response.status_code == 422
    assert "can no longer change" in response.content.decode()
    offering.refresh_from_db()
    assert offering.property.city == "Portland"


def test_a_refused_draft_writes_nothing():
    client = signed_in(member_of(approved_sponsor()))
    form = _draft_form() | {"offering-currency": "EUR"}  # Reg CF is in USD
    response = client.post(reverse("portal:sponsor_offering_new"), form)
    assert response.status_code == 200
    assert not Offering.objects.exists()
    assert "USD" in response.content.decode()


def test_raise_page_and_captable_download_for_the_sponsor_only():
    offering = offering_in("Austin")
    investor = kyc_investor(legal_name="Ada Investor")
    from captable.subscriptions import subscription_create

    subscription_create(actor=investor.user, offering_id=offering.pk, quanta=3)
    member = member_of(offering.sponsor)
    page = signed_in(member).get(reverse("portal:sponsor_offering", args=[offering.pk]))
    assert "Ada Investor" in page.content.decode()
    csv = signed_in(member).get(reverse("portal:sponsor_captable", args=[offering.pk, "csv"]))
    assert csv.status_code == 200
    assert csv["Content-Type"].startswith("text/csv")
    outsider = signed_in(member_of(approved_sponsor(name="Other")))
    for name, args in (
        ("portal:sponsor_offering", [offering.pk]),
        ("portal:sponsor_captable", [offering.pk, "csv"]),
        ("portal:sponsor_offering_edit", [offering.pk]),
    ):
        assert outsider.get(reverse(name, args=args)).status_code == 404
    assert (
        signed_in(investor.user)
        .get(reverse("portal:sponsor_offering", args=[offering.pk]))
        .status_code
        == 404
    )


def test_non_members_can_apply_and_cannot_create_offerings():
    client = signed_in(new_user())
    assert client.get(reverse("portal:sponsor_offering_new")).status_code == 404
    client.post(reverse("portal:sponsor_home"), {"name": "Newco Realty"})
    assert "Newco Realty" in client.get(reverse("portal:sponsor_home")).content.decode()


def test_submit_of_someone_elses_draft_is_a_404():
    draft = new_offering()
    outsider = signed_in(member_of(approved_sponsor(name="Other")))
    assert (
        outsider.post(reverse("portal:sponsor_offering_submit", args=[draft.pk])).status_code == 404
    )
    draft.refresh_from_db()
    assert draft.status == OfferingStatus.DRAFT


@pytest.mark.parametrize("utc_hour", [6, 15])
def test_captable_report_pdf_for_the_sponsor(settings, tmp_path, utc_hour):
    # At 06:00 UTC it is 01:00 in New York (the offering's zone), whose yesterday is not over
    # everywhere until noon UTC (UTC-12 still lives it): the report is then as of the day
    # before, not refused (it was, for hours of every day).
    settings.MEDIA_ROOT = tmp_path
    with time_machine.travel(datetime(2026, 11, 23, utc_hour, tzinfo=UTC), tick=True):
        offering = offering_in("Austin")
        client = signed_in(member_of(offering.sponsor))
        response = client.post(reverse("portal:sponsor_captable_report", args=[offering.pk]))
        assert response.status_code == 302
        pdf = client.get(response["Location"])
        assert pdf.getvalue().startswith(b"%PDF")
        outsider = signed_in(member_of(approved_sponsor(name="Other")))
        assert outsider.get(response["Location"]).status_code == 404
        report_url = reverse("portal:sponsor_captable_report", args=[offering.pk])
        assert outsider.post(report_url).status_code == 404
