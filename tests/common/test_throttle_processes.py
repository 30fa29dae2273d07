"""Login throttling is shared by every server process: failures counted in one process
throttle the next attempt in another (the counters live in the database, not in memory)."""

import json
import os
import subprocess
import sys
import textwrap

import pytest
from django.test import Client

from tests.conftest import database_url_of_test_db, new_user

FAIL_LOGINS_ELSEWHERE = textwrap.dedent(
    """
    import json, django
    django.setup()
    from django.test import Client
    client = Client()
    codes = [
        client.post(
            "/api/v1/auth/token",
            data=json.dumps({"email": "dana@example.com", "password": "wrong"}),
            content_type="application/json",
        ).status_code
        for _ in range(3)
    ]
    print(json.dumps(codes))
    """
)


@pytest.mark.postgres_only
@pytest.mark.django_db(transaction=True)
def test_failures_in_another_process_throttle_this_one(settings):
    new_user(email="dana@example.com", password="the-right-password-1")
    url = database_url_of_test_db()
    # given three failed logins made by a different OS process
    result = subprocess.run(
        [sys.executable, "-c", FAIL_LOGINS_ELSEWHERE],
        env={
            **os.environ,
            "DATABASE_URL": url,
            "DJANGO_SETTINGS_MODULE": "config.settings",
            "LOGIN_FAILURES_MAX": "3",
        },
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout.strip().splitlines()[-1]) == [401, 401, 401]
    # when this process tries with the right password
    settings.LOGIN_FAILURES_MAX = 3
    response = Client().post(
        "/api/v1/auth/token",
        data=json.dumps({"email": "dana@example.com", "password": "the-right-password-1"}),
        content_type="application/json",
    )
    # then it is throttled too
    assert response.status_code == 429
