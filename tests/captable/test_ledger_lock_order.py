"""The ledger's lock order (PostgreSQL): an investor's accounts are locked before the shared
ones, whatever their ids, by every path that locks accounts — so no two writers wait on each
other in a cycle, and the shared hot rows are held for the least time.

Observed with a third connection: while a writer waits for an investor's account that another
transaction holds, the shared account it also needs (with the lower id) is still free."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import pytest
from django.db import DatabaseError, connection, transaction

from captable import ledger
from captable.models import Account, Entry
from common.errors import LimitExceeded
from tests.captable.factories import investors

pytestmark = [pytest.mark.postgres_only, pytest.mark.django_db(transaction=True)]

USD = "USD"
WAIT_SECONDS = 20


def _on_own_connection(work: Callable[[], None], failures: list[BaseException]) -> None:
    try:
        work()
    except BaseException as error:  # reported to the test's thread
        failures.append(error)
    finally:
        connection.close()


def _writers_waiting_on_a_lock() -> int:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
            "AND wait_event_type = 'Lock'"
        )
        (waiting,) = cursor.fetchone()
    return int(waiting)


def _is_free(account: Account) -> bool:
    try:
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(
                "SELECT id FROM captable_account WHERE id = %s FOR UPDATE NOWAIT", [account.pk]
            )
        return True
    except DatabaseError:
        return False


def _lock_both(shared: Account, cash: Account) -> Callable[[], None]:
    def work() -> None:
        with transaction.atomic():
            ledger.lock_accounts([shared, cash])

    return work


def _move_cash(shared: Account, cash: Account) -> Callable[[], None]:
    def work() -> None:  # outside a transaction: the optimistic one-statement write
        ledger.cash_move(
            source=ledger.external_spec(USD),
            destination=ledger.cash_spec(cash.investor, USD),  # type: ignore[arg-type]
            amount_minor=1_00,
            idempotency_key="lock-order:move",
        )

    return work


@pytest.mark.parametrize("writer", [_lock_both, _move_cash], ids=["lock_accounts", "entry"])
def test_a_writer_locks_the_investors_account_before_a_shared_one(
    writer: Callable[[Account, Account], Callable[[], None]],
) -> None:
    # given: a shared account older (lower id) than an investor's, and a transaction holding
    # the investor's
    shared = ledger.external_account(USD)
    (person,) = investors(1)
    cash = ledger.cash_account(person, USD)
    assert shared.pk < cash.pk
    held, release = threading.Event(), threading.Event()
    failures: list[BaseException] = []

    def hold_cash() -> None:
        with transaction.atomic():
            ledger.lock_accounts([cash])
            held.set()
            release.wait(WAIT_SECONDS)

    holder = threading.Thread(target=_on_own_connection, args=(hold_cash, failures))
    holder.start()
    assert held.wait(WAIT_SECONDS)
    # when: a writer needing both starts, and waits
    blocked = threading.Thread(target=_on_own_connection, args=(writer(shared, cash), failures))
    blocked.start()
    deadline = time.monotonic() + WAIT_SECONDS
    while not (waited := _writers_waiting_on_a_lock() == 1) and time.monotonic() < deadline:
        time.sleep(0.02)
    # then: it has not taken the shared account (which comes last), and goes on once released
    shared_was_free = _is_free(shared)
    release.set()
    holder.join(WAIT_SECONDS)
    blocked.join(WAIT_SECONDS)
    assert not failures
    assert waited
    assert shared_was_free


def _free_seen_from_another_connection(account: Account) -> bool:
    seen: list[bool] = []
    failures: list[BaseException] = []
    look = threading.Thread(
        target=_on_own_connection, args=(lambda: seen.append(_is_free(account)), failures)
    )
    look.start()
    look.join(WAIT_SECONDS)
    assert not failures
    return seen == [True]


def test_a_fan_outs_own_writes_run_before_its_shared_accounts_are_locked() -> None:
    # given: a funded shared source (committed) and two investors
    source = ledger.external_account(USD)
    people = investors(2)
    fan_out = ledger.CashFanOut(
        kind="cash_move",
        currency=USD,
        source=ledger.external_spec(USD),  # the external account may go below zero
        idempotency_keys=[f"lock-order:fan-out:{person.pk}" for person in people],
        request_digests=[
            ledger.request_digest("cash_move", {"to": person.pk}) for person in people
        ],
        investor_ids=[person.pk for person in people],
        to_cash=[1_00, 2_00],
        sides=[],
        metadata_json=["{}", "{}"],
    )
    source_free_during_then: list[bool] = []
    then_saw: list[dict[str, int]] = []

    def then(posted: dict[str, int]) -> None:
        then_saw.append(dict(posted))
        source_free_during_then.append(_free_seen_from_another_connection(source))

    # when: the fan-out runs, its `then` called between the entries and the shared legs
    with transaction.atomic():
        posted = ledger.cash_fan_out_post(fan_out, then=then)
        source_free_at_the_end = _free_seen_from_another_connection(source)
    # then: `then` saw every entry while the shared account was still free; by the end of the
    # write the shared account is held (to COMMIT)
    assert then_saw == [posted]
    assert set(posted) == set(fan_out.idempotency_keys)
    assert source_free_during_then == [True]
    assert source_free_at_the_end is False


@pytest.mark.parametrize("held_index", [0, 4], ids=["lowest_held", "highest_held"])
def test_a_posting_statement_locks_its_shared_accounts_by_id_before_updating_them(
    held_index: int,
) -> None:
    # given: five shared accounts, opened in id order, one held by another transaction
    shared = [ledger.account_open(ledger.distribution_payable_spec(n, USD)) for n in range(5)]
    assert [a.pk for a in shared] == sorted(a.pk for a in shared)
    (person,) = investors(1)
    held, release = threading.Event(), threading.Event()
    failures: list[BaseException] = []

    def hold_one() -> None:
        with transaction.atomic():
            ledger.lock_accounts([shared[held_index]])
            held.set()
            release.wait(WAIT_SECONDS)

    def post_on_all() -> None:  # the fan-out writes its shared legs without locking first
        ledger.cash_fan_out_post(
            ledger.CashFanOut(
                kind="cash_move",
                currency=USD,
                source=ledger.external_spec(USD),
                idempotency_keys=["lock-order:shared-by-id"],
                request_digests=[ledger.request_digest("cash_move", {"n": 1})],
                investor_ids=[person.pk],
                to_cash=[1_00],
                sides=[
                    (ledger.distribution_payable_spec(n, USD), [n + 1]) for n in reversed(range(5))
                ],
                metadata_json=["{}"],
            )
        )

    holder = threading.Thread(target=_on_own_connection, args=(hold_one, failures))
    holder.start()
    assert held.wait(WAIT_SECONDS)
    # when: a statement posting on all five waits for the held one
    writer = threading.Thread(target=_on_own_connection, args=(post_on_all, failures))
    writer.start()
    deadline = time.monotonic() + WAIT_SECONDS
    while not (waited := _writers_waiting_on_a_lock() == 1) and time.monotonic() < deadline:
        time.sleep(0.02)
    # then: it holds exactly the ones with lower ids (it takes them in id order), and completes
    free = [_is_free(account) for account in shared]
    release.set()
    holder.join(WAIT_SECONDS)
    writer.join(WAIT_SECONDS)
    assert not failures
    assert waited
    assert free[:held_index] == [False] * held_index
    assert free[held_index + 1 :] == [True] * (4 - held_index)
    balances = dict(
        Account.objects.filter(pk__in=[a.pk for a in shared]).values_list("pk", "balance")
    )
    assert balances == {account.pk: n + 1 for n, account in enumerate(shared)}


def test_a_debit_landing_after_the_fan_out_read_its_source_is_refused_as_short() -> None:
    # given: a source holding 10.00
    source = ledger.distribution_payable_spec(99, USD)
    ledger.cash_move(
        source=ledger.external_spec(USD),
        destination=source,
        amount_minor=10_00,
        idempotency_key="lock-order:fund-source",
    )
    (person,) = investors(1)
    debiting, release = threading.Event(), threading.Event()
    failures: list[BaseException] = []

    def debit_and_hold() -> None:
        with transaction.atomic():
            ledger.cash_move(
                source=source,
                destination=ledger.external_spec(USD),
                amount_minor=8_00,
                idempotency_key="lock-order:debit-source",
            )
            debiting.set()
            release.wait(WAIT_SECONDS)

    holder = threading.Thread(target=_on_own_connection, args=(debit_and_hold, failures))

    def start_the_debit(_: dict[str, int]) -> None:
        # Between the fan-out's entries and its read of the source: the read sees 10.00 (the
        # debit is not committed); its update of the source waits for the debit. (A refused
        # fan-out is tried once more without the replays, as any: by then the debit is in.)
        if not debiting.is_set():
            holder.start()
            assert debiting.wait(WAIT_SECONDS)

    outcome: list[BaseException | dict[str, int]] = []

    def fan_out_five() -> None:
        try:
            outcome.append(
                ledger.cash_fan_out_post(
                    ledger.CashFanOut(
                        kind="cash_move",
                        currency=USD,
                        source=source,
                        idempotency_keys=["lock-order:short"],
                        request_digests=[ledger.request_digest("cash_move", {"n": 2})],
                        investor_ids=[person.pk],
                        to_cash=[5_00],
                        sides=[],
                        metadata_json=["{}"],
                    ),
                    then=start_the_debit,
                )
            )
        except LimitExceeded as error:
            outcome.append(error)

    writer = threading.Thread(target=_on_own_connection, args=(fan_out_five, failures))
    writer.start()
    deadline = time.monotonic() + WAIT_SECONDS
    while not (waited := _writers_waiting_on_a_lock() == 1) and time.monotonic() < deadline:
        time.sleep(0.02)
    # when: the debit commits while the fan-out waits to update the source
    release.set()
    writer.join(WAIT_SECONDS)
    holder.join(WAIT_SECONDS)
    # then: the fan-out is refused as short (its source's CHECK), and wrote nothing
    assert not failures
    assert waited
    (error,) = outcome
    assert isinstance(error, LimitExceeded)
    assert error.code == "insufficient_balance"
    assert Account.objects.get(key=source.key).balance == 2_00
    assert not Entry.objects.filter(idempotency_key="lock-order:short").exists()
