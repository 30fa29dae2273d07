"""Subscriptions through the service layer: reserve or waitlist, every refusal with its code and
no side effect, the exemptions' rule packs, signing, cancel windows, expiry and the waitlist.

The helpers at the top are shared by the other test_subscriptions*.py modules."""

from __future__ import annotations

import hashlib
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
import time_machine
from django.core.files.base import ContentFile
from django.db import DatabaseError, IntegrityError, connection, transaction
from django.utils import timezone

from captable import subscriptions
from captable.models import (
    SUBSCRIPTION_HOLDING_STATUSES,
    Subscription,
    SubscriptionAgreement,
    SubscriptionStatusChange,
)
from captable.subscription_selectors import subscription_agreement_document, waitlist_position
from captable.tasks import expire_subscriptions
from common.errors import (
    Conflict,
    DomainError,
    InvalidTransition,
    LimitExceeded,
    NotAllowed,
    NotFound,
    ValidationFailed,
)
from common.models import User
from investors.models import Investor
from offerings import services as offering_services
from offerings.exemptions import Exemption
from offerings.models import FundingModel, Offering
from offerings.selectors import offerings_catalog_version
from tests.conftest import new_user
from tests.investors.factories import make_investor
from tests.offerings.factories import live_offering, member_of

pytestmark = [pytest.mark.django_db, pytest.mark.embedded]

RICH = 2_000_000_00  # net worth above $1M: accredited, no Reg CF / Reg A limit


# --- helpers (also used by the other subscription test modules) -----------------------------------


def open_offering(**overrides: Any) -> Offering:
    """A live offering already inside its window: Reg CF, $100.00 a unit, 10,000 units, min 1,
    max 10,000 per investor, closing 60 days after it opened (an hour ago)."""
    overrides.setdefault("opens_at", timezone.now() - timedelta(hours=1))
    for name in ("units_authorized", "min_investment_units", "max_investment_units"):
        if isinstance(overrides.get(name), int):
            overrides[name] = Decimal(overrides[name])
    return live_offering(**overrides)


def old_user(days: int = 365) -> User:
    """A user whose account predates today by `days` (a pre-existing relationship)."""
    user = new_user()
    User.objects.filter(pk=user.pk).update(date_joined=timezone.now() - timedelta(days=days))
    user.refresh_from_db()
    return user


def kyc_investor(**fields: Any) -> Investor:
    values: dict[str, Any] = {
        "kyc_status": "approved",
        "kyc_decided_at": timezone.now(),
        "net_worth_minor": RICH,
    }
    values.update(fields)
    return make_investor(**values)


def subscribe(investor: Investor, offering: Offering, units: int, **kwargs: Any) -> Subscription:
    return subscriptions.subscription_create(
        actor=investor.user,
        offering_id=offering.pk,
        quanta=units * offering.quanta_per_unit,
        **kwargs,
    )


def reserved_quanta(offering: Offering) -> int:
    return Offering.objects.values_list("units_reserved_quanta", flat=True).get(pk=offering.pk)


def assert_reservations_consistent(offering: Offering) -> None:
    """The offering's counter equals the quanta of the subscriptions holding units, and the
    waitlist waits only while its head does not fit."""
    holding = Subscription.objects.filter(
        offering=offering, status__in=SUBSCRIPTION_HOLDING_STATUSES
    )
    fresh = Offering.objects.get(pk=offering.pk)
    assert fresh.units_reserved_quanta == sum(s.quanta for s in holding)
    assert fresh.units_reserved_quanta + fresh.units_issued_quanta <= subscriptions.supply_quanta(
        fresh
    )
    head = Subscription.objects.filter(offering=offering, status="waitlisted").order_by("pk")
    if head.exists():
        available = subscriptions.supply_quanta(fresh) - fresh.units_reserved_quanta
        assert head.first().quanta > available  # type: ignore[union-attr]


def statuses(*subscriptions_: Subscription) -> list[str]:
    return [Subscription.objects.get(pk=s.pk).status for s in subscriptions_]


