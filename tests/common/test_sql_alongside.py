"""`common.sql.alongside`: work run on another thread and database connection while a block
runs, waited for at the block's end."""

from __future__ import annotations

import threading

import pytest
from django.db import connection

from common.sql import alongside

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.embedded]


def _backend_identity() -> object:
    """What tells one database connection from another, on either database."""
    connection.ensure_connection()
    return id(connection.connection)


def test_work_runs_on_another_thread_and_connection_and_is_waited_for() -> None:
    seen: dict[str, object] = {}
    release = threading.Event()

    def work() -> None:
        seen["thread"] = threading.current_thread().name
        seen["connection"] = _backend_identity()
        release.wait(timeout=10)
        seen["done"] = True

    with alongside(work):
        release.set()
        mine = _backend_identity()
    assert seen["done"] is True  # waited for before the block's end returned
    assert seen["thread"] != threading.current_thread().name
    assert seen["connection"] != mine


def test_the_works_error_is_raised_at_the_blocks_end() -> None:
    ran_block = []

    def work() -> None:
        raise LookupError("from the other connection")

    with pytest.raises(LookupError, match="from the other connection"), alongside(work):
        ran_block.append(True)
    assert ran_block == [True]


def test_the_blocks_error_wins_over_the_works() -> None:
    def work() -> None:
        raise LookupError("secondary")

    with pytest.raises(ValueError, match="the block's"), alongside(work):
        raise ValueError("the block's")


def test_when_false_the_work_does_not_run() -> None:
    ran: list[bool] = []
    with alongside(lambda: ran.append(True), when=False):
        pass
    assert ran == []
