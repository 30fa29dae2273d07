"""Per-user rate limits on subscribe and transfer (common/ratelimit.py): past the limit a call
is a 429 with `Retry-After` and writes nothing; the counters are shared by every process
(Redis when configured, else the database) and the database takes over if Redis is down.

Windows are an hour long in these tests so that a window boundary never falls inside one."""

import json
import os
import subprocess
import sys
import textwrap

import pytest

from captable import ledger
from captable.models import Subscription, TransferRequest
from common.models import RateCounter
from config.api import api
from tests.captable.factories import investors, offering_with_units
from tests.captable.test_subscriptions import kyc_investor, open_offering
from tests.captable.test_subscriptions_api import subscribe
from tests.captable.test_transfers_api import body_for, issue_days_ago, post_transfer
from tests.conftest import bearer, database_url_of_test_db

WINDOW_SECONDS = 3600


@pytest.fixture
def limits(settings):
    """Small limits, counted in the database unless a test points them at Redis."""
    settings.RATE_LIMIT_REDIS_URL = ""
    settings.RATE_LIMITS = {"subscribe": (3, WINDOW_SECONDS), "transfer": (2, WINDOW_SECONDS)}
    return settings


def assert_throttled(response) -> None:
    assert response.status_code == 429, response.content
    assert response.json()["code"] == "throttled"
    assert 1 <= int(response["Retry-After"]) <= WINDOW_SECONDS


@pytest.mark.embedded
def test_the_limited_operations_document_their_429():
    document = api.get_openapi_schema(path_prefix="/api/v1")
    for path in ("/api/v1/offerings/{offering_id}/subscriptions", "/api/v1/transfers"):
        assert "429" in {str(status) for status in document["paths"][path]["post"]["responses"]}


@pytest.mark.embedded
@pytest.mark.django_db
def test_subscribe_past_the_limit_is_429_and_subscribes_nothing(api_client, limits):
    offering = open_offering()
    investor, other = kyc_investor(), kyc_investor()
    # given three subscriptions, the limit
    for number in range(3):
        response = subscribe(api_client, investor, offering, "1", f"order-{number}")
        assert response.status_code == 201, response.content
    # when the same investor subscribes a fourth time
    response = subscribe(api_client, investor, offering, "1", "order-3")
    # then it is refused with a time to come back, and nothing was written
    assert_throttled(response)
    assert Subscription.objects.filter(investor=investor).count() == 3
    # and the limit is per user: another investor is not affected
    assert subscribe(api_client, other, offering, "1", "other-0").status_code == 201


@pytest.mark.embedded
@pytest.mark.django_db
def test_transfer_past_the_limit_is_429_and_transfers_nothing(api_client, limits):
    offering = offering_with_units()
    alice, bob = investors(2)
    issue_days_ago(400, offering, alice, 100)
    for _ in range(2):
        response = post_transfer(api_client, alice, body_for(offering, bob, "1"))
        assert response.status_code == 201, response.content
    response = post_transfer(api_client, alice, body_for(offering, bob, "1"))
    assert_throttled(response)
    assert TransferRequest.objects.count() == 2
    assert ledger.holding_account(offering, bob).balance == 2


@pytest.mark.embedded
@pytest.mark.django_db
def test_an_unreachable_redis_falls_back_to_the_database_counters(api_client, limits):
    limits.RATE_LIMIT_REDIS_URL = "redis://127.0.0.1:1/0"  # nothing listens on port 1
    offering = open_offering()
    investor = kyc_investor()
    for number in range(3):
        assert subscribe(api_client, investor, offering, "1", f"k{number}").status_code == 201
    assert_throttled(subscribe(api_client, investor, offering, "1", "k3"))
    assert RateCounter.objects.get(scope="rl:subscribe").count == 4


SUBSCRIBE_ELSEWHERE = textwrap.dedent(
    """
    import json, os, django
    django.setup()
    from django.test import Client
    client = Client()
    codes = [
        client.post(
            f"/api/v1/offerings/{os.environ['OFFERING_ID']}/subscriptions",
            data=json.dumps({"units": "1"}),
            content_type="application/json",
            HTTP_AUTHORIZATION=os.environ["BEARER"],
            HTTP_IDEMPOTENCY_KEY=f"elsewhere-{number}",
        ).status_code
        for number in range(3)
    ]
    print(json.dumps(codes))
    """
)


@pytest.mark.postgres_only
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("store", ["database", "redis"])
def test_calls_in_another_process_count_towards_the_limit(api_client, limits, store, request):
    redis_url = request.getfixturevalue("redis_url") if store == "redis" else ""
    limits.RATE_LIMIT_REDIS_URL = redis_url
    offering = open_offering()
    investor = kyc_investor()
    headers = bearer(investor.user)
    # given three subscriptions made by another OS process (another gunicorn worker, host)
    result = subprocess.run(
        [sys.executable, "-c", SUBSCRIBE_ELSEWHERE],
        env={
            **os.environ,
            "DATABASE_URL": database_url_of_test_db(),
            "DJANGO_SETTINGS_MODULE": "config.settings",
            "RATE_LIMIT_REDIS_URL": redis_url,
            "RATE_LIMIT_SUBSCRIBE_PER_WINDOW": "3",
            "RATE_LIMIT_WINDOW_SECONDS": str(WINDOW_SECONDS),
            "OFFERING_ID": str(offering.pk),
            "BEARER": headers["HTTP_AUTHORIZATION"],
        },
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout.strip().splitlines()[-1]) == [201, 201, 201]
    # when this process subscribes for the same investor
    response = subscribe(api_client, investor, offering, "1", "here-0")
    # then the shared count refuses it
    assert_throttled(response)
    assert Subscription.objects.filter(investor=investor).count() == 3
    # and the count lived in the store chosen
    in_database = RateCounter.objects.filter(scope="rl:subscribe").exists()
    assert in_database == (store == "database")
