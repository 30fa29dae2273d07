"""Ledger test helpers: an offering with authorized units, investors, and quick operations."""

from __future__ import annotations

import itertools
from typing import Any

from django.utils import timezone

from captable import ledger
from captable.models import Entry
from investors.models import Investor
from offerings.models import Offering
from tests.investors.factories import make_investor
from tests.offerings.factories import live_offering

_keys = itertools.count(1)


def key(prefix: str = "k") -> str:
    return f"{prefix}-{next(_keys)}"


def offering_with_units(quanta: int = 10_000, **overrides: Any) -> Offering:
    offering = live_offering(**overrides)
    ledger.units_authorize(offering=offering, quanta=quanta, idempotency_key=key("auth"))
    return offering


def investors(count: int) -> list[Investor]:
    return [
        make_investor(kyc_status="approved", kyc_decided_at=timezone.now()) for _ in range(count)
    ]


def issue(offering: Offering, investor: Investor, quanta: int, cost_minor: int = 0) -> Entry:
    return ledger.units_issue(
        offering=offering,
        investor=investor,
        quanta=quanta,
        cost_minor=cost_minor,
        idempotency_key=key("issue"),
    )


def transfer(offering: Offering, seller: Investor, buyer: Investor, quanta: int) -> Entry:
    return ledger.units_transfer(
        offering=offering, seller=seller, buyer=buyer, quanta=quanta, idempotency_key=key("xfer")
    )
