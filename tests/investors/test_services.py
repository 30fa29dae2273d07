"""Services, database constraints, append-only history and the admin actions."""

from datetime import UTC, datetime, timedelta

import pytest
from django.db import IntegrityError, transaction
from django.test import Client
from django.utils import timezone

from common.errors import Conflict, InvalidTransition, NotAllowed, ValidationFailed
from investors.models import Investor, InvestorDecision
from investors.selectors import investor_limits_summary
from investors.services import (
    add_years,
    investor_accreditation_self_certify,
    investor_accreditation_verify,
    investor_kyc_decide,
    investor_register,
)
from tests.conftest import new_user
from tests.investors.factories import STRONG_PASSWORD, make_investor

pytestmark = [pytest.mark.django_db, pytest.mark.embedded]


def test_register_creates_user_profile_and_initial_history_in_one_go():
    investor = investor_register(
        email="  Bo@Example.COM ", password=STRONG_PASSWORD, legal_name="Bo", country="de"
    )
    assert investor.user.email == "bo@example.com"
    assert investor.country == "DE"
    history = list(investor.decisions.all())
    assert [(h.subject, h.from_status, h.to_status) for h in history] == [("kyc", "", "pending")]


def test_register_refuses_a_password_like_the_email():
    with pytest.raises(ValidationFailed) as raised:
        investor_register(
            email="jonathan.smithers@example.com",
            password="jonathan.smithers",
            legal_name="Jonathan Smithers",
            country="GB",
        )
    assert raised.value.code == "weak_password"
    assert "too similar" in raised.value.detail


def test_staff_cannot_decide_their_own_kyc():
    staff = new_user(is_staff=True)
    investor = make_investor(user=staff)
    with pytest.raises(NotAllowed):
        investor_kyc_decide(
            investor_id=investor.pk, decided_by=staff, decision="approved", reason="me"
        )
    investor.refresh_from_db()
    assert investor.kyc_status == "pending"


def test_rejected_kyc_cannot_be_approved():
    staff = new_user(is_staff=True)
    investor = make_investor()
    investor_kyc_decide(investor_id=investor.pk, decided_by=staff, decision="rejected", reason="r")
    with pytest.raises(InvalidTransition):
        investor_kyc_decide(
            investor_id=investor.pk, decided_by=staff, decision="approved", reason="again"
        )
    investor.refresh_from_db()
    assert investor.kyc_status == "rejected"


def test_self_certify_is_not_allowed_over_a_valid_verification():
    staff = new_user(is_staff=True)
    investor = make_investor(net_worth_minor=2_000_000_00)
    investor_accreditation_verify(
        investor_id=investor.pk, approved_by=staff, method="net_worth",
        document_reference="statements", verifier="Verifier LLC", verified_at=timezone.now(),
    )  # fmt: skip
    with pytest.raises(Conflict):
        investor_accreditation_self_certify(investor=investor)
    investor.refresh_from_db()
    assert investor.accreditation_status == "verified"


def test_self_certify_twice_is_a_no_op():
    investor = make_investor(has_securities_license=True)
    investor_accreditation_self_certify(investor=investor)
    investor_accreditation_self_certify(investor=investor)
    assert investor.decisions.filter(subject="accreditation").count() == 1


def test_verified_accreditation_expiry_shows_in_506c_status():
    staff = new_user(is_staff=True)
    investor = make_investor()
    verified_at = timezone.now()
    investor_accreditation_verify(
        investor_id=investor.pk, approved_by=staff, method="license",
        document_reference="FINRA BrokerCheck 123", verifier="staff", verified_at=verified_at,
    )  # fmt: skip
    investor.refresh_from_db()
    lines = {
        line.exemption: line.decision
        for line in investor_limits_summary(investor=investor, on=verified_at).lines
    }
    assert lines["reg_d_506c"].allowed
    later = verified_at + timedelta(days=90)
    lines = {
        line.exemption: line.decision
        for line in investor_limits_summary(investor=investor, on=later).lines
    }
    assert (lines["reg_d_506c"].allowed, lines["reg_d_506c"].code) == (
        False,
        "accreditation_expired",
    )


