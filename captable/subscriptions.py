"""Subscriptions up to funding: subscribe (reserve units or join the waitlist), sign the
agreement, cancel, and expire unfunded reservations.

    waitlisted → reserved → signed ⇄ funded → accepted (closing)
         ↓           ↓         ↓        ↓
     cancelled   cancelled / expired   cancelled / refunded / rejected

Funding (payments, the webhook, bounces) is in `captable/payments.py`; a subscription that
ends while money is in escrow (cancelled, expired, lapsed reconfirmation, refunded) sends it
back out there, on the ledger, in the same transaction.

Rules kept here:
- Never oversold. Reservations are not ledger entries: a reservation raises
  `Offering.units_reserved_quanta` by ONE conditional UPDATE that also requires the offering to
  be live and open and enough supply left (`reserved + issued + q <= authorized`, and never more
  units than `max_raise` buys), backed by the offering's database check. It changes no
  indexed column (not `updated_at`), so PostgreSQL updates the hot row in place (a heap-only
  tuple: no new entry in the offering's twelve indexes per reservation); the public list,
  cached on `updated_at`, shows reserved units within its TTL (OFFERINGS_PUBLIC_LIST_CACHE_SECONDS).
- The waitlist is first come, first served (by id): when supply runs out, or while anyone is
  already waiting, a new subscription is waitlisted. Units released by a cancellation or an
  expiry are offered to the waitlist in order, in the same transaction, until the head no
  longer fits: a later, smaller request never jumps the queue.
- Per investor and offering the totals (waitlisted included) stay within the offering's
  minimum and maximum; the exemption's rule pack (investors/compliance.py) decides the rest,
  and the decision and its rule version are stored on the subscription. Every refusal is a
  `DomainError` raised before anything is written.
- Locks are always taken in the same order: investor row → offering row → subscription rows.
  Subscribing locks the investor row first, so two concurrent subscriptions of one investor
  are counted one after the other (never both against the same totals).
- Every status change is a compare-and-swap (`filter(pk=..., status=old).update(...)`, exactly
  one row) with an append-only history row.
- A material change (a new offering document version) asks every signed or funded
  subscription to reconfirm (sign the new agreement) by the end of the 5th business day
  after it; `reconfirmations_expire_due` cancels and refunds those that did not.
"""

from __future__ import annotations

import enum
import functools
import ipaddress
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.db.models import F, Field
from django.utils import timezone

from captable.models import (
    SUBSCRIPTION_HOLDING_STATUSES,
    SUBSCRIPTION_UNFUNDED_STATUSES,
    ReconfirmationStatus,
    Subscription,
    SubscriptionAgreement,
    SubscriptionReconfirmation,
    SubscriptionStatus,
    SubscriptionStatusChange,
)
from captable.subscription_selectors import (
    AgreementDocument,
    Totals,
    cancel_deadline,
    investor_offering_totals_query,
    non_accredited_purchaser_count,
    reconfirmation_pending,
    reg_cf_invested_12_months_minor,
    reg_cf_invested_query,
    subscription_agreement_document,
    waitlist_exists,
    waitlist_query,
)
from common.business_days import end_of_business_days
from common.errors import (
    Conflict,
    InvalidTransition,
    LimitExceeded,
    NotAllowed,
    NotFound,
    ValidationFailed,
)
from common.idempotency import CLAIMING_USER_ID
from common.models import User
from common.money import basis_points_of, format_minor_units
from common.sql import (
    Rider,
    adapt_datetime,
    column,
    fetch,
    fetch_one,
    model_from_row,
    named_parameters,
)
from investors.compliance import (
    ComplianceDecision,
    ecsp_check,
    ecsp_pack,
    reg_a_tier2_investor_limit,
    reg_cf_investor_limit,
    reg_d_506b_check,
    reg_d_506c_check,
)
from investors.models import AccreditationStatus, Investor, KycStatus
from investors.selectors import (
    NO_PROFILE_MESSAGE,
    investor_facts,
    investor_is_sophisticated_for_506b,
    investor_of_user,
    investor_verified_accreditation_expires_at,
)
from offerings.exemptions import Exemption
from offerings.models import Offering, OfferingDocument, OfferingStatus
from offerings.quantities import cost_of_quanta_minor, format_units, units_to_quanta
from offerings.selectors import offerings_visible_to, relationship_days

RESERVATION_TTL_HOURS_DEFAULT = 72


def reservation_ttl() -> timedelta:
    """How long reserved units wait for the money (setting SUBSCRIPTION_RESERVATION_TTL_HOURS)."""
    hours = getattr(settings, "SUBSCRIPTION_RESERVATION_TTL_HOURS", RESERVATION_TTL_HOURS_DEFAULT)
    return timedelta(hours=int(hours))


# --- small helpers ------------------------------------------------------------------------------


def _money(amount_minor: int, currency: str) -> str:
    return f"{currency} {format_minor_units(amount_minor, currency)}"


def _units(quanta: int, offering: Offering) -> str:
    return format_units(quanta, offering.quanta_per_unit)


def _history(
    subscription_id: int, from_status: str, to_status: str, actor: User | None, reason: str
) -> None:
    SubscriptionStatusChange.objects.create(
        subscription_id=subscription_id,
        from_status=from_status,
        to_status=to_status,
        actor=actor,
        reason=reason,
    )


def _transition(
    subscription: Subscription,
    *,
    allowed_from: tuple[str, ...],
    to_status: str,
    actor: User | None,
    reason: str,
    now: datetime,
    **updates: object,
) -> None:
    """Compare-and-swap the status (exactly one row) and write the history row. Runs inside
    the caller's transaction."""
    expected = subscription.status
    if expected not in allowed_from:
        raise InvalidTransition(
            f"subscription is {expected}; it cannot become {to_status}.", from_status=expected
        )
    changed = Subscription.objects.filter(pk=subscription.pk, status=expected).update(
        status=to_status, updated_at=now, **updates
    )
    if changed != 1:
        current = Subscription.objects.filter(pk=subscription.pk).values_list("status", flat=True)
        raise InvalidTransition(
            f"subscription is {current.first()}; it cannot become {to_status}.",
            from_status=current.first(),
        )
    _history(subscription.pk, expected, to_status, actor, reason)
    subscription.status = to_status
    for name, value in updates.items():
        setattr(subscription, name, value)


# --- supply: reserve, release, promote ------------------------------------------------------------


