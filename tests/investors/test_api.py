"""Investor endpoints through HTTP with JSON."""

from datetime import timedelta

import pytest
import time_machine
from django.db import connection
from django.utils import timezone

from common.models import User
from investors.knowledge_test import QUESTIONS
from investors.models import Investor, InvestorDecision
from tests.conftest import bearer, new_user
from tests.investors.factories import STRONG_PASSWORD, make_investor, patch_json, post_json, usd

pytestmark = [pytest.mark.django_db, pytest.mark.embedded]

REGISTER = "/api/v1/auth/register"
ME = "/api/v1/investors/me"


def register(client, **overrides):
    body = {
        "email": "Ann.Investor@Example.com",
        "password": STRONG_PASSWORD,
        "legal_name": "Ann Investor",
        "country": "US",
        "us_state": "CA",
    }
    body.update(overrides)
    return post_json(client, REGISTER, body)


# --- registration ---------------------------------------------------------------------------


def test_register_returns_201_and_a_token_that_works_on_me(api_client):
    response = register(api_client)
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["investor"]["email"] == "ann.investor@example.com"
    assert body["investor"]["kyc_status"] == "pending"
    assert body["token"].startswith("bb_")
    user = User.objects.get(email="ann.investor@example.com")
    assert user.username == "ann.investor@example.com"
    assert user.check_password(STRONG_PASSWORD)
    assert "password" not in response.content.decode()

    me = api_client.get(ME, HTTP_AUTHORIZATION=f"Bearer {body['token']}")
    assert me.status_code == 200
    assert me.json()["legal_name"] == "Ann Investor"
    assert me.json()["id"] == body["investor"]["id"]


def test_registered_user_can_also_log_in_with_the_token_endpoint(api_client):
    register(api_client)
    response = post_json(
        api_client,
        "/api/v1/auth/token",
        {"email": "ann.investor@example.com", "password": STRONG_PASSWORD},
    )
    assert response.status_code == 200


@pytest.mark.parametrize(
    ("password", "problem"),
    [
        pytest.param("short1", "too short", id="too-short"),
        pytest.param("1234567890123", "entirely numeric", id="numeric"),
        pytest.param("password1234", "too common", id="common"),
    ],
)
def test_weak_password_is_refused_naming_the_problem(api_client, password, problem):
    response = register(api_client, password=password)
    assert response.status_code == 400
    body = response.json()
    assert body["code"] == "weak_password"
    assert problem in body["detail"]
    assert not User.objects.filter(email="ann.investor@example.com").exists()


def test_duplicate_email_is_409_whatever_the_case(api_client):
    assert register(api_client).status_code == 201
    response = register(api_client, email="ANN.INVESTOR@example.com")
    assert response.status_code == 409
    assert response.json()["code"] == "email_taken"
    assert User.objects.count() == 1


def test_us_investor_needs_a_state(api_client):
    response = register(api_client, us_state="")
    assert response.status_code == 400
    assert response.json()["code"] == "us_state_required"
    assert register(api_client, country="XX", us_state="").json()["code"] == "invalid_country"
    assert not Investor.objects.exists()


def test_register_refuses_unknown_fields(api_client):
    response = register(api_client, is_staff=True)
    assert response.status_code == 422
    assert not User.objects.exists()


# --- own profile ----------------------------------------------------------------------------


def test_me_without_token_is_401(api_client):
    response = api_client.get(ME)
    assert response.status_code == 401


def test_me_without_investor_profile_is_404_with_a_clear_message(api_client):
    user = new_user()
    response = api_client.get(ME, **bearer(user))
    assert response.status_code == 404
    assert response.json()["code"] == "investor_profile_missing"
    assert "POST /auth/register" in response.json()["detail"]


def test_patch_me_updates_financials_and_tax_form(api_client):
    investor = make_investor()
    response = patch_json(
        api_client,
        ME,
        {
            "income_year_minus_1": usd("150000.00"),
            "net_worth": usd("130000.00"),
            "tax_form": "w9",
            "tax_id": "123-45-6789",
        },
        **bearer(investor.user),
    )
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["income_year_minus_1"] == usd("150000.00")
    assert body["net_worth"] == usd("130000.00")
    assert body["tax_id_masked"].endswith("6789")
    investor.refresh_from_db()
    assert investor.net_worth_minor == 130_000_00
    assert investor.tax_id == "123456789"


