"""The portal-only middleware (common/middleware.py): the JSON API skips sessions, CSRF,
messages and django-htmx; the portal keeps them; security headers stay on both."""

import pytest
from django.test import Client
from django.urls import reverse

from tests.conftest import bearer, new_user


@pytest.mark.embedded
@pytest.mark.django_db
def test_an_api_request_gets_no_session_or_csrf_cookie_and_keeps_the_security_headers():
    client = Client(enforce_csrf_checks=True)
    user = new_user()
    # given a browser that also holds a portal session
    client.force_login(user)
    # when it calls the API with a bearer token
    response = client.get("/api/v1/subscriptions", data=None, **bearer(user))  # type: ignore[arg-type]
    # then the API answers without touching the session or setting a CSRF cookie
    assert response.status_code in (200, 404), response.content
    assert "csrftoken" not in response.cookies
    assert "sessionid" not in response.cookies
    assert response["X-Frame-Options"] == "DENY"
    assert response["X-Content-Type-Options"] == "nosniff"


@pytest.mark.embedded
@pytest.mark.django_db
def test_the_api_ignores_a_portal_session_without_a_token():
    client = Client()
    client.force_login(new_user())
    assert client.get("/api/v1/subscriptions").status_code == 401


@pytest.mark.embedded
@pytest.mark.django_db
def test_the_portal_keeps_its_session_and_csrf_protection():
    client = Client(enforce_csrf_checks=True)
    page = client.get(reverse("portal:login"))
    assert page.status_code == 200
    assert "csrftoken" in page.cookies
    # a form post without the CSRF token is refused
    refused = client.post(reverse("portal:login"), {"username": "x", "password": "y"})
    assert refused.status_code == 403