def snapshot(offering: Offering) -> tuple[int, int, int, Any]:
    fresh = Offering.objects.get(pk=offering.pk)
    return (
        Subscription.objects.count(),
        SubscriptionStatusChange.objects.count(),
        fresh.units_reserved_quanta,
        fresh.updated_at,
    )


def refused(call: Any, kind: type[DomainError], code: str, offering: Offering) -> DomainError:
    """`call()` raises `kind` with `code`, and nothing changed."""
    before = snapshot(offering)
    with pytest.raises(kind) as caught:
        call()
    assert caught.value.code == code, caught.value.detail
    assert snapshot(offering) == before
    return caught.value


# --- reserving ------------------------------------------------------------------------------------


def test_subscribing_reserves_units_with_the_decision_fee_and_history(settings):
    # given a Reg CF offering with a 1.5% processing fee capped at $100.00
    settings.SUBSCRIPTION_RESERVATION_TTL_HOURS = 10
    offering = open_offering()
    Offering.objects.filter(pk=offering.pk).update(
        investor_fee_basis_points=150, investor_fee_cap_minor=100_00
    )
    offering.refresh_from_db()
    investor = kyc_investor()
    version_before = offerings_catalog_version()

    # when the investor subscribes for 20 units and then 100 units
    small = subscribe(investor, offering, 20)
    large = subscribe(investor, offering, 100)

    # then both are reserved, the counter rose by exactly their quanta, the fee is exact
    assert (small.status, large.status) == ("reserved", "reserved")
    assert reserved_quanta(offering) == 120
    assert (small.amount_minor, small.fee_minor, small.currency) == (2_000_00, 30_00, "USD")
    assert (large.amount_minor, large.fee_minor) == (10_000_00, 100_00)  # 150.00 capped
    assert small.compliance_code == "ok"
    assert small.rule_version == "reg-cf-investor-2021-03-15"
    assert "accredited" in small.compliance_reason
    assert small.reserved_at is not None
    assert small.expires_at == small.reserved_at + timedelta(hours=10)
    assert waitlist_position(small) is None
    history = list(SubscriptionStatusChange.objects.filter(subscription=small))
    assert [(h.from_status, h.to_status, h.actor_id) for h in history] == [
        ("", "reserved", investor.user_id)
    ]
    # and the offering's terms did not change: the reservation is a counter (the public list,
    # cached on the catalog version, shows it within its TTL)
    assert offerings_catalog_version() == version_before
    assert_reservations_consistent(offering)


def test_units_finer_than_a_quantum_are_exact_in_quanta():
    offering = open_offering(quanta_per_unit=1000, price_per_unit_minor=100_00)
    investor = kyc_investor()
    subscription = subscriptions.subscription_create(
        actor=investor.user, offering_id=offering.pk, quanta=12_345
    )
    assert (subscription.quanta, subscription.amount_minor) == (12_345, 1_234_50)
    assert reserved_quanta(offering) == 12_345


# --- refusals: each with its code, and nothing written --------------------------------------------


def test_a_user_without_an_investor_profile_is_refused():
    offering = open_offering()
    user = new_user()
    refused(
        lambda: subscriptions.subscription_create(actor=user, offering_id=offering.pk, quanta=1),
        NotFound,
        "investor_profile_missing",
        offering,
    )


def test_kyc_must_be_approved():
    offering = open_offering()
    for kyc in ({"kyc_status": "pending", "kyc_decided_at": None}, {"kyc_status": "rejected"}):
        investor = kyc_investor(**kyc)
        refused(
            lambda investor=investor: subscribe(investor, offering, 1),
            NotAllowed,
            "kyc_not_approved",
            offering,
        )


def test_units_must_be_positive():
    offering = open_offering()
    investor = kyc_investor()
    refused(
        lambda: subscribe(investor, offering, 0), ValidationFailed, "units_not_positive", offering
    )


def test_the_offering_must_be_open_now():
    # given an offering that went live before its opening time
    investor = kyc_investor()
    early = open_offering(opens_at=timezone.now() + timedelta(days=1))
    refused(lambda: subscribe(investor, early, 1), Conflict, "offering_not_open_yet", early)

    # and one whose window is over
    offering = open_offering()
    with time_machine.travel(offering.closes_at + timedelta(seconds=1), tick=False):
        refused(
            lambda: subscribe(investor, offering, 1), Conflict, "offering_window_closed", offering
        )


