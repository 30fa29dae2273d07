"""Concurrent writers on PostgreSQL: a holding is never overdrawn, whatever the interleaving."""

import threading

import pytest
from django.db import connection

from captable import ledger
from captable.models import Entry
from captable.seals import ledger_seal_all
from captable.verification import ledger_verify
from common.errors import LimitExceeded
from investors.models import Investor
from offerings.models import Offering
from tests.captable.factories import investors, issue, key, offering_with_units

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


def test_a_posting_built_from_state_that_changed_underneath_is_rebuilt_not_written():
    # given a holding with two lots, read without locks by an optimistic posting
    offering = offering_with_units(10_000)
    seller, first_buyer, second_buyer = investors(3)
    older = issue(offering, seller, 10, cost_minor=1_000)
    issue(offering, seller, 10, cost_minor=3_000)
    ledger.holding_account(offering, first_buyer)
    ledger.holding_account(offering, second_buyer)
    source = ledger.holding_spec(offering, seller)
    destination = ledger.holding_spec(offering, second_buyer)
    lots_seen: list[list[int]] = []
    in_transaction: list[bool] = []

    def legs(accounts: ledger.LockedAccounts) -> list[ledger.Leg]:
        held = accounts[source.key]
        lots = ledger.open_lots(held)
        lots_seen.append([lot.quanta for lot in lots])
        in_transaction.append(connection.in_atomic_block)
        if len(lots_seen) == 1:
            # another connection takes the whole older lot after this read, and commits
            worker = threading.Thread(
                target=_transfer_in_other_connection, args=(offering, seller, first_buyer)
            )
            worker.start()
            worker.join(timeout=30)
        take = ledger.take_first_in_first_out(lots, 5)[0]
        return [
            ledger.Leg(
                held,
                -take.quanta,
                -take.cost_minor,
                lot_id=take.lot.lot_id,
                lot_remaining=take.lot.quanta,
            ),
            ledger.Leg(
                accounts[destination.key],
                take.quanta,
                take.cost_minor,
                new_lot=ledger.NewLot(take.lot.issued_at, origin_lot_id=take.lot.lot_id),
            ),
        ]

    # when the optimistic posting writes
    entry = ledger.entry_post(
        kind="transfer",
        idempotency_key=key("optimistic"),
        request={"test": "optimistic"},
        build_legs=legs,
        lock_first=[source, destination],
    )

    # then its first legs (from the older lot, now empty) were never written: the write's
    # version check refused them and it read again, still without a lock or a transaction
    assert in_transaction == [False, False]
    assert lots_seen[0] == [10, 10]
    assert lots_seen[1] == [10]
    drawn = entry.postings.get(amount__lt=0)
    assert drawn.lot_id != older.lots_opened.get().pk
    assert drawn.cost_minor == -1_500
    seller_holding = ledger.holding_account(offering, seller)
    assert seller_holding.balance == 20 - 10 - 5
    ledger_seal_all()
    report = ledger_verify()
    assert report.ok, report.summary()


def _transfer_in_other_connection(offering: Offering, seller: Investor, buyer: Investor) -> None:
    try:
        ledger.units_transfer(
            offering=offering,
            seller=seller,
            buyer=buyer,
            quanta=10,
            idempotency_key=key("underneath"),
        )
    finally:
        connection.close()
