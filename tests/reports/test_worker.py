"""Bulk statements with a real Celery worker process and a real Redis broker: the batch
requested over HTTP is relayed through the outbox after commit, a worker renders every
investor's statement, and each PDF parses back with the ledger's figures. A worker killed
with SIGKILL mid-batch loses nothing: its unacknowledged task is re-delivered to the next
worker, and the unique constraints keep every statement single."""

import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from django.core.files.storage import default_storage
from django.db.models import Sum

from captable.models import AccountKind, Posting
from captable.selectors import positions_as_of
from common.money import money_display
from config.celery import app
from reports.formatting import Formatter
from reports.models import BatchStatus, ItemStatus, Statement, StatementBatch
from reports.periods import period_parse
from tests.conftest import (
    bearer,
    database_url_of_test_db,
    forget_celery_broker_pools,
    new_user,
)
from tests.investors.factories import post_json
from tests.reports.conftest import pdf_text
from tests.reports.ledger_book import PERIOD, at, buy, investor_named, seed_book

pytestmark = [pytest.mark.postgres_only, pytest.mark.django_db(transaction=True)]

ROOT = Path(__file__).resolve().parents[2]
Q3 = period_parse(PERIOD)


@pytest.fixture
def broker(redis_url, settings):
    """This process relays outbox messages to Redis (a queue of this test's own) instead of
    running tasks in-process."""
    queue = f"test-statements-{uuid.uuid4().hex[:8]}"
    settings.CELERY_TASK_ALWAYS_EAGER = False
    previous = (app.conf.broker_url, app.conf.task_always_eager, app.conf.task_default_queue)
    app.conf.update(broker_url=redis_url, task_always_eager=False, task_default_queue=queue)
    yield redis_url, queue
    forget_celery_broker_pools()
    app.conf.update(
        broker_url=previous[0], task_always_eager=previous[1], task_default_queue=previous[2]
    )


@pytest.fixture
def start_worker(broker, media_root, tmp_path):
    redis_url, queue = broker
    log_dir = tmp_path / "worker-logs"
    log_dir.mkdir()
    processes: list[subprocess.Popen[bytes]] = []

    def start() -> subprocess.Popen[bytes]:
        log = (log_dir / f"worker-{len(processes) + 1}.log").open("w")
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "tests.reports.worker_app",
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
                "CELERY_BROKER_URL": redis_url,
                "DATABASE_URL": database_url_of_test_db(),
                "DJANGO_SETTINGS_MODULE": "config.settings",
                "BRICKBOOK_VAR_DIR": str(media_root.parent),  # MEDIA_ROOT = <var>/media
                "BRICKBOOK_TEST_QUEUE": queue,
                "BRICKBOOK_TEST_VISIBILITY_TIMEOUT": "5",
                "EMAIL_BACKEND": "django.core.mail.backends.console.EmailBackend",
            },
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        processes.append(process)
        return process

    yield start
    for process in processes:
        if process.poll() is None:
            process.terminate()
            process.wait(timeout=30)


def worker_logs(tmp_path) -> str:
    return "\n".join(p.read_text() for p in sorted((tmp_path / "worker-logs").glob("*.log")))


def wait_until(condition, timeout_seconds: float) -> bool:
    deadline = time.monotonic() + timeout_seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.2)
    return False


def start_batch(client) -> StatementBatch:
    staff = new_user(is_staff=True)
    response = post_json(client, "/api/v1/statements/batches", {"period": PERIOD}, **bearer(staff))
    assert response.status_code == 202, response.content
    return StatementBatch.objects.get(pk=response.json()["id"])


def finished(batch: StatementBatch) -> bool:
    batch.refresh_from_db()
    return batch.status not in (BatchStatus.PENDING, BatchStatus.RUNNING)


def contributions_in_period(investor, offering) -> int:
    """Straight from the postings: cash paid from outside into the investor's escrow."""
    total = Posting.objects.filter(
        account__kind=AccountKind.ESCROW,
        account__investor=investor,
        account__offering=offering,
        amount__gt=0,
        entry__kind="cash_in",
        effective_at__gt=Q3.start_instant(offering.time_zone),
        effective_at__lte=Q3.end_instant(offering.time_zone),
    ).aggregate(total=Sum("amount"))["total"]
    return int(total or 0)


