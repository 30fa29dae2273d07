"""Sign up, sign in, password reset by (console) email, the questionnaire and KYC status."""

from __future__ import annotations

import re

import pytest
from django.core import mail
from django.test import Client
from django.urls import reverse

from investors.models import AccreditationStatus, Investor
from tests.investors.factories import STRONG_PASSWORD
from tests.portal.helpers import signed_in

pytestmark = [pytest.mark.django_db, pytest.mark.embedded]


def _sign_up(client: Client, **overrides: str):
    form = {
        "email": "nina@example.com",
        "legal_name": "Nina Newcomer",
        "country": "US",
        "us_state": "CA",
        "password": STRONG_PASSWORD,
        "password_again": STRONG_PASSWORD,
    }
    form.update(overrides)
    return client.post(reverse("portal:signup"), form)


def test_sign_up_creates_an_investor_signs_in_and_shows_what_is_missing():
    client = Client()
    response = _sign_up(client)
    assert response.status_code == 302
    investor = Investor.objects.get(user__email="nina@example.com")
    assert investor.kyc_status == "pending"
    profile = client.get(response["Location"]).content.decode()
    assert "Nina Newcomer" in profile
    assert "Our identity check (KYC)" in profile
    assert "Your income and net worth" in profile


def test_sign_up_refusals_are_shown_and_change_nothing():
    response = _sign_up(Client(), password="password1", password_again="password1")
    assert response.status_code == 422
    assert "Password too weak" in response.content.decode()
    assert not Investor.objects.exists()
    mismatch = _sign_up(Client(), password_again="something-else-entirely")
    assert "The two passwords differ." in mismatch.content.decode()


def test_sign_in_out_and_password_reset_by_email():
    _sign_up(Client())
    client = Client()
    login = client.post(
        reverse("portal:login"), {"username": "nina@example.com", "password": STRONG_PASSWORD}
    )
    assert login.status_code == 302
    assert login["Location"] == reverse("portal:dashboard")
    assert client.post(reverse("portal:logout")).status_code == 302
    assert client.get(reverse("portal:dashboard")).status_code == 302  # signed out
    # when: the reset email is asked for
    client.post(reverse("portal:password_reset"), {"email": "nina@example.com"})
    # then: its link sets a new password
    (message,) = mail.outbox
    link = re.search(r"https?://[^/]+(/accounts/reset/\S+)", str(message.body))
    assert link is not None
    form_page = client.get(link[1], follow=True)
    new_password = "another-strong-passphrase-7"
    done = client.post(
        form_page.redirect_chain[-1][0],
        {"new_password1": new_password, "new_password2": new_password},
    )
    assert done.status_code == 302
    assert Client().login(username="nina@example.com", password=new_password)


def test_questionnaire_saves_figures_and_self_certifies():
    client = Client()
    _sign_up(client)
    response = client.post(
        reverse("portal:profile"),
        {
            "financials_currency": "USD",
            "income_year_minus_2": "310000",
            "income_year_minus_1": "320000",
            "income_current_year_expected": "330000",
            "net_worth": "900000",
            "self_certify": "on",
        },
    )
    assert response.status_code == 302
    investor = Investor.objects.get(user__email="nina@example.com")
    assert investor.income_year_minus_1_minor == 320_000_00
    assert investor.accreditation_status == AccreditationStatus.SELF_CERTIFIED
    page = client.get(reverse("portal:profile")).content.decode()
    assert "Self-certified" in page or "self_certified" in page.lower()


def test_self_certification_refused_when_the_figures_do_not_qualify():
    client = Client()
    _sign_up(client)
    response = client.post(
        reverse("portal:profile"),
        {"financials_currency": "USD", "net_worth": "50000", "self_certify": "on"},
    )
    assert response.status_code == 422
    investor = Investor.objects.get(user__email="nina@example.com")
    # one transaction: the figures were not saved either
    assert investor.net_worth_minor is None
    assert investor.accreditation_status == AccreditationStatus.NONE


def test_investor_pages_need_an_investor_profile():
    from tests.conftest import new_user

    client = signed_in(new_user())
    assert client.get(reverse("portal:dashboard")).status_code == 404
    assert client.get(reverse("portal:profile")).status_code == 404


def test_every_form_post_needs_the_csrf_token():
    client = Client(enforce_csrf_checks=True)
    response = client.post(reverse("portal:signup"), {"email": "x@example.com"})
    assert response.status_code == 403


def test_sign_in_is_throttled_after_repeated_failures(settings):
    settings.LOGIN_FAILURES_MAX = 3
    _sign_up(Client())
    client = Client()
    url = reverse("portal:login")
    for _ in range(3):
        page = client.post(url, {"username": "nina@example.com", "password": "wrong"})
        assert "correct email address and password" in page.content.decode()
    refused = client.post(url, {"username": "nina@example.com", "password": STRONG_PASSWORD})
    assert refused.status_code == 200  # the form again, not a redirect: even the right password
    assert "Too many failed sign-ins" in refused.content.decode()


def test_knowledge_test_is_scored_on_the_server():
    from investors import knowledge_test

    client = Client()
    _sign_up(client, country="DE", us_state="")
    url = reverse("portal:knowledge_test")
    wrong = {
        f"q_{q.id}": next(c for c, _ in q.choices if c != q.correct_choice)
        for q in knowledge_test.QUESTIONS
    }
    assert "Not passed" in client.post(url, wrong).content.decode()
    right = {f"q_{q.id}": q.correct_choice for q in knowledge_test.QUESTIONS}
    assert client.post(url, right).status_code == 302
    investor = Investor.objects.get(user__email="nina@example.com")
    assert investor.knowledge_test_valid_until is not None