def test_an_offering_that_is_not_live_is_not_found_or_refused():
    investor = kyc_investor()
    offering = open_offering()
    offering_services.offering_cancel(
        actor=member_of(offering.sponsor), offering_id=offering.pk, reason="Deal fell through."
    )
    refused(lambda: subscribe(investor, offering, 1), NotFound, "offering_not_found", offering)
    # a sponsor member still sees it, and is told it is not live
    member = member_of(offering.sponsor)
    insider = kyc_investor(user=member)
    refused(lambda: subscribe(insider, offering, 1), Conflict, "offering_not_live", offering)


def test_minimum_and_maximum_count_all_live_subscriptions_of_the_investor():
    offering = open_offering(min_investment_units=5, max_investment_units=10)
    investor = kyc_investor()
    refused(
        lambda: subscribe(investor, offering, 4),
        LimitExceeded,
        "below_minimum_investment",
        offering,
    )
    subscribe(investor, offering, 5)
    subscribe(investor, offering, 3)  # 8 in all: a top-up below the minimum is fine
    error = refused(
        lambda: subscribe(investor, offering, 3),
        LimitExceeded,
        "above_maximum_investment",
        offering,
    )
    assert error.context["held_quanta"] == 8
    subscribe(investor, offering, 2)  # exactly the maximum
    assert reserved_quanta(offering) == 10


def test_a_cancelled_subscription_no_longer_counts_towards_the_maximum():
    offering = open_offering(max_investment_units=10)
    investor = kyc_investor()
    first = subscribe(investor, offering, 8)
    subscriptions.subscription_cancel(actor=investor.user, subscription_id=first.pk)
    assert subscribe(investor, offering, 10).status == "reserved"


# --- exemptions -----------------------------------------------------------------------------------


def test_reg_cf_12_month_limit_counts_other_reg_cf_subscriptions():
    # given a non-accredited investor: income $50k and net worth $50k → $2,500 a year
    investor = kyc_investor(income_current_year_expected_minor=50_000_00, net_worth_minor=50_000_00)
    first, second = open_offering(), open_offering()

    # when they commit $2,000 to one Reg CF offering
    taken = subscribe(investor, first, 20)
    assert taken.rule_version == "reg-cf-investor-2021-03-15"
    assert "remaining USD 2500.00" in taken.compliance_reason

    # then another Reg CF offering takes at most the $500 left
    error = refused(
        lambda: subscribe(investor, second, 6), LimitExceeded, "reg_cf_limit_exceeded", second
    )
    assert error.context["amount_allowed_minor"] == 500_00
    assert error.context["rule_version"] == "reg-cf-investor-2021-03-15"
    assert subscribe(investor, second, 5).status == "reserved"
    refused(lambda: subscribe(investor, first, 1), LimitExceeded, "reg_cf_limit_reached", first)


def test_reg_cf_limit_worked_example_five_percent_of_the_greater_figure():
    # income $150k, net worth $80k: one below $124k → greater of $2,500 and 5% of $150k = $7,500
    investor = kyc_investor(
        income_current_year_expected_minor=150_000_00, net_worth_minor=80_000_00
    )
    offering = open_offering()
    refused(
        lambda: subscribe(investor, offering, 76), LimitExceeded, "reg_cf_limit_exceeded", offering
    )
    assert subscribe(investor, offering, 75).amount_minor == 7_500_00


def test_reg_a_tier2_ten_percent_per_offering():
    # income $60k, net worth $40k, not accredited → 10% of $60k = $6,000 in this offering
    offering = open_offering(
        exemption=Exemption.REG_A_TIER2, funding_model=FundingModel.KEEP_WHAT_YOU_RAISE
    )
    investor = kyc_investor(income_current_year_expected_minor=60_000_00, net_worth_minor=40_000_00)
    refused(
        lambda: subscribe(investor, offering, 61), LimitExceeded, "reg_a_limit_exceeded", offering
    )
    first = subscribe(investor, offering, 40)
    assert first.rule_version == "reg-a-tier2-investor-2021-03-15"
    refused(
        lambda: subscribe(investor, offering, 21), LimitExceeded, "reg_a_limit_exceeded", offering
    )
    assert subscribe(investor, offering, 20).status == "reserved"
    # an accredited investor has no limit
    assert subscribe(kyc_investor(), offering, 500).status == "reserved"