def test_patch_me_with_an_unknown_field_is_422_and_changes_nothing(api_client):
    investor = make_investor(legal_name="Before")
    response = patch_json(
        api_client,
        ME,
        {"legal_name": "After", "kyc_status": "approved"},
        **bearer(investor.user),
    )
    assert response.status_code == 422
    assert "kyc_status" in response.json()["detail"]
    investor.refresh_from_db()
    assert (investor.legal_name, investor.kyc_status) == ("Before", "pending")


@pytest.mark.parametrize(
    "field", ["accreditation_status", "is_sophisticated", "knowledge_test_valid_until", "user"]
)
def test_patch_me_cannot_touch_decided_fields(api_client, field):
    investor = make_investor()
    response = patch_json(api_client, ME, {field: "verified"}, **bearer(investor.user))
    assert response.status_code == 422
    investor.refresh_from_db()
    assert investor.accreditation_status == "none"
    assert investor.is_sophisticated is False


def test_patch_me_money_in_another_currency_than_financials_is_refused(api_client):
    investor = make_investor()
    response = patch_json(
        api_client, ME, {"net_worth": {"amount": "1000.00", "currency": "EUR"}},
        **bearer(investor.user),
    )  # fmt: skip
    assert response.status_code == 400
    assert response.json()["code"] == "financials_currency_mismatch"
    investor.refresh_from_db()
    assert investor.net_worth_minor is None


def test_patch_me_changing_currency_needs_figures_restated(api_client):
    investor = make_investor(net_worth_minor=100_000_00)
    headers = bearer(investor.user)
    refused = patch_json(api_client, ME, {"financials_currency": "EUR"}, **headers)
    assert refused.status_code == 400
    assert refused.json()["code"] == "financials_currency_change"
    accepted = patch_json(
        api_client,
        ME,
        {"financials_currency": "EUR", "net_worth": {"amount": "90000.00", "currency": "EUR"}},
        **headers,
    )
    assert accepted.status_code == 200
    assert accepted.json()["net_worth"] == {"amount": "90000.00", "currency": "EUR"}


def test_patch_me_treaty_rate_only_with_w8ben(api_client):
    investor = make_investor(country="DE", us_state="")
    headers = bearer(investor.user)
    refused = patch_json(api_client, ME, {"treaty_withholding_rate_basis_points": 1500}, **headers)
    assert refused.status_code == 400
    assert refused.json()["code"] == "treaty_rate_needs_w8ben"
    accepted = patch_json(
        api_client,
        ME,
        {
            "tax_form": "w8ben",
            "tax_id": "DE-12345678901",
            "treaty_withholding_rate_basis_points": 1500,
        },
        **headers,
    )
    assert accepted.status_code == 200
    assert accepted.json()["treaty_withholding_rate_basis_points"] == 1500
    assert accepted.json()["tax_id_masked"].endswith("8901")


def test_tax_id_is_encrypted_at_rest_and_masked_in_the_api(api_client):
    investor = make_investor(tax_form="w9", tax_id="987654321")
    with connection.cursor() as cursor:
        cursor.execute("SELECT tax_id FROM investors_investor WHERE id = %s", [investor.pk])
        raw = cursor.fetchone()[0]
    assert "987654321" not in raw
    assert "4321" not in raw
    investor.refresh_from_db()
    assert investor.tax_id == "987654321"

    response = api_client.get(ME, **bearer(investor.user))
    assert response.status_code == 200
    text = response.content.decode()
    assert "987654321" not in text
    assert response.json()["tax_id_masked"] == "•••••4321"


