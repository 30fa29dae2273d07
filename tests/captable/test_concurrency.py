"""Concurrent writers on PostgreSQL: a holding is never overdrawn, whatever the interleaving."""

import threading

import pytest
from django.db import connection

from captable import ledger
from captable.models import Entry
from captable.seals import ledger_seal_all
from captable.verification import ledger_verify
from common.errors import LimitExceeded
from tests.captable.factories import investors, issue, offering_with_units

pytestmark = [pytest.mark.postgres_only, pytest.mark.django_db(transaction=True)]

THREADS = 50
HELD = 100
EACH = 7  # the holding covers only 14 of the 50 transfers


def test_fifty_concurrent_transfers_out_of_one_holding():
    # given one holding of 100 quanta and 50 buyers
    offering = offering_with_units(10_000)
    seller, *buyers = investors(THREADS + 1)
    issue(offering, seller, HELD, cost_minor=HELD * 100)
    for buyer in buyers:  # accounts exist up front so every thread races on the same lock
        ledger.holding_account(offering, buyer)
    barrier = threading.Barrier(THREADS)
    outcomes: dict[int, str] = {}

    def attempt(number: int) -> None:
        try:
            barrier.wait(timeout=30)
            ledger.units_transfer(
                offering=offering,
                seller=seller,
                buyer=buyers[number],
                quanta=EACH,
                idempotency_key=f"race-{number}",
            )
            outcomes[number] = "accepted"
        except LimitExceeded:
            outcomes[number] = "rejected"
        except Exception as error:  # reported by the assertion below, never swallowed
            outcomes[number] = f"error: {error!r}"
        finally:
            connection.close()

    # when all 50 transfer at once
    threads = [threading.Thread(target=attempt, args=(n,)) for n in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)

    # then nothing failed in an unexpected way, and exactly what the holding covered went through
    assert sorted(set(outcomes.values())) == ["accepted", "rejected"], outcomes
    accepted = [n for n, outcome in outcomes.items() if outcome == "accepted"]
    assert len(accepted) == HELD // EACH
    seller_holding = ledger.holding_account(offering, seller)
    seller_holding.refresh_from_db()
    assert seller_holding.balance == HELD - EACH * len(accepted) >= 0
    # accepted transfers sum to what left the holding; rejected ones changed nothing
    received = {}
    for number, buyer in enumerate(buyers):
        holding = ledger.holding_account(offering, buyer)
        holding.refresh_from_db()
        received[number] = holding.balance
    assert sum(received.values()) == HELD - seller_holding.balance
    assert all(received[n] == (EACH if n in accepted else 0) for n in received)
    assert Entry.objects.filter(kind="transfer").count() == len(accepted)
    assert not Entry.objects.filter(
        idempotency_key__in=[f"race-{n}" for n in outcomes if n not in accepted]
    ).exists()
    # and the whole ledger still verifies, cost basis included
    ledger_seal_all()
    report = ledger_verify()
    assert report.ok, report.summary()
