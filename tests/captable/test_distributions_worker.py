"""A distribution's pay run on a real Celery worker process with a real Redis broker: staff start
the run over HTTP, the outbox relays it after commit, and a worker pays every holder. A worker
killed with SIGKILL part-way through the run loses nothing and pays nobody twice: its
unacknowledged task (`acks_late`) is re-delivered to the next worker after the broker's
visibility timeout, which pays only the payouts left; the ledger verifies after.

The broker and worker fixtures are those of tests/reports/test_worker.py (same worker app)."""

import os
import signal
import time
import uuid
from datetime import timedelta

import pytest
import time_machine
from django.db.models import Sum
from django.utils import timezone

from captable import ledger
from captable.distributions import distribution_approve, distribution_fund
from captable.models import Distribution, DistributionStatus, Entry, Payout
from captable.verification import ledger_verify
from config.celery import app
from tests.captable.test_distributions import balance, closed_offering, declare, staff
from tests.conftest import bearer, forget_celery_broker_pools
from tests.investors.factories import post_json
from tests.offerings.factories import member_of
from tests.reports import test_worker as reports_worker
from tests.reports.test_worker import wait_until, worker_logs

pytestmark = [pytest.mark.postgres_only, pytest.mark.django_db(transaction=True)]

HOLDERS = 240

# The worker-process fixture of the statements tests (it uses the `broker` below).
start_worker = reports_worker.start_worker


@pytest.fixture
def broker(redis_url, settings):
    """This process relays outbox messages to a Redis queue of this test's own. Pools are
    forgotten before as well as after, whatever ran earlier in this process."""
    forget_celery_broker_pools()
    queue = f"test-distributions-{uuid.uuid4().hex[:8]}"
    settings.CELERY_TASK_ALWAYS_EAGER = False
    previous = (app.conf.broker_url, app.conf.task_always_eager, app.conf.task_default_queue)
    app.conf.update(broker_url=redis_url, task_always_eager=False, task_default_queue=queue)
    yield redis_url, queue
    forget_celery_broker_pools()
    app.conf.update(
        broker_url=previous[0], task_always_eager=previous[1], task_default_queue=previous[2]
    )


@pytest.fixture
def media_root(tmp_path, settings):
    root = tmp_path / "media"
    root.mkdir()
    settings.MEDIA_ROOT = root
    return root


def funded_distribution(holdings: list[int], amount_minor: int):
    """Declared three days ago with that day as the record date, so it can be paid now by
    the real clock (the worker's)."""
    with time_machine.travel(timezone.now() - timedelta(days=3), tick=True):
        offering, holders = closed_offering(holdings)
        distribution = declare(offering, amount_minor)
    distribution_approve(actor=staff(), distribution_id=distribution.pk)
    distribution_fund(actor=member_of(offering.sponsor), distribution_id=distribution.pk)
    return offering, holders, Distribution.objects.get(pk=distribution.pk)


def start_paying(client, distribution) -> None:
    response = post_json(
        client, f"/api/v1/distributions/{distribution.pk}/pay", None, **bearer(staff())
    )
    assert response.status_code == 202, response.content


def paid_count(distribution) -> int:
    return Payout.objects.filter(distribution=distribution, paid_at__isnull=False).count()


def is_paid(distribution) -> bool:
    distribution.refresh_from_db()
    return distribution.status == DistributionStatus.PAID


def assert_each_holder_paid_once(offering, holders, distribution, amount_minor) -> None:
    payouts = {p.investor_id: p for p in Payout.objects.filter(distribution=distribution)}
    assert set(payouts) == {h.pk for h in holders}
    for holder in holders:
        assert balance(ledger.cash_spec(holder, "USD")) == payouts[holder.pk].net_minor
    keys = Entry.objects.filter(
        idempotency_key__startswith=f"distribution:{distribution.pk}:payout:"
    )
    assert keys.count() == len(holders)
    gross = Payout.objects.filter(distribution=distribution).aggregate(total=Sum("gross_minor"))
    assert gross["total"] == amount_minor
    assert balance(ledger.distribution_payable_spec(distribution.pk, "USD")) == 0
    assert ledger_verify().ok


def test_a_real_worker_pays_every_holder(api_client, start_worker, tmp_path):
    offering, holders, distribution = funded_distribution([1, 2, 3], 600_01)
    worker = start_worker()
    start_paying(api_client, distribution)
    if not wait_until(lambda: is_paid(distribution), 120):
        worker.terminate()
        pytest.fail(f"the run did not finish; worker output:\n{worker_logs(tmp_path)}")
    assert_each_holder_paid_once(offering, holders, distribution, 600_01)


def test_a_worker_killed_part_way_through_a_pay_run_pays_each_holder_once(
    api_client, start_worker, tmp_path
):
    amount_minor = 1_000_000_07
    offering, holders, distribution = funded_distribution(
        [1 + n % 7 for n in range(HOLDERS)], amount_minor
    )
    first = start_worker()
    start_paying(api_client, distribution)
    # when the first worker has paid some holders but not all...
    assert wait_until(lambda: 10 <= paid_count(distribution) < HOLDERS // 2, 120), worker_logs(
        tmp_path
    )
    # ...it is killed outright, without a chance to acknowledge or clean up
    os.kill(first.pid, signal.SIGKILL)
    first.wait(timeout=30)
    time.sleep(0.5)
    paid_at_kill = paid_count(distribution)
    assert 0 < paid_at_kill < HOLDERS, "the run was not part-way at the kill: no test"
    assert not is_paid(distribution)
    # and another worker takes over (the lost task comes back after the visibility timeout)
    start_worker()
    if not wait_until(lambda: is_paid(distribution), 180):
        pytest.fail(f"the run did not finish after the kill:\n{worker_logs(tmp_path)}")
    # then: every holder paid exactly once, the ledger balanced and sealed chains intact
    assert_each_holder_paid_once(offering, holders, distribution, amount_minor)