def test_identity_change_after_kyc_approval_sends_kyc_back_to_review(api_client):
    investor = make_investor(kyc_status="approved", kyc_decided_at=timezone.now())
    response = patch_json(api_client, ME, {"legal_name": "New Name"}, **bearer(investor.user))
    assert response.status_code == 200
    assert response.json()["kyc_status"] == "pending"
    decision = InvestorDecision.objects.get(investor=investor)
    assert (decision.from_status, decision.to_status) == ("approved", "pending")


# --- limits ---------------------------------------------------------------------------------


def test_limits_summary_per_exemption_with_rule_versions(api_client):
    investor = make_investor(
        income_current_year_expected_minor=50_000_00, net_worth_minor=80_000_00
    )
    response = api_client.get(f"{ME}/limits", **bearer(investor.user))
    assert response.status_code == 200
    limits = {line["exemption"]: line for line in response.json()["limits"]}
    assert limits["reg_cf"]["amount"] == usd("4000.00")
    assert limits["reg_cf"]["rule_version"] == "reg-cf-investor-2021-03-15"
    assert limits["reg_a_tier2"]["amount"] == usd("8000.00")
    assert limits["accredited_investor"]["allowed"] is False
    assert limits["reg_d_506b"]["allowed"] is False
    assert limits["reg_d_506c"]["code"] == "accreditation_not_verified"
    # USD financials: the ECSP threshold (EUR) is not applicable rather than converted
    assert limits["eu_ecsp"]["code"] == "financials_currency_mismatch"


def test_limits_for_eur_financials_say_not_applicable_for_usd_exemptions(api_client):
    investor = make_investor(
        country="FR", us_state="", financials_currency="EUR", net_worth_minor=100_000_00
    )
    response = api_client.get(f"{ME}/limits", **bearer(investor.user))
    limits = {line["exemption"]: line for line in response.json()["limits"]}
    assert limits["reg_cf"]["allowed"] is False
    assert limits["reg_cf"]["reason"].startswith("Not applicable: financials are in EUR")
    assert limits["eu_ecsp"]["amount"] == {"amount": "5000.00", "currency": "EUR"}


def test_limits_accredited_investor_is_unlimited(api_client):
    investor = make_investor(net_worth_minor=2_000_000_00)
    response = api_client.get(f"{ME}/limits", **bearer(investor.user))
    limits = {line["exemption"]: line for line in response.json()["limits"]}
    assert limits["reg_cf"]["unlimited"] is True
    assert limits["reg_cf"]["amount"] is None


# --- knowledge test -------------------------------------------------------------------------


def right_answers():
    return [{"question_id": q.id, "choice_id": q.correct_choice} for q in QUESTIONS]


def test_knowledge_test_questions_never_include_the_answers(api_client):
    investor = make_investor()
    response = api_client.get(f"{ME}/knowledge-test", **bearer(investor.user))
    assert response.status_code == 200
    body = response.json()
    assert len(body["questions"]) == len(QUESTIONS)
    assert "correct" not in response.content.decode()
    assert body["valid_for_years"] == 2


def test_knowledge_test_right_answers_pass_for_two_years(api_client):
    investor = make_investor()
    now = timezone.now().replace(month=6, day=1)
    with time_machine.travel(now, tick=False):
        response = post_json(
            api_client, f"{ME}/knowledge-test", {"answers": right_answers()},
            **bearer(investor.user),
        )  # fmt: skip
    assert response.status_code == 201, response.content
    body = response.json()
    assert (body["score"], body["max_score"], body["passed"]) == (6, 6, True)
    investor.refresh_from_db()
    assert investor.knowledge_test_valid_until == now.replace(year=now.year + 2)


def test_knowledge_test_wrong_answers_fail(api_client):
    investor = make_investor()
    answers = right_answers()
    for answer in answers[:2]:  # two wrong: below the pass mark of 5/6
        answer["choice_id"] = next(
            choice for choice, _ in QUESTIONS[answers.index(answer)].choices
            if choice != answer["choice_id"]
        )  # fmt: skip
    response = post_json(
        api_client, f"{ME}/knowledge-test", {"answers": answers}, **bearer(investor.user)
    )
    assert response.status_code == 201
    assert (response.json()["score"], response.json()["passed"]) == (4, False)
    assert response.json()["valid_until"] is None
    investor.refresh_from_db()
    assert investor.knowledge_test_valid_until is None


