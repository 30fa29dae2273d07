"""Ledger reads for statements. Balances come from `captable.selectors` (the as-of reads the
rest of the platform uses); this module adds what a statement needs beyond them: the postings
themselves (their ids and amounts make the fingerprint, and their entries the transaction
list) and which investors have anything to report for a period. Read-only: nothing here
creates an account or writes a row."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db.models import Count, Q, QuerySet, Sum

from captable.models import Account, AccountKind, Payout, Posting, units_asset
from common.auth import staff_required
from common.errors import NotFound
from offerings.selectors import signed_in_user, sponsor_ids_of
from reports.models import ItemStatus, Statement, StatementBatch, StatementBatchItem
from reports.periods import Period

INVESTOR_ACCOUNT_KINDS = (AccountKind.HOLDING, AccountKind.ESCROW, AccountKind.CASH)
# The earliest and the latest any day starts and ends on Earth (UTC+14, UTC-12): a window
# between them can only include more candidates, never miss one.
EARLIEST_ZONE = "Etc/GMT-14"
LATEST_ZONE = "Etc/GMT+12"


@dataclass(frozen=True, slots=True)
class PostingRow:
    posting_id: int
    entry_id: int
    entry_kind: str
    reverses_id: int | None
    effective_at: datetime
    account_id: int
    account_kind: str
    offering_id: int | None
    asset: str
    amount: int
    cost_minor: int


POSTING_ROW_FIELDS = (
    "pk",
    "entry_id",
    "entry__kind",
    "entry__reverses_id",
    "effective_at",
    "account_id",
    "account__kind",
    "account__offering_id",
    "asset",
    "amount",
    "cost_minor",
)


def investor_accounts(*, investor_id: int, offering_id: int | None = None) -> list[Account]:
    """The investor's holding and escrow accounts (of one offering, or all), and their cash
    accounts when no offering is named. Only accounts that exist: none is created."""
    accounts = Account.objects.filter(investor_id=investor_id, kind__in=INVESTOR_ACCOUNT_KINDS)
    if offering_id is not None:
        accounts = accounts.filter(offering_id=offering_id)
    return list(accounts.order_by("pk"))


def account_postings_until(*, account_ids: list[int], until: datetime) -> list[PostingRow]:
    """Every posting on these accounts up to `until`, oldest first, with its entry."""
    rows = (
        Posting.objects.filter(account_id__in=account_ids, effective_at__lte=until)
        .order_by("effective_at", "pk")
        .values_list(*POSTING_ROW_FIELDS)
    )
    return [PostingRow(*row) for row in rows]


def entry_postings_on_accounts(*, entry_ids: list[int], account_ids: list[int]) -> list[PostingRow]:
    """The postings of these entries on these accounts (one investor's), by id."""
    rows = (
        Posting.objects.filter(entry_id__in=entry_ids, account_id__in=account_ids)
        .order_by("effective_at", "pk")
        .values_list(*POSTING_ROW_FIELDS)
    )
    return [PostingRow(*row) for row in rows]


def payouts_with_entries_between(
    *, investor_id: int, after: datetime, until: datetime
) -> list[Payout]:
    """The investor's paid payouts whose ledger entry is in (after, until], oldest first."""
    return list(
        Payout.objects.select_related("distribution__offering", "entry")
        .filter(
            investor_id=investor_id,
            entry__isnull=False,
            entry__effective_at__gt=after,
            entry__effective_at__lte=until,
        )
        .order_by("entry__effective_at", "pk")
    )


@dataclass(frozen=True, slots=True)
class PaidPayoutRow:
    """A payout as the ledger paid it: its entry, when it took effect, its split, and the
    entry that reversed it (an undone distribution), if any."""

    payout_id: int
    offering_id: int
    entry_id: int
    paid_at: datetime
    income_minor: int
    return_of_capital_minor: int
    reversal_entry_id: int | None
    reversed_at: datetime | None


def payouts_paid_until(*, investor_id: int, until: datetime) -> list[PaidPayoutRow]:
    """Every payout of the investor whose ledger entry took effect up to `until`, oldest
    first, with its reversal (whenever that took effect: the caller cuts it as of a moment)."""
    rows = (
        Payout.objects.filter(
            investor_id=investor_id, entry__isnull=False, entry__effective_at__lte=until
        )
        .order_by("entry__effective_at", "pk")
        .values_list(
            "pk",
            "distribution__offering_id",
            "entry_id",
            "entry__effective_at",
            "income_minor",
            "return_of_capital_minor",
            "entry__reversed_by__id",
            "entry__reversed_by__effective_at",
        )
    )
    return [PaidPayoutRow(*row) for row in rows]


def investor_postings_of_entries(
    *, investor_id: int, entry_ids: list[int]
) -> list[tuple[int, int, int]]:
    """(id, amount, cost) of these entries' postings on the investor's own accounts."""
    if not entry_ids:
        return []
    return list(
        Posting.objects.filter(entry_id__in=entry_ids, account__investor_id=investor_id)
        .order_by("pk")
        .values_list("pk", "amount", "cost_minor")
    )


def entry_counterpart_kinds(
    *, entry_ids: list[int], own_account_ids: list[int]
) -> dict[int, frozenset[str]]:
    """For each entry, the kinds of the accounts it moved that are not the investor's own
    (how a payment into escrow is told from a release to the issuer)."""
    kinds: dict[int, set[str]] = defaultdict(set)
    rows = (
        Posting.objects.filter(entry_id__in=entry_ids)
        .exclude(account_id__in=own_account_ids)
        .values_list("entry_id", "account__kind")
        .distinct()
    )
    for entry_id, kind in rows:
        kinds[entry_id].add(kind)
    return {entry_id: frozenset(found) for entry_id, found in kinds.items()}


def investors_to_report(*, period: Period, offering_id: int | None = None) -> list[int]:
    """Investors with anything to report for the period: a non-zero balance (units, escrow
    or available cash) when it opens, or a posting during it. Ordered by id."""
    opens = period.start_instant(EARLIEST_ZONE)
    closes = period.end_instant(LATEST_ZONE)
    postings = Posting.objects.filter(
        account__investor__isnull=False,
        account__kind__in=INVESTOR_ACCOUNT_KINDS,
        effective_at__lte=closes,
    )
    if offering_id is not None:
        postings = postings.filter(account__offering_id=offering_id)
    per_account = postings.values("account__investor_id", "account_id").annotate(
        opening=Sum("amount", filter=Q(effective_at__lte=opens)),
        moved=Count("pk", filter=Q(effective_at__gt=opens)),
    )
    return sorted(
        {
            row["account__investor_id"]
            for row in per_account
            if (row["opening"] or 0) != 0 or row["moved"] > 0
        }
    )


def investors_paid_in(*, period: Period) -> list[int]:
    """Investors with a payout whose ledger entry may fall in the period (the window is wide
    enough for every time zone; each summary then cuts in its offerings' zones). By id."""
    return sorted(
        set(
            Payout.objects.filter(
                entry__isnull=False,
                entry__effective_at__gt=period.start_instant(EARLIEST_ZONE),
                entry__effective_at__lte=period.end_instant(LATEST_ZONE),
            ).values_list("investor_id", flat=True)
        )
    )


def offering_unit_postings_until(
    *, offering_id: int, until: datetime
) -> Iterator[tuple[int, int, int]]:
    """(id, amount, cost) of every posting of the offering's units up to `until`: what an
    as-of cap table is computed from. Streamed: an offering may have millions."""
    rows: QuerySet[Posting, tuple[int, int, int]] = (
        Posting.objects.filter(asset=units_asset(offering_id), effective_at__lte=until)
        .order_by("pk")
        .values_list("pk", "amount", "cost_minor")
    )
    return rows.iterator(chunk_size=10_000)


# --- statements and batches, as users may see them ------------------------------------------


def statements_visible_to(user: Any) -> QuerySet[Statement]:
    """Staff: every statement. Anyone else: their own investor statements, and the reports of
    offerings whose approved sponsor they are a member of. Nothing for anonymous users."""
    member = signed_in_user(user)
    if member is None:
        return Statement.objects.none()
    statements = Statement.objects.select_related("investor", "offering")
    if member.is_staff:
        return statements
    own = Q(investor__user=member)
    sponsors = sponsor_ids_of(member)
    if sponsors:
        own |= Q(investor__isnull=True, offering__sponsor_id__in=sponsors)
    return statements.filter(own)


def statement_list(
    *,
    user: Any,
    investor_id: int | None = None,
    period: str | None = None,
    kind: str | None = None,
) -> QuerySet[Statement]:
    statements = statements_visible_to(user)
    if investor_id is not None:
        statements = statements.filter(investor_id=investor_id)
    if period:
        statements = statements.filter(period=period)
    if kind:
        statements = statements.filter(kind=kind)
    return statements.order_by("-period_end", "-pk")


def statement_get(*, user: Any, statement_id: int) -> Statement:
    """404 for a statement that does not exist and for one the user may not see alike."""
    statement = statements_visible_to(user).filter(pk=statement_id).first()
    if statement is None:
        raise NotFound(f"Statement {statement_id} not found.", code="statement_not_found")
    return statement


def batch_get(*, user: Any, batch_id: int) -> StatementBatch:
    staff_required(user)
    batch = StatementBatch.objects.filter(pk=batch_id).first()
    if batch is None:
        raise NotFound(f"Task {batch_id} not found.", code="task_not_found")
    return batch


def batch_problems(*, batch: StatementBatch, limit: int = 100) -> list[StatementBatchItem]:
    """Items that failed for good, and pending ones whose last attempt failed (retrying)."""
    return list(
        batch.items.filter(Q(status=ItemStatus.FAILED) | ~Q(last_error=""))
        .exclude(status=ItemStatus.DONE)
        .order_by("investor_id")[:limit]
    )
