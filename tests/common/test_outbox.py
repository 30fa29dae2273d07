"""The outbox loses no work: not when relayed normally, not when the process dies between
the commit and the relay, not when the same logical job is enqueued twice."""

import os
import subprocess
import sys
import textwrap

import pytest
from celery import shared_task
from django.db import connection, transaction

from common.models import OutboxMessage, RateCounter
from common.outbox import outbox_enqueue, outbox_relay
from tests.conftest import database_url_of_test_db

EFFECT_SCOPE = "test-outbox-effect"


@shared_task(name="tests.record_effect", acks_late=True)
def record_effect(label: str) -> None:
    # Idempotent like every real task: running it twice leaves one row.
    from django.utils import timezone

    RateCounter.objects.get_or_create(
        scope=EFFECT_SCOPE, key=label, defaults={"window_start": timezone.now(), "count": 1}
    )


def effects() -> list[str]:
    return sorted(RateCounter.objects.filter(scope=EFFECT_SCOPE).values_list("key", flat=True))


@pytest.mark.embedded
@pytest.mark.django_db(transaction=True)
def test_enqueued_work_runs_after_commit():
    with transaction.atomic():
        outbox_enqueue(task_name="tests.record_effect", kwargs={"label": "a"})
        assert effects() == []  # nothing runs before the commit
    assert effects() == ["a"]
    assert OutboxMessage.objects.get().status == OutboxMessage.Status.DISPATCHED


@pytest.mark.embedded
@pytest.mark.django_db(transaction=True)
def test_rolled_back_change_enqueues_nothing():
    with pytest.raises(RuntimeError), transaction.atomic():
        outbox_enqueue(task_name="tests.record_effect", kwargs={"label": "b"})
        raise RuntimeError("service failed after enqueueing")
    assert OutboxMessage.objects.count() == 0
    assert effects() == []


@pytest.mark.embedded
@pytest.mark.django_db(transaction=True)
def test_same_dedupe_key_is_stored_once():
    for _ in range(2):
        with transaction.atomic():
            outbox_enqueue(task_name="tests.record_effect", kwargs={"label": "c"}, dedupe_key="c")
    assert OutboxMessage.objects.count() == 1
    assert effects() == ["c"]


@pytest.mark.embedded
def test_enqueue_outside_a_transaction_is_a_bug(db):
    with pytest.raises(RuntimeError, match="inside"):
        # pytest-django's `db` wraps the test in a transaction; leave it to test the guard.
        connection.in_atomic_block = False
        try:
            outbox_enqueue(task_name="tests.record_effect", kwargs={"label": "d"})
        finally:
            connection.in_atomic_block = True


CRASHING_SERVICE = textwrap.dedent(
    """
    import os, django
    django.setup()
    from django.db import transaction
    from common.outbox import outbox_enqueue
    with transaction.atomic():
        # Registered before the outbox's own on-commit relay, so it runs first: the process
        # dies after COMMIT and before the relay, the window the outbox exists for.
        transaction.on_commit(lambda: os._exit(17))
        outbox_enqueue(task_name="tests.record_effect", kwargs={"label": "survived"})
    raise SystemExit("unreachable: the on-commit crash did not happen")
    """
)


@pytest.mark.postgres_only
@pytest.mark.django_db(transaction=True)
def test_crash_between_commit_and_relay_loses_nothing():
    url = database_url_of_test_db()
    # given a service process that dies right after its commit
    result = subprocess.run(
        [sys.executable, "-c", CRASHING_SERVICE],
        env={**os.environ, "DATABASE_URL": url, "DJANGO_SETTINGS_MODULE": "config.settings"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 17, result.stderr
    # then the change committed, the work is still pending and has not run
    message = OutboxMessage.objects.get()
    assert message.status == OutboxMessage.Status.PENDING
    assert effects() == []
    # when the periodic relay runs (Celery beat in production)
    assert outbox_relay() == 1
    # then the work ran once, and relaying again sends nothing
    assert effects() == ["survived"]
    assert outbox_relay() == 0
    message.refresh_from_db()
    assert message.status == OutboxMessage.Status.DISPATCHED
