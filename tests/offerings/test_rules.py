"""Validation of an offering's terms (each broken rule has its own code) and the issuer's
12-month exemption cap, through the services."""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from django.utils import timezone

from common.errors import LimitExceeded, NotAllowed, ValidationFailed
from offerings import services
from offerings.exemptions import Exemption
from offerings.models import FundingModel, Offering, OfferingStatus
from offerings.quantities import format_units, units_to_quanta
from tests.conftest import new_user
from tests.offerings.factories import (
    advance,
    approved_sponsor,
    draft_terms,
    issuer_for,
    member_of,
    property_for,
    staff,
)

pytestmark = [pytest.mark.django_db, pytest.mark.embedded]

NOW = timezone.now()


@pytest.fixture
def setup() -> dict[str, Any]:
    sponsor = approved_sponsor()
    return {
        "sponsor": sponsor,
        "member": member_of(sponsor),
        "issuer": issuer_for(sponsor),
        "property": property_for(sponsor),
    }


def create(setup: dict[str, Any], **overrides: Any) -> Offering:
    issuer = overrides.pop("issuer", setup["issuer"])
    draft = draft_terms(property_=setup["property"], issuer=issuer, **overrides)
    return services.offering_create(actor=setup["member"], draft=draft)


@pytest.mark.parametrize(
    ("overrides", "code", "field"),
    [
        ({"closes_at": NOW}, "dates_out_of_order", "closes_at"),
        (
            {"min_investment_units": Decimal(50), "max_investment_units": Decimal(10)},
            "investment_min_above_max",
            "min_investment_units",
        ),
        ({"target_raise_minor": 2_000_000_00}, "target_above_max_raise", "target_raise"),
        # 10,000 units x $100.00 = $1,000,000 of supply
        ({"max_raise_minor": 1_000_000_01}, "max_raise_above_supply", "max_raise"),
        ({"price_per_unit_minor": 0}, "price_not_positive", "price_per_unit"),
        ({"price_per_unit_minor": -5}, "price_not_positive", "price_per_unit"),
        ({"quanta_per_unit": 3}, "quanta_per_unit_invalid", "quanta_per_unit"),
        ({"quanta_per_unit": 10**7}, "quanta_per_unit_invalid", "quanta_per_unit"),
        # $100.01 a unit in thousandths: a quantum would cost 10.001 cents
        (
            {"price_per_unit_minor": 100_01, "quanta_per_unit": 1000},
            "quantum_price_not_whole_cents",
            "price_per_unit",
        ),
        ({"currency": "EUR"}, "currency_mismatch", "currency"),
        (
            {"funding_model": FundingModel.KEEP_WHAT_YOU_RAISE},
            "all_or_nothing_required",
            "funding_model",
        ),
        ({"target_raise_minor": 0}, "target_required", "target_raise"),
        ({"time_zone": "Mars/Olympus_Mons"}, "time_zone_invalid", "time_zone"),
        ({"time_zone": "../../etc/passwd"}, "time_zone_invalid", "time_zone"),
        ({"min_investment_units": Decimal("0.5")}, "units_precision", "min_investment_units"),
        ({"units_authorized": Decimal(0)}, "units_authorized_not_positive", "units_authorized"),
        (
            {"max_investment_units": Decimal(10_001)},
            "max_investment_above_supply",
            "max_investment_units",
        ),
    ],
)
def test_create_refuses_broken_terms_with_a_code_naming_the_field(setup, overrides, code, field):
    with pytest.raises(ValidationFailed) as refused:
        create(setup, **overrides)

    assert refused.value.code == code
    assert refused.value.context["field"] == field
    assert field.split("_")[0] in refused.value.detail
    assert not Offering.objects.exists()


def test_ecsp_offering_must_be_in_euros(setup):
    with pytest.raises(ValidationFailed) as refused:
        create(setup, exemption=Exemption.EU_ECSP)
    assert refused.value.code == "currency_mismatch"
    assert "EUR" in refused.value.detail

    offering = create(setup, exemption=Exemption.EU_ECSP, currency="EUR", time_zone="Europe/Berlin")
    assert offering.currency == "EUR"


