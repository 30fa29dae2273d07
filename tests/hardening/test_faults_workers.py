"""Workers killed with SIGKILL in the middle of the platform's long runs, on PostgreSQL with a
real Redis broker and real `celery worker` processes (never skipped: the broker comes from the
environment or a throwaway redis-server, see tests/conftest.py `redis_url`).

Each run is first done cleanly inside a transaction that is rolled back, and its ledger
recorded (`ledger_state`: every entry by its idempotency key with its postings, lots, balances,
subscription and payment statuses, counters). Then the real run starts on a worker, the worker
is killed part-way, a new worker takes over the unacknowledged task (acks_late, re-delivered
after the test broker's 5 s visibility timeout) and the result must be that same ledger, with
every chain sealed and verified by `ledger_verify`.

Seal chain digests are not compared across the two runs: a seal covers entry ids, which differ
between a rolled-back run and a committed one by construction; the content per idempotency key
is compared instead, and each chain is recomputed by `ledger_verify`.

A statement batch changes no ledger: there the statements are compared with a clean
generation's data (the fingerprint of exactly the postings each is built from).

tests/captable/test_distributions_worker.py and tests/reports/test_worker.py kill workers in
these runs too (checking each holder paid once, each statement single and its PDF); here each
run is also compared with its clean run."""

import json
import os
import signal
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

import pytest
import time_machine
from django.db import transaction
from django.utils import timezone

from captable import ledger
from captable.closing import close_entry_key, offering_close
from captable.distributions import distribution_pay, distribution_pay_run
from captable.models import Entry, Subscription
from captable.seals import ledger_seal_all
from captable.verification import ledger_verify
from common.outbox import outbox_enqueue
from offerings.models import Offering
from reports.kinds import StatementScope, scope_check
from reports.models import Statement, StatementBatch, StatementKind
from reports.selectors import investors_to_report
from tests.captable import test_distributions_worker as distributions_worker
from tests.captable.test_closing import assert_same_ledger, fresh, ledger_state, staff
from tests.captable.test_payments import funded
from tests.captable.test_subscriptions import kyc_investor, open_offering
from tests.reports import test_worker as reports_worker
from tests.reports.ledger_book import at, buy, investor_named, seed_book
from tests.reports.test_worker import wait_until, worker_logs

pytestmark = [pytest.mark.postgres_only, pytest.mark.django_db(transaction=True)]

# The worker fixtures of the distribution worker tests (a queue of this test's own on Redis,
# worker processes started on demand and terminated after the test).
broker = distributions_worker.broker
media_root = distributions_worker.media_root
start_worker = distributions_worker.start_worker

SUBSCRIBERS = 120


class _Rollback(Exception):
    pass


@contextmanager
def undone() -> Iterator[None]:
    """Run the block in a transaction, then roll everything it wrote back (no commit, so no
    on-commit work such as outbox relays or seals runs either)."""
    try:
        with transaction.atomic():
            yield
            raise _Rollback
    except _Rollback:
        pass


def clean_run_state(run: Callable[[], Any], offering: Offering) -> dict[str, Any]:
    with undone():
        run()
        state = ledger_state(offering)
    return state


def without_row_ids(state: dict[str, Any], *names: str) -> dict[str, Any]:
    """`state` with the named ids dropped from each entry's metadata: rows created by the
    run itself (payouts) get new ids in the committed run; the entry keys still name who."""
    entries = {}
    for key, (kind, memo, actor, metadata, postings) in state["entries"].items():
        kept = {k: v for k, v in json.loads(metadata).items() if k not in names}
        entries[key] = (kind, memo, actor, json.dumps(kept, sort_keys=True), postings)
    return {**state, "entries": entries}


def kill(process: Any) -> None:
    """SIGKILL: no chance to acknowledge the task, roll back cleanly or say goodbye."""
    os.kill(process.pid, signal.SIGKILL)
    process.wait(timeout=30)
    time.sleep(0.5)


def assert_sealed_and_verified() -> None:
    ledger_seal_all()  # beat's job in production; no beat runs in these tests
    report = ledger_verify()
    assert report.ok, report.summary()
    assert report.unsealed_entries == 0, report.summary()


# --- closing an offering -----------------------------------------------------------------------


def offering_past_its_deadline() -> tuple[Offering, list[Subscription]]:
    """A Reg CF offering that opened 61 days ago and closed yesterday (by the real clock, the
    worker's), target met: SUBSCRIBERS investors funded 1 to 3 units each."""
    with time_machine.travel(timezone.now() - timedelta(days=61), tick=True):
        offering = open_offering(target_raise_minor=100_00, max_investment_units=10)
        subscriptions = [
            funded(kyc_investor(), offering, 1 + number % 3)[0] for number in range(SUBSCRIBERS)
        ]
    assert offering.closes_at < timezone.now()
    return fresh(offering), subscriptions


def accepted_count(offering: Offering) -> int:
    return Subscription.objects.filter(offering=offering, status="accepted").count()


