"""PostgreSQL-specific physical behaviour of reservations."""

from __future__ import annotations

import pytest
from django.db import connection

from tests.captable.test_subscriptions import (
    kyc_investor,
    open_offering,
    reserved_quanta,
    subscribe,
)

pytestmark = [pytest.mark.django_db, pytest.mark.postgres_only]


def test_a_reservation_updates_the_offering_row_in_place():
    # given a live offering (its row shares its page with nothing that needs the space)
    offering = open_offering()
    investor = kyc_investor()
    updated_before, heap_only_before = offering_updates_in_this_transaction()

    # when three subscriptions reserve units
    for units in (1, 2, 3):
        subscribe(investor, offering, units)

    # then each updated the offering row once, heap-only: no new entry in any of the
    # offering's indexes (it changes no indexed column), so the hot row stays cheap to update
    updated, heap_only = offering_updates_in_this_transaction()
    assert (updated - updated_before, heap_only - heap_only_before) == (3, 3)
    assert reserved_quanta(offering) == 6


def offering_updates_in_this_transaction() -> tuple[int, int]:
    """(rows updated, of which heap-only) in offerings_offering by this transaction."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT n_tup_upd, n_tup_hot_upd FROM pg_stat_xact_user_tables "
            "WHERE relid = 'offerings_offering'::regclass"
        )
        row = cursor.fetchone()
    return int(row[0]), int(row[1])
