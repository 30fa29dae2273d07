"""Closing under concurrency on PostgreSQL (real threads, committed transactions): several
closes of one offering at once — the approved request's task, the scheduled task, a retry —
issue each subscription's units once and end in the ledger of one clean close."""

from __future__ import annotations

import threading

import pytest
from django.db import connection

from captable import closing, ledger
from captable.models import Entry
from captable.verification import ledger_verify
from tests.captable.test_closing import (
    after_deadline,
    escrow_total,
    fresh,
    holding_of,
    proceeds_key,
    success_scenario,
)
from tests.captable.test_payments import balance
from tests.captable.test_subscriptions import statuses

pytestmark = [pytest.mark.postgres_only, pytest.mark.django_db(transaction=True)]

CLOSERS = 4


def test_concurrent_closes_issue_each_subscription_once():
    # given the worked example (A, B, C funded 3, 5 and 1 units)
    offering, subs = success_scenario()
    barrier = threading.Barrier(CLOSERS)
    errors: list[BaseException] = []

    def close() -> None:
        try:
            barrier.wait(timeout=30)
            closing.offering_close(offering=offering, actor=None)
        except BaseException as error:
            errors.append(error)
        finally:
            connection.close()

    # when several closes run at once
    with after_deadline(offering):
        threads = [threading.Thread(target=close) for _ in range(CLOSERS)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=120)
    # then none failed, and the result is the one of a single close
    assert errors == []
    assert fresh(offering).status == "closed_funded"
    assert statuses(*subs.values()) == [
        "accepted",
        "accepted",
        "accepted",
        "cancelled",
        "cancelled",
    ]
    assert fresh(offering).units_issued_quanta == 9
    for name, units in (("a", 3), ("b", 5), ("c", 1)):
        assert holding_of(offering, subs[name].investor) == units
    assert balance(proceeds_key(offering)) == 8379
    assert balance(ledger.platform_fees_spec("USD").key) == 765
    assert escrow_total(offering) == 0
    close_entries = Entry.objects.filter(idempotency_key__startswith=f"close:{offering.pk}:")
    assert close_entries.count() == 9  # issue, proceeds and fees for each of A, B and C
    assert Entry.objects.filter(kind="authorize").count() == 1
    report = ledger_verify()
    assert report.ok, report.summary()
