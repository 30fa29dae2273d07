"""Subscriptions under concurrency through real HTTP: a gunicorn server (sync workers, each
with its own persistent database connection, as in production) started on the test database,
and real clients on threads.

- 200 subscribers race for the last 50 units: never oversold, every 201 is exactly one
  subscription (and, when reserved, exactly its units on the counter), the others waitlisted
  or refused with 409, no 5xx;
- the same Idempotency-Key sent 20 times at once: exactly one subscription, every response
  the first one replayed or a 409.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests

from captable import subscriptions
from captable.models import Subscription, SubscriptionStatusChange
from captable.subscription_selectors import waitlist_position
from common.auth import api_token_issue
from investors.models import Investor
from tests.captable.test_subscriptions import (
    assert_reservations_consistent,
    kyc_investor,
    open_offering,
    reserved_quanta,
    small_offering,
    subscribe,
)
from tests.conftest import database_url_of_test_db

pytestmark = [pytest.mark.postgres_only, pytest.mark.django_db(transaction=True)]

ROOT = Path(__file__).resolve().parents[2]
# Sync workers, so this many requests run in the database at once (the rest wait in the
# listen backlog): a real race on the offering row, well inside the test server's 200
# connections, which the other xdist worker shares.
WORKERS = 4


@dataclass(frozen=True)
class Reply:
    status: int
    body: bytes
    is_replayed: bool

    def json(self) -> Any:
        return json.loads(self.body)


@pytest.fixture(scope="module")
def server(django_db_setup: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """gunicorn on a free port, serving config.wsgi against this run's test database."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])
    log = tmp_path_factory.mktemp("gunicorn") / "gunicorn.log"
    env = {
        **os.environ,
        "DATABASE_URL": database_url_of_test_db(),
        "DJANGO_SETTINGS_MODULE": "config.settings",
        "DEBUG": "0",
        "CONN_MAX_AGE": "600",
    }
    with log.open("wb") as output:
        process = subprocess.Popen(
            [
                str(Path(sys.executable).parent / "gunicorn"),
                "config.wsgi",
                "--preload",  # Django imported once, then forked: a quick start
                "--workers",
                str(WORKERS),
                "--worker-class",
                "sync",
                "--bind",
                f"127.0.0.1:{port}",
                "--timeout",
                "60",
                "--log-level",
                "warning",
            ],
            cwd=ROOT,
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        _wait_until_healthy(f"{base}/api/v1/health", process, log)
        yield base
    finally:
        process.terminate()
        process.wait(timeout=30)
        errors = log.read_text(errors="replace")
        if "Traceback" in errors:
            print(f"gunicorn log:\n{errors}")


def _wait_until_healthy(url: str, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 120  # a loaded 2-core machine boots Django slowly
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"gunicorn exited:\n{log.read_text(errors='replace')}")
        try:
            if requests.get(url, timeout=5).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.2)
    pytest.fail(f"gunicorn did not answer at {url}:\n{log.read_text(errors='replace')}")


def token_of(investor: Investor) -> str:
    return api_token_issue(user=investor.user).token


def post_all(url: str, requests_: list[tuple[str, str, dict[str, Any]]]) -> list[Reply]:
    """POST every (token, idempotency key, body) at once, one connection and thread each,
    released together; the replies in the same order."""
    start = threading.Event()

    def send(token: str, key: str, body: dict[str, Any]) -> Reply:
        start.wait(timeout=30)
        response = requests.post(
            url,
            data=json.dumps(body),
            headers={
                "Authorization": f"Bearer {token}",
                "Idempotency-Key": key,
                "Content-Type": "application/json",
            },
            timeout=120,
        )
        replayed = response.headers.get("Idempotent-Replayed") == "true"
        return Reply(response.status_code, response.content, replayed)

    with ThreadPoolExecutor(max_workers=len(requests_)) as pool:
        futures = [pool.submit(send, *request) for request in requests_]
        start.set()
        return [future.result(timeout=180) for future in futures]