def test_limits_summary_prints_for_the_demo():
    investor = make_investor(income_current_year_expected_minor=50_000_00, net_worth_minor=0)
    text = investor_limits_summary(investor=investor, on=timezone.now()).as_text()
    assert "Reg CF (12 months)" in text
    assert "USD 2500.00" in text
    assert "reg-cf-investor-2021-03-15" in text


def test_add_years_handles_29_february():
    assert add_years(datetime(2024, 2, 29, tzinfo=UTC), 2) == datetime(2026, 2, 28, tzinfo=UTC)
    assert add_years(datetime(2025, 6, 1, tzinfo=UTC), 2) == datetime(2027, 6, 1, tzinfo=UTC)


# --- database constraints -------------------------------------------------------------------


@pytest.mark.parametrize(
    "fields",
    [
        pytest.param({"country": "US", "us_state": ""}, id="us-without-state"),
        pytest.param({"country": "US", "us_state": "XX"}, id="us-with-bad-state"),
        pytest.param({"country": "DE", "us_state": "NY"}, id="state-outside-us"),
        pytest.param({"country": "de", "us_state": ""}, id="lower-case-country"),
        pytest.param({"net_worth_minor": -1}, id="negative-net-worth"),
        pytest.param({"income_year_minus_1_minor": -1}, id="negative-income"),
        pytest.param({"kyc_status": "maybe"}, id="unknown-kyc-status"),
        pytest.param({"kyc_status": "approved"}, id="approved-without-time"),
        pytest.param({"accreditation_status": "verified"}, id="verified-without-expiry"),
        pytest.param({"treaty_withholding_rate_basis_points": 1000}, id="treaty-rate-without-w8"),
        pytest.param({"financials_currency": "GBP"}, id="unsupported-currency"),
    ],
)
def test_database_refuses_invalid_rows(fields):
    investor = make_investor()
    with pytest.raises(IntegrityError), transaction.atomic():
        Investor.objects.filter(pk=investor.pk).update(**fields)


def test_history_rows_cannot_be_updated_in_the_database():
    investor = make_investor()
    InvestorDecision.objects.create(
        investor=investor, subject="kyc", from_status="", to_status="pending", reason="r"
    )
    with pytest.raises(IntegrityError), transaction.atomic():
        InvestorDecision.objects.filter(investor=investor).update(reason="rewritten")
    assert InvestorDecision.objects.get(investor=investor).reason == "r"


# --- admin ----------------------------------------------------------------------------------


def admin_client(staff) -> Client:
    staff.is_superuser = True
    staff.save()
    client = Client()
    client.force_login(staff)
    return client


def test_admin_approve_kyc_action_goes_through_the_service():
    staff = new_user(is_staff=True)
    pending = make_investor()
    client = admin_client(staff)
    response = client.post(
        "/admin/investors/investor/",
        {"action": "approve_kyc", "_selected_action": [pending.pk]},
    )
    assert response.status_code == 302
    pending.refresh_from_db()
    assert pending.kyc_status == "approved"
    decision = InvestorDecision.objects.get(investor=pending, subject="kyc")
    assert decision.decided_by == staff


def test_admin_shows_the_tax_id_masked_and_history_is_read_only():
    staff = new_user(is_staff=True, email="boss@example.com")
    investor = make_investor(tax_form="w9", tax_id="555667777", legal_name="Masked Person")
    client = admin_client(staff)
    page = client.get(f"/admin/investors/investor/{investor.pk}/change/")
    assert page.status_code == 200
    html = page.content.decode()
    assert "555667777" not in html
    assert "7777" in html
    assert client.get("/admin/investors/investordecision/add/").status_code == 403


def test_registration_password_is_hashed():
    investor = investor_register(
        email="hash@example.com", password=STRONG_PASSWORD, legal_name="H", country="US",
        us_state="TX",
    )  # fmt: skip
    assert STRONG_PASSWORD not in investor.user.password