def test_a_worker_killed_mid_close_is_replaced_and_the_ledger_is_that_of_a_clean_close(
    start_worker, tmp_path
):
    offering, subscriptions = offering_past_its_deadline()
    clean = clean_run_state(lambda: offering_close(offering=offering, actor=None), offering)
    assert fresh(offering).status == "live"  # the clean run left nothing behind
    first = start_worker()
    # when the close is enqueued as an approval does it (through the outbox, after commit)
    with transaction.atomic():
        outbox_enqueue(task_name="captable.close_offering", kwargs={"offering_id": offering.pk})
    # and the worker is killed once it has accepted some subscriptions but not half of them
    part_way = wait_until(lambda: 5 <= accepted_count(offering) < SUBSCRIBERS // 2, 120)
    assert part_way, worker_logs(tmp_path)
    kill(first)
    accepted_at_kill = accepted_count(offering)
    assert 0 < accepted_at_kill < SUBSCRIBERS, "the close was not part-way at the kill: no test"
    assert fresh(offering).status == "closing"
    # then a new worker finishes the close from where the first stopped
    start_worker()
    if not wait_until(lambda: fresh(offering).status == "closed_funded", 180):
        pytest.fail(f"the close did not finish after the kill:\n{worker_logs(tmp_path)}")
    # with exactly the ledger of the clean close: nobody issued or charged twice
    assert_same_ledger(ledger_state(offering), clean)
    for subscription in subscriptions:
        issued = Entry.objects.filter(
            idempotency_key=close_entry_key(offering.pk, "issue", subscription.pk)
        )
        assert issued.count() == 1
        assert ledger.holding_account(offering, subscription.investor).balance == (
            subscription.quanta
        )
    assert fresh(offering).units_issued_quanta == sum(s.quanta for s in subscriptions)
    assert_sealed_and_verified()
    print(f"\nclose: {SUBSCRIBERS} subscriptions, worker killed after {accepted_at_kill} accepted")


# --- a distribution's pay run --------------------------------------------------------------------


HOLDERS = 120


def test_a_worker_killed_mid_pay_run_leaves_the_ledger_of_a_clean_run(
    api_client, start_worker, tmp_path
):
    amount_minor = 500_000_03
    offering, holders, distribution = distributions_worker.funded_distribution(
        [1 + n % 5 for n in range(HOLDERS)], amount_minor
    )

    def pay_here() -> None:
        distribution_pay(actor=staff(), distribution_id=distribution.pk)
        distribution_pay_run(distribution_id=distribution.pk)

    clean = without_row_ids(clean_run_state(pay_here, offering), "payout_id")
    assert distributions_worker.paid_count(distribution) == 0
    first = start_worker()
    distributions_worker.start_paying(api_client, distribution)
    part_way = wait_until(
        lambda: 5 <= distributions_worker.paid_count(distribution) < HOLDERS // 2, 120
    )
    assert part_way, worker_logs(tmp_path)
    kill(first)
    paid_at_kill = distributions_worker.paid_count(distribution)
    assert 0 < paid_at_kill < HOLDERS, "the run was not part-way at the kill: no test"
    start_worker()
    if not wait_until(lambda: distributions_worker.is_paid(distribution), 180):
        pytest.fail(f"the run did not finish after the kill:\n{worker_logs(tmp_path)}")
    assert_same_ledger(without_row_ids(ledger_state(offering), "payout_id"), clean)
    distributions_worker.assert_each_holder_paid_once(offering, holders, distribution, amount_minor)
    assert_sealed_and_verified()
    print(f"\npay run: {HOLDERS} holders, worker killed after {paid_at_kill} paid")


# --- a statement batch ---------------------------------------------------------------------------


def clean_fingerprints() -> dict[int, tuple[str, int]]:
    """Each investor to report for Q3 → (fingerprint, postings) of the statement data a clean
    generation builds: exactly the postings its PDF is made from (nothing rendered here)."""
    fingerprints = {}
    for investor_id in investors_to_report(period=reports_worker.Q3):
        scope = StatementScope(
            kind=StatementKind.INVESTOR_PERIODIC, period=reports_worker.Q3, investor_id=investor_id
        )
        fingerprint = scope_check(scope).build(scope).fingerprint
        fingerprints[investor_id] = (fingerprint.sha256, fingerprint.posting_count)
    return fingerprints


def test_a_worker_killed_mid_statement_batch_leaves_the_statements_of_a_clean_run(
    api_client, start_worker, tmp_path
):
    book = seed_book()
    for number in range(1, 10):
        investor = investor_named(f"Investor {number:02d}")
        buy(book.offering, investor, number, at(2025, 7, 10 + number))
    clean = clean_fingerprints()
    first = start_worker()
    batch = reports_worker.start_batch(api_client)

    def mid_batch() -> bool:
        batch.refresh_from_db()
        return batch.done >= 2 and batch.items.filter(status="pending", attempts=1).exists()

    assert wait_until(mid_batch, 120), worker_logs(tmp_path)
    kill(first)
    done_at_kill = StatementBatch.objects.get(pk=batch.pk).done
    assert done_at_kill < len(clean), "the batch was not part-way at the kill: no test"
    start_worker()
    if not wait_until(lambda: reports_worker.finished(batch), 180):
        pytest.fail(f"the batch did not finish after the kill:\n{worker_logs(tmp_path)}")
    assert (batch.status, batch.done, batch.failed) == ("completed", len(clean), 0)
    # one statement per investor, none missing, none extra, each built from the same postings
    # as the clean generation
    statements = {
        s.investor_id: (s.fingerprint, s.posting_count)
        for s in Statement.objects.filter(batch=batch)
    }
    assert Statement.objects.count() == len(clean)
    assert statements == clean
    print(f"\nstatements: {len(clean)} investors, worker killed after {done_at_kill} done")