def reg_d_506b_offering() -> Offering:
    return open_offering(
        exemption=Exemption.REG_D_506B, funding_model=FundingModel.KEEP_WHAT_YOU_RAISE
    )


def test_reg_d_506b_needs_a_pre_existing_relationship():
    offering = reg_d_506b_offering()
    newcomer = kyc_investor(user=new_user(), accreditation_status="self_certified")
    # no relationship: the offering is not even visible (no general solicitation)
    refused(lambda: subscribe(newcomer, offering, 1), NotFound, "offering_not_found", offering)
    # a sponsor member sees it, but is refused for want of a relationship
    insider = kyc_investor(user=member_of(offering.sponsor), accreditation_status="self_certified")
    refused(
        lambda: subscribe(insider, offering, 1),
        NotAllowed,
        "no_pre_existing_relationship",
        offering,
    )
    # an investor of long standing may subscribe
    regular = kyc_investor(user=old_user(), accreditation_status="self_certified")
    subscription = subscribe(regular, offering, 1)
    assert (subscription.rule_version, subscription.is_non_accredited_purchaser) == (
        "reg-d-2020-01-01",
        False,
    )


def test_reg_d_506b_at_most_35_sophisticated_non_accredited_purchasers():
    offering = reg_d_506b_offering()
    unsophisticated = kyc_investor(user=old_user())
    refused(
        lambda: subscribe(unsophisticated, offering, 1),
        LimitExceeded,
        "not_sophisticated",
        offering,
    )
    purchasers = [kyc_investor(user=old_user(), is_sophisticated=True) for _ in range(35)]
    for investor in purchasers:
        assert subscribe(investor, offering, 1).is_non_accredited_purchaser
    late = kyc_investor(user=old_user(), is_sophisticated=True)
    refused(
        lambda: subscribe(late, offering, 1), LimitExceeded, "non_accredited_quota_full", offering
    )
    # one of the 35 subscribing again is still one purchaser; accredited investors are welcome
    assert subscribe(purchasers[0], offering, 1).status == "reserved"
    accredited = kyc_investor(user=old_user(), accreditation_status="self_certified")
    assert subscribe(accredited, offering, 1).status == "reserved"
    # a purchaser who cancels frees a place
    first = Subscription.objects.filter(investor=purchasers[1]).get()
    subscriptions.subscription_cancel(actor=purchasers[1].user, subscription_id=first.pk)
    assert subscribe(late, offering, 1).is_non_accredited_purchaser


def test_reg_d_506c_needs_verified_unexpired_accreditation():
    offering = open_offering(
        exemption=Exemption.REG_D_506C, funding_model=FundingModel.KEEP_WHAT_YOU_RAISE
    )
    now = timezone.now()
    self_certified = kyc_investor(accreditation_status="self_certified")
    refused(
        lambda: subscribe(self_certified, offering, 1),
        LimitExceeded,
        "accreditation_not_verified",
        offering,
    )
    lapsed = kyc_investor(
        accreditation_status="verified", accreditation_expires_at=now - timedelta(days=1)
    )
    refused(
        lambda: subscribe(lapsed, offering, 1), LimitExceeded, "accreditation_expired", offering
    )
    verified = kyc_investor(
        accreditation_status="verified", accreditation_expires_at=now + timedelta(days=30)
    )
    assert subscribe(verified, offering, 1).rule_version == "reg-d-2020-01-01"


def ecsp_offering() -> Offering:
    return open_offering(exemption=Exemption.EU_ECSP, currency="EUR")


def eu_investor(**fields: Any) -> Investor:
    values: dict[str, Any] = {
        "country": "DE",
        "us_state": "",
        "financials_currency": "EUR",
        "net_worth_minor": 100_000_00,  # warning threshold: 5% = EUR 5,000
    }
    values.update(fields)
    return kyc_investor(**values)