def test_reg_d_may_keep_what_it_raises_without_a_target(setup):
    offering = create(
        setup,
        exemption=Exemption.REG_D_506C,
        funding_model=FundingModel.KEEP_WHAT_YOU_RAISE,
        target_raise_minor=0,
    )
    assert offering.target_raise_minor == 0
    assert offering.status == OfferingStatus.DRAFT


def test_fractional_units_are_stored_in_quanta(setup):
    offering = create(
        setup,
        quanta_per_unit=1000,
        units_authorized=Decimal("10000"),
        min_investment_units=Decimal("0.125"),
        max_investment_units=Decimal("250.5"),
    )
    assert offering.units_authorized_quanta == 10_000_000
    assert offering.min_investment_quanta == 125
    assert offering.max_investment_quanta == 250_500
    assert format_units(offering.min_investment_quanta, 1000) == "0.125"


def test_units_finer_than_a_quantum_are_refused_not_rounded():
    assert units_to_quanta(Decimal("1.25"), quanta_per_unit=100, field="x") == 125
    with pytest.raises(ValidationFailed) as refused:
        units_to_quanta(Decimal("1.255"), quanta_per_unit=100, field="x")
    assert refused.value.code == "units_precision"


def test_naive_datetimes_are_read_in_the_offering_time_zone(setup):
    offering = create(
        setup,
        opens_at=datetime(2031, 3, 1, 9, 0),
        closes_at=datetime(2031, 4, 1, 17, 0),
        time_zone="America/New_York",
    )
    assert offering.opens_at == datetime.fromisoformat("2031-03-01T14:00:00+00:00")


def test_only_members_of_an_approved_sponsor_create_offerings(setup):
    outsider = new_user()
    draft = draft_terms(property_=setup["property"], issuer=setup["issuer"])
    with pytest.raises(NotAllowed):
        services.offering_create(actor=outsider, draft=draft)

    pending_applicant = new_user()
    services.sponsor_apply(actor=pending_applicant, name="Not Yet")
    with pytest.raises(NotAllowed):
        services.offering_create(actor=pending_applicant, draft=draft)


def test_another_sponsors_property_is_refused(setup):
    other = approved_sponsor(name="Other")
    draft = draft_terms(property_=property_for(other), issuer=setup["issuer"])
    with pytest.raises(ValidationFailed) as refused:
        services.offering_create(actor=setup["member"], draft=draft)
    assert refused.value.code == "unknown_property"


def test_submit_checks_what_time_has_changed(setup):
    offering = create(setup, opens_at=NOW - timedelta(days=90))  # closed 30 days ago
    with pytest.raises(ValidationFailed) as refused:
        services.offering_submit(actor=setup["member"], offering_id=offering.pk)
    assert refused.value.code == "closes_at_in_past"
    offering.refresh_from_db()
    assert offering.status == OfferingStatus.DRAFT


# --- issuer cap (Reg CF: $5,000,000 per issuer and affiliates per 12 months) ---------------


def test_reg_cf_issuer_cap_counts_the_last_12_months(setup):
    opens = NOW + timedelta(days=10)
    create(
        setup,
        opens_at=opens,
        units_authorized=Decimal(45_000),
        max_raise_minor=4_500_000_00,
    )

    # $4.5M + $1M = $5.5M within 12 months: refused, naming the rule version
    with pytest.raises(LimitExceeded) as refused:
        create(setup, opens_at=opens + timedelta(days=90))
    assert refused.value.code == "issuer_cap_exceeded"
    assert "reg-cf-2021-03-15" in refused.value.detail
    assert "5000000.00 USD" in refused.value.detail

    # 13 months later the first offering is out of the window
    later = create(setup, opens_at=opens + timedelta(days=396))
    assert later.status == OfferingStatus.DRAFT

    # an earlier one that would push the first one's window over the cap is refused too
    with pytest.raises(LimitExceeded):
        create(setup, opens_at=opens - timedelta(days=30))