def test_knowledge_test_incomplete_answers_are_refused(api_client):
    investor = make_investor()
    response = post_json(
        api_client, f"{ME}/knowledge-test", {"answers": right_answers()[:3]},
        **bearer(investor.user),
    )  # fmt: skip
    assert response.status_code == 400
    assert response.json()["code"] == "knowledge_test_incomplete"
    assert not investor.knowledge_test_attempts.exists()


def test_passed_knowledge_test_expires_after_two_years_in_the_limits(api_client):
    investor = make_investor(financials_currency="EUR", country="DE", us_state="")
    headers = bearer(investor.user)
    post_json(api_client, f"{ME}/knowledge-test", {"answers": right_answers()}, **headers)
    investor.refresh_from_db()
    assert investor.knowledge_test_valid_until is not None
    later = investor.knowledge_test_valid_until + timedelta(seconds=1)
    with time_machine.travel(later, tick=False):
        limits = api_client.get(f"{ME}/limits", **bearer(investor.user)).json()["limits"]
    by_exemption = {line["exemption"]: line for line in limits}
    # no longer counts as sophisticated for 506(b)
    assert by_exemption["reg_d_506b"]["code"] == "not_sophisticated"


# --- self-certification ---------------------------------------------------------------------


def test_self_certify_with_qualifying_figures(api_client):
    investor = make_investor(net_worth_minor=1_500_000_00)
    response = post_json(
        api_client, f"{ME}/accreditation/self-certify", {}, **bearer(investor.user)
    )
    assert response.status_code == 200, response.content
    assert response.json()["accreditation_status"] == "self_certified"
    decision = InvestorDecision.objects.get(investor=investor, subject="accreditation")
    assert decision.rule_version == "accredited-investor-2020-12-08"
    assert decision.decided_by == investor.user


def test_self_certify_refused_when_figures_do_not_qualify(api_client):
    investor = make_investor(net_worth_minor=1_000_000_00)
    response = api_client.post(f"{ME}/accreditation/self-certify", **bearer(investor.user))
    assert response.status_code == 400
    assert response.json()["code"] == "not_accredited"
    investor.refresh_from_db()
    assert investor.accreditation_status == "none"


# --- staff ----------------------------------------------------------------------------------


def test_plain_investor_cannot_decide_kyc(api_client):
    investor = make_investor()
    other = make_investor()
    response = post_json(
        api_client,
        f"/api/v1/investors/{other.pk}/kyc",
        {"decision": "approved", "reason": "looks fine"},
        **bearer(investor.user),
    )
    assert response.status_code == 403
    other.refresh_from_db()
    assert other.kyc_status == "pending"


def test_kyc_without_token_is_401(api_client):
    investor = make_investor()
    response = post_json(
        api_client, f"/api/v1/investors/{investor.pk}/kyc", {"decision": "approved", "reason": "x"}
    )
    assert response.status_code == 401


def test_staff_kyc_approval_writes_history_and_a_second_approval_is_409(api_client):
    staff = new_user(is_staff=True)
    investor = make_investor()
    path = f"/api/v1/investors/{investor.pk}/kyc"
    body = {"decision": "approved", "reason": "passport and address checked"}
    first = post_json(api_client, path, body, **bearer(staff))
    assert first.status_code == 200, first.content
    assert first.json()["kyc_status"] == "approved"
    history = list(InvestorDecision.objects.filter(investor=investor, subject="kyc"))
    assert len(history) == 1
    assert (history[0].from_status, history[0].to_status) == ("pending", "approved")
    assert history[0].decided_by == staff
    assert history[0].reason == "passport and address checked"

    second = post_json(api_client, path, body, **bearer(staff))
    assert second.status_code == 409
    assert second.json()["code"] == "kyc_not_pending"
    assert InvestorDecision.objects.filter(investor=investor, subject="kyc").count() == 1


