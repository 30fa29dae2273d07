"""Authentication matrix, taken from the OpenAPI document so a new endpoint is covered the day
it is added: every operation that needs a token answers 401 (and says nothing else) with no
token, an expired, a revoked or a tampered token, a token of a deactivated user and a non-bearer
header. Operations open to anonymous callers are named below; an operation missing from these
lists (or a list entry that no longer exists) fails the test until someone classifies it.

Login throttling across processes: tests/common/test_throttle_processes.py."""

import re
from datetime import timedelta
from typing import Any

import pytest
import time_machine
from django.test import Client
from django.utils import timezone

from common.auth import api_token_issue, api_token_revoke
from config.api import api
from tests.conftest import new_user

pytestmark = [pytest.mark.django_db, pytest.mark.embedded]

# No token needed at all (the webhooks authenticate by the provider's signature).
PUBLIC = {
    ("GET", "/api/v1/health"),
    ("POST", "/api/v1/auth/token"),
    ("POST", "/api/v1/auth/register"),
    ("POST", "/api/v1/payments/webhook"),
    ("POST", "/api/v1/withdrawals/webhook"),
}
# Anonymous callers welcome (they see less); a bad token is still a 401, never a downgrade.
ANONYMOUS_ALLOWED = {
    ("GET", "/api/v1/sponsors/{sponsor_id}"),
    ("GET", "/api/v1/offerings"),
    ("GET", "/api/v1/offerings/{offering_id}"),
    ("GET", "/api/v1/offerings/{offering_id}/documents"),
    ("GET", "/api/v1/offerings/{offering_id}/stats"),
}

ABSENT_ID = 987_654_321


def operations() -> list[tuple[str, str, list[str]]]:
    """(method, path template, security scheme names) of every operation in the document."""
    document = api.get_openapi_schema(path_prefix="/api/v1")
    return [
        (method.upper(), path, [name for scheme in op.get("security", []) for name in scheme])
        for path, methods in document["paths"].items()
        for method, op in methods.items()
    ]


def concrete(path: str) -> str:
    return re.sub(r"\{[^}]+\}", str(ABSENT_ID), path)


def call(client: Client, method: str, path: str, **headers: Any):
    if method == "GET":
        return client.get(concrete(path), **headers)
    send = getattr(client, method.lower())
    return send(concrete(path), data="{}", content_type="application/json", **headers)


def header(token: str) -> dict[str, str]:
    return {"HTTP_AUTHORIZATION": f"Bearer {token}"}


def bad_credentials() -> dict[str, dict[str, str]]:
    """One header per way a credential can be wrong, all belonging to a member of staff (the
    strongest role), so a 401 can only come from the credential."""
    staff = new_user(is_staff=True)
    with time_machine.travel(timezone.now() - timedelta(days=2)):
        expired = api_token_issue(user=staff, ttl=timedelta(hours=1)).token
    revoked = api_token_issue(user=staff).token
    assert api_token_revoke(clear_token=revoked)
    valid = api_token_issue(user=staff).token
    tampered = valid[:-4] + ("AAAA" if not valid.endswith("AAAA") else "BBBB")
    inactive_user = new_user(is_staff=True)
    inactive = api_token_issue(user=inactive_user).token
    inactive_user.is_active = False
    inactive_user.save(update_fields=["is_active"])
    return {
        "expired": header(expired),
        "revoked": header(revoked),
        "tampered": header(tampered),
        "forged": header("bb_" + "x" * 43),
        "deactivated user": header(inactive),
        "not bearer": {"HTTP_AUTHORIZATION": f"Basic {valid}"},
    }


def test_every_operation_is_classified():
    # (An entry above that is not, or not yet, in the document grants nothing.)
    for method, path, schemes in operations():
        if (method, path) in PUBLIC:
            assert schemes == [], f"{method} {path} is listed public but asks for a token"
        elif (method, path) in ANONYMOUS_ALLOWED:
            assert schemes == ["OptionalBearerAuth"], f"{method} {path}: {schemes}"
        else:
            assert schemes == ["BearerAuth"], (
                f"{method} {path} is new or changed: require a token, or list it in PUBLIC / "
                f"ANONYMOUS_ALLOWED here if anonymous callers really may use it"
            )


def assert_not_authenticated(response, what: str) -> None:
    assert response.status_code == 401, (what, response.status_code, response.content[:300])
    assert response.json() == {
        "detail": "Missing, invalid, expired or revoked token.",
        "code": "not_authenticated",
    }, what
    assert response["WWW-Authenticate"] == "Bearer", what


def test_every_operation_needing_a_token_refuses_a_missing_or_bad_one(api_client):
    credentials = bad_credentials()
    checked = 0
    for method, path, _ in operations():
        if (method, path) in PUBLIC:
            continue
        if (method, path) not in ANONYMOUS_ALLOWED:
            assert_not_authenticated(call(api_client, method, path), f"{method} {path}: none")
            checked += 1
        for name, headers in credentials.items():
            response = call(api_client, method, path, **headers)
            assert_not_authenticated(response, f"{method} {path}: {name}")
            checked += 1
    assert checked > 400  # ~80 operations x 6-7 credentials


def test_the_same_calls_with_a_valid_token_get_past_authentication(api_client):
    """The control: the matrix above fails if authentication stops refusing, and this one if
    the 401s came from something other than the credential (the path, the empty body)."""
    staff = new_user(is_staff=True)
    for method, path, _ in operations():
        if (method, path) in PUBLIC:
            continue
        # a fresh token per call: one of the operations is "revoke my token"
        response = call(api_client, method, path, **header(api_token_issue(user=staff).token))
        assert response.status_code != 401, (method, path, response.content[:300])
        assert response.status_code < 500, (method, path, response.content[:300])


def test_anonymous_callers_get_the_anonymous_view_of_the_open_reads(api_client):
    for method, path in sorted(ANONYMOUS_ALLOWED):
        response = call(api_client, method, path)
        assert response.status_code in (200, 404), (method, path, response.status_code)