def test_reg_cf_cap_exactly_reached_is_allowed(setup):
    create(setup, units_authorized=Decimal(40_000), max_raise_minor=4_000_000_00)
    second = create(setup, opens_at=NOW + timedelta(days=40))  # $1M more: exactly $5M
    assert second.max_raise_minor == 1_000_000_00


def test_affiliates_count_towards_the_cap(setup):
    affiliate = issuer_for(
        setup["sponsor"], legal_name="Acme Sister LLC", affiliate_of=setup["issuer"]
    )
    # an affiliate of an affiliate is attached to the group's root
    grandchild = issuer_for(setup["sponsor"], legal_name="Acme Cousin LLC", affiliate_of=affiliate)
    assert grandchild.affiliate_of_id == setup["issuer"].pk

    create(setup, units_authorized=Decimal(45_000), max_raise_minor=4_500_000_00)
    with pytest.raises(LimitExceeded):
        create(setup, issuer=grandchild, opens_at=NOW + timedelta(days=30))

    unrelated = issuer_for(setup["sponsor"], legal_name="Acme Unrelated LLC")
    assert create(setup, issuer=unrelated, opens_at=NOW + timedelta(days=30)).pk


def test_cancelled_offerings_do_not_count(setup):
    big = create(setup, units_authorized=Decimal(45_000), max_raise_minor=4_500_000_00)
    services.offering_cancel(actor=setup["member"], offering_id=big.pk, reason="restructured")
    assert create(setup, opens_at=NOW + timedelta(days=30)).pk


def test_other_exemptions_are_counted_separately(setup):
    create(
        setup,
        exemption=Exemption.REG_D_506C,
        units_authorized=Decimal(100_000),
        max_raise_minor=9_000_000_00,
    )
    assert create(setup).exemption == Exemption.REG_CF


def test_update_checks_the_cap_and_exactly_the_cap_can_be_approved(setup):
    first = create(setup, units_authorized=Decimal(30_000), max_raise_minor=3_000_000_00)
    second = create(setup, opens_at=NOW + timedelta(days=20))
    advance(first, to="approved")

    # $3M + $2M + one cent: refused at update
    with pytest.raises(LimitExceeded):
        services.offering_update(
            actor=setup["member"],
            offering_id=second.pk,
            changes=services.OfferingChanges(
                units_authorized=Decimal(30_000), max_raise_minor=2_000_000_01
            ),
        )
    second.refresh_from_db()
    assert second.max_raise_minor == 1_000_000_00

    # $3M + $2M = $5M exactly: submitted and approved
    services.offering_update(
        actor=setup["member"],
        offering_id=second.pk,
        changes=services.OfferingChanges(
            units_authorized=Decimal(20_000), max_raise_minor=2_000_000_00
        ),
    )
    submitted = services.offering_submit(actor=setup["member"], offering_id=second.pk)
    assert submitted.status == OfferingStatus.IN_REVIEW
    approved = services.offering_approve(actor=staff(), offering_id=second.pk)
    assert approved.status == OfferingStatus.APPROVED


def test_update_rescales_quantities_when_quanta_per_unit_changes(setup):
    offering = create(setup, min_investment_units=Decimal(2))
    updated = services.offering_update(
        actor=setup["member"],
        offering_id=offering.pk,
        changes=services.OfferingChanges(quanta_per_unit=100),
    )
    assert updated.quanta_per_unit == 100
    assert updated.units_authorized_quanta == 1_000_000
    assert updated.min_investment_quanta == 200

    refused_price = services.OfferingChanges(quanta_per_unit=1000, price_per_unit_minor=100_05)
    with pytest.raises(ValidationFailed) as refused:
        services.offering_update(
            actor=setup["member"], offering_id=offering.pk, changes=refused_price
        )
    assert refused.value.code == "quantum_price_not_whole_cents"
    repriced = services.offering_update(
        actor=setup["member"],
        offering_id=offering.pk,
        changes=services.OfferingChanges(price_per_unit_minor=101_00),
    )
    assert repriced.price_per_unit_minor == 101_00
    assert repriced.quanta_per_unit == 100
