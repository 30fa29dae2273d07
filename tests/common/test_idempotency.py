"""Idempotency-Key: a retried POST runs once and gets the first response back; the same key
for another request, or while the first is still running, changes nothing.

The side effect counted everywhere is an OutboxMessage row created by the operation."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import orjson
import pytest
import time_machine
from django.db import connection
from django.http import HttpRequest, HttpResponse
from django.test import RequestFactory
from pydantic import BaseModel

from common.errors import Conflict, LimitExceeded, ValidationFailed
from common.idempotency import IDEMPOTENCY_HEADER, idempotency_records_purge, idempotent
from common.models import IdempotencyRecord, OutboxMessage, User
from common.tasks import idempotency_purge
from config.api import status_for
from tests.conftest import new_user

PATH = "/api/v1/offerings/7/subscriptions"
REPLAYED = "Idempotent-Replayed"


def post(
    user: User | None,
    key: str | None,
    body: Any = None,
    *,
    path: str = PATH,
    raw: bytes | None = None,
) -> HttpRequest:
    headers = {} if key is None else {IDEMPOTENCY_HEADER: key}
    data = raw if raw is not None else orjson.dumps(body if body is not None else {"units": 10})
    request = RequestFactory().post(
        path, data=data, content_type="application/json", headers=headers
    )
    request.auth = user  # type: ignore[attr-defined]  # what BearerAuth sets
    return request


def effect(label: str = "subscribe") -> tuple[int, dict[str, Any]]:
    message = OutboxMessage.objects.create(task_name="tests.effect", kwargs={"label": label})
    return 201, {"message_id": message.pk, "label": label}


def effects() -> int:
    return OutboxMessage.objects.filter(task_name="tests.effect").count()


@pytest.mark.embedded
@pytest.mark.django_db
def test_a_replay_returns_the_first_response_and_runs_nothing():
    user = new_user()
    # given a first request that ran
    first = idempotent(post(user, "key-1"), operation=effect)
    # when the client retries it
    replay = idempotent(post(user, "key-1"), operation=effect)
    # then it gets the very same response, marked as replayed, and nothing ran again
    assert first.status_code == replay.status_code == 201
    assert replay.content == first.content
    assert orjson.loads(first.content)["label"] == "subscribe"
    assert first.get(REPLAYED) is None
    assert replay[REPLAYED] == "true"
    assert replay["Content-Type"] == "application/json"
    assert effects() == 1
    assert IdempotencyRecord.objects.get(user=user, key="key-1").response_status == 201


class Quote(BaseModel):
    zeta: str
    amount: Decimal
    at: datetime


@pytest.mark.embedded
@pytest.mark.django_db
def test_a_pydantic_body_is_dumped_as_json_and_replayed_byte_for_byte():
    user = new_user()
    quote = Quote(
        zeta="last key first", amount=Decimal("1000.10"), at=datetime(2025, 1, 2, tzinfo=UTC)
    )
    first = idempotent(post(user, "q"), operation=lambda: (200, quote))
    replay = idempotent(post(user, "q"), operation=lambda: (500, {"must": "not run"}))
    # key order, exact decimals and dates survive storage (jsonb would reorder keys)
    assert (
        first.content == b'{"zeta":"last key first","amount":"1000.10","at":"2025-01-02T00:00:00Z"}'
    )
    assert (replay.status_code, replay.content) == (200, first.content)


@pytest.mark.embedded
@pytest.mark.django_db
def test_the_same_json_serialised_differently_is_the_same_request():
    user = new_user()
    first = idempotent(post(user, "k", raw=b'{"units": 10, "note": "x"}'), operation=effect)
    replay = idempotent(post(user, "k", raw=b'{"note":"x","units":10}'), operation=effect)
    assert replay[REPLAYED] == "true"
    assert replay.content == first.content
    assert effects() == 1


@pytest.mark.embedded
@pytest.mark.django_db
@pytest.mark.parametrize(
    "other",
    [
        {"body": {"units": 11}},
        {"body": {"units": 10}, "path": "/api/v1/offerings/8/subscriptions"},
        {"body": {"units": 10}, "path": PATH + "?dry_run=1"},
    ],
    ids=["other-body", "other-path", "other-query"],
)
def test_the_same_key_for_another_request_is_refused_and_changes_nothing(other):
    user = new_user()
    first = idempotent(post(user, "k", {"units": 10}), operation=effect)
    ran = []

    def should_not_run():
        ran.append(True)
        return effect("second")

    with pytest.raises(Conflict) as refused:
        idempotent(
            post(user, "k", other["body"], path=other.get("path", PATH)), operation=should_not_run
        )
    assert refused.value.code == "idempotency_key_reused"
    assert status_for(refused.value) == 409
    assert ran == []
    assert effects() == 1
    # and the original request still replays its own response
    assert idempotent(post(user, "k", {"units": 10}), operation=effect).content == first.content


@pytest.mark.embedded
@pytest.mark.django_db
@pytest.mark.parametrize(
    ("first_body", "second_body"),
    [
        (b'{"amount": 12345678901234567890123}', b'{"amount": 12345678901234567890124}'),
        (b'{"amount": 1.0}', b'{"amount": 1}'),
        (b'{"units": 10}', b'{"units": "10"}'),
        (b'{"units": [1, 2]}', b'{"units": [2, 1]}'),
        (b"units=10", b"units=11"),
    ],
    ids=["huge-integers", "float-vs-int", "number-vs-string", "list-order", "not-json"],
)
def test_bodies_that_differ_only_in_number_text_or_order_are_different(first_body, second_body):
    user = new_user()
    idempotent(post(user, "k", raw=first_body), operation=effect)
    with pytest.raises(Conflict) as refused:
        idempotent(post(user, "k", raw=second_body), operation=effect)
    assert refused.value.code == "idempotency_key_reused"
    assert effects() == 1


@pytest.mark.embedded
@pytest.mark.django_db
def test_keys_are_scoped_per_user():
    alice, bob = new_user(), new_user()
    for_alice = idempotent(post(alice, "shared-key"), operation=lambda: effect("alice"))
    for_bob = idempotent(post(bob, "shared-key"), operation=lambda: effect("bob"))
    assert for_bob.get(REPLAYED) is None
    assert orjson.loads(for_alice.content)["label"] == "alice"
    assert orjson.loads(for_bob.content)["label"] == "bob"
    assert effects() == 2
    assert IdempotencyRecord.objects.filter(key="shared-key").count() == 2


@pytest.mark.embedded
@pytest.mark.django_db
def test_a_refused_operation_leaves_nothing_and_a_retry_runs():
    user = new_user()

    def refused():
        effect("half-done")  # written, then rolled back with the record
        raise LimitExceeded("Over your Reg CF limit.", code="investment_limit")

    # when the operation raises a domain error
    with pytest.raises(LimitExceeded):
        idempotent(post(user, "k"), operation=refused)
    # then neither its effect nor the key is kept
    assert effects() == 0
    assert not IdempotencyRecord.objects.exists()
    # and a retry with the same key runs for real
    retry = idempotent(post(user, "k"), operation=effect)
    assert retry.status_code == 201
    assert retry.get(REPLAYED) is None
    assert effects() == 1


@pytest.mark.embedded
@pytest.mark.django_db
@pytest.mark.parametrize(
    "key",
    [None, "", "k" * 256, "clé", "tab\tinside", "new\nline", " leading", "trailing "],
    ids=["missing", "empty", "256-chars", "non-ascii", "tab", "newline", "leading", "trailing"],
)
def test_a_missing_or_malformed_key_is_refused_before_anything_runs(key):
    user = new_user()
    with pytest.raises(ValidationFailed) as refused:
        idempotent(post(user, key), operation=effect)
    assert refused.value.code == "idempotency_key_required"
    assert status_for(refused.value) == 400
    assert effects() == 0
    assert not IdempotencyRecord.objects.exists()


@pytest.mark.embedded
@pytest.mark.django_db
@pytest.mark.parametrize(
    "key", ["k" * 255, "a", "order 42: retry #3 ~!"], ids=["255", "1", "spaces"]
)
def test_keys_of_1_to_255_printable_characters_are_accepted(key):
    response = idempotent(post(new_user(), key), operation=effect)
    assert response.status_code == 201
    assert IdempotencyRecord.objects.get().key == key


@pytest.mark.embedded
@pytest.mark.django_db
def test_purge_removes_records_older_than_the_ttl_and_keeps_newer_ones(settings):
    user = new_user()
    start = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
    with time_machine.travel(start, tick=False):
        idempotent(post(user, "old"), operation=effect)
    with time_machine.travel(start + timedelta(hours=2), tick=False):
        idempotent(post(user, "newer"), operation=effect)
    # 25 hours after the first: only the first is past the default 24 h
    with time_machine.travel(start + timedelta(hours=25), tick=False):
        assert idempotency_purge() == 1  # the Celery task, run in-process
        assert list(IdempotencyRecord.objects.values_list("key", flat=True)) == ["newer"]
        # the purged key is new again: it runs
        again = idempotent(post(user, "old"), operation=effect)
        assert again.get(REPLAYED) is None
        assert effects() == 3
    # a longer TTL keeps what the default would drop
    settings.IDEMPOTENCY_KEY_TTL_HOURS = 48
    with time_machine.travel(start + timedelta(hours=30), tick=False):
        assert idempotency_records_purge() == 0
    with time_machine.travel(start + timedelta(hours=51), tick=False):
        assert idempotency_records_purge(batch_size=1) == 1
        assert list(IdempotencyRecord.objects.values_list("key", flat=True)) == ["old"]


# --- concurrency on PostgreSQL: real threads, real transactions ------------------------------

THREADS = 20


def _run_in_thread(outcomes: dict[int, Any], number: int, call: Any) -> threading.Thread:
    def target() -> None:
        try:
            outcomes[number] = call()
        except Exception as error:  # kept as the outcome and asserted on, never swallowed
            outcomes[number] = error
        finally:
            connection.close()

    thread = threading.Thread(target=target)
    thread.start()
    return thread


@pytest.mark.postgres_only
@pytest.mark.django_db(transaction=True)
def test_twenty_concurrent_duplicates_run_once_and_all_see_the_first_response():
    user = new_user()
    barrier = threading.Barrier(THREADS)
    outcomes: dict[int, Any] = {}

    def slow_effect():
        result = effect()
        time.sleep(0.3)  # the others arrive while this is still running
        return result

    def attempt():
        barrier.wait(timeout=30)
        return idempotent(post(user, "race"), operation=slow_effect)

    threads = [_run_in_thread(outcomes, n, attempt) for n in range(THREADS)]
    for thread in threads:
        thread.join(timeout=60)

    assert len(outcomes) == THREADS
    responses = [o for o in outcomes.values() if isinstance(o, HttpResponse)]
    refused = [o for o in outcomes.values() if not isinstance(o, HttpResponse)]
    assert all(isinstance(e, Conflict) and e.code == "idempotency_key_in_use" for e in refused), (
        refused
    )
    firsts = [r for r in responses if r.get(REPLAYED) is None]
    assert len(firsts) == 1
    first = firsts[0]
    assert all((r.status_code, r.content) == (201, first.content) for r in responses)
    assert effects() == 1
    assert IdempotencyRecord.objects.filter(user=user, key="race").count() == 1


@pytest.mark.postgres_only
@pytest.mark.django_db(transaction=True)
def test_a_duplicate_waits_at_most_the_configured_time_then_gets_409(settings):
    settings.IDEMPOTENCY_WAIT_SECONDS = 0.3
    user = new_user()
    inside, release = threading.Event(), threading.Event()
    outcomes: dict[int, Any] = {}

    def held_operation():
        effect("first")
        inside.set()
        assert release.wait(timeout=30)
        # the bounded wait applies to the key only: the operation's own locks wait as usual
        with connection.cursor() as cursor:
            cursor.execute("SELECT current_setting('lock_timeout')")
            return 201, {"lock_timeout": cursor.fetchone()[0]}

    # given a first request still running
    first = _run_in_thread(
        outcomes, 1, lambda: idempotent(post(user, "k"), operation=held_operation)
    )
    assert inside.wait(timeout=30)
    # when a duplicate arrives and the first outlasts the wait
    started = time.monotonic()
    duplicate = _run_in_thread(outcomes, 2, lambda: idempotent(post(user, "k"), operation=effect))
    duplicate.join(timeout=30)
    waited = time.monotonic() - started
    release.set()
    first.join(timeout=30)

    # then the duplicate was refused as in use, without effect, after about the wait
    assert isinstance(outcomes[2], Conflict), outcomes
    assert outcomes[2].code == "idempotency_key_in_use"
    assert 0.25 <= waited < 5
    assert isinstance(outcomes[1], HttpResponse), outcomes
    assert orjson.loads(outcomes[1].content) == {"lock_timeout": "0"}
    assert list(OutboxMessage.objects.values_list("kwargs__label", flat=True)) == ["first"]
    # and once the first finished, the retry is a replay of it
    retry = idempotent(post(user, "k"), operation=effect)
    assert retry[REPLAYED] == "true"
    assert retry.content == outcomes[1].content


@pytest.mark.postgres_only
@pytest.mark.django_db(transaction=True)
def test_a_duplicate_waiting_on_a_first_that_fails_runs_itself():
    user = new_user()
    inside, release = threading.Event(), threading.Event()
    outcomes: dict[int, Any] = {}

    def failing_operation():
        effect("first")
        inside.set()
        assert release.wait(timeout=30)
        raise Conflict("Offering closed meanwhile.", code="offering_closed")

    first = _run_in_thread(
        outcomes, 1, lambda: idempotent(post(user, "k"), operation=failing_operation)
    )
    assert inside.wait(timeout=30)
    duplicate = _run_in_thread(
        outcomes, 2, lambda: idempotent(post(user, "k"), operation=lambda: effect("second"))
    )
    time.sleep(0.3)  # the duplicate is now blocked on the key
    assert duplicate.is_alive()
    release.set()
    first.join(timeout=30)
    duplicate.join(timeout=30)

    assert isinstance(outcomes[1], Conflict)
    assert outcomes[1].code == "offering_closed"
    assert isinstance(outcomes[2], HttpResponse), outcomes
    assert outcomes[2].get(REPLAYED) is None
    assert orjson.loads(outcomes[2].content)["label"] == "second"
    assert list(OutboxMessage.objects.values_list("kwargs__label", flat=True)) == ["second"]
    assert IdempotencyRecord.objects.get(user=user, key="k").response_status == 201


@pytest.mark.postgres_only
@pytest.mark.django_db
def test_the_wait_bound_applies_to_the_key_only_the_operation_keeps_the_lock_timeout(settings):
    settings.IDEMPOTENCY_WAIT_SECONDS = 3
    user = new_user()
    seen: list[str] = []

    def operation() -> tuple[int, dict[str, Any]]:
        with connection.cursor() as cursor:
            cursor.execute("SHOW lock_timeout")
            seen.append(cursor.fetchone()[0])
        return effect()

    with connection.cursor() as cursor:
        cursor.execute("SET lock_timeout = '7s'")
    try:
        # when a request claims its key (bounded by a 3 s wait) and runs
        idempotent(post(user, "bounded"), operation=operation)
        # then its operation waited under the session's own lock_timeout, not the key's bound
        assert seen == ["7s"]
    finally:
        with connection.cursor() as cursor:
            cursor.execute("SET lock_timeout = 0")
