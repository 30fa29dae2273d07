"""PostgreSQL: what a subscription over HTTP sends to the database. The bearer token's user is
read by the statement that counts the call and claims its Idempotency-Key (no statement of its
own), so a subscription is four round trips: BEGIN, claim-and-read, write, COMMIT. A bad token
still answers 401 before any other error, counting and writing nothing."""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import time_machine
from django.db import connection, transaction
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from captable.models import Subscription
from common.auth import api_token_issue, api_token_revoke
from common.models import IdempotencyRecord, RateCounter, User
from common.ratelimit import user_key, user_key_sql
from tests.captable.test_subscriptions import kyc_investor, open_offering, reserved_quanta
from tests.conftest import bearer, new_user

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.postgres_only]

WINDOW_SECONDS = 3600


@pytest.fixture
def limits(settings):
    settings.RATE_LIMIT_REDIS_URL = ""
    settings.RATE_LIMITS = {"subscribe": (3, WINDOW_SECONDS)}
    return settings


def post(offering_id: int, headers: dict[str, str], body: Any, key: str | None) -> Any:
    extra: dict[str, Any] = dict(headers)
    if key is not None:
        extra["HTTP_IDEMPOTENCY_KEY"] = key
    return Client().post(
        f"/api/v1/offerings/{offering_id}/subscriptions",
        data=json.dumps(body),
        content_type="application/json",
        **extra,
    )


def test_a_subscription_is_four_round_trips_the_first_statement_reading_the_token(limits):
    # given a live offering and a KYC-approved investor with a token
    offering = open_offering()
    investor = kyc_investor()
    headers = bearer(investor.user)

    # when they subscribe (the API already loaded: its first use reads the sequence's name)
    assert post(offering.pk, headers, {"units": "1"}, "warm").status_code == 201
    with CaptureQueriesContext(connection) as captured:
        response = post(offering.pk, headers, {"units": "2"}, "counted")

    # then: four round trips, BEGIN, two statements, COMMIT; the token's user read by the
    # first, which counts the call and claims the key
    assert response.status_code == 201, response.content
    statements = [query["sql"] for query in captured.captured_queries]
    assert len(statements) == 4, statements
    assert (statements[0], statements[-1]) == ("BEGIN", "COMMIT")
    assert "common_apitoken" in statements[1]
    assert "common_ratecounter" in statements[1]
    assert "common_idempotencyrecord" in statements[1]
    assert "INSERT INTO captable_subscription " in statements[2]
    assert reserved_quanta(offering) == 3
    counter = RateCounter.objects.get(scope="rl:subscribe")
    assert (counter.key, counter.count) == (user_key(investor.user), 2)


@pytest.mark.parametrize("credential", ["revoked", "expired", "deactivated user", "unknown"])
def test_a_bad_token_is_a_401_that_counts_and_writes_nothing(limits, credential):
    offering = open_offering()
    investor = kyc_investor()
    token = bad_token(investor.user, credential)
    headers = {"HTTP_AUTHORIZATION": f"Bearer {token}"}

    # a valid request but for the token; then with every other error it could also have
    answers = [
        post(offering.pk, headers, {"units": "1"}, "k-1"),
        post(offering.pk, headers, {"units": "1"}, None),  # no Idempotency-Key: a 422
        post(offering.pk, headers, {"units": "1", "extra": True}, "k-2"),  # unknown field
        post(offering.pk, headers, {"units": "-1"}, "k-3"),  # not positive
        post(987_654_321, headers, {"units": "1"}, "k-4"),  # no such offering
    ]

    for response in answers:
        assert response.status_code == 401, response.content
        assert response.json()["code"] == "not_authenticated"
        assert response["WWW-Authenticate"] == "Bearer"
    assert not RateCounter.objects.exists()
    assert not IdempotencyRecord.objects.exists()
    assert not Subscription.objects.exists()
    assert reserved_quanta(offering) == 0


def bad_token(user: User, credential: str) -> str:
    if credential == "revoked":
        token = api_token_issue(user=user).token
        assert api_token_revoke(clear_token=token)
        return token
    if credential == "expired":
        with time_machine.travel(timezone.now() - timedelta(days=2)):
            return api_token_issue(user=user, ttl=timedelta(hours=1)).token
    if credential == "deactivated user":
        User.objects.filter(pk=user.pk).update(is_active=False)
        return api_token_issue(user=user).token
    return "bb_" + "x" * 43


def test_a_good_token_with_a_bad_request_gets_the_request_error(limits):
    offering = open_offering()
    headers = bearer(kyc_investor().user)
    assert post(offering.pk, headers, {"units": "1"}, None).status_code == 422
    assert post(offering.pk, headers, {"units": "1", "extra": 1}, "k").status_code == 422
    assert post(987_654_321, headers, {"units": "1"}, "k").status_code == 404


def test_the_rate_key_computed_by_the_statement_is_the_one_python_computes():
    # The statement counts a pending token's call under a key it computes from the user's row;
    # a call that rolled back is counted again from Python (common/ratelimit.py `user_key`):
    # both must be the same key, to the microsecond, for any date_joined.
    user = new_user()
    moments = [
        datetime(2026, 12, 7, 21, 15, 59, 4201, tzinfo=UTC),
        datetime(1969, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
        datetime(2038, 1, 19, 3, 14, 8, 1, tzinfo=UTC),
        *(datetime(2025, 3, 1, tzinfo=UTC) + timedelta(microseconds=7_919 * n) for n in range(50)),
    ]
    for moment in moments:
        User.objects.filter(pk=user.pk).update(date_joined=moment)
        user.refresh_from_db()
        with connection.cursor() as cursor:
            cursor.execute(
                f"SELECT {user_key_sql('u')} FROM common_user u WHERE u.id = %s", [user.pk]
            )
            (key_sql,) = cursor.fetchone()
        assert key_sql == user_key(user), moment


def test_a_call_whose_key_is_held_too_long_is_counted_once(limits, settings):
    # The claim's wait on a concurrent holder of the key is bounded: past it the statement
    # fails (409) before it tells who the token's user is; the call is still counted once.
    settings.IDEMPOTENCY_WAIT_SECONDS = 0.3
    offering = open_offering()
    investor = kyc_investor()
    headers = bearer(investor.user)
    holding, release = threading.Event(), threading.Event()

    def hold_the_key() -> None:
        try:
            with transaction.atomic():
                IdempotencyRecord.objects.create(
                    user=investor.user, key="held", fingerprint="x", method="POST", path="/"
                )
                holding.set()
                release.wait(10)
                transaction.set_rollback(True)
        finally:
            connection.close()

    holder = threading.Thread(target=hold_the_key)
    holder.start()
    try:
        assert holding.wait(10)
        response = post(offering.pk, headers, {"units": "1"}, "held")
    finally:
        release.set()
        holder.join()

    assert response.status_code == 409, response.content
    assert response.json()["code"] == "idempotency_key_in_use"
    counter = RateCounter.objects.get(scope="rl:subscribe")
    assert (counter.key, counter.count) == (user_key(investor.user), 1)
    assert not Subscription.objects.exists()
