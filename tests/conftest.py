"""Shared fixtures: an HTTP client for the API, users with bearer tokens."""

from __future__ import annotations

import contextlib
import itertools
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
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
def _postgres_only_needs_postgres(request: pytest.FixtureRequest) -> None:
    """A `postgres_only` test run on another database fails loudly; it never skips.
    (`make test` selects only `embedded` tests for its SQLite run.)"""
    if request.node.get_closest_marker("postgres_only") and connection.vendor != "postgresql":
        pytest.fail("this test needs PostgreSQL: run it through `make test`")


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


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """A Redis server for broker tests: BRICKBOOK_TEST_REDIS_URL / REDIS_URL when given,
    otherwise a throwaway `redis-server` on a free port (make installs the Debian package)."""
    given = os.environ.get("BRICKBOOK_TEST_REDIS_URL") or os.environ.get("REDIS_URL")
    if given:
        yield given
        return
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.fail("redis-server is missing: run the tests through `make test`, which installs it")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
    )
    url = f"redis://127.0.0.1:{port}/0"
    try:
        _wait_for_port(port)
        yield url
    finally:
        server.terminate()
        server.wait(timeout=10)


def _wait_for_port(port: int, timeout_seconds: float = 10) -> None:
    deadline = time.monotonic() + timeout_seconds
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listening on port {port}")


def database_url_of_test_db() -> str:
    """The URL of the database this test run uses, for subprocesses (workers, crash tests)."""
    db = connection.settings_dict
    return f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}"


def forget_celery_broker_pools() -> None:
    """Close this process's broker connections and forget the pools: kombu keeps them in a
    global registry, and a closed pool would refuse every send of the next test that uses a
    real broker in this process."""
    from kombu import pools

    from config.celery import app

    pools.reset()
    app._pool = None  # type: ignore[attr-defined]  # what Celery itself resets after a fork
    app.amqp._producer_pool = None  # type: ignore[attr-defined]
