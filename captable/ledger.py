"""The only writer of ledger rows (entries, postings, lots).

`entry_post` is the one primitive: it takes balanced legs, locks the accounts they touch in
primary-key order (no deadlocks), checks every invariant it can name clearly (the database
checks them again), inserts the entry, its lots and its postings in one transaction, and seals
the entry into its hash chain after commit. It is idempotent: the same idempotency key with the
same request returns the first entry; with a different request it raises `Conflict`.

The operations below (authorize, issue, transfer, redeem, cash movements, reverse) build legs
from the current state under those locks and call `entry_post`. Amounts are ints: minor units
for money, quanta for units. Every operation is one transaction.
"""

from __future__ import annotations

import hashlib
import json
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from fractions import Fraction
from typing import Any

from django.db import IntegrityError, transaction
from django.db.models import Sum
from django.utils import timezone

from captable.models import (
    Account,
    AccountKind,
    Entry,
    EntryKind,
    Lot,
    Posting,
    units_asset,
)
from common.errors import Conflict, LimitExceeded, NotFound, ValidationFailed
from common.models import User
from common.money import check_supported_currency, round_minor_units
from investors.models import Investor
from offerings.models import Issuer, Offering

# --- accounts -------------------------------------------------------------------------------


def _account(
    key: str,
    *,
    kind: str,
    asset: str,
    offering: Offering | None = None,
    investor: Investor | None = None,
    issuer: Issuer | None = None,
    reference: int | None = None,
) -> Account:
    account, _ = Account.objects.get_or_create(
        key=key,
        defaults={
            "kind": kind,
            "asset": asset,
            "offering": offering,
            "investor": investor,
            "issuer": issuer,
            "reference": reference,
            "allows_negative": kind in (AccountKind.EXTERNAL, AccountKind.AUTHORIZED),
        },
    )
    return account


def treasury_account(offering: Offering) -> Account:
    return _account(
        f"treasury:o{offering.pk}",
        kind=AccountKind.TREASURY,
        asset=units_asset(offering.pk),
        offering=offering,
    )


def authorized_account(offering: Offering) -> Account:
    return _account(
        f"authorized:o{offering.pk}",
        kind=AccountKind.AUTHORIZED,
        asset=units_asset(offering.pk),
        offering=offering,
    )


def holding_account(offering: Offering, investor: Investor) -> Account:
    return _account(
        f"holding:o{offering.pk}:i{investor.pk}",
        kind=AccountKind.HOLDING,
        asset=units_asset(offering.pk),
        offering=offering,
        investor=investor,
    )


def escrow_account(offering: Offering, investor: Investor) -> Account:
    return _account(
        f"escrow:o{offering.pk}:i{investor.pk}",
        kind=AccountKind.ESCROW,
        asset=offering.currency,
        offering=offering,
        investor=investor,
    )


def cash_account(investor: Investor, currency: str) -> Account:
    return _account(
        f"cash:i{investor.pk}:{check_supported_currency(currency)}",
        kind=AccountKind.CASH,
        asset=currency,
        investor=investor,
    )


ISSUER_ACCOUNT_KINDS = (
    AccountKind.PROCEEDS,
    AccountKind.OPERATING,
    AccountKind.PROMOTE,
    AccountKind.WITHHOLDING_PAYABLE,
)


def issuer_account(issuer: Issuer, kind: str, currency: str) -> Account:
    if kind not in ISSUER_ACCOUNT_KINDS:
        raise ValueError(f"{kind} is not an issuer account")
    return _account(
        f"{kind}:s{issuer.pk}:{check_supported_currency(currency)}",
        kind=kind,
        asset=currency,
        issuer=issuer,
    )


def distribution_payable_account(distribution_id: int, currency: str) -> Account:
    return _account(
        f"distribution_payable:d{distribution_id}:{check_supported_currency(currency)}",
        kind=AccountKind.DISTRIBUTION_PAYABLE,
        asset=currency,
        reference=distribution_id,
    )


def platform_fees_account(currency: str) -> Account:
    return _account(
        f"platform_fees:{check_supported_currency(currency)}",
        kind=AccountKind.PLATFORM_FEES,
        asset=currency,
    )


def external_account(currency: str) -> Account:
    return _account(
        f"external:{check_supported_currency(currency)}",
        kind=AccountKind.EXTERNAL,
        asset=currency,
    )