def test_staff_kyc_rejection_needs_a_reason(api_client):
    staff = new_user(is_staff=True)
    investor = make_investor()
    path = f"/api/v1/investors/{investor.pk}/kyc"
    blank = post_json(api_client, path, {"decision": "rejected", "reason": "  "}, **bearer(staff))
    assert blank.status_code == 400
    rejected = post_json(
        api_client, path, {"decision": "rejected", "reason": "document expired"}, **bearer(staff)
    )
    assert rejected.status_code == 200
    assert rejected.json()["kyc_reason"] == "document expired"


def test_kyc_of_unknown_investor_is_404_for_staff(api_client):
    staff = new_user(is_staff=True)
    response = post_json(
        api_client, "/api/v1/investors/999999/kyc", {"decision": "approved", "reason": "x"},
        **bearer(staff),
    )  # fmt: skip
    assert response.status_code == 404


def test_staff_verifies_accreditation_with_evidence_expiring_after_90_days(api_client):
    staff = new_user(is_staff=True)
    investor = make_investor()
    verified_at = timezone.now() - timedelta(days=1)
    response = post_json(
        api_client,
        f"/api/v1/investors/{investor.pk}/accreditation",
        {
            "method": "income",
            "document_reference": "tax returns 2023-2024, ref DOC-42",
            "verifier": "CPA Jane Roe",
            "verified_at": verified_at.isoformat(),
        },
        **bearer(staff),
    )
    assert response.status_code == 201, response.content
    investor.refresh_from_db()
    assert investor.accreditation_status == "verified"
    assert investor.accreditation_expires_at == verified_at + timedelta(days=90)
    decision = InvestorDecision.objects.get(investor=investor, subject="accreditation")
    assert (decision.from_status, decision.to_status, decision.decided_by) == (
        "none", "verified", staff,
    )  # fmt: skip
    limits = api_client.get(f"{ME}/limits", **bearer(investor.user)).json()["limits"]
    assert {line["exemption"]: line for line in limits}["reg_d_506c"]["allowed"] is True


def test_expired_evidence_is_refused(api_client):
    staff = new_user(is_staff=True)
    investor = make_investor()
    response = post_json(
        api_client,
        f"/api/v1/investors/{investor.pk}/accreditation",
        {
            "method": "net_worth",
            "document_reference": "bank statements",
            "verifier": "Verify Inc.",
            "verified_at": (timezone.now() - timedelta(days=91)).isoformat(),
        },
        **bearer(staff),
    )
    assert response.status_code == 400
    assert response.json()["code"] == "evidence_expired"
    investor.refresh_from_db()
    assert investor.accreditation_status == "none"


def test_investor_cannot_record_accreditation_evidence(api_client):
    investor = make_investor()
    response = post_json(
        api_client,
        f"/api/v1/investors/{investor.pk}/accreditation",
        {"method": "other", "document_reference": "x", "verifier": "me",
         "verified_at": timezone.now().isoformat()},
        **bearer(investor.user),
    )  # fmt: skip
    assert response.status_code == 403
    assert not investor.accreditation_evidence.exists()


def test_get_investor_by_id_is_staff_only_others_get_404(api_client):
    investor = make_investor(tax_form="w9", tax_id="111223333")
    other = make_investor()
    path = f"/api/v1/investors/{investor.pk}"
    assert api_client.get(path, **bearer(other.user)).status_code == 404
    assert api_client.get(path, **bearer(investor.user)).status_code == 404
    response = api_client.get(path, **bearer(new_user(is_staff=True)))
    assert response.status_code == 200
    assert response.json()["id"] == investor.pk
    assert "111223333" not in response.content.decode()


def test_patch_me_moving_out_of_the_us_drops_the_state(api_client):
    investor = make_investor(country="US", us_state="NY")
    response = patch_json(api_client, ME, {"country": "PT"}, **bearer(investor.user))
    assert response.status_code == 200
    assert (response.json()["country"], response.json()["us_state"]) == ("PT", "")
    back = patch_json(api_client, ME, {"country": "US"}, **bearer(investor.user))
    assert back.status_code == 400
    assert back.json()["code"] == "us_state_required"