def supply_quanta(offering: Offering) -> int:
    """Units for sale: the authorized units, but never more than `max_raise` buys."""
    raise_cap_quanta = offering.max_raise_minor * offering.quanta_per_unit
    return min(offering.units_authorized_quanta, raise_cap_quanta // offering.price_per_unit_minor)


# ONE conditional UPDATE reserves units: the offering live and open, and the units there
# (`reserved + issued + q <= authorized`, and within what `max_raise` buys). Used alone
# (`_reserve`) and as the first step of the subscribe write (`_reserve_and_create`).
_RESERVE_SQL = (
    f"UPDATE {Offering._meta.db_table} "  # noqa: S608
    "SET units_reserved_quanta = units_reserved_quanta + %(quanta)s "
    f"WHERE id = %(offering)s AND status = '{OfferingStatus.LIVE.value}' "
    "AND opens_at <= %(now)s AND closes_at > %(now)s "
    "AND units_reserved_quanta <= units_authorized_quanta - units_issued_quanta - %(quanta)s "
    "AND units_reserved_quanta <= %(supply)s - %(quanta)s - units_issued_quanta "
    "RETURNING id"
)


def _reserve_parameters(offering: Offering, quanta: int, now: datetime) -> dict[str, Any]:
    return {
        "quanta": quanta,
        "now": adapt_datetime(now),
        "offering": offering.pk,
        "supply": supply_quanta(offering),
    }


def _reserve(offering: Offering, quanta: int, now: datetime) -> bool:
    """Reserve `quanta` if the offering is live, open and has them (`_RESERVE_SQL`)."""
    return bool(fetch(_RESERVE_SQL, _reserve_parameters(offering, quanta, now)))


def _release(offering_id: int, quanta: int) -> None:
    changed = Offering.objects.filter(pk=offering_id).update(
        units_reserved_quanta=F("units_reserved_quanta") - quanta
    )  # not `updated_at`: a counter, updated in place as the reservation is (module docstring)
    assert changed == 1


def _lock_and_refresh(subscription: Subscription, *fields: str) -> None:
    """Lock the subscription's row (after the offering's, when both are taken) and read its
    `fields` (all by default) again: a status read without the lock could change before the
    compare-and-swap (a webhook funds it meanwhile)."""
    subscription.refresh_from_db(
        from_queryset=Subscription.objects.select_for_update(of=("self",)),
        fields=list(fields) or None,
    )


def _offering_locked(offering_id: int) -> Offering:
    # FOR NO KEY UPDATE: serializes with the reservation UPDATEs and status changes, without
    # blocking other transactions' foreign keys to the offering.
    return Offering.objects.select_for_update(no_key=True).get(pk=offering_id)


def _is_open(offering: Offering, now: datetime) -> bool:
    return offering.status == OfferingStatus.LIVE and offering.opens_at <= now < offering.closes_at


def _waitlist_promote(offering_id: int, now: datetime) -> list[int]:
    """Offer released units to the waitlist in order, while the head fits. The caller holds
    the offering's row lock."""
    offering = Offering.objects.get(pk=offering_id)
    promoted: list[int] = []
    if not _is_open(offering, now):
        return promoted  # closing deals with whoever still waits
    expires_at = now + reservation_ttl()
    while True:
        head = (
            Subscription.objects.filter(
                offering_id=offering_id, status=SubscriptionStatus.WAITLISTED
            )
            .order_by("pk")
            .first()
        )
        if head is None or not _reserve(offering, head.quanta, now):
            return promoted
        try:
            _transition(
                head,
                allowed_from=(SubscriptionStatus.WAITLISTED,),
                to_status=SubscriptionStatus.RESERVED,
                actor=None,
                reason="Promoted from the waitlist: units were released.",
                now=now,
                reserved_at=now,
                expires_at=expires_at,
            )
        except InvalidTransition:
            _release(offering_id, head.quanta)  # it left the waitlist meanwhile
            continue
        promoted.append(head.pk)


def _reserve_or_waitlist(offering: Offering, quanta: int, now: datetime) -> bool:
    """True: reserved; False: waitlisted. Decided under the offering's row lock, so a
    concurrent release sees a waitlisted subscription and promotes it in order. Refuses
    (Conflict) if the offering closed meanwhile."""
    locked = _offering_locked(offering.pk)
    _check_open(locked, now)
    return not waitlist_exists(offering_id=offering.pk) and _reserve(locked, quanta, now)


# --- subscribe: the checks ------------------------------------------------------------------------


def _check_open(offering: Offering, now: datetime) -> None:
    if offering.status != OfferingStatus.LIVE:
        raise Conflict(
            f"The offering is {offering.status}, not live: it takes no subscriptions.",
            code="offering_not_live",
            offering_status=offering.status,
        )
    if now < offering.opens_at:
        raise Conflict(
            f"The offering opens at {offering.opens_at.isoformat()}.",
            code="offering_not_open_yet",
        )
    if now >= offering.closes_at:
        raise Conflict(
            f"The offering closed for subscriptions at {offering.closes_at.isoformat()}.",
            code="offering_window_closed",
        )


def _check_kyc(investor: Investor) -> None:
    if investor.kyc_status != KycStatus.APPROVED:
        raise NotAllowed(
            f"Your identity check (KYC) is {investor.kyc_status}: only KYC-approved investors "
            "can subscribe.",
            code="kyc_not_approved",
        )


def _check_investment_bounds(offering: Offering, held_quanta: int, quanta: int) -> None:
    total = held_quanta + quanta
    if total < offering.min_investment_quanta:
        raise LimitExceeded(
            f"The minimum investment is {_units(offering.min_investment_quanta, offering)} "
            f"units per investor; with your other subscriptions to this offering "
            f"({_units(held_quanta, offering)} units) this would be {_units(total, offering)}.",
            code="below_minimum_investment",
            min_investment_quanta=offering.min_investment_quanta,
            held_quanta=held_quanta,
        )
    if total > offering.max_investment_quanta:
        raise LimitExceeded(
            f"The maximum investment is {_units(offering.max_investment_quanta, offering)} "
            f"units per investor; you already have {_units(held_quanta, offering)} units in "
            f"subscriptions to this offering, so at most "
            f"{_units(max(offering.max_investment_quanta - held_quanta, 0), offering)} more.",
            code="above_maximum_investment",
            max_investment_quanta=offering.max_investment_quanta,
            held_quanta=held_quanta,
        )


def subscription_investor_checks(
    *,
    investor: Investor,
    offering: Offering,
    quanta: int,
    amount_minor: int,
    held_quanta: int,
    held_amount_minor: int,
    now: datetime,
) -> Compliance:
    """The checks a purchase of `quanta` (costing `amount_minor`) by `investor` passes, as a
    subscription's: KYC, the offering's per-investor minimum and maximum counting what they
    hold already (`held_*`), the exemption's rule pack; each refusal a `DomainError`. For
    other ways of buying units (a distribution's reinvestment), so the rules stay in one
    place."""
    _check_kyc(investor)
    _check_investment_bounds(offering, held_quanta, quanta)
    return _compliance(
        actor=investor.user,
        investor=investor,
        offering=offering,
        amount_minor=amount_minor,
        held_amount_minor=held_amount_minor,
        risk_warning_acknowledged=False,
        now=now,
    )


def _refused(decision: ComplianceDecision) -> LimitExceeded:
    return LimitExceeded(decision.reason, code=decision.code, rule_version=decision.rule_version)


def _over_limit(decision: ComplianceDecision, amount_minor: int, code: str) -> None:
    if not decision.allowed:
        raise _refused(decision)
    limit = decision.amount_allowed_minor
    if limit is not None and amount_minor > limit:
        raise LimitExceeded(
            f"{_money(amount_minor, decision.currency)} is over the limit: {decision.reason}",
            code=code,
            rule_version=decision.rule_version,
            amount_allowed_minor=limit,
        )


@dataclass(frozen=True)
class Compliance:
    decision: ComplianceDecision
    is_non_accredited_purchaser: bool = False
    revocable_until: datetime | None = None
    risk_warning_acknowledged: bool = False


def _reg_d_506b(actor: User, investor: Investor, offering: Offering, now: datetime) -> Compliance:
    went_live_at = offering.went_live_at or now
    if actor.date_joined + timedelta(days=relationship_days()) > went_live_at:
        raise NotAllowed(
            f"Reg D 506(b) offerings are open only to investors with a relationship with the "
            f"platform that predates the offering by {relationship_days()} days.",
            code="no_pre_existing_relationship",
        )
    is_accredited = investor.accreditation_status in (
        AccreditationStatus.SELF_CERTIFIED,
        AccreditationStatus.VERIFIED,
    )
    count = 0
    if not is_accredited:
        _offering_locked(offering.pk)  # the 35-purchaser quota is shared by every investor
        count = non_accredited_purchaser_count(offering=offering, excluding=investor)
    decision = reg_d_506b_check(
        is_accredited, investor_is_sophisticated_for_506b(investor, on=now), count, now
    )
    if not decision.allowed:
        raise _refused(decision)
    return Compliance(decision, is_non_accredited_purchaser=not is_accredited)


def _ecsp(investor: Investor, amount_minor: int, acknowledged: bool, now: datetime) -> Compliance:
    facts = investor_facts(investor)
    valid_until = investor.knowledge_test_valid_until
    decision = ecsp_check(facts, amount_minor, valid_until, acknowledged, now)
    if not decision.allowed:
        raise _refused(decision)
    reflection = timedelta(days=ecsp_pack(now).reflection_period_days)
    return Compliance(
        decision,
        revocable_until=None if facts.is_sophisticated else now + reflection,
        risk_warning_acknowledged=acknowledged,
    )


def _compliance(
    *,
    actor: User,
    investor: Investor,
    offering: Offering,
    amount_minor: int,
    held_amount_minor: int,
    risk_warning_acknowledged: bool,
    now: datetime,
    reg_cf_invested_minor: int | None = None,
) -> Compliance:
    """The exemption's rule pack, on the investor's facts and this platform's records
    (`reg_cf_invested_minor`: the Reg CF 12-month total if already read)."""
    exemption = offering.exemption
    facts = investor_facts(investor)
    if exemption == Exemption.REG_CF:
        if reg_cf_invested_minor is None:
            reg_cf_invested_minor = reg_cf_invested_12_months_minor(investor=investor, now=now)
        decision = reg_cf_investor_limit(facts, reg_cf_invested_minor, now)
        _over_limit(decision, amount_minor, "reg_cf_limit_exceeded")
        return Compliance(decision)
    if exemption == Exemption.REG_A_TIER2:
        decision = reg_a_tier2_investor_limit(facts, now)
        _over_limit(decision, held_amount_minor + amount_minor, "reg_a_limit_exceeded")
        return Compliance(decision)
    if exemption == Exemption.REG_D_506B:
        return _reg_d_506b(actor, investor, offering, now)
    if exemption == Exemption.REG_D_506C:
        decision = reg_d_506c_check(investor_verified_accreditation_expires_at(investor), now)
        if not decision.allowed:
            raise _refused(decision)
        return Compliance(decision)
    if exemption == Exemption.EU_ECSP:
        return _ecsp(investor, amount_minor, risk_warning_acknowledged, now)
    raise ValidationFailed(f"Unknown exemption {exemption!r}.", code="exemption_invalid")


def subscription_fee_minor(offering: Offering, amount_minor: int) -> int:
    """The investor's processing fee: basis points of the amount, rounded once, then capped."""
    fee = basis_points_of(amount_minor, offering.investor_fee_basis_points)
    cap = offering.investor_fee_cap_minor
    return fee if cap is None else min(fee, cap)


# --- subscribe: the reads -----------------------------------------------------------------------

# What subscribing reads of the offering and of the investor (the rest stays deferred: the
# investor's encrypted tax id, say, is never decrypted here).
_OFFERING_FIELDS = (
    "id",
    "title",
    "sponsor",
    "issuer",
    "status",
    "exemption",
    "security_type",
    "funding_model",
    "currency",
    "price_per_unit_minor",
    "quanta_per_unit",
    "units_authorized_quanta",
    "units_reserved_quanta",
    "units_issued_quanta",
    "min_investment_quanta",
    "max_investment_quanta",
    "target_raise_minor",
    "max_raise_minor",
    "opens_at",
    "closes_at",
    "went_live_at",
    "investor_fee_basis_points",
    "investor_fee_cap_minor",
)
_INVESTOR_EXCLUDED = frozenset({"tax_id"})


@dataclass(frozen=True)
class _SubscribeFacts:
    """Everything the checks need, read after the investor's row lock (or, read ahead, with a
    snapshot that may predate it: then the write checks that they still hold)."""

    offering: Offering
    held: Totals
    reg_cf_invested_minor: int
    waitlist_exists: bool
    subscription_id: int | None  # allocated ahead of the write, when asked


@functools.cache
def _investor_fields() -> list[Field[Any, Any]]:
    return [f for f in Investor._meta.concrete_fields if f.name not in _INVESTOR_EXCLUDED]


@functools.cache
def _investor_lock_sql(vendor: str) -> str:
    columns = ", ".join(column(f) for f in _investor_fields())
    lock = " FOR UPDATE" if vendor == "postgresql" else ""  # SQLite: BEGIN IMMEDIATE
    return f"SELECT {columns} FROM {Investor._meta.db_table} WHERE user_id = %s{lock}"  # noqa: S608


def _investor_locked(actor: User) -> Investor | None:
    """The caller's investor profile, its row locked: this investor's subscriptions are
    counted one after the other (never two against the same totals). The totals are read by
    the NEXT statement, whose snapshot sees what the previous holder committed."""
    return _investor_of_row(actor, fetch_one(_investor_lock_sql(connection.vendor), [actor.pk]))


def _investor_of_row(actor: User, row: Sequence[Any] | None) -> Investor | None:
    if row is None or row[0] is None:
        return None
    investor = model_from_row(Investor, _investor_fields(), row)
    investor.user = actor
    return investor


@functools.cache
def _offering_fields() -> list[Field[Any, Any]]:
    return [f for f in Offering._meta.concrete_fields if f.name in _OFFERING_FIELDS]


@functools.cache
def _public_offerings_sql(vendor: str) -> tuple[str, tuple[Any, ...]]:
    """The offerings visible to everyone, anonymous visitors included (THE visibility rule of
    offerings/selectors.py, applied to no user): the same for every request, so compiled once
    per process. A signed-in caller sees at least these."""
    sql, params = offerings_visible_to(None).values("pk").query.sql_with_params()
    return sql, tuple(params)


def _facts_statement(
    investor_id: object, offering_id: int, now: datetime, *, allocate_id: bool
) -> tuple[str, list[Any]]:
    """ONE statement: the offering, whether everyone may see it, the investor's totals in it,
    their Reg CF 12-month total and whether anyone is on its waitlist (and, `allocate_id`, on
    PostgreSQL, the new subscription's id, so its response can be rendered before the
    write)."""
    public_sql, public_params = _public_offerings_sql(connection.vendor)
    reg_cf_sql, reg_cf_params = reg_cf_invested_query(investor_id, now)
    waitlist_sql, waitlist_params = waitlist_query(offering_id)
    totals_sql, totals_params = investor_offering_totals_query(investor_id, offering_id)
    columns = _offering_columns(connection.vendor)
    new_id = f"nextval('{_subscription_id_sequence()}')" if allocate_id else "NULL"
    sql = (
        f"SELECT {columns}, ({reg_cf_sql}), EXISTS ({waitlist_sql}), "  # noqa: S608
        f"totals.quanta, totals.amount, {new_id}, o.id IN ({public_sql}) "
        f"FROM {Offering._meta.db_table} o, ({totals_sql}) totals WHERE o.id = %s"
    )
    params = [*reg_cf_params, *waitlist_params, *public_params, *totals_params, offering_id]
    return sql, params


def _facts_of_row(actor: User, offering_id: int, row: Sequence[Any] | None) -> _SubscribeFacts:
    """The facts read by `_facts_statement`. An offering not visible to everyone is checked
    against the caller's own visibility (a sponsor's draft, a Reg D 506(b) offering):
    NotFound unless they may see it."""
    if row is None or row[0] is None or not (row[-1] or _visible_to(actor, offering_id)):
        raise NotFound(f"Offering {offering_id} not found.", code="offering_not_found")
    count = len(_offering_fields())
    reg_cf_invested, waitlisted, held_quanta, held_amount, allocated_id, _ = row[count:]
    return _SubscribeFacts(
        offering=model_from_row(Offering, _offering_fields(), row[:count]),
        held=Totals(int(held_quanta), int(held_amount)),
        reg_cf_invested_minor=int(reg_cf_invested),
        waitlist_exists=bool(waitlisted),
        subscription_id=allocated_id,
    )


def _subscribe_facts(
    actor: User, investor: Investor | None, offering_id: int, now: datetime
) -> _SubscribeFacts:
    investor_id = investor.pk if investor is not None else None
    sql, params = _facts_statement(investor_id, offering_id, now, allocate_id=False)
    return _facts_of_row(actor, offering_id, fetch_one(sql, params))


@dataclass(frozen=True)
class ReadAhead:
    """PostgreSQL: the reads of a subscription (the caller's investor row, locked, and the
    facts its checks need), as ONE `SELECT` (`sql`, named parameters) for a caller to run in
    a statement of its own (the API's: with the rate count and the idempotency key's claim),
    then to hand its row to `subscription_create(read_ahead=...)`, in the same transaction.
    The facts are read with that statement's snapshot, which may predate the lock (if it
    waited for it): the write checks that they still hold, and reads them again if not."""

    offering_id: int
    now: datetime
    sql: str
    params: dict[str, Any]


# Where the investor's id goes in the read-ahead (the row it locks, in the same statement).
_LOCKED_INVESTOR_ID = object()


def subscription_read_ahead(offering_id: int) -> ReadAhead | None:
    """The `ReadAhead` of a subscription to `offering_id` by the user claiming the request's
    idempotency key (`CLAIMING_USER_ID`, common/idempotency.py: the caller need not be known
    yet); None but on PostgreSQL."""
    if connection.vendor != "postgresql":
        return None
    now = timezone.now()
    facts_sql, facts_params = _facts_statement(
        _LOCKED_INVESTOR_ID, offering_id, now, allocate_id=True
    )
    sql = _READ_AHEAD_SQL.get(facts_sql)
    if sql is None:
        sql = _READ_AHEAD_SQL[facts_sql] = _read_ahead_sql(facts_sql, facts_params)
    # The names `named_parameters` gives: by position, the locked investor's id inlined.
    params = {
        f"read_{index}": value
        for index, value in enumerate(facts_params)
        if value is not _LOCKED_INVESTOR_ID
    }
    return ReadAhead(offering_id, now, sql, params)


# The facts statement's text (one shape, whatever its values) → the read-ahead's: rewriting
# its placeholders on every request cost more than the rest of building it.
_READ_AHEAD_SQL: dict[str, str] = {}


def _read_ahead_sql(facts_sql: str, facts_params: list[Any]) -> str:
    lock_sql = _investor_lock_sql("postgresql").replace("%s", CLAIMING_USER_ID)
    facts_sql, _ = named_parameters(
        facts_sql, facts_params, prefix="read_", inline={_LOCKED_INVESTOR_ID: "investor.id"}
    )
    return (
        "SELECT investor.*, facts.* FROM (SELECT) one "  # noqa: S608
        f"LEFT JOIN LATERAL ({lock_sql}) investor ON true "
        f"LEFT JOIN LATERAL ({facts_sql}) facts ON true"
    )


@functools.cache
def _subscription_id_sequence() -> str:
    """The sequence behind `Subscription.id` (PostgreSQL), read once per process."""
    table = Subscription._meta.db_table
    row = fetch_one("SELECT pg_get_serial_sequence(%s, %s)", [table, Subscription._meta.pk.column])
    assert row is not None
    assert row[0], f"{table}.id has no sequence"
    return str(row[0]).replace("'", "''")


@functools.cache
def _offering_columns(vendor: str) -> str:
    return ", ".join(f"o.{column(f)}" for f in _offering_fields())


def _visible_to(actor: User, offering_id: int) -> bool:
    return offerings_visible_to(actor).filter(pk=offering_id).exists()


# --- subscribe: the write -----------------------------------------------------------------------


def _history_row(subscription: Subscription, actor: User, reason: str) -> SubscriptionStatusChange:
    return SubscriptionStatusChange(
        subscription=subscription,
        from_status="",
        to_status=subscription.status,
        actor=actor,
        reason=reason,
        created_at=subscription.created_at,
    )


@functools.cache
def _reserve_and_create_sql(
    *, with_id: bool, rider_sql: str | None, guarded: bool
) -> tuple[list[Field[Any, Any]], list[Field[Any, Any]], str]:
    """PostgreSQL: the reservation, the subscription (`with_id`: its id allocated already)
    and its history row in ONE statement, and the rider if any; the INSERTs read their row
    from the UPDATE, so nothing is written unless it reserved. `guarded`: only if the
    investor's totals are still those the checks used (`_guard_sql`). Returns one row: the
    subscription's and history row's ids (NULL: nothing written), whether the rider wrote,
    whether the guard held."""
    subscription_fields = [
        f for f in Subscription._meta.concrete_fields if with_id or not f.primary_key
    ]
    history_fields = [
        f
        for f in SubscriptionStatusChange._meta.concrete_fields
        if not f.primary_key and f.name != "subscription"
    ]

    def casts(prefix: str, fields: list[Field[Any, Any]]) -> str:
        return ", ".join(
            f"CAST(%({prefix}{f.attname})s AS {f.db_type(connection)})" for f in fields
        )

    guard = f"guard AS MATERIALIZED (SELECT {_guard_sql()} AS held), " if guarded else ""
    reserve = _RESERVE_SQL.removesuffix(" RETURNING id")
    if guarded:
        reserve += " AND (SELECT held FROM guard)"
    rider = f"rider AS ({rider_sql.replace('{only_if}', 'created')}), " if rider_sql else ""
    sql = (
        f"WITH {guard}reserved AS ({reserve} RETURNING id), "  # noqa: S608
        f"created AS (INSERT INTO {Subscription._meta.db_table} "
        f"({', '.join(column(f) for f in subscription_fields)}) "
        f"SELECT {casts('s_', subscription_fields)} FROM reserved RETURNING id), "
        f"history AS (INSERT INTO {SubscriptionStatusChange._meta.db_table} "
        f"(subscription_id, {', '.join(column(f) for f in history_fields)}) "
        f"SELECT created.id, {casts('h_', history_fields)} FROM created RETURNING id), "
        f"{rider}done AS (SELECT created.id AS subscription_id, history.id AS history_id "
        "FROM created, history) "
        "SELECT (SELECT subscription_id FROM done), (SELECT history_id FROM done), "
        f"{'EXISTS (SELECT FROM rider)' if rider_sql else 'false'}, "
        f"{'(SELECT held FROM guard)' if guarded else 'true'}"
    )
    return subscription_fields, history_fields, sql


@functools.cache
def _guard_sql() -> str:
    """True while the investor's totals in the offering and their Reg CF 12-month total are
    the ones given (`guard_*` parameters): the facts read ahead are still current."""
    totals_sql, _ = named_parameters(
        *investor_offering_totals_query(None, 0), prefix="guard_totals_"
    )
    reg_cf_sql, _ = named_parameters(
        *reg_cf_invested_query(None, timezone.now()), prefix="guard_reg_cf_"
    )
    return (
        "(SELECT (quanta, amount) = (%(guard_quanta)s, %(guard_amount)s) "  # noqa: S608
        f"FROM ({totals_sql}) t) AND ({reg_cf_sql}) = %(guard_reg_cf)s"
    )


def _guard_parameters(investor: Investor, facts: _SubscribeFacts, now: datetime) -> dict[str, Any]:
    # The names `named_parameters` gave `_guard_sql`'s placeholders: prefix and position.
    _, totals = investor_offering_totals_query(investor.pk, facts.offering.pk)
    _, reg_cf = reg_cf_invested_query(investor.pk, now)
    return {
        **{f"guard_totals_{index}": value for index, value in enumerate(totals)},
        **{f"guard_reg_cf_{index}": value for index, value in enumerate(reg_cf)},
        "guard_quanta": facts.held.quanta,
        "guard_amount": facts.held.amount_minor,
        "guard_reg_cf": facts.reg_cf_invested_minor,
    }


# Field types whose value, as this module sets it (int, str, bool, aware datetime or None), is
# already what PostgreSQL's driver takes: `get_db_prep_save` would hand it back unchanged.
_PASSED_AS_IS = frozenset(
    {"BigIntegerField", "BooleanField", "CharField", "DateTimeField", "ForeignKey", "TextField"}
)


def _save_parameters(
    row: Subscription | SubscriptionStatusChange, prefix: str, fields: list[Field[Any, Any]]
) -> dict[str, Any]:
    values = {}
    for field in fields:
        value = getattr(row, field.attname)
        if field.get_internal_type() not in _PASSED_AS_IS:
            value = field.get_db_prep_save(value, connection)
        values[f"{prefix}{field.attname}"] = value
    return values


class _Written(enum.Enum):
    CREATED = "created"
    NOT_RESERVED = "not reserved"  # supply ran out, or the offering changed meanwhile
    STALE = "stale"  # the facts read ahead no longer hold


def _reserve_and_create(
    offering: Offering,
    subscription: Subscription,
    history: SubscriptionStatusChange,
    rider: Rider | None,
    guard: dict[str, Any] | None = None,
) -> _Written:
    """Reserve the units and write the reserved subscription with its history row (and the
    rider, PostgreSQL), in one round trip on PostgreSQL, only if the facts still hold
    (`guard`, PostgreSQL: `_guard_parameters`). Unless CREATED, nothing written."""
    now = subscription.created_at
    assert now is not None
    if connection.vendor != "postgresql":
        if not _reserve(offering, subscription.quanta, now):
            return _Written.NOT_RESERVED
        subscription.save(force_insert=True)
        history.subscription = subscription
        history.save(force_insert=True)
        return _Written.CREATED
    subscription_fields, history_fields, sql = _reserve_and_create_sql(
        with_id=subscription.pk is not None,
        rider_sql=rider.sql if rider else None,
        guarded=guard is not None,
    )
    params = _reserve_parameters(offering, subscription.quanta, now)
    params.update(_save_parameters(subscription, "s_", subscription_fields))
    params.update(_save_parameters(history, "h_", history_fields))
    params.update(rider.params if rider else {})
    params.update(guard or {})
    row = fetch_one(sql, params)
    assert row is not None
    subscription_id, history_id, rode, held = row
    if not held:
        return _Written.STALE
    if subscription_id is None:
        return _Written.NOT_RESERVED
    subscription.pk, history.pk = subscription_id, history_id
    subscription._state.adding = history._state.adding = False
    history.subscription = subscription
    if rider is not None:
        assert rode, "the rider must write with the subscription"
        rider.ran = True
    return _Written.CREATED


def _with_known_history(
    subscription: Subscription, history: SubscriptionStatusChange
) -> Subscription:
    """A new subscription's history and signatures are known (its one row, none): cache them
    as a prefetch would, so rendering it reads nothing more."""
    changes: Any = SubscriptionStatusChange.objects.all()
    changes._result_cache, changes._prefetch_done = [history], True
    agreements: Any = SubscriptionAgreement.objects.all()
    agreements._result_cache, agreements._prefetch_done = [], True
    cache = {"status_changes": changes, "agreements": agreements}
    subscription._prefetched_objects_cache = cache  # type: ignore[attr-defined]
    return subscription


# --- subscribe ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Checked:
    """A subscription that passed every check, to write."""

    offering: Offering
    quanta: int
    amount_minor: int
    compliance: Compliance


def _checked(
    *,
    actor: User,
    investor: Investor | None,
    facts: _SubscribeFacts,
    quanta: int | None,
    units: Decimal | None,
    risk_warning_acknowledged: bool,
    now: datetime,
) -> tuple[Investor, _Checked]:
    """Every check of a subscription on `facts`; each refusal a `DomainError`."""
    offering = facts.offering
    if quanta is None:
        assert units is not None
        quanta = units_to_quanta(units, quanta_per_unit=offering.quanta_per_unit, field="units")
        if quanta <= 0:
            raise ValidationFailed(
                "units must be positive.", code="units_not_positive", field="units"
            )
    if investor is None:
        raise NotFound(NO_PROFILE_MESSAGE, code="investor_profile_missing")
    _check_open(offering, now)
    _check_kyc(investor)
    _check_investment_bounds(offering, facts.held.quanta, quanta)
    amount_minor = cost_of_quanta_minor(
        quanta,
        price_per_unit_minor=offering.price_per_unit_minor,
        quanta_per_unit=offering.quanta_per_unit,
    )
    compliance = _compliance(
        actor=actor,
        investor=investor,
        offering=offering,
        amount_minor=amount_minor,
        held_amount_minor=facts.held.amount_minor,
        reg_cf_invested_minor=facts.reg_cf_invested_minor,
        risk_warning_acknowledged=risk_warning_acknowledged,
        now=now,
    )
    return investor, _Checked(offering, quanta, amount_minor, compliance)


def subscription_create(
    *,
    actor: User,
    offering_id: int,
    quanta: int | None = None,
    units: Decimal | None = None,
    risk_warning_acknowledged: bool = False,
    savepoint: bool = True,
    read_ahead: tuple[ReadAhead, Sequence[Any]] | None = None,
    rider_for: Callable[[Subscription], Rider] | None = None,
) -> Subscription:
    """Subscribe the calling investor for `quanta` (or `units`, in the offering's units) of a
    live offering: every check first (each refusal a `DomainError`, nothing written), then the
    units are reserved, or the subscription joins the waitlist when supply has run out. One
    transaction; `savepoint=False` inside a caller's transaction that rolls back whenever
    this raises (the API's). The returned subscription carries its offering, history and
    signatures (rendering it reads nothing more).

    PostgreSQL, a caller saving round trips: `read_ahead`, the `subscription_read_ahead`
    the caller's transaction ran already and its row (the investor's row is locked);
    `rider_for` (with `read_ahead`), given the reserved subscription about to be written (its
    id, offering, history and signatures known), a `Rider` to write in the same statement
    (the API's stored response); it rides only when the units are reserved in one go (`ran`
    tells)."""
    if (quanta is None) == (units is None):
        raise TypeError("give quanta or units")
    if quanta is not None and quanta <= 0:
        raise ValidationFailed("units must be positive.", code="units_not_positive", field="units")
    now = timezone.now() if read_ahead is None else read_ahead[0].now
    with transaction.atomic(savepoint=savepoint):
        guard = None
        if read_ahead is None:
            investor = _investor_locked(actor)
            facts = _subscribe_facts(actor, investor, offering_id, now)
        else:
            read, row = read_ahead
            assert read.offering_id == offering_id
            count = len(_investor_fields())
            investor = _investor_of_row(actor, row[:count])
            facts = _facts_of_row(actor, offering_id, row[count:])
        investor, checked = _checked(
            actor=actor,
            investor=investor,
            facts=facts,
            quanta=quanta,
            units=units,
            risk_warning_acknowledged=risk_warning_acknowledged,
            now=now,
        )
        if read_ahead is not None:
            guard = _guard_parameters(investor, facts, now)
        # Writes from here on: the reservation is the last check (it may refuse too).
        subscription = _new_subscription(investor, checked, now)
        subscription.pk = facts.subscription_id
        reason = f"Reserved {_units(checked.quanta, checked.offering)} units."
        reserved = _history_row(subscription, actor, reason)
        written = _Written.NOT_RESERVED
        if not facts.waitlist_exists:
            _with_known_history(subscription, reserved)  # as it will be (the rider renders it)
            rider = None
            if rider_for is not None and subscription.pk is not None:
                rider = rider_for(subscription)
            written = _reserve_and_create(checked.offering, subscription, reserved, rider, guard)
            if written is _Written.CREATED:
                return subscription
        elif guard is not None:
            written = _Written.STALE  # (no guarded write confirmed the facts read ahead)
        if written is _Written.STALE:
            # The facts read ahead may predate what the previous holder of the investor's
            # lock committed: read them again (this statement's snapshot is after the lock),
            # check again, and go the usual way.
            facts = _subscribe_facts(actor, investor, offering_id, now)
            investor, checked = _checked(
                actor=actor,
                investor=investor,
                facts=facts,
                quanta=quanta,
                units=units,
                risk_warning_acknowledged=risk_warning_acknowledged,
                now=now,
            )
            allocated_id = subscription.pk
            subscription = _new_subscription(investor, checked, now)
            subscription.pk = allocated_id
            reason = f"Reserved {_units(checked.quanta, checked.offering)} units."
            reserved = _history_row(subscription, actor, reason)
            if not facts.waitlist_exists:
                written = _reserve_and_create(checked.offering, subscription, reserved, None)
                if written is _Written.CREATED:
                    return _with_known_history(subscription, reserved)
        # Out of supply, someone is waiting, or the offering changed: decide under its row
        # lock, so a concurrent release sees this subscription on the waitlist and promotes
        # it in order.
        offering = checked.offering
        is_reserved = _reserve_or_waitlist(offering, checked.quanta, now)
        if not is_reserved:
            subscription.status = SubscriptionStatus.WAITLISTED
            subscription.reserved_at = subscription.expires_at = None
        subscription.save(force_insert=True)
        reason = (
            reserved.reason
            if is_reserved
            else f"Waitlisted for {_units(checked.quanta, offering)} units: supply has run out."
        )
        history = _history_row(subscription, actor, reason)
        history.save(force_insert=True)
    return _with_known_history(subscription, history)


def _new_subscription(investor: Investor, checked: _Checked, now: datetime) -> Subscription:
    """The subscription as reserved (not saved yet)."""
    offering, compliance = checked.offering, checked.compliance
    decision = compliance.decision
    return Subscription(
        offering=offering,
        investor=investor,
        status=SubscriptionStatus.RESERVED,
        quanta=checked.quanta,
        amount_minor=checked.amount_minor,
        fee_minor=subscription_fee_minor(offering, checked.amount_minor),
        currency=offering.currency,
        compliance_code=decision.code,
        compliance_reason=decision.reason,
        rule_version=decision.rule_version,
        is_non_accredited_purchaser=compliance.is_non_accredited_purchaser,
        risk_warning_acknowledged_at=now if compliance.risk_warning_acknowledged else None,
        revocable_until=compliance.revocable_until,
        reserved_at=now,
        expires_at=now + reservation_ttl(),
        created_at=now,
        updated_at=now,
    )


# --- sign -----------------------------------------------------------------------------------------


def _normalized_name(name: str) -> str:
    return " ".join(name.split()).casefold()


def _own_subscription(actor: User, subscription_id: int) -> Subscription:
    investor = investor_of_user(user=actor)
    subscription = (
        Subscription.objects.select_related("offering__issuer", "investor")
        .filter(pk=subscription_id, investor=investor)
        .first()
    )
    if subscription is None:
        raise NotFound(f"Subscription {subscription_id} not found.", code="subscription_not_found")
    return subscription


def _ip_or_none(ip_address: str | None) -> str | None:
    try:
        return str(ipaddress.ip_address(ip_address or ""))
    except ValueError:
        return None


def _check_signable(subscription: Subscription, now: datetime) -> None:
    if subscription.status == SubscriptionStatus.WAITLISTED:
        raise Conflict(
            "This subscription is on the waitlist: it can be signed once units are reserved "
            "for it.",
            code="subscription_waitlisted",
        )
    if subscription.status != SubscriptionStatus.RESERVED:
        raise InvalidTransition(
            f"subscription is {subscription.status}; only a reserved subscription can be signed.",
            from_status=subscription.status,
        )
    if subscription.expires_at is not None and subscription.expires_at <= now:
        raise Conflict(
            f"The reservation expired at {subscription.expires_at.isoformat()}.",
            code="reservation_expired",
        )
    _check_open(subscription.offering, now)


def _check_typed_name(typed_name: str, legal_name: str) -> None:
    if _normalized_name(typed_name) != _normalized_name(legal_name) or not typed_name.strip():
        raise ValidationFailed(
            "The typed name must be your full legal name as on your investor profile.",
            code="signature_name_mismatch",
            field="typed_name",
        )


def _current_agreement(
    subscription: Subscription, agreement_sha256: str | None
) -> AgreementDocument:
    """The agreement as it stands; with the hash of the text the investor was shown, a
    different current text is refused: the documents changed in between."""
    document = subscription_agreement_document(subscription)
    if agreement_sha256 is not None and agreement_sha256.lower() != document.sha256:
        raise Conflict(
            "The agreement changed since it was shown to you; read it again and sign the "
            "current version.",
            code="agreement_changed",
            agreement_sha256=document.sha256,
        )
    return document


def _agreement_record(
    subscription: Subscription,
    document: AgreementDocument,
    *,
    typed_name: str,
    ip_address: str | None,
    now: datetime,
) -> SubscriptionAgreement:
    return SubscriptionAgreement.objects.create(
        subscription=subscription,
        typed_name=" ".join(typed_name.split()),
        signed_at=now,
        ip_address=_ip_or_none(ip_address),
        document_sha256=document.sha256,
        document_version=document.version,
        template_document_id=document.template_document_id,
        document_text=document.text,
    )


def subscription_sign(
    *,
    actor: User,
    subscription_id: int,
    typed_name: str,
    ip_address: str | None,
    agreement_sha256: str | None = None,
) -> Subscription:
    """Click-to-sign: the investor types their legal name; the agreement generated from the
    offering's current terms and documents is stored with its SHA-256, the time and the IP.
    With `agreement_sha256` (the hash of the text the investor was shown), a different
    current text is refused: the documents changed in between."""
    now = timezone.now()
    with transaction.atomic():
        subscription = _own_subscription(actor, subscription_id)
        _check_signable(subscription, now)
        _check_typed_name(typed_name, subscription.investor.legal_name)
        document = _current_agreement(subscription, agreement_sha256)
        _transition(
            subscription,
            allowed_from=(SubscriptionStatus.RESERVED,),
            to_status=SubscriptionStatus.SIGNED,
            actor=actor,
            reason=f"Agreement {document.version} signed ({document.sha256[:12]}…).",
            now=now,
            signed_at=now,
        )
        _agreement_record(
            subscription, document, typed_name=typed_name, ip_address=ip_address, now=now
        )
    return subscription


# --- ending a subscription that holds units (and maybe money) -----------------------------------


def subscription_end_holding(
    subscription: Subscription,
    *,
    allowed_from: tuple[str, ...],
    to_status: str,
    actor: User | None,
    reason: str,
    now: datetime,
    promote: bool = True,
) -> int:
    """End a reserved, signed or funded subscription: compare-and-swap to `to_status` with a
    history row, send every payment's money in escrow back out (one ledger entry per
    payment), void a pending reconfirmation, release its units and (unless the caller does
    it once for many) offer them to the waitlist. Runs in the caller's transaction, which
    holds the offering's row lock; returns the amount refunded."""
    # payments.py builds on this module's transitions; imported here to avoid the cycle.
    from captable.payments import payments_refund_escrowed

    _transition(
        subscription,
        allowed_from=allowed_from,
        to_status=to_status,
        actor=actor,
        reason=reason,
        now=now,
    )
    refunded = payments_refund_escrowed(subscription=subscription, actor=actor, reason=reason)
    SubscriptionReconfirmation.objects.filter(
        subscription_id=subscription.pk, status=ReconfirmationStatus.PENDING
    ).update(status=ReconfirmationStatus.VOID, resolved_at=now)
    _release(subscription.offering_id, subscription.quanta)
    if promote:
        _waitlist_promote(subscription.offering_id, now)
    return refunded


# --- cancel ---------------------------------------------------------------------------------------


def _check_cancel_window(subscription: Subscription, offering: Offering, now: datetime) -> None:
    """A waitlisted subscription may leave the queue while the offering is live. A reserved,
    signed or funded one: until the exemption's deadline, or inside its ECSP reflection
    period, or while a reconfirmation is asked of it (declining a material change)."""
    in_reflection = subscription.revocable_until is not None and now < subscription.revocable_until
    if in_reflection:
        return
    if offering.status != OfferingStatus.LIVE:
        raise Conflict(
            f"The offering is {offering.status}: subscriptions can no longer be cancelled.",
            code="offering_not_live",
            offering_status=offering.status,
        )
    if subscription.status == SubscriptionStatus.WAITLISTED:
        return
    if reconfirmation_pending(subscription_id=subscription.pk) is not None:
        return
    deadline = cancel_deadline(offering=offering)
    if now >= deadline:
        rule = (
            "Reg CF commitments can be cancelled until 48 hours before the offering deadline"
            if offering.exemption == Exemption.REG_CF
            else "commitments can be cancelled until the offering deadline"
        )
        raise Conflict(
            f"Too late to cancel: {rule} ({deadline.isoformat()}).",
            code="cancel_window_closed",
            cancel_deadline=deadline.isoformat(),
        )


CANCELLABLE_STATUSES = (SubscriptionStatus.WAITLISTED, *SUBSCRIPTION_HOLDING_STATUSES)


def subscription_cancel(*, actor: User, subscription_id: int, reason: str = "") -> Subscription:
    """The investor cancels a subscription inside the allowed window: money in escrow (a
    funded or part-paid one) goes back out where it came from, on the ledger; its units go to
    the waitlist. One transaction."""
    now = timezone.now()
    with transaction.atomic():
        subscription = _own_subscription(actor, subscription_id)
        offering = _offering_locked(subscription.offering_id)
        _lock_and_refresh(subscription, "status")
        if subscription.status not in CANCELLABLE_STATUSES:
            raise InvalidTransition(
                f"subscription is {subscription.status}; it can no longer be cancelled.",
                from_status=subscription.status,
            )
        _check_cancel_window(subscription, offering, now)
        reason = reason.strip() or "Cancelled by the investor."
        if subscription.status == SubscriptionStatus.WAITLISTED:
            _transition(
                subscription,
                allowed_from=(SubscriptionStatus.WAITLISTED,),
                to_status=SubscriptionStatus.CANCELLED,
                actor=actor,
                reason=reason,
                now=now,
            )
        else:
            subscription_end_holding(
                subscription,
                allowed_from=SUBSCRIPTION_HOLDING_STATUSES,
                to_status=SubscriptionStatus.CANCELLED,
                actor=actor,
                reason=reason,
                now=now,
            )
    return subscription


def subscription_cancel_unfunded(
    *, subscription: Subscription, actor: User | None, reason: str
) -> Subscription:
    """The system cancels a reserved or signed subscription (closing: reservations not
    funded in time), refunding any part-payment; no investor window applies. Already
    cancelled: a no-op. One transaction (joins the caller's)."""
    with transaction.atomic():
        _offering_locked(subscription.offering_id)
        _lock_and_refresh(subscription)
        if subscription.status == SubscriptionStatus.CANCELLED:
            return subscription
        subscription_end_holding(
            subscription,
            allowed_from=SUBSCRIPTION_UNFUNDED_STATUSES,
            to_status=SubscriptionStatus.CANCELLED,
            actor=actor,
            reason=reason,
            now=timezone.now(),
        )
    return subscription


# --- expire ---------------------------------------------------------------------------------------


def _expire_in_offering(offering_id: int, subscription_ids: list[int], now: datetime) -> list[int]:
    with transaction.atomic():
        _offering_locked(offering_id)
        expired: list[int] = []
        # Every row locked before the first refund locks ledger accounts: a webhook holds
        # its subscription's row, then takes the accounts (never the other way round).
        due = list(
            Subscription.objects.select_for_update(of=("self",))
            .select_related("offering", "investor")
            .filter(
                pk__in=subscription_ids,
                status__in=SUBSCRIPTION_UNFUNDED_STATUSES,
                expires_at__lte=now,
            )
            .order_by("pk")
        )
        for subscription in due:
            try:
                subscription_end_holding(
                    subscription,
                    allowed_from=SUBSCRIPTION_UNFUNDED_STATUSES,
                    to_status=SubscriptionStatus.EXPIRED,
                    actor=None,
                    reason=f"Not funded by {subscription.expires_at:%Y-%m-%d %H:%M %Z}.",
                    now=now,
                    promote=False,
                )
            except InvalidTransition:
                continue  # funded or cancelled meanwhile
            expired.append(subscription.pk)
        if expired:
            _waitlist_promote(offering_id, now)
    return expired


def subscriptions_expire_due(*, now: datetime | None = None) -> list[int]:
    """Expire every unfunded reservation past its `expires_at`, refund any part-payment in
    escrow and release its units to the waitlist; one transaction per offering. Safe to run
    twice (and concurrently)."""
    moment = now or timezone.now()
    due: dict[int, list[int]] = {}
    rows = Subscription.objects.filter(
        status__in=SUBSCRIPTION_UNFUNDED_STATUSES, expires_at__lte=moment
    ).order_by("offering_id", "pk")
    for subscription_id, offering_id in rows.values_list("pk", "offering_id"):
        due.setdefault(offering_id, []).append(subscription_id)
    expired: list[int] = []
    for offering_id, subscription_ids in due.items():
        expired.extend(_expire_in_offering(offering_id, subscription_ids, moment))
    return expired


# --- reconfirmation after a material change -------------------------------------------------------

RECONFIRMATION_BUSINESS_DAYS = 5
RECONFIRMABLE_STATUSES = (SubscriptionStatus.SIGNED, SubscriptionStatus.FUNDED)


def reconfirmation_due_at(offering: Offering, now: datetime) -> datetime:
    """The end of the 5th business day (Monday to Friday) after `now`, in the offering's
    time zone."""
    return end_of_business_days(now, RECONFIRMATION_BUSINESS_DAYS, offering.time_zone)


def _ask_reconfirmation(
    subscription: Subscription,
    *,
    document: OfferingDocument | None,
    actor: User | None,
    due_at: datetime,
    now: datetime,
) -> bool:
    """True when the subscription is asked (again) to reconfirm: its last signature is not
    of the agreement as it now stands."""
    current = subscription_agreement_document(subscription)
    last = subscription.agreements.order_by("-signed_at", "-pk").first()
    if last is None or last.document_sha256 == current.sha256:
        return False
    pending = reconfirmation_pending(subscription_id=subscription.pk)
    if pending is not None:
        if pending.agreement_sha256 == current.sha256:
            return False  # already asked for exactly this agreement
        SubscriptionReconfirmation.objects.filter(
            pk=pending.pk, status=ReconfirmationStatus.PENDING
        ).update(status=ReconfirmationStatus.SUPERSEDED, resolved_at=now)
    SubscriptionReconfirmation.objects.create(
        subscription=subscription,
        document=document,
        previous_agreement_sha256=last.document_sha256,
        agreement_sha256=current.sha256,
        requested_by=actor,
        requested_at=now,
        due_at=due_at,
    )
    return True


def subscriptions_require_reconfirmation(
    *, offering: Offering, actor: User | None, document: OfferingDocument | None = None
) -> list[int]:
    """A material change to `offering` (e.g. `document`, a new version of one of its
    documents): every signed or funded subscription whose signed agreement no longer matches
    the current one must reconfirm by the end of the 5th business day, or it is cancelled and
    refunded (`reconfirmations_expire_due`). A newer change supersedes a pending request.
    Returns the subscriptions asked. One transaction; safe to run twice."""
    now = timezone.now()
    asked: list[int] = []
    with transaction.atomic():
        locked = _offering_locked(offering.pk)
        due_at = reconfirmation_due_at(locked, now)
        subscriptions = (
            Subscription.objects.select_for_update(of=("self",))
            .select_related("offering__issuer", "investor")
            .filter(offering_id=offering.pk, status__in=RECONFIRMABLE_STATUSES)
            .order_by("pk")
        )
        for subscription in subscriptions:
            if _ask_reconfirmation(
                subscription, document=document, actor=actor, due_at=due_at, now=now
            ):
                asked.append(subscription.pk)
    return asked


def subscription_reconfirm(
    *,
    actor: User,
    subscription_id: int,
    typed_name: str,
    ip_address: str | None,
    agreement_sha256: str | None = None,
) -> Subscription:
    """The investor reconfirms after a material change: signs the agreement as it now
    stands (click-to-sign, as for the first signature) before the reconfirmation is due."""
    now = timezone.now()
    with transaction.atomic():
        subscription = _own_subscription(actor, subscription_id)
        _lock_and_refresh(subscription, "status")
        pending = reconfirmation_pending(subscription_id=subscription.pk)
        if pending is None:
            raise Conflict(
                "Nothing to reconfirm: no change to the offering is awaiting your signature.",
                code="no_reconfirmation_pending",
            )
        if subscription.status not in RECONFIRMABLE_STATUSES:
            raise InvalidTransition(
                f"subscription is {subscription.status}; it can no longer be reconfirmed.",
                from_status=subscription.status,
            )
        if now >= pending.due_at:
            raise Conflict(
                f"The reconfirmation was due by {pending.due_at.isoformat()}; the subscription "
                "is being cancelled and refunded.",
                code="reconfirmation_lapsed",
            )
        _check_typed_name(typed_name, subscription.investor.legal_name)
        document = _current_agreement(subscription, agreement_sha256)
        agreement = _agreement_record(
            subscription, document, typed_name=typed_name, ip_address=ip_address, now=now
        )
        changed = SubscriptionReconfirmation.objects.filter(
            pk=pending.pk, status=ReconfirmationStatus.PENDING
        ).update(status=ReconfirmationStatus.RECONFIRMED, resolved_at=now, agreement=agreement)
        assert changed == 1, "the subscription's row lock serializes reconfirmations"
    return subscription


def _lapse_in_offering(offering_id: int, reconfirmation_ids: list[int], now: datetime) -> list[int]:
    with transaction.atomic():
        _offering_locked(offering_id)
        lapsed: list[int] = []
        due = list(
            SubscriptionReconfirmation.objects.filter(
                pk__in=reconfirmation_ids, status=ReconfirmationStatus.PENDING, due_at__lte=now
            ).order_by("pk")
        )
        # Every subscription row locked before the first refund locks ledger accounts (a
        # webhook holds its subscription's row, then takes the accounts).
        locked = {
            subscription.pk: subscription
            for subscription in Subscription.objects.select_for_update(of=("self",))
            .select_related("offering", "investor")
            .filter(pk__in=[r.subscription_id for r in due])
            .order_by("pk")
        }
        for reconfirmation in due:
            subscription = locked[reconfirmation.subscription_id]
            # Still signed or funded: it lapses (cancelled and refunded). Otherwise it ended
            # another way meanwhile (accepted at closing, say): the request is void.
            is_live = subscription.status in RECONFIRMABLE_STATUSES
            SubscriptionReconfirmation.objects.filter(
                pk=reconfirmation.pk, status=ReconfirmationStatus.PENDING
            ).update(
                status=ReconfirmationStatus.LAPSED if is_live else ReconfirmationStatus.VOID,
                resolved_at=now,
            )
            if not is_live:
                continue
            subscription_end_holding(
                subscription,
                allowed_from=RECONFIRMABLE_STATUSES,
                to_status=SubscriptionStatus.CANCELLED,
                actor=None,
                reason=f"Not reconfirmed by {reconfirmation.due_at.isoformat()} after a "
                "material change to the offering: cancelled and refunded.",
                now=now,
                promote=False,
            )
            lapsed.append(subscription.pk)
        if lapsed:
            _waitlist_promote(offering_id, now)
    return lapsed


def reconfirmations_expire_due(*, now: datetime | None = None) -> list[int]:
    """Cancel and refund every signed or funded subscription whose reconfirmation is past
    due; one transaction per offering. Returns the subscriptions cancelled. Safe to run twice
    (each cancellation is a compare-and-swap)."""
    moment = now or timezone.now()
    due: dict[int, list[int]] = {}
    rows = SubscriptionReconfirmation.objects.filter(
        status=ReconfirmationStatus.PENDING, due_at__lte=moment
    ).order_by("subscription__offering_id", "pk")
    for reconfirmation_id, offering_id in rows.values_list("pk", "subscription__offering_id"):
        due.setdefault(offering_id, []).append(reconfirmation_id)
    lapsed: list[int] = []
    for offering_id, reconfirmation_ids in due.items():
        lapsed.extend(_lapse_in_offering(offering_id, reconfirmation_ids, now=moment))
    return lapsed
