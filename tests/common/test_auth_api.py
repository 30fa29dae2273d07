import json
from datetime import timedelta

import pytest
import time_machine
from django.utils import timezone

from common.auth import api_token_issue
from tests.conftest import new_user

pytestmark = [pytest.mark.django_db, pytest.mark.embedded]


def post_json(client, path, body, **headers):
    return client.post(path, data=json.dumps(body), content_type="application/json", **headers)


def test_health_is_public(api_client):
    response = api_client.get("/api/v1/health")
    assert response.status_code == 200
    assert response.json()["status"] == "ok"


def test_token_for_valid_credentials(api_client):
    new_user(email="ann@example.com", password="s3cret-pass-word")
    response = post_json(
        api_client,
        "/api/v1/auth/token",
        {"email": "ann@example.com", "password": "s3cret-pass-word"},
    )
    assert response.status_code == 200, response.content
    assert response.json()["token"].startswith("bb_")


def test_wrong_password_is_401_with_code(api_client):
    new_user(email="bob@example.com", password="right-password-1")
    response = post_json(
        api_client, "/api/v1/auth/token", {"email": "bob@example.com", "password": "wrong"}
    )
    assert response.status_code == 401
    assert response.json()["code"] == "invalid_credentials"


def test_unknown_field_is_422(api_client):
    response = post_json(
        api_client,
        "/api/v1/auth/token",
        {"email": "a@example.com", "password": "x", "is_staff": True},
    )
    assert response.status_code == 422
    body = response.json()
    assert body["code"] == "invalid_request"
    assert "is_staff" in body["detail"]


def test_login_is_throttled_after_repeated_failures(api_client, settings):
    settings.LOGIN_FAILURES_MAX = 3
    new_user(email="carol@example.com", password="right-password-1")
    for _ in range(3):
        response = post_json(
            api_client, "/api/v1/auth/token", {"email": "carol@example.com", "password": "nope"}
        )
        assert response.status_code == 401
    # even the right password is refused while throttled
    response = post_json(
        api_client,
        "/api/v1/auth/token",
        {"email": "carol@example.com", "password": "right-password-1"},
    )
    assert response.status_code == 429
    assert int(response["Retry-After"]) >= 1
    assert response.json()["code"] == "throttled"


def test_protected_endpoint_needs_valid_token(api_client):
    user = new_user()
    issued = api_token_issue(user=user)
    revoke = "/api/v1/auth/token/revoke"
    assert api_client.post(revoke).status_code == 401
    assert api_client.post(revoke, HTTP_AUTHORIZATION="Bearer bb_tampered").status_code == 401
    tampered = issued.token[:-1] + ("A" if issued.token[-1] != "A" else "B")
    assert api_client.post(revoke, HTTP_AUTHORIZATION=f"Bearer {tampered}").status_code == 401
    good = {"HTTP_AUTHORIZATION": f"Bearer {issued.token}"}
    assert api_client.post(revoke, **good).status_code == 204
    # revoked now
    response = api_client.post(revoke, **good)
    assert response.status_code == 401
    assert response.json()["code"] == "not_authenticated"


def test_expired_token_is_401(api_client):
    user = new_user()
    issued = api_token_issue(user=user, ttl=timedelta(minutes=5))
    with time_machine.travel(timezone.now() + timedelta(minutes=6)):
        response = api_client.post(
            "/api/v1/auth/token/revoke", HTTP_AUTHORIZATION=f"Bearer {issued.token}"
        )
    assert response.status_code == 401