def assert_pdf_matches_the_ledger(statement: Statement, offering) -> None:
    investor = statement.investor
    assert investor is not None
    with default_storage.open(str(statement.file.name), "rb") as handle:
        text = pdf_text(handle.read())
    closing = Q3.end_instant(offering.time_zone)
    position = next(
        (
            p
            for p in positions_as_of(investor=investor, as_of=closing)
            if p.offering_id == offering.pk
        ),
        None,
    )
    fmt = Formatter()
    assert investor.legal_name in text
    assert statement.fingerprint in text
    if position is not None:
        assert fmt.units(position.quanta, offering.quanta_per_unit) in text
        assert money_display(position.cost_minor, offering.currency) in text
    assert money_display(contributions_in_period(investor, offering), offering.currency) in text


def test_a_real_worker_runs_a_batch_to_completion(api_client, start_worker, tmp_path):
    book = seed_book()
    worker = start_worker()
    batch = start_batch(api_client)
    if not wait_until(lambda: finished(batch), 120):
        worker.terminate()
        pytest.fail(f"the batch did not finish; worker output:\n{worker_logs(tmp_path)}")
    assert (batch.status, batch.total, batch.done, batch.failed) == ("completed", 3, 3, 0)
    statements = list(Statement.objects.select_related("investor").order_by("investor_id"))
    assert [s.investor_id for s in statements] == sorted(i.pk for i in book.investors)
    for statement in statements:
        assert_pdf_matches_the_ledger(statement, book.offering)
    # the investors were emailed by the worker, after each statement's commit
    assert wait_until(
        lambda: not Statement.objects.filter(notified_at__isnull=True).exists(), 60
    ), worker_logs(tmp_path)
    logs = worker_logs(tmp_path)
    for investor in book.investors:
        assert f"To: {investor.user.email}" in logs


def test_a_worker_killed_mid_batch_leaves_nothing_missing_or_duplicated(
    api_client, start_worker, media_root, tmp_path
):
    book = seed_book()
    more = [investor_named(f"Investor {n:02d}") for n in range(1, 10)]
    for number, investor in enumerate(more, start=1):
        buy(book.offering, investor, number, at(2025, 7, 10 + number))
    expected = sorted(i.pk for i in [*book.investors, *more])
    first = start_worker()
    batch = start_batch(api_client)

    def mid_batch() -> bool:
        """A few statements done and one being rendered right now (started, not done)."""
        batch.refresh_from_db()
        return batch.done >= 3 and batch.items.filter(status="pending", attempts=1).exists()

    # when the first worker is in the middle of a statement...
    assert wait_until(mid_batch, 120), worker_logs(tmp_path)
    # ...it is killed outright, without a chance to acknowledge or clean up
    os.kill(first.pid, signal.SIGKILL)
    first.wait(timeout=30)
    in_flight = list(batch.items.filter(status="pending", attempts=1))
    assert in_flight, "nothing was in flight at the kill: no test"
    # and another worker takes over (the lost task comes back after the visibility timeout)
    start_worker()
    if not wait_until(lambda: finished(batch), 180):
        pytest.fail(f"the batch did not finish after the kill:\n{worker_logs(tmp_path)}")
    assert (batch.status, batch.total, batch.done, batch.failed) == (
        "completed",
        len(expected),
        len(expected),
        0,
    )
    # every investor has exactly one statement, every item points at it
    statements = list(Statement.objects.select_related("investor").order_by("investor_id"))
    assert [s.investor_id for s in statements] == expected
    items = batch.items.all()
    assert {item.status for item in items} == {ItemStatus.DONE}
    assert {item.statement_id for item in items} == {s.pk for s in statements}
    # the task that died with the worker was delivered again and run to the end
    for item in in_flight:
        item.refresh_from_db()
        assert item.status == ItemStatus.DONE
        assert item.attempts >= 2
    for statement in statements:
        assert_pdf_matches_the_ledger(statement, book.offering)
    # at most the one file the killed worker was writing is left without a statement
    files = {str(p.relative_to(media_root)) for p in media_root.rglob("*.pdf")}
    referenced = {s.file.name for s in statements}
    assert referenced <= files
    assert len(files - referenced) <= 1
