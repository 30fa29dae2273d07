"""Shared fixtures: an HTTP client for the API, users with bearer tokens."""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable
from typing import Any

import pytest
from django.db import connection
from django.test import Client

from common.auth import api_token_issue
from common.models import User

_sequence = itertools.count(1)


@pytest.fixture(autouse=True, scope="session")
def _expected_database(django_db_setup: Any, django_db_blocker: Any) -> None:
    """`make test` declares which database each run must use; never fall back silently."""
    expected = os.environ.get("BRICKBOOK_EXPECT_DB")
    if expected and connection.vendor != expected:
        pytest.exit(f"expected the {expected} database but got {connection.vendor}", 2)
    if os.environ.get("CI") and not expected:
        pytest.exit("in CI, run the tests through `make test` (it sets BRICKBOOK_EXPECT_DB)", 2)


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings: Any) -> None:
    # Argon2 is slow on purpose; tests create many users. Hashing is not under test here.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def api_client() -> Client:
    return Client()


def new_user(*, is_staff: bool = False, email: str | None = None, password: str = "") -> User:
    number = next(_sequence)
    email = email or f"user{number}@example.com"
    return User.objects.create_user(
        username=email, email=email, password=password or "correct-horse-battery", is_staff=is_staff
    )


def bearer(user: User) -> dict[str, str]:
    """Headers for Django's test client."""
    return {"HTTP_AUTHORIZATION": f"Bearer {api_token_issue(user=user).token}"}


@pytest.fixture
def make_user(db: Any) -> Callable[..., User]:
    return new_user


@pytest.fixture
def staff_user(db: Any) -> User:
    return new_user(is_staff=True)


@pytest.fixture
def auth_headers() -> Callable[[User], dict[str, str]]:
    return bearer