def test_ecsp_knowledge_test_warning_acknowledgement_and_reflection_period():
    offering = ecsp_offering()
    untested = eu_investor()
    refused(
        lambda: subscribe(untested, offering, 1), LimitExceeded, "knowledge_test_required", offering
    )
    tested = eu_investor(knowledge_test_valid_until=timezone.now() + timedelta(days=700))
    # EUR 6,000 > EUR 5,000: the risk warning must be acknowledged
    refused(
        lambda: subscribe(tested, offering, 60), LimitExceeded, "warning_not_acknowledged", offering
    )
    below = subscribe(tested, offering, 50)  # EUR 5,000: no acknowledgement needed
    assert below.risk_warning_acknowledged_at is None
    above = subscribe(tested, offering, 60, risk_warning_acknowledged=True)
    assert above.currency == "EUR"
    assert above.rule_version == "ecsp-2021-11-10"
    assert above.reserved_at is not None
    assert above.risk_warning_acknowledged_at == above.reserved_at
    assert above.revocable_until == above.reserved_at + timedelta(days=4)
    # a sophisticated investor has no knowledge test, warning or reflection period
    sophisticated = eu_investor(is_sophisticated=True)
    assert subscribe(sophisticated, offering, 100).revocable_until is None


# --- supply and the waitlist ----------------------------------------------------------------------


def small_offering(units: int = 10, **overrides: Any) -> Offering:
    return open_offering(
        units_authorized=units,
        max_investment_units=units,
        target_raise_minor=units * 100_00,
        max_raise_minor=units * 100_00,
        **overrides,
    )


def test_when_supply_runs_out_subscriptions_are_waitlisted_in_order():
    offering = small_offering(10)
    a, b, c, d = (kyc_investor() for _ in range(4))
    assert subscribe(a, offering, 6).status == "reserved"
    assert subscribe(b, offering, 4).status == "reserved"
    third, fourth = subscribe(c, offering, 3), subscribe(d, offering, 1)
    assert (third.status, fourth.status) == ("waitlisted", "waitlisted")
    assert (waitlist_position(third), waitlist_position(fourth)) == (1, 2)
    assert (third.reserved_at, third.expires_at) == (None, None)
    assert reserved_quanta(offering) == 10
    assert_reservations_consistent(offering)


def test_max_raise_caps_the_units_for_sale():
    # 10,000 units at $100 authorized, but at most $500,000 raised: 5,000 units for sale
    offering = open_offering(target_raise_minor=100_000_00, max_raise_minor=500_000_00)
    assert subscriptions.supply_quanta(offering) == 5_000
    assert subscribe(kyc_investor(), offering, 5_000).status == "reserved"
    assert subscribe(kyc_investor(), offering, 1).status == "waitlisted"


def test_a_cancellation_promotes_the_waitlist_first_come_first_served():
    # given a sold-out offering with three investors waiting (5, 1 and 1 units)
    offering = small_offering(10)
    a, b, c, d, e = (kyc_investor() for _ in range(5))
    first, second = subscribe(a, offering, 6), subscribe(b, offering, 4)
    big, small, smaller = (
        subscribe(c, offering, 5),
        subscribe(d, offering, 1),
        subscribe(e, offering, 1),
    )

    # when 4 units are released: the head (5) does not fit, and nobody jumps the queue
    subscriptions.subscription_cancel(actor=b.user, subscription_id=second.pk)
    assert statuses(big, small, smaller) == ["waitlisted"] * 3
    assert reserved_quanta(offering) == 6
    # a newcomer joins the queue too, although 4 units are free
    late = subscribe(kyc_investor(), offering, 1)
    assert (late.status, waitlist_position(late)) == ("waitlisted", 4)
    assert_reservations_consistent(offering)

    # when 6 more are released, the queue is served in order while it fits
    subscriptions.subscription_cancel(actor=a.user, subscription_id=first.pk)
    assert statuses(big, small, smaller, late) == ["reserved"] * 4
    assert reserved_quanta(offering) == 8
    promoted = SubscriptionStatusChange.objects.filter(subscription=big).last()
    assert promoted is not None
    assert (promoted.from_status, promoted.to_status, promoted.actor_id) == (
        "waitlisted",
        "reserved",
        None,
    )
    assert Subscription.objects.get(pk=big.pk).expires_at is not None
    assert_reservations_consistent(offering)


