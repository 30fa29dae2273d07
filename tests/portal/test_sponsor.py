"""The sponsor console: create a draft with its property, edit it, submit it; follow the raise;
download the cap table; another sponsor's offering is a 404."""

from __future__ import annotations

from datetime import timedelta

import pytest
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


def test_sponsor_creates_edits_and_submits_a_draft():
    member = member_of(approved_sponsor())
    client = signed_in(member)
    response = client.post(reverse("portal:sponsor_offering_new"), _draft_form())
    assert response.status_code == 302
    offering = Offering.objects.get(title="Harbor Lofts — community round")
    assert offering.status == OfferingStatus.DRAFT
    assert offering.price_per_unit_minor == 250_00
    assert offering.property.city == "Portland"
    client.post(
        reverse("portal:sponsor_offering_edit", args=[offering.pk]),
        {"title": "Harbor Lofts — first round", "summary": "Updated."},
    )
    client.post(reverse("portal:sponsor_offering_submit", args=[offering.pk]))
    offering.refresh_from_db()
    assert offering.title == "Harbor Lofts — first round"
    assert offering.status == OfferingStatus.IN_REVIEW
    page = client.get(reverse("portal:sponsor_home")).content.decode()
    assert "Harbor Lofts — first round" in page


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


def test_captable_report_pdf_for_the_sponsor(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path
    offering = offering_in("Austin")
    client = signed_in(member_of(offering.sponsor))
    response = client.post(reverse("portal:sponsor_captable_report", args=[offering.pk]))
    assert response.status_code == 302
    pdf = client.get(response["Location"])
    assert pdf.getvalue().startswith(b"%PDF")
    outsider = signed_in(member_of(approved_sponsor(name="Other")))
    assert outsider.get(response["Location"]).status_code == 404
    assert (
        outsider.post(reverse("portal:sponsor_captable_report", args=[offering.pk])).status_code
        == 404
    )