# --- the posting primitive ----------------------------------------------------------------


@dataclass(frozen=True)
class NewLot:
    """Open a lot on a holding account with this leg (units acquired). `issued_at` None:
    the entry's own effective time (a new issue); a transfer carries the source lot's."""

    issued_at: datetime | None = None
    origin_lot_id: int | None = None


@dataclass(frozen=True)
class Leg:
    account: Account
    amount: int
    cost_minor: int = 0
    lot_id: int | None = None
    new_lot: NewLot | None = None


def request_digest(kind: str, request: Mapping[str, Any]) -> str:
    canonical = json.dumps({"kind": kind, "request": request}, sort_keys=True, default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


def _replayed(idempotency_key: str, digest: str) -> Entry | None:
    existing = Entry.objects.filter(idempotency_key=idempotency_key).first()
    if existing is None:
        return None
    if existing.request_digest != digest:
        raise Conflict(
            f"Idempotency key {idempotency_key!r} was already used for a different request.",
            code="idempotency_key_reused",
        )
    return existing


def lock_accounts(accounts: Sequence[Account]) -> dict[int, Account]:
    """Lock rows in primary-key order (every writer does the same, so no deadlock) and
    return them fresh, with current balances."""
    ids = sorted({account.pk for account in accounts})
    locked = Account.objects.select_for_update().filter(pk__in=ids).order_by("pk")
    return {account.pk: account for account in locked}


def _chain_of(legs: Sequence[Leg]) -> str:
    unit_assets = sorted({leg.account.asset for leg in legs if leg.account.is_units})
    if unit_assets:
        return f"offering:{unit_assets[0].split(':', 1)[1]}"
    return f"cash:{min(leg.account.asset for leg in legs)}"


def _check_legs(legs: Sequence[Leg], locked: Mapping[int, Account]) -> None:
    if len(legs) < 2:
        raise ValidationFailed("An entry needs at least two postings.", code="entry_too_small")
    sums: dict[str, int] = defaultdict(int)
    deltas: dict[int, int] = defaultdict(int)
    for leg in legs:
        if isinstance(leg.amount, bool) or not isinstance(leg.amount, int):
            raise TypeError("ledger amounts are ints (minor units or quanta)")
        if leg.amount == 0:
            raise ValidationFailed("A posting cannot be zero.", code="zero_posting")
        if leg.account.kind == AccountKind.HOLDING and (leg.lot_id is None) == (
            leg.new_lot is None
        ):
            raise ValueError("a holding leg names exactly one of lot_id and new_lot")
        if leg.new_lot is not None and leg.amount < 0:
            raise ValueError("a new lot opens with a positive amount")
        sums[leg.account.asset] += leg.amount
        deltas[leg.account.pk] += leg.amount
    unbalanced = {asset: total for asset, total in sums.items() if total}
    if unbalanced:
        raise ValidationFailed(f"Entry does not balance: {unbalanced}.", code="entry_unbalanced")
    _check_lots(legs)
    for account_id, delta in sorted(deltas.items()):
        account = locked[account_id]
        if not account.allows_negative and account.balance + delta < 0:
            raise LimitExceeded(
                f"{account.key} holds {account.balance}; this needs {-delta}.",
                code="insufficient_balance",
                account=account.key,
                balance=account.balance,
                required=-delta,
            )


def _check_lots(legs: Sequence[Leg]) -> None:
    """A lot never goes below zero (the database checks it too)."""
    taken: dict[int, int] = defaultdict(int)
    for leg in legs:
        if leg.lot_id is not None:
            taken[leg.lot_id] += leg.amount
    drawn = {lot_id: delta for lot_id, delta in taken.items() if delta < 0}
    if not drawn:
        return
    remaining = dict(
        Posting.objects.filter(lot_id__in=drawn)
        .values("lot_id")
        .annotate(quanta=Sum("amount"))
        .values_list("lot_id", "quanta")
    )
    for lot_id, delta in sorted(drawn.items()):
        if remaining.get(lot_id, 0) + delta < 0:
            raise LimitExceeded(
                f"Lot {lot_id} has {remaining.get(lot_id, 0)} quanta left; this needs {-delta}.",
                code="insufficient_lot",
            )


def entry_post(
    *,
    kind: str,
    idempotency_key: str,
    request: Mapping[str, Any],
    build_legs: Callable[[], Sequence[Leg]],
    lock_first: Sequence[Account],
    actor: User | None = None,
    memo: str = "",
    metadata: Mapping[str, Any] | None = None,
    reverses: Entry | None = None,
) -> Entry:
    """Post one entry. `build_legs` runs after `lock_first` are locked, so legs computed from
    the current state (FIFO lots, balances) cannot be invalidated by a concurrent writer."""
    if not idempotency_key or len(idempotency_key) > 200:
        raise ValidationFailed(
            "An idempotency key of 1 to 200 characters is required.", code="idempotency_key"
        )
    digest = request_digest(kind, request)
    with transaction.atomic():
        replay = _replayed(idempotency_key, digest)
        if replay is not None:
            return replay
        locked = lock_accounts(lock_first)
        legs = list(build_legs())
        missing = {leg.account.pk for leg in legs} - set(locked)
        locked.update(lock_accounts([leg.account for leg in legs if leg.account.pk in missing]))
        _check_legs(legs, locked)
        entry = _insert_entry(
            kind=kind,
            idempotency_key=idempotency_key,
            digest=digest,
            legs=legs,
            actor=actor,
            memo=memo,
            metadata=metadata,
            reverses=reverses,
        )
        if entry.request_digest != digest:  # a concurrent writer used the key first
            raise Conflict(
                f"Idempotency key {idempotency_key!r} was already used for a different request.",
                code="idempotency_key_reused",
            )
        chain = entry.chain
        transaction.on_commit(lambda: _seal_after_commit(chain))
    return entry


def _insert_entry(
    *,
    kind: str,
    idempotency_key: str,
    digest: str,
    legs: Sequence[Leg],
    actor: User | None,
    memo: str,
    metadata: Mapping[str, Any] | None,
    reverses: Entry | None,
) -> Entry:
    effective_at = timezone.now()
    try:
        with transaction.atomic():
            entry = Entry.objects.create(
                kind=kind,
                idempotency_key=idempotency_key,
                request_digest=digest,
                effective_at=effective_at,
                created_by=actor,
                memo=memo,
                reverses=reverses,
                chain=_chain_of(legs),
                metadata=dict(metadata or {}),
            )
    except IntegrityError:
        existing = Entry.objects.filter(idempotency_key=idempotency_key).first()
        if existing is not None:
            return existing
        raise Conflict(
            f"Entry {reverses.pk if reverses else ''} is already reversed.",
            code="already_reversed",
        ) from None
    postings = []
    # Credits first, so an account that is both debited and credited never dips transiently.
    for leg in sorted(legs, key=lambda leg: -leg.amount):
        lot_id = leg.lot_id
        if leg.new_lot is not None:
            lot_id = Lot.objects.create(
                holding=leg.account,
                acquired_by=entry,
                issued_at=leg.new_lot.issued_at or effective_at,
                origin_lot_id=leg.new_lot.origin_lot_id,
                quanta_acquired=leg.amount,
                cost_minor_acquired=leg.cost_minor,
            ).pk
        postings.append(
            Posting(
                entry=entry,
                account=leg.account,
                asset=leg.account.asset,
                amount=leg.amount,
                cost_minor=leg.cost_minor,
                lot_id=lot_id,
                effective_at=effective_at,
            )
        )
    Posting.objects.bulk_create(postings)
    return entry


def _seal_after_commit(chain: str) -> None:
    from captable.seals import chain_seal_pending

    chain_seal_pending(chain=chain)


# --- lots -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class OpenLot:
    lot_id: int
    issued_at: datetime
    quanta: int
    cost_minor: int


def open_lots(holding: Account) -> list[OpenLot]:
    """The holding's lots with units left, oldest issue first (the FIFO order)."""
    rows = (
        Posting.objects.filter(account=holding)
        .values("lot_id", "lot__issued_at")
        .annotate(quanta=Sum("amount"), cost=Sum("cost_minor"))
        .filter(quanta__gt=0)
        .order_by("lot__issued_at", "lot_id")
    )
    return [
        OpenLot(row["lot_id"], row["lot__issued_at"], row["quanta"], row["cost"]) for row in rows
    ]


@dataclass(frozen=True)
class LotTake:
    lot: OpenLot
    quanta: int
    cost_minor: int


def take_first_in_first_out(lots: Sequence[OpenLot], quanta: int) -> list[LotTake]:
    """Consume `quanta` from the oldest lots; cost moves in proportion, rounded once by
    `round_minor_units`, and a lot taken whole carries its exact remaining cost."""
    takes = []
    needed = quanta
    for lot in lots:
        if needed == 0:
            break
        taken = min(lot.quanta, needed)
        if taken == lot.quanta:
            cost = lot.cost_minor
        else:
            cost = round_minor_units(Fraction(lot.cost_minor * taken, lot.quanta))
        takes.append(LotTake(lot, taken, cost))
        needed -= taken
    if needed:
        held = sum(lot.quanta for lot in lots)
        raise LimitExceeded(
            f"Only {held} quanta are held; {quanta} were requested.",
            code="insufficient_units",
            held_quanta=held,
            requested_quanta=quanta,
        )
    return takes


# --- operations -----------------------------------------------------------------------------


def _positive(value: int, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValidationFailed(f"{name} must be a positive integer.", code="invalid_quantity")
    return value


def units_authorize(
    *, offering: Offering, quanta: int, idempotency_key: str, actor: User | None = None
) -> Entry:
    """The issuer authorizes `quanta` more units: authorized counter → treasury."""
    _positive(quanta, "quanta")
    treasury, authorized = treasury_account(offering), authorized_account(offering)
    return entry_post(
        kind=EntryKind.AUTHORIZE,
        idempotency_key=idempotency_key,
        request={"offering": offering.pk, "quanta": quanta},
        lock_first=[treasury, authorized],
        build_legs=lambda: [Leg(treasury, quanta), Leg(authorized, -quanta)],
        actor=actor,
    )


def units_issue(
    *,
    offering: Offering,
    investor: Investor,
    quanta: int,
    cost_minor: int,
    idempotency_key: str,
    actor: User | None = None,
    memo: str = "",
) -> Entry:
    """Treasury → the investor's holding, opening a lot dated now with its cost."""
    _positive(quanta, "quanta")
    if isinstance(cost_minor, bool) or not isinstance(cost_minor, int) or cost_minor < 0:
        raise ValidationFailed("cost must be a non-negative integer.", code="invalid_amount")
    treasury, holding = treasury_account(offering), holding_account(offering, investor)
    return entry_post(
        kind=EntryKind.ISSUE,
        idempotency_key=idempotency_key,
        request={
            "offering": offering.pk,
            "investor": investor.pk,
            "quanta": quanta,
            "cost": cost_minor,
        },
        lock_first=[treasury, holding],
        build_legs=lambda: [
            Leg(treasury, -quanta),
            Leg(holding, quanta, cost_minor, new_lot=NewLot()),
        ],
        actor=actor,
        memo=memo,
    )


def units_transfer(
    *,
    offering: Offering,
    seller: Investor,
    buyer: Investor,
    quanta: int,
    idempotency_key: str,
    actor: User | None = None,
    memo: str = "",
    metadata: Mapping[str, Any] | None = None,
) -> Entry:
    """Holding → holding, first in first out; each lot keeps its issue date and cost."""
    _positive(quanta, "quanta")
    if seller.pk == buyer.pk:
        raise ValidationFailed("Seller and buyer are the same investor.", code="self_transfer")
    source, destination = holding_account(offering, seller), holding_account(offering, buyer)

    def legs() -> list[Leg]:
        result = []
        for take in take_first_in_first_out(open_lots(source), quanta):
            result.append(Leg(source, -take.quanta, -take.cost_minor, lot_id=take.lot.lot_id))
            result.append(
                Leg(
                    destination,
                    take.quanta,
                    take.cost_minor,
                    new_lot=NewLot(take.lot.issued_at, origin_lot_id=take.lot.lot_id),
                )
            )
        return result

    return entry_post(
        kind=EntryKind.TRANSFER,
        idempotency_key=idempotency_key,
        request={
            "offering": offering.pk,
            "seller": seller.pk,
            "buyer": buyer.pk,
            "quanta": quanta,
            "metadata": dict(metadata or {}),
        },
        lock_first=[source, destination],
        build_legs=legs,
        actor=actor,
        memo=memo,
        metadata=metadata,
    )


def units_redeem(
    *,
    offering: Offering,
    investor: Investor,
    quanta: int,
    price_minor: int,
    idempotency_key: str,
    actor: User | None = None,
    memo: str = "",
) -> Entry:
    """Holding → treasury (FIFO lots), and the price from the issuer's operating account to
    the investor's available cash, in one entry."""
    _positive(quanta, "quanta")
    if isinstance(price_minor, bool) or not isinstance(price_minor, int) or price_minor < 0:
        raise ValidationFailed("price must be a non-negative integer.", code="invalid_amount")
    holding, treasury = holding_account(offering, investor), treasury_account(offering)
    operating = issuer_account(offering.issuer, AccountKind.OPERATING, offering.currency)
    cash = cash_account(investor, offering.currency)

    def legs() -> list[Leg]:
        result = [Leg(treasury, quanta)]
        for take in take_first_in_first_out(open_lots(holding), quanta):
            result.append(Leg(holding, -take.quanta, -take.cost_minor, lot_id=take.lot.lot_id))
        if price_minor:
            result += [Leg(operating, -price_minor), Leg(cash, price_minor)]
        return result

    return entry_post(
        kind=EntryKind.REDEEM,
        idempotency_key=idempotency_key,
        request={
            "offering": offering.pk,
            "investor": investor.pk,
            "quanta": quanta,
            "price": price_minor,
        },
        lock_first=[holding, treasury, operating, cash],
        build_legs=legs,
        actor=actor,
        memo=memo,
    )


CASH_KINDS = (EntryKind.CASH_IN, EntryKind.CASH_MOVE, EntryKind.CASH_OUT)


def cash_move(
    *,
    source: Account,
    destination: Account,
    amount_minor: int,
    idempotency_key: str,
    actor: User | None = None,
    memo: str = "",
    metadata: Mapping[str, Any] | None = None,
) -> Entry:
    """Move cash between two accounts of the same currency. The entry kind follows the
    accounts: from external is cash in, to external is cash out, else a move."""
    _positive(amount_minor, "amount")
    if source.is_units or destination.is_units or source.asset != destination.asset:
        raise ValidationFailed(
            f"Cannot move cash from {source.key} to {destination.key}: currencies differ or "
            "one is a units account.",
            code="invalid_cash_move",
        )
    if source.pk == destination.pk:
        raise ValidationFailed("Source and destination are the same.", code="self_transfer")
    kind = (
        EntryKind.CASH_IN
        if source.kind == AccountKind.EXTERNAL
        else EntryKind.CASH_OUT
        if destination.kind == AccountKind.EXTERNAL
        else EntryKind.CASH_MOVE
    )
    return entry_post(
        kind=kind,
        idempotency_key=idempotency_key,
        request={"from": source.key, "to": destination.key, "amount": amount_minor},
        lock_first=[source, destination],
        build_legs=lambda: [Leg(source, -amount_minor), Leg(destination, amount_minor)],
        actor=actor,
        memo=memo,
        metadata=metadata,
    )


def entry_reverse(
    *, entry_id: int, idempotency_key: str, actor: User | None = None, reason: str
) -> Entry:
    """A new entry with every posting negated (same accounts, lots and cost). The original
    stays; it can be reversed once, and a reversal is not itself reversed."""
    if not reason.strip():
        raise ValidationFailed("A reversal needs a reason.", code="reason_required")
    original = Entry.objects.filter(pk=entry_id).first()
    if original is None:
        raise NotFound(f"Entry {entry_id} not found.", code="entry_not_found")
    if original.kind == EntryKind.REVERSAL:
        raise Conflict("A reversal cannot be reversed; post the entry again.", code="reversal")
    postings = list(original.postings.select_related("account").order_by("pk"))
    accounts = [posting.account for posting in postings]
    if Entry.objects.filter(reverses=original).exclude(idempotency_key=idempotency_key).exists():
        raise Conflict(f"Entry {entry_id} is already reversed.", code="already_reversed")
    return entry_post(
        kind=EntryKind.REVERSAL,
        idempotency_key=idempotency_key,
        request={"reverses": original.pk},
        lock_first=accounts,
        build_legs=lambda: [
            Leg(p.account, -p.amount, -p.cost_minor, lot_id=p.lot_id) for p in postings
        ],
        actor=actor,
        memo=reason,
        reverses=original,
    )