def test_leaving_the_waitlist_moves_everyone_up():
    offering = small_offering(2)
    subscribe(kyc_investor(), offering, 2)
    first_investor, second_investor = kyc_investor(), kyc_investor()
    first, second = subscribe(first_investor, offering, 1), subscribe(second_investor, offering, 1)
    assert (waitlist_position(first), waitlist_position(second)) == (1, 2)
    subscriptions.subscription_cancel(actor=first_investor.user, subscription_id=first.pk)
    assert waitlist_position(Subscription.objects.get(pk=second.pk)) == 1
    assert reserved_quanta(offering) == 2  # a waitlisted subscription held nothing


def test_expiry_releases_unfunded_reservations_and_promotes_the_waitlist(settings):
    settings.SUBSCRIPTION_RESERVATION_TTL_HOURS = 24
    offering = small_offering(10)
    a, b, c = kyc_investor(), kyc_investor(), kyc_investor()
    start = timezone.now()
    with time_machine.travel(start, tick=False):
        reserved = subscribe(a, offering, 6)
    with time_machine.travel(start + timedelta(hours=2), tick=False):
        signed = subscribe(b, offering, 4)
        subscriptions.subscription_sign(
            actor=b.user, subscription_id=signed.pk, typed_name=b.legal_name, ip_address=None
        )
        waiting = subscribe(c, offering, 7)
    assert waiting.status == "waitlisted"

    # before the TTL nothing expires
    with time_machine.travel(start + timedelta(hours=23), tick=False):
        assert expire_subscriptions.apply().get() == 0
    # after it, the first reservation expires; 6 free units do not fit the 7 waiting
    with time_machine.travel(start + timedelta(hours=25), tick=False):
        assert subscriptions.subscriptions_expire_due() == [reserved.pk]
        assert statuses(reserved, signed, waiting) == ["expired", "signed", "waitlisted"]
    # after the signed one expires too, the waitlist is served
    with time_machine.travel(start + timedelta(hours=27), tick=False):
        assert expire_subscriptions.apply().get() == 1
        assert statuses(reserved, signed, waiting) == ["expired", "expired", "reserved"]
        promoted = Subscription.objects.get(pk=waiting.pk)
        assert promoted.expires_at == timezone.now() + timedelta(hours=24)
        # running it again changes nothing
        assert subscriptions.subscriptions_expire_due() == []
    assert reserved_quanta(offering) == 7
    expired = SubscriptionStatusChange.objects.filter(subscription=reserved).last()
    assert expired is not None
    assert (expired.from_status, expired.to_status, expired.actor_id) == (
        "reserved",
        "expired",
        None,
    )
    assert_reservations_consistent(offering)


# --- signing --------------------------------------------------------------------------------------