def test_two_hundred_subscribers_race_for_the_last_fifty_units_over_http(server):
    # given an offering of 1,000 units with 950 already reserved
    offering = small_offering(1_000)
    subscribe(kyc_investor(), offering, 950)
    racers = [kyc_investor() for _ in range(200)]
    # 1, 2 or 3 units each: the last units may not fit the next request, which must then wait
    units = {investor.pk: 1 + number % 3 for number, investor in enumerate(racers)}
    url = f"{server}/api/v1/offerings/{offering.pk}/subscriptions"

    # when the 200 investors subscribe at once through HTTP
    replies = post_all(
        url,
        [
            (token_of(investor), f"race-{investor.pk}", {"units": str(units[investor.pk])})
            for investor in racers
        ],
    )

    # then no request failed with a 5xx (nor anything but 201 and 409)
    assert {reply.status for reply in replies} <= {201, 409}, Counter(r.status for r in replies)
    accepted = {
        investor.pk: reply.json()
        for investor, reply in zip(racers, replies, strict=True)
        if reply.status == 201
    }
    refused = [reply.json() for reply in replies if reply.status == 409]
    # every 201 is exactly one subscription of that investor, for the units asked
    raced = Subscription.objects.filter(investor__in=racers)
    by_investor = {s.investor_id: s for s in raced}
    assert raced.count() == len(by_investor) == len(accepted)
    for investor_id, body in accepted.items():
        subscription = by_investor[investor_id]
        assert body["id"] == subscription.pk
        assert body["quanta"] == subscription.quanta == units[investor_id]
        assert body["status"] == subscription.status in ("reserved", "waitlisted")
    assert SubscriptionStatusChange.objects.filter(subscription__in=raced).count() == len(raced)
    # the counter holds exactly the units of the reserved ones: never more than the supply
    reserved = [s for s in raced if s.status == "reserved"]
    assert reserved_quanta(offering) == 950 + sum(s.quanta for s in reserved)
    assert reserved_quanta(offering) <= subscriptions.supply_quanta(offering) == 1_000
    # the last units went to the first comers until the next did not fit: the rest waits
    assert 1_000 - reserved_quanta(offering) < 3
    waiting = sorted((s for s in raced if s.status == "waitlisted"), key=lambda s: s.pk)
    assert [waitlist_position(s) for s in waiting] == list(range(1, len(waiting) + 1))
    assert_reservations_consistent(offering)
    # a refusal is a 409 with its code, and nothing was written for it
    assert all(body["code"] for body in refused), refused
    assert len(accepted) + len(refused) == 200


def test_the_same_idempotency_key_twenty_times_at_once_over_http(server):
    # given an investor and a live offering
    offering = open_offering()
    investor = kyc_investor()
    token = token_of(investor)
    url = f"{server}/api/v1/offerings/{offering.pk}/subscriptions"

    # when the same request, with the same Idempotency-Key, arrives 20 times at once
    replies = post_all(url, [(token, "double-click", {"units": "3"})] * 20)

    # then it ran once: one subscription, its units reserved once
    assert Subscription.objects.filter(investor=investor).count() == 1
    subscription = Subscription.objects.get(investor=investor)
    assert reserved_quanta(offering) == 3 == subscription.quanta
    # every reply is the first response, replayed byte for byte, or a 409
    created = [reply for reply in replies if reply.status == 201]
    conflicts = [reply for reply in replies if reply.status == 409]
    assert len(created) + len(conflicts) == 20, [reply.status for reply in replies]
    assert all(reply.json()["code"] == "idempotency_key_in_use" for reply in conflicts)
    first = [reply for reply in created if not reply.is_replayed]
    assert len(first) == 1
    assert first[0].json()["id"] == subscription.pk
    assert first[0].json()["status"] == "reserved"
    assert all(reply.body == first[0].body for reply in created)
