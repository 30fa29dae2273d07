"""A small ledger for statement tests, posted at fixed moments with `time_machine` (entries
take their effective time from the clock): 2025-Q3 is the period under test.

Offering: $100.00 a unit, New York time. Before the period alice paid $30,000 into escrow,
it was released to the issuer and she got 300 units. During it bob paid $10,000 (released,
100 units), alice transferred 50 units to bob (first in, first out: $5,000 of cost moved),
and carol paid $2,500 that is still in escrow at the period's end. After it, more happens.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import time_machine

from captable import ledger
from captable.models import AccountKind, Entry
from investors.models import Investor
from offerings.models import Offering
from tests.captable.factories import issue, key, transfer
from tests.investors.factories import make_investor
from tests.offerings.factories import live_offering

NEW_YORK = ZoneInfo("America/New_York")
PERIOD = "2025-Q3"


def at(year: int, month: int, day: int, hour: int = 12) -> datetime:
    return datetime(year, month, day, hour, tzinfo=NEW_YORK)


@dataclass
class Book:
    offering: Offering
    alice: Investor
    bob: Investor
    carol: Investor

    @property
    def investors(self) -> list[Investor]:
        return [self.alice, self.bob, self.carol]


def pay_into_escrow(offering: Offering, investor: Investor, amount_minor: int) -> Entry:
    return ledger.cash_move(
        source=ledger.external_account(offering.currency),
        destination=ledger.escrow_account(offering, investor),
        amount_minor=amount_minor,
        idempotency_key=key("pay"),
    )


def release_escrow(offering: Offering, investor: Investor, amount_minor: int) -> Entry:
    return ledger.cash_move(
        source=ledger.escrow_account(offering, investor),
        destination=ledger.issuer_account(offering.issuer, AccountKind.PROCEEDS, offering.currency),
        amount_minor=amount_minor,
        idempotency_key=key("release"),
    )


def buy(offering: Offering, investor: Investor, quanta: int, moment: datetime) -> None:
    """Pay the price into escrow, release it to the issuer, issue the units at cost."""
    cost = quanta * offering.price_per_unit_minor // offering.quanta_per_unit
    with time_machine.travel(moment, tick=False):
        pay_into_escrow(offering, investor, cost)
        release_escrow(offering, investor, cost)
        issue(offering, investor, quanta, cost_minor=cost)


def investor_named(name: str, **fields: Any) -> Investor:
    return make_investor(
        kyc_status="approved", kyc_decided_at=at(2025, 4, 1), legal_name=name, **fields
    )


def seed_book(offering: Offering | None = None) -> Book:
    with time_machine.travel(at(2025, 5, 1), tick=False):
        offering = offering or live_offering(title="Maple Court Residences")
        ledger.units_authorize(offering=offering, quanta=10_000, idempotency_key=key("auth"))
    alice = investor_named("Alice Andersen")
    bob = investor_named("Bob Brennan")
    carol = investor_named("Carol Castillo")
    buy(offering, alice, 300, at(2025, 6, 15))
    buy(offering, bob, 100, at(2025, 8, 10))
    with time_machine.travel(at(2025, 9, 1), tick=False):
        transfer(offering, alice, bob, 50)
    with time_machine.travel(at(2025, 9, 15), tick=False):
        pay_into_escrow(offering, carol, 2_500_00)
    return Book(offering, alice, bob, carol)


def post_after_the_period(book: Book) -> None:
    """Activity in Q4: none of it may change a Q3 statement."""
    buy(book.offering, book.alice, 20, at(2025, 10, 5))
    with time_machine.travel(at(2025, 10, 6), tick=False):
        transfer(book.offering, book.bob, book.carol, 10)
        release_escrow(book.offering, book.carol, 2_500_00)