@pytest.fixture
def _media_in_tmp(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path


def test_signing_stores_the_agreement_hash_time_ip_and_version():
    offering = open_offering()
    investor = kyc_investor(legal_name="Ada  Lovelace")
    subscription = subscribe(investor, offering, 3)
    refused(
        lambda: subscriptions.subscription_sign(
            actor=investor.user,
            subscription_id=subscription.pk,
            typed_name="Ada Byron",
            ip_address="203.0.113.9",
        ),
        ValidationFailed,
        "signature_name_mismatch",
        offering,
    )

    shown = subscription_agreement_document(Subscription.objects.get(pk=subscription.pk))
    signed = subscriptions.subscription_sign(
        actor=investor.user,
        subscription_id=subscription.pk,
        typed_name="  ada lovelace ",
        ip_address="203.0.113.9",
        agreement_sha256=shown.sha256,
    )

    assert signed.status == "signed"
    agreement = SubscriptionAgreement.objects.get(subscription=subscription)
    assert agreement.document_sha256 == hashlib.sha256(agreement.document_text.encode()).hexdigest()
    assert agreement.document_sha256 == shown.sha256
    assert (agreement.typed_name, agreement.ip_address) == ("ada lovelace", "203.0.113.9")
    assert agreement.document_version == "agreement-1/template-v0"
    assert agreement.signed_at == Subscription.objects.get(pk=subscription.pk).signed_at
    assert "Units: 3 at USD 100.00 per unit" in agreement.document_text
    assert offering.title in agreement.document_text
    # signing twice is an invalid transition
    with pytest.raises(InvalidTransition):
        subscriptions.subscription_sign(
            actor=investor.user,
            subscription_id=subscription.pk,
            typed_name="Ada Lovelace",
            ip_address=None,
        )


@pytest.mark.usefixtures("_media_in_tmp")
def test_a_new_template_version_changes_the_agreement_and_a_stale_hash_is_refused():
    offering = open_offering()
    investor = kyc_investor()
    subscription = subscribe(investor, offering, 1)
    shown = subscription_agreement_document(subscription)

    document = offering_services.offering_document_upload(
        actor=member_of(offering.sponsor),
        offering_id=offering.pk,
        kind="subscription_agreement_template",
        file=ContentFile(b"Subscription agreement template, version 1", name="template.pdf"),
    )

    error = refused(
        lambda: subscriptions.subscription_sign(
            actor=investor.user,
            subscription_id=subscription.pk,
            typed_name=investor.legal_name,
            ip_address="198.51.100.1",
            agreement_sha256=shown.sha256,
        ),
        Conflict,
        "agreement_changed",
        offering,
    )
    current = subscription_agreement_document(Subscription.objects.get(pk=subscription.pk))
    assert error.context["agreement_sha256"] == current.sha256 != shown.sha256
    assert document.sha256 in current.text
    subscriptions.subscription_sign(
        actor=investor.user,
        subscription_id=subscription.pk,
        typed_name=investor.legal_name,
        ip_address="198.51.100.1",
        agreement_sha256=current.sha256,
    )
    agreement = SubscriptionAgreement.objects.get(subscription=subscription)
    assert (agreement.document_version, agreement.template_document_id) == (
        "agreement-1/template-v1",
        document.pk,
    )


def test_a_waitlisted_or_expired_reservation_cannot_be_signed(settings):
    settings.SUBSCRIPTION_RESERVATION_TTL_HOURS = 1
    offering = small_offering(1)
    holder, waiting_investor = kyc_investor(), kyc_investor()
    held = subscribe(holder, offering, 1)
    waiting = subscribe(waiting_investor, offering, 1)

    def sign(investor: Investor, subscription: Subscription) -> Any:
        return lambda: subscriptions.subscription_sign(
            actor=investor.user,
            subscription_id=subscription.pk,
            typed_name=investor.legal_name,
            ip_address=None,
        )

    refused(sign(waiting_investor, waiting), Conflict, "subscription_waitlisted", offering)
    with time_machine.travel(timezone.now() + timedelta(hours=2), tick=False):
        refused(sign(holder, held), Conflict, "reservation_expired", offering)


def test_signature_and_history_rows_are_append_only():
    offering = open_offering()
    investor = kyc_investor()
    subscription = subscribe(investor, offering, 1)
    subscriptions.subscription_sign(
        actor=investor.user,
        subscription_id=subscription.pk,
        typed_name=investor.legal_name,
        ip_address=None,
    )
    for table in ("captable_subscriptionagreement", "captable_subscriptionstatuschange"):
        column = "typed_name" if table.endswith("agreement") else "reason"
        with (
            pytest.raises(DatabaseError) as caught,
            transaction.atomic(),
            connection.cursor() as cursor,
        ):
            cursor.execute(f"UPDATE {table} SET {column} = 'forged'")
        assert "append-only" in str(caught.value)
    assert not SubscriptionStatusChange.objects.filter(reason="forged").exists()


def test_the_database_refuses_impossible_subscriptions():
    offering = open_offering()
    investor = kyc_investor()
    base = {
        "offering": offering,
        "investor": investor,
        "currency": "USD",
        "compliance_code": "ok",
        "compliance_reason": "test",
        "rule_version": "test",
    }
    impossible = [
        {"status": "waitlisted", "quanta": 0, "amount_minor": 1},
        {"status": "waitlisted", "quanta": 1, "amount_minor": 1, "fee_minor": -1},
        {"status": "bogus", "quanta": 1, "amount_minor": 1},
        {"status": "reserved", "quanta": 1, "amount_minor": 1},  # no reserved_at / expires_at
        {"status": "waitlisted", "quanta": 1, "amount_minor": 1, "reserved_at": timezone.now()},
    ]
    for fields in impossible:
        with pytest.raises(IntegrityError), transaction.atomic():
            Subscription.objects.create(**base, **fields)


# --- cancelling -----------------------------------------------------------------------------------


def at(moment: datetime) -> Any:
    return time_machine.travel(moment, tick=False)


def test_reg_cf_cancel_until_48_hours_before_the_deadline():
    offering = open_offering()
    investor = kyc_investor()
    deadline = offering.closes_at
    with at(deadline - timedelta(hours=50)):
        early, late = subscribe(investor, offering, 1), subscribe(investor, offering, 2)
    with at(deadline - timedelta(hours=49)):
        cancelled = subscriptions.subscription_cancel(
            actor=investor.user, subscription_id=early.pk, reason="Changed my mind."
        )
    assert cancelled.status == "cancelled"
    assert SubscriptionStatusChange.objects.filter(
        subscription=early, to_status="cancelled", reason="Changed my mind."
    ).exists()
    with at(deadline - timedelta(hours=47)):
        error = refused(
            lambda: subscriptions.subscription_cancel(actor=investor.user, subscription_id=late.pk),
            Conflict,
            "cancel_window_closed",
            offering,
        )
    assert error.context["cancel_deadline"] == (deadline - timedelta(hours=48)).isoformat()
    assert statuses(late) == ["reserved"]
    assert reserved_quanta(offering) == 2


@pytest.mark.parametrize("exemption", [Exemption.REG_A_TIER2, Exemption.REG_D_506C])
def test_other_exemptions_cancel_until_the_deadline(exemption):
    offering = open_offering(exemption=exemption, funding_model=FundingModel.KEEP_WHAT_YOU_RAISE)
    investor = kyc_investor(
        accreditation_status="verified",
        accreditation_expires_at=offering.closes_at + timedelta(days=30),
    )
    with at(offering.closes_at - timedelta(hours=50)):
        subscription = subscribe(investor, offering, 1)
    with at(offering.closes_at - timedelta(hours=1)):
        subscriptions.subscription_cancel(actor=investor.user, subscription_id=subscription.pk)
    assert statuses(subscription) == ["cancelled"]
    assert reserved_quanta(offering) == 0


def test_ecsp_reflection_period_allows_revoking_after_the_offering_stopped_being_live():
    offering = ecsp_offering()
    tested = eu_investor(knowledge_test_valid_until=timezone.now() + timedelta(days=700))
    sophisticated = eu_investor(is_sophisticated=True)
    revocable, binding = subscribe(tested, offering, 1), subscribe(sophisticated, offering, 1)
    # the offering leaves `live` (a close in progress)
    Offering.objects.filter(pk=offering.pk).update(status="closing")
    with at(timezone.now() + timedelta(days=3)):
        subscriptions.subscription_cancel(actor=tested.user, subscription_id=revocable.pk)
        refused(
            lambda: subscriptions.subscription_cancel(
                actor=sophisticated.user, subscription_id=binding.pk
            ),
            Conflict,
            "offering_not_live",
            offering,
        )
    assert statuses(revocable, binding) == ["cancelled", "reserved"]


def test_cancel_refusals():
    offering = open_offering()
    investor, stranger = kyc_investor(), kyc_investor()
    subscription = subscribe(investor, offering, 1)
    refused(
        lambda: subscriptions.subscription_cancel(
            actor=stranger.user, subscription_id=subscription.pk
        ),
        NotFound,
        "subscription_not_found",
        offering,
    )
    # (a funded subscription is cancelled with a refund: tests/captable/test_payments.py)
    other = subscribe(investor, offering, 1)
    subscriptions.subscription_cancel(actor=investor.user, subscription_id=other.pk)
    refused(
        lambda: subscriptions.subscription_cancel(actor=investor.user, subscription_id=other.pk),
        InvalidTransition,
        "invalid_transition",
        offering,
    )
