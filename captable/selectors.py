"""Reads of the ledger as of any instant: a query over postings up to that instant, which
equals a replay of the entries up to it (tested by property tests against a replay)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import ROUND_HALF_EVEN, Decimal
from typing import NamedTuple

from django.db import connection
from django.db.models import Sum
from django.utils import timezone

from captable.models import Account, AccountKind, Posting, units_asset
from investors.models import Investor
from offerings.models import Offering

PERCENT_PLACES = Decimal("0.0001")


def percent_of(part: int, whole: int) -> Decimal:
    """A share as a percentage for display (4 places, half to even); not a money amount."""
    if whole == 0:
        return Decimal(0)
    return (Decimal(part) * 100 / Decimal(whole)).quantize(PERCENT_PLACES, ROUND_HALF_EVEN)


class CapTableRow(NamedTuple):
    """One holder. A tuple (built ~2x faster than a frozen dataclass, 100,000 per report);
    the percentage is computed when read, from the units issued at the instant."""

    investor_id: int
    quanta: int
    cost_minor: int
    issued_quanta: int

    @property
    def percent(self) -> Decimal:
        """Percentage of the units issued, 4 places, half to even."""
        return (
            _percent_places(self.quanta, self.issued_quanta) if self.issued_quanta else Decimal(0)
        )


@dataclass(frozen=True)
class CapTable:
    offering_id: int
    as_of: datetime
    authorized_quanta: int
    treasury_quanta: int
    issued_quanta: int
    rows: list[CapTableRow]


# One pass over the asset's postings up to the instant, aggregated per account first (no sort;
# measured ~2x faster over 1M postings than joining every posting to its account), then the
# accounts: the holdings, and the treasury and authorized counter from the same pass.
_CAPTABLE_AS_OF_SQL = """
    SELECT a.kind, a.investor_id, t.quanta, t.cost
    FROM (
        SELECT account_id,
               CAST(SUM(amount) AS BIGINT) AS quanta,
               CAST(SUM(cost_minor) AS BIGINT) AS cost
        FROM captable_posting
        WHERE asset = %s AND effective_at <= %s
        GROUP BY account_id
    ) t
    JOIN captable_account a ON a.id = t.account_id
    WHERE t.quanta <> 0
"""


def _percent_places(part: int, whole: int) -> Decimal:
    """`percent_of` in integer arithmetic (same half-to-even result, far cheaper per row)."""
    scaled, remainder = divmod(part * 1_000_000, whole)  # percent with 4 places
    if 2 * remainder > whole or (2 * remainder == whole and scaled % 2):
        scaled += 1
    return Decimal(scaled).scaleb(-4)


def captable_as_of(*, offering: Offering, as_of: datetime | None = None) -> CapTable:
    """Holders of the offering at `as_of` (default now): units, cost basis, percentage of
    the units issued, ordered by investor id."""
    moment = as_of or timezone.now()
    asset = units_asset(offering.pk)
    # Adapted as the ORM would: SQLite compares datetimes as UTC text, so an aware datetime
    # in another offset must be converted first, or the comparison is wrong.
    instant = connection.ops.adapt_datetimefield_value(moment)
    with connection.cursor() as cursor:
        cursor.execute(_CAPTABLE_AS_OF_SQL, [asset, instant])
        balances = cursor.fetchall()
    holdings = sorted(
        (investor_id, quanta, cost)
        for kind, investor_id, quanta, cost in balances
        if kind == AccountKind.HOLDING
    )
    supply = {kind: quanta for kind, _, quanta, _ in balances if kind != AccountKind.HOLDING}
    issued = sum(quanta for _, quanta, _ in holdings)
    return CapTable(
        offering_id=offering.pk,
        as_of=moment,
        authorized_quanta=-int(supply.get(AccountKind.AUTHORIZED, 0)),
        treasury_quanta=int(supply.get(AccountKind.TREASURY, 0)),
        issued_quanta=issued,
        rows=[CapTableRow(investor, quanta, cost, issued) for investor, quanta, cost in holdings],
    )


@dataclass(frozen=True)
class Position:
    offering_id: int
    quanta: int
    cost_minor: int


def positions_as_of(*, investor: Investor, as_of: datetime | None = None) -> list[Position]:
    """The investor's holdings in every offering at `as_of` (default now)."""
    moment = as_of or timezone.now()
    rows = (
        Posting.objects.filter(
            account__investor=investor,
            account__kind=AccountKind.HOLDING,
            effective_at__lte=moment,
        )
        .values("account__offering_id")
        .annotate(quanta=Sum("amount"), cost=Sum("cost_minor"))
        .exclude(quanta=0)
        .order_by("account__offering_id")
    )
    return [Position(row["account__offering_id"], row["quanta"], row["cost"]) for row in rows]


def account_balance_as_of(*, account: Account, as_of: datetime | None = None) -> int:
    moment = as_of or timezone.now()
    total = Posting.objects.filter(account=account, effective_at__lte=moment).aggregate(
        total=Sum("amount")
    )["total"]
    return int(total or 0)


@dataclass(frozen=True)
class LotPosition:
    lot_id: int
    issued_at: datetime
    quanta: int
    cost_minor: int


def lots_as_of(*, holding: Account, as_of: datetime | None = None) -> list[LotPosition]:
    moment = as_of or timezone.now()
    rows = (
        Posting.objects.filter(account=holding, effective_at__lte=moment)
        .values("lot_id", "lot__issued_at")
        .annotate(quanta=Sum("amount"), cost=Sum("cost_minor"))
        .exclude(quanta=0)
        .order_by("lot__issued_at", "lot_id")
    )
    return [
        LotPosition(row["lot_id"], row["lot__issued_at"], row["quanta"], row["cost"])
        for row in rows
    ]
