"""The holders of record are the as-of cap table at the record date, whatever happened after it.

`holders_of_record` reads each holding account's balance less its postings after the instant
(not every posting up to it); the as-of cap table (`captable_as_of`) sums the postings up to
the instant — the replay. Both must name the same holders with the same quanta at any instant:
before anything was issued, between any two entries, and after the last."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from captable import ledger
from captable.distribution_selectors import holders_of_record
from captable.selectors import captable_as_of
from offerings.models import Offering
from tests.captable.factories import investors, key, offering_with_units
from tests.captable.test_payments import at

START = datetime(2025, 1, 6, 12, tzinfo=UTC)


def _as_of_replay(offering: Offering, moment: datetime) -> dict[int, int]:
    rows = captable_as_of(offering=offering, as_of=moment).rows
    return {row.investor_id: row.quanta for row in rows if row.quanta}


def _of_record(offering: Offering, moment: datetime) -> dict[int, int]:
    holders = holders_of_record(offering_id=offering.pk, as_of=moment)
    assert [h.investor_id for h in holders] == sorted(h.investor_id for h in holders)
    return {h.investor_id: h.quanta for h in holders}


@pytest.mark.embedded
@pytest.mark.django_db
def test_holders_of_record_before_between_and_after_later_moves() -> None:
    # given: a holds 100 and b 50 on day 1; a sells b 30 on day 2; b redeems 80 on day 3
    with at(START):
        offering = offering_with_units(1_000)
        a, b = investors(2)
    with at(START + timedelta(days=1)):
        ledger.units_issue(
            offering=offering, investor=a, quanta=100, cost_minor=0, idempotency_key=key("i")
        )
        ledger.units_issue(
            offering=offering, investor=b, quanta=50, cost_minor=0, idempotency_key=key("i")
        )
    with at(START + timedelta(days=2)):
        ledger.units_transfer(
            offering=offering, seller=a, buyer=b, quanta=30, idempotency_key=key("t")
        )
    with at(START + timedelta(days=3)):
        ledger.units_redeem(
            offering=offering, investor=b, quanta=80, price_minor=0, idempotency_key=key("r")
        )
    # then: as held at each instant, not as held now
    day = timedelta(days=1)
    assert _of_record(offering, START) == {}
    assert _of_record(offering, START + day + day / 2) == {a.pk: 100, b.pk: 50}
    assert _of_record(offering, START + 2 * day + day / 2) == {a.pk: 70, b.pk: 80}
    assert _of_record(offering, START + 4 * day) == {a.pk: 70}
    # and: an instant exactly at an entry's effective time includes that entry
    assert _of_record(offering, START + 2 * day) == {a.pk: 70, b.pk: 80}


@settings(
    max_examples=10,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    moves=st.lists(
        st.tuples(st.integers(0, 3), st.integers(0, 3), st.integers(1, 40)),
        min_size=1,
        max_size=8,
    )
)
@pytest.mark.embedded
@pytest.mark.django_db
def test_holders_of_record_equal_the_as_of_replay_at_every_instant(
    moves: list[tuple[int, int, int]],
) -> None:
    """Each move issues (seller == buyer) or transfers (what the seller has, at most) an hour
    after the previous one; at every half hour the two reads agree."""
    with at(START):
        offering = offering_with_units(10_000)
        people = investors(4)
    held = [0, 0, 0, 0]
    for hour, (seller, buyer, quanta) in enumerate(moves, start=1):
        with at(START + timedelta(hours=hour)):
            if seller == buyer:
                ledger.units_issue(
                    offering=offering,
                    investor=people[buyer],
                    quanta=quanta,
                    cost_minor=0,
                    idempotency_key=key(),
                )
                held[buyer] += quanta
            elif held[seller]:
                moved = min(quanta, held[seller])
                ledger.units_transfer(
                    offering=offering,
                    seller=people[seller],
                    buyer=people[buyer],
                    quanta=moved,
                    idempotency_key=key(),
                )
                held[seller] -= moved
                held[buyer] += moved
    for half_hours in range(0, 2 * len(moves) + 3):
        moment = START + timedelta(minutes=30 * half_hours)
        assert _of_record(offering, moment) == _as_of_replay(offering, moment), moment
    assert _of_record(offering, START + timedelta(days=1)) == {
        person.pk: quanta for person, quanta in zip(people, held, strict=True) if quanta
    }
