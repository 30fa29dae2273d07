"""Background work through a real broker and a real worker process: the outbox row written
with the change is relayed to Redis after commit and a `celery worker` runs the task."""

import os
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import pytest
from django.db import transaction
from django.utils import timezone

from common.models import OutboxMessage
from common.outbox import outbox_enqueue
from config.celery import app
from offerings.models import Offering, OfferingStatus
from tests.conftest import database_url_of_test_db, forget_celery_broker_pools
from tests.offerings.factories import advance, new_offering

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def broker(redis_url, settings):
    """Point this process's Celery app at the broker instead of running tasks in-process."""
    settings.CELERY_TASK_ALWAYS_EAGER = False
    previous = (app.conf.broker_url, app.conf.task_always_eager)
    app.conf.update(broker_url=redis_url, task_always_eager=False)
    yield redis_url
    forget_celery_broker_pools()
    app.conf.update(broker_url=previous[0], task_always_eager=previous[1])


@pytest.fixture
def worker(broker):
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "config",
            "worker",
            "--pool",
            "solo",
            "--loglevel",
            "WARNING",
            "--without-heartbeat",
            "--without-gossip",
            "--without-mingle",
        ],
        cwd=ROOT,
        env={
            **os.environ,
            "CELERY_BROKER_URL": broker,
            "DATABASE_URL": database_url_of_test_db(),
            "DJANGO_SETTINGS_MODULE": "config.settings",
        },
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    yield process
    process.terminate()
    process.wait(timeout=30)


def wait_until(condition, timeout_seconds: float = 60) -> bool:
    deadline = time.monotonic() + timeout_seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.2)
    return False


@pytest.mark.postgres_only
@pytest.mark.django_db(transaction=True)
def test_outbox_work_is_run_by_a_real_worker(worker):
    # given an approved offering whose opening time has passed
    offering = advance(new_offering(opens_at=timezone.now() - timedelta(minutes=1)), to="approved")
    # when the change that schedules the work commits
    with transaction.atomic():
        outbox_enqueue(task_name="offerings.open_due", kwargs={})
    # then the outbox row was handed to the broker...
    assert OutboxMessage.objects.get().status == OutboxMessage.Status.DISPATCHED
    # ...and the worker process took the offering live
    went_live = wait_until(
        lambda: Offering.objects.get(pk=offering.pk).status == OfferingStatus.LIVE
    )
    if not went_live:
        worker.terminate()
        pytest.fail(f"worker did not run the task; its output:\n{worker.communicate()[0]}")
    assert Offering.objects.get(pk=offering.pk).went_live_at is not None
