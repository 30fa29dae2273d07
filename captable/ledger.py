"""The only writer of ledger rows (entries, postings, lots).

`entry_post` is the one primitive: it takes balanced legs, locks the accounts they touch in
the ledger's `LOCK_ORDER` (no deadlocks), checks every invariant it can name clearly (the
database checks them again), inserts the entry, its lots and its postings in one transaction,
and seals the entry into its hash chain after commit. It is idempotent: the same idempotency
key with the same request returns the first entry; with a different request it raises
`Conflict`.

The operations below (authorize, issue, transfer, redeem, cash movements, reverse) build legs
from the current state under those locks and call `entry_post`. Amounts are ints: minor units
for money, quanta for units. Every operation is one transaction.
"""

from __future__ import annotations

import functools
import hashlib
import json
from collections import defaultdict
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from fractions import Fraction
from typing import Any

from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, IntegrityError, connection, connections, transaction
from django.db.models import JSONField, Sum
from django.db.models.base import ModelState
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from captable.models import (
    UNITS_ASSET_PREFIX,
    Account,
    AccountKind,
    Entry,
    EntryKind,
    Lot,
    Posting,
    units_asset,
)
from common.errors import Conflict, DomainError, LimitExceeded, NotFound, ValidationFailed
from common.models import User
from common.money import check_supported_currency, round_minor_units
from investors.models import Investor
from offerings.models import Issuer, Offering

# --- accounts -------------------------------------------------------------------------------


@dataclass(frozen=True)
class AccountSpec:
    """An account named by its key (its identity never changes once created). Operations
    name accounts this way so that the posting transaction finds, creates if new, and locks
    them in one statement instead of a lookup per account before the lock."""

    key: str
    kind: str
    asset: str
    offering_id: int | None = None
    investor_id: int | None = None
    issuer_id: int | None = None
    reference: int | None = None

    @property
    def is_units(self) -> bool:
        return self.asset.startswith(UNITS_ASSET_PREFIX)

    def create_defaults(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "asset": self.asset,
            "offering_id": self.offering_id,
            "investor_id": self.investor_id,
            "issuer_id": self.issuer_id,
            "reference": self.reference,
            "allows_negative": self.kind in (AccountKind.EXTERNAL, AccountKind.AUTHORIZED),
        }


# The ledger's lock order, kept by every writer so that none waits in a cycle: an investor's
# accounts (holdings, escrow, cash) first, then the shared ones (treasury, issuer, payable,
# platform, external), each by primary key. Shared accounts are the hot rows many writers
# touch; locked last, they are held for the least time — and a distribution's pay run can
# write its batches on several connections at once, each waiting only for the other's balance
# update of the shared accounts and COMMIT (`cash_fan_out_post`; the posting trigger locks a
# statement's shared accounts in this order: migration 0025).
LOCK_ORDER = "investor_id IS NULL, id"
LOCK_ORDER_OF_A = "a.investor_id IS NULL, a.id"


def _account(spec: AccountSpec) -> Account:
    account, _ = Account.objects.get_or_create(key=spec.key, defaults=spec.create_defaults())
    return account


def account_open(spec: AccountSpec) -> Account:
    """The account under `spec`, created (committed) if new."""
    return _account(spec)


def treasury_spec(offering: Offering) -> AccountSpec:
    return AccountSpec(
        f"treasury:o{offering.pk}",
        AccountKind.TREASURY,
        units_asset(offering.pk),
        offering_id=offering.pk,
    )


def authorized_spec(offering: Offering) -> AccountSpec:
    return AccountSpec(
        f"authorized:o{offering.pk}",
        AccountKind.AUTHORIZED,
        units_asset(offering.pk),
        offering_id=offering.pk,
    )


def holding_spec(offering: Offering, investor: Investor) -> AccountSpec:
    return AccountSpec(
        f"holding:o{offering.pk}:i{investor.pk}",
        AccountKind.HOLDING,
        units_asset(offering.pk),
        offering_id=offering.pk,
        investor_id=investor.pk,
    )


def escrow_spec(offering: Offering, investor: Investor) -> AccountSpec:
    return AccountSpec(
        f"escrow:o{offering.pk}:i{investor.pk}",
        AccountKind.ESCROW,
        offering.currency,
        offering_id=offering.pk,
        investor_id=investor.pk,
    )


def cash_spec(investor: Investor, currency: str) -> AccountSpec:
    return AccountSpec(
        f"cash:i{investor.pk}:{check_supported_currency(currency)}",
        AccountKind.CASH,
        currency,
        investor_id=investor.pk,
    )


ISSUER_ACCOUNT_KINDS = (
    AccountKind.PROCEEDS,
    AccountKind.OPERATING,
    AccountKind.PROMOTE,
    AccountKind.WITHHOLDING_PAYABLE,
)


def issuer_spec(issuer: Issuer, kind: str, currency: str) -> AccountSpec:
    if kind not in ISSUER_ACCOUNT_KINDS:
        raise ValueError(f"{kind} is not an issuer account")
    return AccountSpec(
        f"{kind}:s{issuer.pk}:{check_supported_currency(currency)}",
        kind,
        currency,
        issuer_id=issuer.pk,
    )


def distribution_payable_spec(distribution_id: int, currency: str) -> AccountSpec:
    return AccountSpec(
        f"distribution_payable:d{distribution_id}:{check_supported_currency(currency)}",
        AccountKind.DISTRIBUTION_PAYABLE,
        currency,
        reference=distribution_id,
    )


def platform_fees_spec(currency: str) -> AccountSpec:
    return AccountSpec(
        f"platform_fees:{check_supported_currency(currency)}",
        AccountKind.PLATFORM_FEES,
        currency,
    )


def external_spec(currency: str) -> AccountSpec:
    return AccountSpec(
        f"external:{check_supported_currency(currency)}", AccountKind.EXTERNAL, currency
    )


# The same accounts as rows (created on first use), for callers outside a posting.


def treasury_account(offering: Offering) -> Account:
    return _account(treasury_spec(offering))


def authorized_account(offering: Offering) -> Account:
    return _account(authorized_spec(offering))


def holding_account(offering: Offering, investor: Investor) -> Account:
    return _account(holding_spec(offering, investor))


def escrow_account(offering: Offering, investor: Investor) -> Account:
    return _account(escrow_spec(offering, investor))


def cash_account(investor: Investor, currency: str) -> Account:
    return _account(cash_spec(investor, currency))


def issuer_account(issuer: Issuer, kind: str, currency: str) -> Account:
    return _account(issuer_spec(issuer, kind, currency))


def distribution_payable_account(distribution_id: int, currency: str) -> Account:
    return _account(distribution_payable_spec(distribution_id, currency))


def platform_fees_account(currency: str) -> Account:
    return _account(platform_fees_spec(currency))


def external_account(currency: str) -> Account:
    return _account(external_spec(currency))


# --- the posting primitive ----------------------------------------------------------------


@dataclass(frozen=True)
class NewLot:
    """Open a lot on a holding account with this leg (units acquired). `issued_at` None:
    the entry's own effective time (a new issue); a transfer carries the source lot's."""

    issued_at: datetime | None = None
    origin_lot_id: int | None = None


@dataclass(frozen=True)
class Leg:
    """One posting to be made. `lot_remaining`: the lot's quanta as read under the entry's
    account locks (open_lots), so the lot check needs no second read."""

    account: Account
    amount: int
    cost_minor: int = 0
    lot_id: int | None = None
    new_lot: NewLot | None = None
    lot_remaining: int | None = None


LockedAccounts = Mapping[str, Account]


def request_digest(kind: str, request: Mapping[str, Any]) -> str:
    canonical = json.dumps({"kind": kind, "request": request}, sort_keys=True, default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


def _key_reused(idempotency_key: str) -> Conflict:
    return Conflict(
        f"Idempotency key {idempotency_key!r} was already used for a different request.",
        code="idempotency_key_reused",
    )


def _replayed(idempotency_key: str, digest: str) -> Entry | None:
    existing = Entry.objects.filter(idempotency_key=idempotency_key).first()
    if existing is not None and existing.request_digest != digest:
        raise _key_reused(idempotency_key)
    return existing


def _read_accounts(
    keys: Sequence[str], *, lock: bool, lots_for: Collection[str] | None = None
) -> dict[str, Account]:
    """The accounts by key, fresh; `lock`: FOR UPDATE, in `LOCK_ORDER`. Unlocked on
    PostgreSQL (the optimistic read), holdings come with their open lots, read in the same
    snapshot as the account's version: those named in `lots_for`, or every holding if None."""
    placeholders = ", ".join(["%s"] * len(keys))
    if connection.vendor != "postgresql":  # SQLite: BEGIN IMMEDIATE already serializes writers
        found = Account.objects.raw(
            f"SELECT * FROM captable_account WHERE key IN ({placeholders}) ORDER BY id",  # noqa: S608
            list(keys),
        )
        return {account.key: account for account in found}
    # Hand-written and prepared, rows made into accounts directly (psycopg already returns
    # Python values of the right types): this runs in every posting.
    columns = _account_columns()
    selected = ", ".join(f"a.{column}" for column in columns)
    if lock:
        sql = (
            f"SELECT {selected} FROM captable_account a "  # noqa: S608
            f"WHERE a.key IN ({placeholders}) ORDER BY {LOCK_ORDER_OF_A} FOR UPDATE"
        )
        rows = _fetch(sql, list(keys), prepared=True)
        return {account.key: account for account in _accounts_from(rows, columns)}
    sql = _READ_WITH_LOTS_SQL.format(selected=selected, placeholders=placeholders)
    wanted = list(keys) if lots_for is None else list(lots_for)
    rows = _fetch(sql, [wanted, *keys], prepared=True)
    accounts = {}
    for account, row in zip(_accounts_from(rows, columns), rows, strict=True):
        lot_ids, issued, quanta, cost = row[len(columns) :]
        if account.kind == AccountKind.HOLDING and account.key in wanted:
            account._open_lots = [  # type: ignore[attr-defined]
                OpenLot(lot_id, moment, held, lot_cost)
                for lot_id, moment, held, lot_cost in zip(
                    lot_ids or [], issued or [], quanta or [], cost or [], strict=True
                )
            ]
        accounts[account.key] = account
    return accounts


# The optimistic read: accounts and, for the holdings it is asked about, their open lots
# (FIFO order) in one round trip. The lots subquery is skipped for other accounts (a one-time
# filter), so neither the external account's long history nor a buyer's lots are read. Open
# lots come from the holding's postings grouped by lot; each open lot's issue date is then one
# primary-key probe (kept apart from the join, OFFSET 0), not a join the planner would answer
# with a scan of every lot. Sums are cast back to bigint so they arrive as ints.
_READ_WITH_LOTS_SQL = """
SELECT {selected}, lots.ids, lots.issued, lots.quanta, lots.cost
FROM captable_account a
LEFT JOIN LATERAL (
    SELECT array_agg(o.lot_id ORDER BY l.issued_at, o.lot_id) AS ids,
           array_agg(l.issued_at ORDER BY l.issued_at, o.lot_id) AS issued,
           array_agg(o.quanta ORDER BY l.issued_at, o.lot_id) AS quanta,
           array_agg(o.cost ORDER BY l.issued_at, o.lot_id) AS cost
    FROM (
        SELECT p.lot_id, SUM(p.amount)::bigint AS quanta, SUM(p.cost_minor)::bigint AS cost
        FROM captable_posting p
        WHERE p.account_id = a.id AND a.kind = 'holding' AND a.key = ANY (%s::text[])
        GROUP BY p.lot_id
        HAVING SUM(p.amount) > 0
    ) o
    CROSS JOIN LATERAL (
        SELECT x.issued_at FROM captable_lot x WHERE x.id = o.lot_id OFFSET 0
    ) l
) lots ON true
WHERE a.key IN ({placeholders})
ORDER BY a.id
"""


def _account_columns() -> list[str]:
    return [field.attname for field in Account._meta.concrete_fields]


def _accounts_from(rows: Sequence[tuple[Any, ...]], columns: list[str]) -> list[Account]:
    """Accounts from rows holding every concrete column, in `columns` order. Built as
    unpickling builds a model (values straight into the instance's dict) rather than through
    Model.__init__, which sets each field through its descriptor: this runs in every posting.
    No signal receives Account's init."""
    width = len(columns)
    accounts = []
    for row in rows:
        account = Account.__new__(Account)
        account.__dict__.update(zip(columns, row[:width], strict=True))
        state = ModelState()
        state.adding, state.db = False, DEFAULT_DB_ALIAS
        account._state = state
        accounts.append(account)
    return accounts


def lock_accounts(accounts: Sequence[Account | AccountSpec]) -> dict[str, Account]:
    """Lock the accounts' rows in `LOCK_ORDER` (every writer does the same, so no deadlock),
    creating those named by a spec that do not exist yet; return them fresh, with
    current balances, by key."""
    wanted = {account.key: account for account in accounts}
    locked = _read_accounts(list(wanted), lock=True)
    missing = [spec for key, spec in wanted.items() if key not in locked]
    if missing:
        for spec in missing:
            if not isinstance(spec, AccountSpec):
                raise NotFound(f"Account {spec.key} does not exist.", code="account_not_found")
            _account(spec)
        locked = _read_accounts(list(wanted), lock=True)
    return locked


def _chain_of(legs: Sequence[Leg]) -> str:
    unit_assets = sorted({leg.account.asset for leg in legs if leg.account.is_units})
    if unit_assets:
        return f"offering:{unit_assets[0].split(':', 1)[1]}"
    return f"cash:{min(leg.account.asset for leg in legs)}"


def _check_legs(legs: Sequence[Leg], locked: LockedAccounts) -> None:
    if len(legs) < 2:
        raise ValidationFailed("An entry needs at least two postings.", code="entry_too_small")
    sums: dict[str, int] = defaultdict(int)
    deltas: dict[str, int] = defaultdict(int)
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
        deltas[leg.account.key] += leg.amount
    unbalanced = {asset: total for asset, total in sums.items() if total}
    if unbalanced:
        raise ValidationFailed(f"Entry does not balance: {unbalanced}.", code="entry_unbalanced")
    _check_lots(legs)
    for key, delta in sorted(deltas.items()):
        account = locked[key]
        if not account.allows_negative and account.balance + delta < 0:
            raise LimitExceeded(
                f"{account.key} holds {account.balance}; this needs {-delta}.",
                code="insufficient_balance",
                account=account.key,
                balance=account.balance,
                required=-delta,
            )


def _check_lots(legs: Sequence[Leg]) -> None:
    """A lot never goes below zero (the database checks it too). Lots read under the locks
    by open_lots carry what remains; others are read here."""
    taken: dict[int, int] = defaultdict(int)
    remaining: dict[int, int] = {}
    for leg in legs:
        if leg.lot_id is not None:
            taken[leg.lot_id] += leg.amount
            if leg.lot_remaining is not None:
                remaining[leg.lot_id] = leg.lot_remaining
    drawn = {lot_id: delta for lot_id, delta in taken.items() if delta < 0}
    unread = [lot_id for lot_id in drawn if lot_id not in remaining]
    if unread:
        remaining.update(
            Posting.objects.filter(lot_id__in=unread)
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


OPTIMISTIC_ATTEMPTS = 3


class _StateChanged(Exception):
    """An account the entry debits changed between reading it and writing the entry."""


def entry_post(
    *,
    kind: str,
    idempotency_key: str,
    request: Mapping[str, Any],
    build_legs: Callable[[LockedAccounts], Sequence[Leg]],
    lock_first: Sequence[Account | AccountSpec],
    actor: User | None = None,
    memo: str = "",
    metadata: Mapping[str, Any] | None = None,
    reverses: Entry | None = None,
    lots_of: Sequence[Account | AccountSpec] | None = None,
) -> Entry:
    """Post one entry. `build_legs` gets the `lock_first` accounts with their current state,
    and legs computed from it (FIFO lots, balances) are written only if that state still holds.
    `lots_of`: the holdings whose open lots `build_legs` reads (None: every holding), fetched
    with the accounts on the optimistic path:

    - outside a transaction on PostgreSQL, optimistically: read the accounts without locks,
      build the legs, and write them in ONE autocommitted statement that locks every account
      of the entry and inserts nothing unless each debited account's version is still the one
      read (else read again; after OPTIMISTIC_ATTEMPTS, lock first). Two round trips plus the
      open-lots read, no BEGIN or COMMIT of their own;
    - otherwise (inside a caller's transaction, SQLite, a new account), lock the accounts in
      lock order first, then build and write.

    Idempotency costs nothing on the common path: the entry INSERT skips a used key, and only
    then (or when the legs cannot be built any more) is the first entry read and compared."""
    if not idempotency_key or len(idempotency_key) > 200:
        raise ValidationFailed(
            "An idempotency key of 1 to 200 characters is required.", code="idempotency_key"
        )
    digest = request_digest(kind, request)
    new = _NewEntry(kind, idempotency_key, digest, actor, memo, dict(metadata or {}), reverses)
    db = connections[DEFAULT_DB_ALIAS]  # the wrapper itself: one lookup, not one per attribute
    if db.vendor == "postgresql" and not db.in_atomic_block:
        for _ in range(OPTIMISTIC_ATTEMPTS):
            try:
                return _post_optimistically(new, build_legs, lock_first, lots_of)
            except _StateChanged:
                continue
            except _NeedsLocks:
                break
    with transaction.atomic():
        locked = lock_accounts(lock_first)
        legs = _legs_or_replay(new, build_legs, locked, lock_extra=True)
        if isinstance(legs, Entry):
            return legs
        entry = _insert_entry(new, legs, guarded={})
        if settings.LEDGER_SEAL_ON_COMMIT:
            chain = entry.chain
            transaction.on_commit(lambda: _seal_after_commit(chain))
    return entry


@dataclass(frozen=True)
class _NewEntry:
    kind: str
    idempotency_key: str
    digest: str
    actor: User | None
    memo: str
    metadata: dict[str, Any]
    reverses: Entry | None


class _NeedsLocks(Exception):
    """The optimistic path cannot post this entry (an account to create, an extra account)."""


def _post_optimistically(
    new: _NewEntry,
    build_legs: Callable[[LockedAccounts], Sequence[Leg]],
    lock_first: Sequence[Account | AccountSpec],
    lots_of: Sequence[Account | AccountSpec] | None,
) -> Entry:
    keys = list({account.key: None for account in lock_first})
    lots_for = None if lots_of is None else [account.key for account in lots_of]
    accounts = _read_accounts(keys, lock=False, lots_for=lots_for)
    if len(accounts) < len(keys):
        raise _NeedsLocks
    try:
        legs = _legs_or_replay(new, build_legs, accounts, lock_extra=False)
    except DomainError:
        raise _NeedsLocks from None  # refuse only on state read under the locks
    if isinstance(legs, Entry):
        return legs
    debited = {leg.account.key for leg in legs if leg.amount < 0}
    entry = _insert_entry(
        new, legs, guarded={a.pk: a.version for key, a in accounts.items() if key in debited}
    )
    if settings.LEDGER_SEAL_ON_COMMIT:
        _seal_after_commit(entry.chain)  # autocommitted: the entry is already committed
    return entry


def _legs_or_replay(
    new: _NewEntry,
    build_legs: Callable[[LockedAccounts], Sequence[Leg]],
    accounts: Mapping[str, Account],
    *,
    lock_extra: bool,
) -> list[Leg] | Entry:
    """The checked legs, or the entry already posted under this key when the legs can no
    longer be built (a replay is answered, not refused)."""
    try:
        legs = list(build_legs(accounts))
        extra = [leg.account for leg in legs if leg.account.key not in accounts]
        if extra and not lock_extra:
            raise _NeedsLocks
        if extra:
            accounts = {**accounts, **lock_accounts(extra)}
        _check_legs(legs, accounts)
    except DomainError:
        replay = _replayed(new.idempotency_key, new.digest)
        if replay is not None:
            return replay
        raise
    return legs


def _insert_entry(new: _NewEntry, legs: Sequence[Leg], *, guarded: Mapping[int, int]) -> Entry:
    """Entry, lots, postings: one statement on PostgreSQL, three INSERTs on SQLite. `guarded`:
    account id → the version the legs were built from (PostgreSQL; raises _StateChanged if
    one moved). A taken idempotency key returns the entry posted under it."""
    effective_at = timezone.now()
    entry = Entry(
        kind=new.kind,
        idempotency_key=new.idempotency_key,
        request_digest=new.digest,
        effective_at=effective_at,
        created_by=new.actor,
        memo=new.memo,
        reverses=new.reverses,
        chain=_chain_of(legs),
        metadata=new.metadata,
    )
    # Credits first, so an account that is both debited and credited never dips transiently.
    legs = sorted(legs, key=lambda leg: -leg.amount)
    if connection.vendor == "postgresql":
        inserted = _insert_in_one_statement(entry, legs, guarded)
    else:
        inserted = _insert_unless_key_taken(entry) and _insert_lots_and_postings(entry, legs)
    if inserted:
        return entry
    replay = _replayed(new.idempotency_key, new.digest)  # the key was used first
    assert replay is not None
    return replay


def _insert_lots_and_postings(entry: Entry, legs: Sequence[Leg]) -> bool:
    effective_at = entry.effective_at
    new_lots = [
        Lot(
            holding=leg.account,
            acquired_by=entry,
            issued_at=leg.new_lot.issued_at or effective_at,
            origin_lot_id=leg.new_lot.origin_lot_id,
            quanta_acquired=leg.amount,
            cost_minor_acquired=leg.cost_minor,
        )
        for leg in legs
        if leg.new_lot is not None
    ]
    opened = iter(Lot.objects.bulk_create(new_lots) if new_lots else [])
    Posting.objects.bulk_create(
        Posting(
            entry=entry,
            account=leg.account,
            asset=leg.account.asset,
            amount=leg.amount,
            cost_minor=leg.cost_minor,
            lot_id=next(opened).pk if leg.new_lot is not None else leg.lot_id,
            effective_at=effective_at,
        )
        for leg in legs
    )
    return True


def _fetch(sql: str, params: Sequence[Any], *, prepared: bool = False) -> list[tuple[Any, ...]]:
    """Rows of a hand-written statement. `prepared` on PostgreSQL: a server-side prepared
    statement (psycopg caches it per connection), so the hot ledger statements are planned
    once per connection instead of on every posting."""
    db = connections[DEFAULT_DB_ALIAS]  # the wrapper itself: one lookup, not one per attribute
    if not (prepared and db.vendor == "postgresql"):
        with db.cursor() as cursor:
            cursor.execute(sql, params)
            return cursor.fetchall()
    import psycopg
    from psycopg.pq import ExecStatus

    db.ensure_connection()
    with db.wrap_database_errors, psycopg.Cursor(db.connection) as cursor:
        # psycopg's own (compiled) timestamptz loader instead of the pure-Python subclass
        # Django registers: open lots bring a timestamp each. Both give aware datetimes in
        # the connection's time zone (UTC, set by Django).
        timestamptz, loader = _compiled_timestamptz_loader()
        if loader is not None:
            cursor.adapters.register_loader(timestamptz, loader)
        cursor.execute(sql, params, prepare=True)
        result = cursor.pgresult  # its status, not `description` (a Column per field)
        if result is None or result.status != ExecStatus.TUPLES_OK:
            return []
        return cursor.fetchall()


def bigint_array_text(values: Sequence[int]) -> str:
    """`values` as one bigint[] literal ('{1,2,3}'), for a %s::bigint[] parameter: psycopg's
    binary array dumper packs each element in Python (~9 ms for 25,000 ids, against ~3 ms to
    join their decimal strings; PostgreSQL parses either in a few ms). Ints only: anything
    else is refused, not written as text."""
    if not all(type(value) is int for value in values):
        raise TypeError("bigint_array_text takes ints")
    return "{" + ",".join(map(str, values)) + "}"


def text_lines(values: Sequence[str]) -> str:
    """Strings as one text parameter, one per line, which SQL splits with
    `string_to_array(%s::text, E'\\n')`: psycopg dumps a text array element by element in
    Python (~9 ms a 25,000-element array, against ~1 ms for this). Refuses a string that is
    empty or holds a newline (it would not come back whole)."""
    joined = "\n".join(values)  # no values: '', which splits into no element
    if values and (joined.count("\n") != len(values) - 1 or not all(values)):
        raise ValueError("text_lines takes non-empty strings without newlines")
    return joined


@functools.cache
def _compiled_timestamptz_loader() -> tuple[int, Any]:
    import psycopg
    from psycopg.pq import Format

    timestamptz = psycopg.adapters.types["timestamptz"].oid
    return timestamptz, psycopg.adapters.get_loader(timestamptz, Format.TEXT)


def _entry_columns_and_values(entry: Entry) -> tuple[str, list[Any], list[str]]:
    """Quoted columns, their values ready for the database, and their SQL types."""
    fields, columns, types = _entry_columns(connection.vendor)
    values = [f.get_db_prep_save(f.pre_save(entry, add=True), connection) for f in fields]
    return columns, values, types


@functools.cache
def _entry_columns(vendor: str) -> tuple[list[Any], str, list[str]]:
    """The entry's fields, quoted column list and SQL types: fixed for a database vendor,
    computed once (this runs in every posting)."""
    fields = [f for f in Entry._meta.concrete_fields if f is not Entry._meta.pk]
    columns = ", ".join(connection.ops.quote_name(f.column or f.attname) for f in fields)
    types = [f.db_type(connection) or "text" for f in fields]
    return fields, columns, types


def _entry_saved(entry: Entry, entry_id: int) -> None:
    entry.pk = entry_id
    entry._state.adding = False
    entry._state.db = DEFAULT_DB_ALIAS


# PostgreSQL: the entry, its new lots and its postings in ONE statement (one round trip).
# Lot ids are drawn from the lot sequence up front so postings can name them; every table's
# triggers and foreign keys still run (row triggers at the end of the statement, the
# balanced-entry check at COMMIT). If the idempotency key is taken nothing is inserted.
# The accounts (with the versions the legs were built from) and the legs travel as two JSON
# documents: a few microseconds to encode, where adapting a dozen Python lists to typed arrays
# cost a tenth of a millisecond of every posting.
_INSERT_ENTRY_SQL = """
WITH account AS MATERIALIZED (
    SELECT g.id, g.version FROM json_to_recordset(%s::json) AS g(id bigint, version bigint)
), locked AS (
    SELECT a.id, a.version FROM captable_account a
    WHERE a.id = ANY (ARRAY(SELECT account.id FROM account))
    ORDER BY {lock_order} FOR UPDATE
), guard AS (
    SELECT locked.id FROM locked
    JOIN account g ON locked.id = g.id AND (g.version IS NULL OR locked.version = g.version)
), new_entry AS (
    INSERT INTO captable_entry ({columns}) SELECT {placeholders}
    WHERE (SELECT count(*) FROM guard) = (SELECT count(*) FROM account)
    ON CONFLICT (idempotency_key) DO NOTHING
    RETURNING id
), leg AS MATERIALIZED (
    SELECT l.*, CASE WHEN l.opens_lot
                THEN nextval(pg_get_serial_sequence('captable_lot', 'id')) END AS new_lot_id
    FROM json_to_recordset(%s::json) AS l(account_id bigint, asset text, amount bigint,
        cost_minor bigint, lot_id bigint, opens_lot boolean, issued_at timestamptz,
        origin_lot_id bigint, position int)
    WHERE EXISTS (SELECT FROM new_entry)
), new_lot AS (
    INSERT INTO captable_lot (id, holding_id, acquired_by_id, issued_at, origin_lot_id,
                              quanta_acquired, cost_minor_acquired)
    SELECT leg.new_lot_id, leg.account_id, new_entry.id, leg.issued_at, leg.origin_lot_id,
           leg.amount, leg.cost_minor
    FROM leg CROSS JOIN new_entry WHERE leg.opens_lot ORDER BY leg.position
), new_posting AS (
    INSERT INTO captable_posting (entry_id, account_id, asset, amount, cost_minor, lot_id,
                                  effective_at)
    SELECT new_entry.id, leg.account_id, leg.asset, leg.amount, leg.cost_minor,
           COALESCE(leg.lot_id, leg.new_lot_id), %s
    FROM leg CROSS JOIN new_entry ORDER BY leg.position
)
SELECT (SELECT count(*) FROM guard), (SELECT count(*) FROM account), (SELECT id FROM new_entry)
"""


def _legs_json(legs: Sequence[Leg], effective_at: datetime) -> str:
    return json.dumps(
        [
            {
                "account_id": leg.account.pk,
                "asset": leg.account.asset,
                "amount": leg.amount,
                "cost_minor": leg.cost_minor,
                "lot_id": leg.lot_id,
                "opens_lot": leg.new_lot is not None,
                "issued_at": (leg.new_lot.issued_at or effective_at).isoformat()
                if leg.new_lot
                else None,
                "origin_lot_id": leg.new_lot.origin_lot_id if leg.new_lot else None,
                "position": position,
            }
            for position, leg in enumerate(legs)
        ]
    )


def _insert_in_one_statement(entry: Entry, legs: Sequence[Leg], guarded: Mapping[int, int]) -> bool:
    """False when the idempotency key is taken; raises _StateChanged when a guarded account's
    version moved. Every account of the entry is locked (`LOCK_ORDER`) by the statement
    itself, before anything is inserted."""
    columns, values, types = _entry_columns_and_values_pg(entry)
    sql = _INSERT_ENTRY_SQL.format(
        lock_order=LOCK_ORDER_OF_A,
        columns=columns,
        placeholders=", ".join(f"%s::{db_type}" for db_type in types),
    )
    account_ids = sorted({leg.account.pk for leg in legs})
    accounts = json.dumps([{"id": pk, "version": guarded.get(pk)} for pk in account_ids])
    params = [accounts, *values, _legs_json(legs, entry.effective_at), entry.effective_at]
    guard_count, account_count, entry_id = _execute_entry_insert(entry, sql, params)
    if guard_count < account_count:
        raise _StateChanged
    if entry_id is None:
        return False
    _entry_saved(entry, entry_id)
    return True


def _entry_columns_and_values_pg(entry: Entry) -> tuple[str, list[Any], list[str]]:
    """As `_entry_columns_and_values`, without Django's per-field preparation (this runs in
    every posting): values as psycopg adapts them, JSON as text cast by the statement, and
    the recording time set to the entry's effective time (both are this posting's now)."""
    fields, columns, types = _entry_columns(connection.vendor)
    entry.recorded_at = entry.effective_at
    values = [
        json.dumps(getattr(entry, f.attname), cls=f.encoder)
        if isinstance(f, JSONField)
        else getattr(entry, f.attname)
        for f in fields
    ]
    return columns, values, types


def _execute_entry_insert(entry: Entry, sql: str, params: Sequence[Any]) -> Any:
    """Run an entry INSERT; a unique clash other than the idempotency key (the reversed entry)
    is a Conflict."""
    try:
        rows = _fetch(sql, params, prepared=True)
    except IntegrityError:
        if entry.reverses_id is None:
            raise
        raise Conflict(
            f"Entry {entry.reverses_id} is already reversed.", code="already_reversed"
        ) from None
    return rows[0] if rows else None


def _insert_unless_key_taken(entry: Entry) -> bool:
    """INSERT … ON CONFLICT (idempotency_key) DO NOTHING RETURNING id: no savepoint, and a
    concurrent writer of the same key waits for ours to commit."""
    columns, values, _ = _entry_columns_and_values(entry)
    placeholders = ", ".join(["%s"] * len(values))
    # Only quoted identifiers from the model are interpolated; every value is a parameter.
    sql = (
        f"INSERT INTO captable_entry ({columns}) VALUES ({placeholders}) "  # noqa: S608
        "ON CONFLICT (idempotency_key) DO NOTHING RETURNING id"
    )
    row = _execute_entry_insert(entry, sql, values)
    if row is None:
        return False
    _entry_saved(entry, row[0])
    return True


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


_OPEN_LOTS_SQL = """
SELECT p.lot_id, l.issued_at, SUM(p.amount), SUM(p.cost_minor)
FROM captable_posting p JOIN captable_lot l ON l.id = p.lot_id
WHERE p.account_id = %s
GROUP BY p.lot_id, l.issued_at
HAVING SUM(p.amount) > 0
ORDER BY l.issued_at, p.lot_id
"""


def open_lots(holding: Account) -> list[OpenLot]:
    """The holding's lots with units left, oldest issue first (the FIFO order). Hand-written
    SQL: it runs inside every transfer and redemption."""
    prefetched: list[OpenLot] | None = getattr(holding, "_open_lots", None)
    if prefetched is not None:  # read with the account, in the same snapshot as its version
        return prefetched
    rows = _fetch(_OPEN_LOTS_SQL, [holding.pk], prepared=True)
    return [
        OpenLot(lot_id, _aware(issued_at), int(quanta), int(cost))
        for lot_id, issued_at, quanta, cost in rows
    ]


def _aware(value: datetime | str) -> datetime:
    """A timestamp read by hand-written SQL: PostgreSQL gives an aware datetime; SQLite gives
    text or a naive datetime, in UTC (as Django stores it)."""
    moment = parse_datetime(value) if isinstance(value, str) else value
    if moment is None:
        raise ValueError(f"not a timestamp: {value!r}")
    return moment if timezone.is_aware(moment) else moment.replace(tzinfo=UTC)


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


def _lot_draw(holding: Account, take: LotTake) -> Leg:
    return Leg(
        holding,
        -take.quanta,
        -take.cost_minor,
        lot_id=take.lot.lot_id,
        lot_remaining=take.lot.quanta,
    )


def _positive(value: int, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValidationFailed(f"{name} must be a positive integer.", code="invalid_quantity")
    return value


def units_authorize(
    *, offering: Offering, quanta: int, idempotency_key: str, actor: User | None = None
) -> Entry:
    """The issuer authorizes `quanta` more units: authorized counter → treasury."""
    _positive(quanta, "quanta")
    treasury, authorized = treasury_spec(offering), authorized_spec(offering)
    return entry_post(
        kind=EntryKind.AUTHORIZE,
        idempotency_key=idempotency_key,
        request={"offering": offering.pk, "quanta": quanta},
        lock_first=[treasury, authorized],
        build_legs=lambda locked: [
            Leg(locked[treasury.key], quanta),
            Leg(locked[authorized.key], -quanta),
        ],
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
    treasury, holding = treasury_spec(offering), holding_spec(offering, investor)
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
        build_legs=lambda locked: [
            Leg(locked[treasury.key], -quanta),
            Leg(locked[holding.key], quanta, cost_minor, new_lot=NewLot()),
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
    source, destination = holding_spec(offering, seller), holding_spec(offering, buyer)

    def legs(locked: LockedAccounts) -> list[Leg]:
        result = []
        held = locked[source.key]
        for take in take_first_in_first_out(open_lots(held), quanta):
            result.append(_lot_draw(held, take))
            result.append(
                Leg(
                    locked[destination.key],
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
        lots_of=[source],
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
    holding, treasury = holding_spec(offering, investor), treasury_spec(offering)
    operating = issuer_spec(offering.issuer, AccountKind.OPERATING, offering.currency)
    cash = cash_spec(investor, offering.currency)

    def legs(locked: LockedAccounts) -> list[Leg]:
        result = [Leg(locked[treasury.key], quanta)]
        held = locked[holding.key]
        for take in take_first_in_first_out(open_lots(held), quanta):
            result.append(_lot_draw(held, take))
        if price_minor:
            result += [Leg(locked[operating.key], -price_minor), Leg(locked[cash.key], price_minor)]
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
        lots_of=[holding],
        build_legs=legs,
        actor=actor,
        memo=memo,
    )


CASH_KINDS = (EntryKind.CASH_IN, EntryKind.CASH_MOVE, EntryKind.CASH_OUT)


def cash_move(
    *,
    source: Account | AccountSpec,
    destination: Account | AccountSpec,
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
    if source.key == destination.key:
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
        build_legs=lambda locked: [
            Leg(locked[source.key], -amount_minor),
            Leg(locked[destination.key], amount_minor),
        ],
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
        build_legs=lambda locked: [
            Leg(locked[p.account.key], -p.amount, -p.cost_minor, lot_id=p.lot_id) for p in postings
        ],
        actor=actor,
        memo=reason,
        reverses=original,
    )


# --- many cash entries at once (appended section) ---------------------------------------------
#
# A pay run posts one entry per holder: 100,000 of them. `BatchEntry` is one such entry as
# data (the pay run builds its ledger request and digest from it; a single payout posts it
# through `entry_post`); `cash_fan_out_post` below writes a whole batch of them set-based.


@dataclass(frozen=True)
class BatchEntry:
    kind: str
    idempotency_key: str
    request: Mapping[str, Any]
    legs: Sequence[tuple[AccountSpec, int]]  # (account, amount in minor units)
    memo: str = ""
    metadata: Mapping[str, Any] | None = None


_BATCH_ACCOUNTS_SQL = """
    INSERT INTO captable_account (key, kind, asset, offering_id, investor_id, issuer_id,
                                  reference, allows_negative, balance, version, created_at)
    SELECT k, kd, a, o, i, s, r, n, 0, 0, now()
    FROM unnest(%s::text[], %s::text[], %s::text[], %s::bigint[], %s::bigint[], %s::bigint[],
                %s::bigint[], %s::boolean[]) AS t(k, kd, a, o, i, s, r, n)
    ON CONFLICT (key) DO NOTHING
"""


@dataclass(frozen=True, slots=True)
class _BatchAccount:
    """An account as the batch needs it (plain rows: 100,000 model instances cost seconds)."""

    pk: int
    key: str
    balance: int
    allows_negative: bool


def _sealer(chain: str) -> Callable[[], None]:
    return lambda: _seal_after_commit(chain)


# --- many cash entries of one shape, as columns (appended section: cash_fan_out_post) --------
#
# The pay run's entries all have one shape: one source account debited, the investor's cash
# account and up to a few fixed accounts credited. `cash_fan_out_post` takes them as columns
# (no object per entry) and writes entries and postings with two set-based statements on
# PostgreSQL (no row leaves or re-enters Python), under the same rules as `entry_post`:
# keys used once (a replay is skipped, another request under a used key is a Conflict and
# nothing is written), no zero posting, the source not below zero (checked here on its
# balance as read, and by the account's CHECK at the update), accounts created if new and
# locked in `LOCK_ORDER` (the shared ones by the posting trigger: migration 0025),
# every trigger on (balances, the balanced-entry check at COMMIT, the sealing queue);
# the chain is sealed after commit.


@dataclass(frozen=True)
class CashFanOut:
    """Entry i moves, out of `source`, `to_cash[i]` into investor `investor_ids[i]`'s cash
    account and `amounts[i]` into each of the `sides` accounts (a zero amount is no posting),
    under `idempotency_keys[i]`, whose request digests the caller computed
    (`request_digest`), with `metadata_json[i]` (a JSON object, as text)."""

    kind: str
    currency: str
    source: AccountSpec
    idempotency_keys: Sequence[str]
    request_digests: Sequence[str]
    investor_ids: Sequence[int]
    to_cash: Sequence[int]
    sides: Sequence[tuple[AccountSpec, Sequence[int]]]
    metadata_json: Sequence[str]
    memo: str = ""

    def columns(self) -> list[Sequence[Any]]:
        return [
            self.idempotency_keys,
            self.request_digests,
            self.investor_ids,
            self.to_cash,
            *(amounts for _, amounts in self.sides),
            self.metadata_json,
        ]


def _fan_out_check(fan_out: CashFanOut) -> None:
    sizes = {len(column) for column in fan_out.columns()}
    if len(sizes) != 1:
        raise ValueError("every column of a fan-out has one value per entry")
    for spec in (fan_out.source, *(spec for spec, _ in fan_out.sides)):
        if spec.asset != fan_out.currency:
            raise ValidationFailed("A fan-out moves one currency.", code="batch_cash_only")
    if any(not key or len(key) > 200 for key in fan_out.idempotency_keys):
        raise ValidationFailed(
            "An idempotency key of 1 to 200 characters is required.", code="idempotency_key"
        )
    if len(set(fan_out.idempotency_keys)) != len(fan_out.idempotency_keys):
        raise ValidationFailed("A batch names a key twice.", code="idempotency_key_repeated")
    credits = [fan_out.to_cash, *(amounts for _, amounts in fan_out.sides)]
    for amounts in credits:
        if not all(type(amount) is int and amount >= 0 for amount in amounts):
            raise ValidationFailed(
                "Fan-out credits are whole minor units, none negative.", code="amount_invalid"
            )
    if not all(any(entry) for entry in zip(*credits, strict=True)):
        raise ValidationFailed("A posting cannot be zero.", code="zero_posting")


def _fan_out_replays(fan_out: CashFanOut) -> tuple[CashFanOut, dict[str, int]]:
    """The fan-out without the entries already posted (replays), and those entries' ids."""
    replayed = _batch_replays_of(fan_out.idempotency_keys, fan_out.request_digests)
    if not replayed:
        return fan_out, {}
    keep = [i for i, key in enumerate(fan_out.idempotency_keys) if key not in replayed]

    def kept(column: Sequence[Any]) -> list[Any]:
        return [column[i] for i in keep]

    rest = CashFanOut(
        kind=fan_out.kind,
        currency=fan_out.currency,
        source=fan_out.source,
        idempotency_keys=kept(fan_out.idempotency_keys),
        request_digests=kept(fan_out.request_digests),
        investor_ids=kept(fan_out.investor_ids),
        to_cash=kept(fan_out.to_cash),
        sides=[(spec, kept(amounts)) for spec, amounts in fan_out.sides],
        metadata_json=kept(fan_out.metadata_json),
        memo=fan_out.memo,
    )
    return rest, replayed


def _batch_replays_of(keys: Sequence[str], digests: Sequence[str]) -> dict[str, int]:
    wanted = dict(zip(keys, digests, strict=True))
    used = _fetch(
        "SELECT idempotency_key, request_digest, id FROM captable_entry "
        "WHERE idempotency_key = ANY(%b::text[])",
        [list(keys)],
        prepared=True,
    )
    for key, digest, _ in used:
        if wanted[key] != digest:
            raise _key_reused(key)
    return {key: entry_id for key, _, entry_id in used}


_LOCK_ACCOUNTS_SQL = (
    "SELECT id, key, balance, allows_negative FROM captable_account "  # noqa: S608 (constants)
    f"WHERE key = ANY(string_to_array(%s::text, E'\\n')) ORDER BY {LOCK_ORDER} FOR UPDATE"
)

_FAN_OUT_CASH_ACCOUNTS_SQL = """
    INSERT INTO captable_account (key, kind, asset, investor_id, allows_negative, balance,
                                  version, created_at)
    SELECT 'cash:i' || i || ':' || %s::text, %s::text, %s::text, i, false, 0, 0, now()
    FROM unnest(%s::bigint[]) AS t(i)
    ON CONFLICT (key) DO NOTHING
"""
# The same, every account assumed new: a plain insert skips ON CONFLICT's speculative
# insertion (~45 ms of each 25,000-account batch); a key already there fails it instead.
_NEW_CASH_ACCOUNTS_SQL = _FAN_OUT_CASH_ACCOUNTS_SQL.replace("ON CONFLICT (key) DO NOTHING", "")
assert _NEW_CASH_ACCOUNTS_SQL != _FAN_OUT_CASH_ACCOUNTS_SQL


def _fixed_accounts_create(fan_out: CashFanOut) -> list[AccountSpec]:
    """The fan-out's fixed accounts (source and sides), created if new (a no-op, taking no
    lock, for accounts that exist)."""
    fixed = [fan_out.source, *(spec for spec, _ in fan_out.sides)]
    with connection.cursor() as cursor:
        columns = ("key", "kind", "asset", "offering_id", "investor_id", "issuer_id", "reference")
        values = [[getattr(spec, column) for spec in fixed] for column in columns]
        allows = [spec.create_defaults()["allows_negative"] for spec in fixed]
        cursor.execute(_BATCH_ACCOUNTS_SQL, [*values, allows])
    return fixed


def _cash_accounts_locked(fan_out: CashFanOut) -> list[int]:
    """Each entry's cash account id (created if new), locked in `LOCK_ORDER` (an investor's
    accounts come before the fixed ones)."""
    currency = check_supported_currency(fan_out.currency)
    cash_keys = [f"cash:i{investor_id}:{currency}" for investor_id in fan_out.investor_ids]
    keys_text = text_lines(cash_keys)
    found = _fetch(_LOCK_ACCOUNTS_SQL, [keys_text], prepared=True)
    if len(found) < len(set(cash_keys)):  # some holders' cash accounts are new
        _cash_accounts_insert(fan_out.investor_ids, currency)
        found = _fetch(_LOCK_ACCOUNTS_SQL, [keys_text], prepared=True)
    ids = {key: account_id for account_id, key, _, _ in found}
    return [ids[key] for key in cash_keys]


_READ_ACCOUNTS_SQL = _LOCK_ACCOUNTS_SQL.removesuffix(" FOR UPDATE")
assert _READ_ACCOUNTS_SQL != _LOCK_ACCOUNTS_SQL


def _fixed_accounts_read(fixed: Sequence[AccountSpec]) -> dict[str, _BatchAccount]:
    """The fixed accounts' rows, not locked: the statement that posts on them locks them (its
    trigger, in `LOCK_ORDER`: migration 0025) when it updates their balances."""
    found = _fetch(_READ_ACCOUNTS_SQL, [text_lines([spec.key for spec in fixed])], prepared=True)
    return {row[1]: _BatchAccount(*row) for row in found}


# The entries and their cash legs. The entries' sequence is looked up once (an InitPlan): as a
# plain argument of nextval, pg_get_serial_sequence (a catalog look-up) ran for every row, 68 ms
# of 25,000.
_FAN_OUT_ENTRIES_SQL = """
    WITH spec AS MATERIALIZED (
        SELECT nextval((SELECT pg_get_serial_sequence('captable_entry', 'id')::regclass)) AS id,
               s.*
        FROM unnest(string_to_array(%s::text, E'\\n'), string_to_array(%s::text, E'\\n'),
                    %s::bigint[], %s::bigint[], string_to_array(%s::text, E'\\n'))
             AS s(key, digest, cash_account_id, to_cash, metadata)
    ),
    entries AS (
        INSERT INTO captable_entry (id, kind, idempotency_key, request_digest, effective_at,
                                    recorded_at, created_by_id, memo, reverses_id, chain,
                                    metadata)
        SELECT id, %s::text, key, digest, %s::timestamptz, %s::timestamptz, %s::bigint,
               %s::text, NULL, %s::text, metadata::jsonb
        FROM spec
    ),
    postings AS (
        INSERT INTO captable_posting (entry_id, account_id, asset, amount, cost_minor,
                                      effective_at)
        SELECT id, cash_account_id, %s::text, to_cash, 0, %s::timestamptz
        FROM spec WHERE to_cash <> 0
    )
    SELECT key, id FROM spec
"""


def _fan_out_shared_legs_sql(side_count: int) -> str:
    """The entries' legs on the fixed accounts: each side's credit, then the source's debit."""
    sides = [f"side{n}" for n in range(side_count)]
    side_arrays = "".join(", %s::bigint[]" for _ in sides)
    side_columns = "".join(f", {side}" for side in sides)
    total = " + ".join(["to_cash", *sides])
    side_legs = "".join(f"(%s::bigint, {side}), " for side in sides)
    # Only column names made here (side0, side1, …) are formatted in; values are parameters.
    return f"""
    INSERT INTO captable_posting (entry_id, account_id, asset, amount, cost_minor, effective_at)
    SELECT s.id, leg.account_id, %s::text, leg.amount, 0, %s::timestamptz
    FROM unnest(%s::bigint[], %s::bigint[]{side_arrays}) AS s(id, to_cash{side_columns})
    CROSS JOIN LATERAL (VALUES {side_legs}(%s::bigint, -({total}))) AS leg(account_id, amount)
    WHERE leg.amount <> 0
    """  # noqa: S608


def cash_fan_out_post(
    fan_out: CashFanOut,
    *,
    actor: User | None = None,
    then: Callable[[dict[str, int]], None] | None = None,
) -> dict[str, int]:
    """Post the fan-out's entries in one transaction (PostgreSQL only); returns key → entry id,
    for the replayed keys too. All or nothing.

    `then(posted)`: the caller's own writes that name the entries (the pay run marks its
    payouts paid), run in the same transaction once every entry exists and before the fixed
    accounts are locked, so that those locks are held only for the fixed accounts' balance
    update and COMMIT (batches on other connections wait for them).

    Optimistic: the entries are first written as if no key had been used (a pay run's keys are
    new: its payouts are locked unpaid), under a savepoint. A key used before fails that write
    on the entries' unique key; only then are the replays looked up (25,000 keys a batch, a
    tenth of a second) and the rest written."""
    if connection.vendor != "postgresql":
        raise NotImplementedError("cash_fan_out_post writes with PostgreSQL's set-based SQL")
    _fan_out_check(fan_out)
    with transaction.atomic():
        try:
            with transaction.atomic():  # `then`'s writes roll back with the entries
                posted = _fan_out_write(fan_out, actor, then=then)
        except (IntegrityError, LimitExceeded) as error:
            if isinstance(error, IntegrityError) and not _is_entry_key_taken(error):
                raise
            rest, replayed = _fan_out_replays(fan_out)
            if rest.idempotency_keys:
                posted = _fan_out_write(rest, actor, then=then, replayed=replayed)
            else:
                posted = replayed
                if then is not None:
                    then(posted)
        if settings.LEDGER_SEAL_ON_COMMIT:
            transaction.on_commit(_sealer(f"cash:{fan_out.currency}"))
    return posted


def _is_entry_key_taken(error: IntegrityError) -> bool:
    diagnostics = getattr(error.__cause__, "diag", None)
    return getattr(diagnostics, "constraint_name", None) == "captable_entry_idempotency_key_key"


def _fan_out_write(
    fan_out: CashFanOut,
    actor: User | None,
    *,
    then: Callable[[dict[str, int]], None] | None,
    replayed: Mapping[str, int] | None = None,
) -> dict[str, int]:
    """Write the fan-out's entries, every key assumed new (a used one: IntegrityError); returns
    key → entry id, `replayed` (entries posted before) included.

    Two statements: the entries with their cash legs (the holders' accounts locked first),
    then (after `then`) the legs on the fixed accounts, which that statement's trigger locks
    (they come last in `LOCK_ORDER`) once its postings are written, when it updates their
    balances; they are held to COMMIT. Batches of one pay run on several connections share
    only the fixed accounts (source, sides), so they overlap everything but the second
    statement's balance update and COMMIT. The entries balance at COMMIT (the deferred
    check), not between the two statements.

    The source's balance is checked here on an unlocked read (the usual error, early); a
    concurrent debit between that read and the update is caught by the account's CHECK, at
    the update, and raised as the same error."""
    fixed = _fixed_accounts_create(fan_out)
    cash_account_ids = _cash_accounts_locked(fan_out)
    now = timezone.now()
    # Server-side parameters (prepared): 25,000-element arrays travel as parameters, not as
    # literals quoted into the statement's text by Python and parsed again by PostgreSQL; text
    # columns as one string of lines (`text_lines`; psycopg's text format escapes each element
    # of a text array with a regular expression, its binary format packs each in Python);
    # integer arrays as one array literal (`bigint_array_text`).
    to_cash = bigint_array_text(fan_out.to_cash)
    entries = [
        text_lines(fan_out.idempotency_keys),
        text_lines(fan_out.request_digests),
        bigint_array_text(cash_account_ids),
        to_cash,
        text_lines(fan_out.metadata_json),
        fan_out.kind,
        now,
        now,
        actor.pk if actor else None,
        fan_out.memo,
        f"cash:{fan_out.currency}",
        fan_out.currency,
        now,
    ]
    written = dict(_fetch(_FAN_OUT_ENTRIES_SQL, entries, prepared=True))
    posted = {**(replayed or {}), **written}
    if then is not None:
        then(posted)
    read = _fixed_accounts_read(fixed)
    source = read[fan_out.source.key]
    leaving = sum(fan_out.to_cash) + sum(sum(amounts) for _, amounts in fan_out.sides)
    if not source.allows_negative and source.balance < leaving:
        raise _source_short(source, leaving)
    legs: list[Any] = [
        fan_out.currency,
        now,
        bigint_array_text([written[key] for key in fan_out.idempotency_keys]),
        to_cash,
        *(bigint_array_text(amounts) for _, amounts in fan_out.sides),
        *(read[spec.key].pk for spec, _ in fan_out.sides),
        source.pk,
    ]
    try:  # no savepoint of its own: the caller's rolls the whole write back on any error
        _fetch(_fan_out_shared_legs_sql(len(fan_out.sides)), legs, prepared=True)
    except IntegrityError as error:
        constraint = getattr(getattr(error.__cause__, "diag", None), "constraint_name", None)
        if constraint != "account_no_negative_balance":
            raise
        raise _source_short(source, leaving) from error  # drawn on since it was read
    return posted


def _source_short(source: _BatchAccount, leaving: int) -> LimitExceeded:
    return LimitExceeded(
        f"{source.key} holds {source.balance}; this batch needs {leaving}.",
        code="insufficient_balance",
        account=source.key,
        balance=source.balance,
        required=leaving,
    )


def cash_accounts_open(investor_ids: Sequence[int], currency: str) -> None:
    """Create the investors' available-cash accounts that do not exist yet (PostgreSQL), in
    a transaction of their own: a pay run opens a batch's accounts before paying it, so that
    the accounts it credits are not rows of the paying transaction (a row inserted and then
    updated in one transaction has its foreign keys checked twice, and its balance update
    cannot be a heap-only update). An empty account changes no balance."""
    if connection.vendor != "postgresql":
        raise NotImplementedError("cash_accounts_open writes with PostgreSQL's set-based SQL")
    with transaction.atomic():
        _cash_accounts_insert(investor_ids, check_supported_currency(currency), all_new=True)


def _cash_accounts_insert(
    investor_ids: Sequence[int], currency: str, *, all_new: bool = False
) -> None:
    """The investors' cash accounts that do not exist yet. `all_new`: first tried as if none
    existed (a first distribution opens them all), under a savepoint; if one did, the insert
    fails on the key and is made again skipping those that exist."""
    params = [currency, AccountKind.CASH.value, currency, bigint_array_text(investor_ids)]
    if all_new:
        try:
            with transaction.atomic():
                _fetch(_NEW_CASH_ACCOUNTS_SQL, params, prepared=True)
            return
        except IntegrityError as error:
            constraint = getattr(getattr(error.__cause__, "diag", None), "constraint_name", None)
            if constraint != "account_key_unique":
                raise
    _fetch(_FAN_OUT_CASH_ACCOUNTS_SQL, params, prepared=True)
