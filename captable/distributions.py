"""Distributions: the sponsor declares, a second person approves, the cash is funded into the
distribution's payable account, and a background pay run pays every holder of record.

    draft ──(approved by staff other than the declarer)──► approved ──(funded)──► funded
      │                                                        │                    │
      └──────────────────────► cancelled ◄─────────────────────┘      (pay run) ──► paid

- Declaring: a member of the offering's sponsor (or staff), for an offering that closed funded;
  a positive amount in the offering's currency; income, return of capital or mixed (with its
  income part); pro rata, or through the offering's waterfall (declared mixed: the tiers
  decide income and return of capital; `captable/distribution_waterfall.py`); the record date
  is on or before the payment date, which is not in the past. The record date means the end
  of that day in the offering's time zone (`record_at`).
- Funding: the issuer's operating account is fed from outside (external → operating), then the
  amount moves operating → the distribution's payable account. Two ledger entries under
  deterministic keys, so funding twice moves the money once.
- Paying (staff, once the record date has passed and the payment date has come): the payouts
  are computed once from the holders of record as of `record_at` (the ledger's as-of cap
  table: a transfer after the record date does not move a payout), pro rata by quanta with
  the one allocation function (exact cents), and stored one row per holder (UNIQUE). Then a
  Celery task (enqueued through the outbox) pays each payout in its own transaction: ONE
  ledger entry payable → the holder's available cash (net) and → the issuer's withholding
  payable (withholding), key `distribution:{id}:payout:{investor}`. A payout already paid is
  skipped, and the ledger replays a key already used, so a run repeated or killed half-way and
  started again pays nobody twice. When every payout is paid the distribution is `paid` and its
  payable account is empty.
- Withholding (on the income part only, never on return of capital), from the tax form on
  file when the payouts are computed: W-9 none; W-8BEN the treaty rate on file, else 30%; no
  form on file: backup withholding 24%. The form and rate are kept on the payout.

- Waterfall: each holder's units receive their pro-rata share, split by the waterfall on the
  holder's capital account into the holder's part (tiers stored on the payout) and the
  sponsor's promote, which the same payout entry posts to the issuer's promote account.

- Reinvestment (DRIP): for a holder who opted in, the payout's net then buys newly authorized
  units at NAV in the same transaction (`captable/distribution_reinvestment.py`).

- A record date on or before the end of a period already reported to the offering's
  investors (a periodic statement issued, or a batch of them started) is refused, when
  declared and again when approved (a statement may have gone out in between).

Locks: the distribution row, then a payout row, then the ledger's accounts.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time
from itertools import islice
from typing import Any, NamedTuple, cast
from zoneinfo import ZoneInfo

from django.db import connection, transaction
from django.utils import timezone

from captable import ledger
from captable.distribution_reinvestment import payout_reinvest
from captable.distribution_selectors import (
    HolderOfRecord,
    holders_of_record,
    reported_period_end_on_or_after,
)
from captable.distribution_waterfall import (
    WaterfallPayoutAmounts,
    waterfall_payout_amounts,
    waterfall_terms_get,
)
from captable.models import (
    AccountKind,
    Distribution,
    DistributionKind,
    DistributionMethod,
    DistributionStatus,
    DistributionStatusChange,
    Entry,
    EntryKind,
    Payout,
)
from captable.selectors import captable_as_of
from common.auth import staff_required
from common.errors import Conflict, InvalidTransition, NotAllowed, NotFound, ValidationFailed
from common.models import User
from common.money import allocate, basis_points_of, format_minor_units
from common.outbox import outbox_enqueue
from investors.models import Investor, TaxForm
from offerings.models import Offering, OfferingStatus
from offerings.selectors import is_sponsor_member, offerings_visible_to

PAY_TASK_NAME = "captable.pay_distribution"
# Withholding rates in basis points of the income part.
BACKUP_WITHHOLDING_BASIS_POINTS = 2_400  # no W-9 on file (IRC 3406)
NONRESIDENT_WITHHOLDING_BASIS_POINTS = 3_000  # W-8BEN without a treaty rate (IRC 1441)


# --- pure arithmetic -------------------------------------------------------------------------


def withholding_rate_basis_points(*, tax_form: str, treaty_rate_basis_points: int | None) -> int:
    """The rate withheld from income for the tax form on file."""
    if tax_form == TaxForm.W9:
        return 0
    if tax_form == TaxForm.W8BEN:
        if treaty_rate_basis_points is None:
            return NONRESIDENT_WITHHOLDING_BASIS_POINTS
        return treaty_rate_basis_points
    return BACKUP_WITHHOLDING_BASIS_POINTS


class PayoutAmounts(NamedTuple):  # a tuple: 100,000 built per distribution
    investor_id: int
    quanta: int
    gross_minor: int
    income_minor: int
    return_of_capital_minor: int
    promote_minor: int = 0  # pro rata: no promote, no tiers
    tiers: tuple[dict[str, object], ...] = ()


def payout_amounts(
    *, amount_minor: int, income_minor: int, holdings: list[tuple[int, int]]
) -> list[PayoutAmounts]:
    """Split a distribution over `holdings` ((investor id, quanta), in the order that breaks
    ties: by investor id) pro rata by quanta, exact to the cent: gross by the one allocation
    function, then the income part over the gross amounts the same way (so the income parts
    also sum exactly to the income declared); the rest of each gross is return of capital."""
    if not 0 <= income_minor <= amount_minor:
        raise ValueError("the income part must be between zero and the amount")
    gross = allocate(amount_minor, [quanta for _, quanta in holdings])
    if income_minor == amount_minor:  # all income: allocating it over gross gives gross
        income = gross
    elif income_minor == 0:
        income = [0] * len(gross)
    else:
        income = allocate(income_minor, gross)
    return [
        PayoutAmounts(investor_id, quanta, gross[i], income[i], gross[i] - income[i])
        for i, (investor_id, quanta) in enumerate(holdings)
    ]


def record_at_of(record_date: date, *, time_zone: str) -> datetime:
    """The end of the record date in the offering's time zone, as a UTC instant."""
    return datetime.combine(record_date, time.max, tzinfo=ZoneInfo(time_zone)).astimezone(UTC)


def _today_in(time_zone: str) -> date:
    return timezone.now().astimezone(ZoneInfo(time_zone)).date()


def _money(amount_minor: int, currency: str) -> str:
    return f"{currency} {format_minor_units(amount_minor, currency)}"


# --- helpers -----------------------------------------------------------------------------------


def _is_sponsor_or_staff(actor: User, offering: Offering) -> bool:
    return actor.is_staff or is_sponsor_member(actor, sponsor_id=offering.sponsor_id)


def _locked(distribution_id: int) -> Distribution:
    distribution = (
        Distribution.objects.select_for_update(of=("self",))
        .select_related("offering", "offering__issuer")
        .filter(pk=distribution_id)
        .first()
    )
    if distribution is None:
        raise NotFound(f"Distribution {distribution_id} not found.", code="distribution_not_found")
    return distribution


def _transition(
    distribution: Distribution,
    *,
    from_statuses: tuple[str, ...],
    to_status: str,
    actor: User | None,
    reason: str,
    **fields: object,
) -> None:
    """Compare-and-swap with a history row; the caller holds the distribution's lock."""
    from_status = distribution.status
    if from_status not in from_statuses:
        raise InvalidTransition(
            f"The distribution is {from_status}; it cannot become {to_status} from there.",
            from_status=from_status,
            to_status=to_status,
        )
    now = timezone.now()
    changed = Distribution.objects.filter(pk=distribution.pk, status=from_status).update(
        status=to_status, updated_at=now, **fields
    )
    assert changed == 1, "status changes happen under the distribution's lock"
    DistributionStatusChange.objects.create(
        distribution_id=distribution.pk,
        from_status=from_status,
        to_status=to_status,
        actor=actor,
        reason=reason,
    )
    distribution.refresh_from_db()


# --- declare, approve, cancel -----------------------------------------------------------------


def _income_part(*, kind: str, amount_minor: int, income_minor: int | None) -> int:
    if kind == DistributionKind.INCOME:
        if income_minor not in (None, amount_minor):
            raise ValidationFailed(
                "An income distribution is all income; leave the income part out.",
                code="income_part_invalid",
            )
        return amount_minor
    if kind == DistributionKind.RETURN_OF_CAPITAL:
        if income_minor not in (None, 0):
            raise ValidationFailed(
                "A return of capital has no income part; leave it out.",
                code="income_part_invalid",
            )
        return 0
    if kind == DistributionKind.MIXED:
        if income_minor is None or not 0 < income_minor < amount_minor:
            raise ValidationFailed(
                "A mixed distribution needs its income part, more than zero and less than the "
                "amount (the rest is return of capital).",
                code="income_part_invalid",
            )
        return income_minor
    raise ValidationFailed(f"Unknown distribution kind {kind!r}.", code="kind_invalid")


def _method_income_part(
    offering: Offering, *, method: str, kind: str, amount_minor: int, income_minor: int | None
) -> int:
    """The income part declared (pro rata), or 0 until a waterfall's tiers decide it."""
    if method == DistributionMethod.PRO_RATA:
        return _income_part(kind=kind, amount_minor=amount_minor, income_minor=income_minor)
    if method != DistributionMethod.WATERFALL:
        raise ValidationFailed(f"Unknown method {method!r}.", code="method_not_supported")
    if kind != DistributionKind.MIXED or income_minor is not None:
        raise ValidationFailed(
            "A waterfall decides income and return of capital itself: declare it as mixed, "
            "without an income part.",
            code="income_part_invalid",
        )
    waterfall_terms_get(offering=offering)
    return 0


def _check_period_not_reported(offering: Offering, *, record_date: date) -> None:
    """Nothing is back-dated into a period already reported (DESIGN.md): investors were sent
    their periodic statements up to that date, and a distribution of record inside it would
    change what those statements said."""
    reported_to = reported_period_end_on_or_after(offering_id=offering.pk, record_date=record_date)
    if reported_to is not None:
        raise Conflict(
            f"The record date {record_date} falls in a period already reported to the "
            f"offering's investors (periodic statements issued up to {reported_to}); choose a "
            "record date after it.",
            code="record_date_in_reported_period",
            reported_to=reported_to.isoformat(),
        )


def _check_dates(offering: Offering, *, record_date: date, payment_date: date) -> datetime:
    if record_date > payment_date:
        raise ValidationFailed(
            f"The record date {record_date} is after the payment date {payment_date}.",
            code="record_date_after_payment_date",
        )
    today = _today_in(offering.time_zone)
    if payment_date < today:
        raise ValidationFailed(
            f"The payment date {payment_date} is in the past (today is {today} in "
            f"{offering.time_zone}).",
            code="payment_date_past",
        )
    _check_period_not_reported(offering, record_date=record_date)
    record_at = record_at_of(record_date, time_zone=offering.time_zone)
    if record_at <= timezone.now() and not captable_as_of(offering=offering, as_of=record_at).rows:
        raise ValidationFailed(
            f"Nobody held units of the offering at the end of {record_date} "
            f"({offering.time_zone}).",
            code="no_holders_of_record",
        )
    return record_at


def distribution_declare(
    *,
    actor: User,
    offering_id: int,
    amount_minor: int,
    currency: str,
    kind: str,
    record_date: date,
    payment_date: date,
    income_minor: int | None = None,
    method: str = DistributionMethod.PRO_RATA,
    memo: str = "",
) -> Distribution:
    """A member of the offering's sponsor (or staff) declares a distribution (draft)."""
    with transaction.atomic():
        offering = Offering.objects.select_related("issuer").filter(pk=offering_id).first()
        if offering is None or not offerings_visible_to(actor).filter(pk=offering_id).exists():
            raise NotFound(f"Offering {offering_id} not found.", code="offering_not_found")
        if not _is_sponsor_or_staff(actor, offering):
            raise NotAllowed(
                "Only the offering's sponsor (or staff) may declare a distribution.",
                code="sponsor_only",
            )
        if offering.status != OfferingStatus.CLOSED_FUNDED:
            raise Conflict(
                f"The offering is {offering.status}; distributions are declared once it has "
                "closed funded.",
                code="offering_not_closed_funded",
            )
        if currency != offering.currency:
            raise ValidationFailed(
                f"The offering pays in {offering.currency}, not {currency}.",
                code="currency_mismatch",
            )
        if isinstance(amount_minor, bool) or not isinstance(amount_minor, int) or amount_minor <= 0:
            raise ValidationFailed("The amount must be more than zero.", code="amount_not_positive")
        income = _method_income_part(
            offering, method=method, kind=kind, amount_minor=amount_minor, income_minor=income_minor
        )
        record_at = _check_dates(offering, record_date=record_date, payment_date=payment_date)
        distribution = Distribution.objects.create(
            offering=offering,
            amount_minor=amount_minor,
            currency=currency,
            kind=kind,
            income_minor=income,
            method=method,
            record_date=record_date,
            record_at=record_at,
            payment_date=payment_date,
            memo=memo,
            declared_by=actor,
        )
        DistributionStatusChange.objects.create(
            distribution=distribution,
            to_status=DistributionStatus.DRAFT,
            actor=actor,
            reason=f"Declared {_money(amount_minor, currency)} ({kind}), record date "
            f"{record_date}, payment date {payment_date}.",
        )
    return distribution


def distribution_approve(*, actor: User, distribution_id: int, reason: str = "") -> Distribution:
    """Staff other than the declarer approve a declared distribution (four eyes)."""
    staff_required(actor)
    with transaction.atomic():
        distribution = _locked(distribution_id)
        if distribution.declared_by_id == actor.pk:
            raise NotAllowed(
                "Four eyes: a distribution is approved by someone other than its declarer.",
                code="four_eyes",
            )
        if distribution.approved_by_id == actor.pk:
            return distribution  # approving again: the first approval stands
        if distribution.status == DistributionStatus.DRAFT:
            _check_period_not_reported(distribution.offering, record_date=distribution.record_date)
        _transition(
            distribution,
            from_statuses=(DistributionStatus.DRAFT,),
            to_status=DistributionStatus.APPROVED,
            actor=actor,
            reason=reason or "Approved.",
            approved_by=actor,
            approved_at=timezone.now(),
        )
    return distribution


def distribution_cancel(*, actor: User, distribution_id: int, reason: str) -> Distribution:
    """The sponsor or staff cancel a distribution not yet funded (no money has moved)."""
    if not reason.strip():
        raise ValidationFailed("Cancelling needs a reason.", code="reason_required")
    with transaction.atomic():
        distribution = _locked(distribution_id)
        if not _is_sponsor_or_staff(actor, distribution.offering):
            raise NotFound(
                f"Distribution {distribution_id} not found.", code="distribution_not_found"
            )
        _transition(
            distribution,
            from_statuses=(DistributionStatus.DRAFT, DistributionStatus.APPROVED),
            to_status=DistributionStatus.CANCELLED,
            actor=actor,
            reason=reason,
        )
    return distribution


# --- fund ------------------------------------------------------------------------------------


def distribution_fund(*, actor: User, distribution_id: int) -> Distribution:
    """approved → funded: external → issuer operating, then operating → the distribution's
    payable account, both for the declared amount under deterministic keys. Funding a funded
    distribution again changes nothing."""
    with transaction.atomic():
        distribution = _locked(distribution_id)
        offering = distribution.offering
        if not _is_sponsor_or_staff(actor, offering):
            raise NotFound(
                f"Distribution {distribution_id} not found.", code="distribution_not_found"
            )
        if distribution.status in (DistributionStatus.FUNDED, DistributionStatus.PAID):
            return distribution
        if distribution.status != DistributionStatus.APPROVED:
            raise InvalidTransition(
                f"The distribution is {distribution.status}; only an approved distribution is "
                "funded.",
                from_status=distribution.status,
                to_status=DistributionStatus.FUNDED,
            )
        currency = distribution.currency
        operating = ledger.issuer_spec(offering.issuer, AccountKind.OPERATING, currency)
        ledger.cash_move(
            source=ledger.external_spec(currency),
            destination=operating,
            amount_minor=distribution.amount_minor,
            idempotency_key=f"distribution:{distribution.pk}:fund:operating",
            actor=actor,
            memo=f"Distribution #{distribution.pk}: funds received into the issuer's operating "
            "account",
            metadata={"distribution_id": distribution.pk},
        )
        ledger.cash_move(
            source=operating,
            destination=ledger.distribution_payable_spec(distribution.pk, currency),
            amount_minor=distribution.amount_minor,
            idempotency_key=f"distribution:{distribution.pk}:fund:payable",
            actor=actor,
            memo=f"Distribution #{distribution.pk}: operating → distribution payable",
            metadata={"distribution_id": distribution.pk},
        )
        _transition(
            distribution,
            from_statuses=(DistributionStatus.APPROVED,),
            to_status=DistributionStatus.FUNDED,
            actor=actor,
            reason=f"Funded {_money(distribution.amount_minor, currency)}.",
            funded_at=timezone.now(),
        )
    return distribution


# --- pay -------------------------------------------------------------------------------------


def _payouts_compute(distribution: Distribution) -> int:
    """The payout rows from the holders of record (once; the caller holds the lock)."""
    holders = holders_of_record(offering_id=distribution.offering_id, as_of=distribution.record_at)
    if not holders:
        raise Conflict(
            f"Nobody held units of the offering at the record date {distribution.record_date}.",
            code="no_holders_of_record",
        )
    holdings = [(holder.investor_id, holder.quanta) for holder in holders]
    amounts: Sequence[PayoutAmounts | WaterfallPayoutAmounts]
    if distribution.method == DistributionMethod.WATERFALL:
        amounts = waterfall_payout_amounts(distribution=distribution, holdings=holdings)
    else:
        amounts = payout_amounts(
            amount_minor=distribution.amount_minor,
            income_minor=distribution.income_minor,
            holdings=holdings,
        )
    assert len(amounts) == len(holders)
    assert sum(a.gross_minor + a.promote_minor for a in amounts) == distribution.amount_minor
    # Made as they are written: the COPY streams, so PostgreSQL reads a chunk while the next
    # one is made.
    rows = (_payout_row(amounts[index], holder) for index, holder in enumerate(holders))
    _payouts_insert(distribution, rows)
    changed = Distribution.objects.filter(
        pk=distribution.pk, payouts_computed_at__isnull=True
    ).update(payouts_computed_at=timezone.now(), income_minor=sum(a.income_minor for a in amounts))
    assert changed == 1, "payouts are computed under the distribution's lock"
    return len(holders)


# A payout row as computed, in this column order (plain tuples: 100,000 holders).
_PAYOUT_COLUMNS = (
    "investor_id",
    "quanta",
    "gross_minor",
    "income_minor",
    "return_of_capital_minor",
    "tax_form",
    "withholding_rate_basis_points",
    "withholding_minor",
    "net_minor",
    "promote_minor",
    "tiers",
)


def _payout_row(
    amount: PayoutAmounts | WaterfallPayoutAmounts, holder: HolderOfRecord
) -> tuple[Any, ...]:
    assert amount.investor_id == holder.investor_id
    rate = withholding_rate_basis_points(
        tax_form=holder.tax_form,
        treaty_rate_basis_points=holder.treaty_withholding_rate_basis_points,
    )
    # Nothing to round when nothing is withheld (most holders: a W-9 on file).
    withholding = basis_points_of(amount.income_minor, rate) if rate else 0
    return (
        amount.investor_id,
        amount.quanta,
        amount.gross_minor,
        amount.income_minor,
        amount.return_of_capital_minor,
        holder.tax_form,
        rate,
        withholding,
        amount.gross_minor - withholding,
        amount.promote_minor,
        list(amount.tiers),
    )


_PAYOUT_DEFAULTS = {"reinvested_quanta": 0, "reinvested_minor": 0, "reinvestment_note": ""}


def _payouts_insert(distribution: Distribution, rows: Iterable[tuple[Any, ...]]) -> None:
    """One row per holder: COPY on PostgreSQL (100,000 holders: the ORM's bulk_create spends
    seconds building and compiling objects), bulk_create elsewhere."""
    if connection.vendor != "postgresql":
        payouts = (
            Payout(distribution=distribution, **dict(zip(_PAYOUT_COLUMNS, row, strict=True)))
            for row in rows
        )
        Payout.objects.bulk_create(payouts, batch_size=2_000)
        return
    now = timezone.now()
    columns = [*_PAYOUT_COLUMNS, *_PAYOUT_DEFAULTS, "distribution_id", "created_at"]
    constant = (*_PAYOUT_DEFAULTS.values(), distribution.pk, now.isoformat())
    sql = f"COPY captable_payout ({', '.join(columns)}) FROM STDIN"
    # COPY's text format written here, one %-format per row (psycopg's write_row adapts each
    # of the 16 values on its own: ~0.3 s more for 100,000 rows). Integers as %d; the text
    # fields escaped for COPY (`_copy_text`).
    line = "\t".join(["%d"] * 5 + ["%s"] + ["%d"] * 4 + ["%s"]) + "\t"
    line += "\t".join(_copy_text(str(value)) for value in constant) + "\n"
    assert line.count("%") == 11, "the constants hold no % sign"
    rows = iter(rows)
    with connection.cursor() as cursor, cursor.cursor.copy(sql) as copy:
        while chunk := list(islice(rows, 5_000)):
            copy.write(
                "".join(
                    [
                        line
                        % (
                            *row[:5],
                            _copy_text(row[5]),
                            *row[6:10],
                            _copy_text(json.dumps(row[10])) if row[10] else "[]",
                        )
                        for row in chunk
                    ]
                )
            )


def _copy_text(text: str) -> str:
    """`text` as a field of COPY's text format (backslash, tab, newline and carriage return
    escaped)."""
    if "\\" in text or "\t" in text or "\n" in text or "\r" in text:
        return (
            text.replace("\\", "\\\\")
            .replace("\t", "\\t")
            .replace("\n", "\\n")
            .replace("\r", "\\r")
        )
    return text


def distribution_pay(*, actor: User, distribution_id: int) -> Distribution:
    """Staff start (or restart) the pay run of a funded distribution once its record date has
    passed and its payment date has come: the payouts are computed once, and the run is
    enqueued through the outbox. Starting it again only enqueues the run again (it skips
    what is paid)."""
    staff_required(actor)
    with transaction.atomic():
        distribution = _locked(distribution_id)
        if distribution.status == DistributionStatus.PAID:
            return distribution
        if distribution.status != DistributionStatus.FUNDED:
            raise InvalidTransition(
                f"The distribution is {distribution.status}; only a funded distribution is paid.",
                from_status=distribution.status,
                to_status=DistributionStatus.PAID,
            )
        if timezone.now() <= distribution.record_at:
            raise Conflict(
                f"The record date {distribution.record_date} has not passed yet: the holders "
                "of record are not known.",
                code="record_date_not_passed",
            )
        today = _today_in(distribution.offering.time_zone)
        if today < distribution.payment_date:
            raise Conflict(
                f"The payment date is {distribution.payment_date} (today is {today}).",
                code="payment_date_not_reached",
            )
        if distribution.payouts_computed_at is None:
            _payouts_compute(distribution)
        DistributionStatusChange.objects.create(
            distribution=distribution,
            from_status=distribution.status,
            to_status=distribution.status,
            actor=actor,
            reason="Pay run started.",
        )
        outbox_enqueue(task_name=PAY_TASK_NAME, kwargs={"distribution_id": distribution.pk})
    distribution.refresh_from_db()
    return distribution


def payout_pay(*, payout_id: int) -> Payout:
    """Pay one payout: ONE ledger entry, payable → the holder's available cash (net) and →
    the issuer's withholding payable (withholding). Paying a paid payout changes nothing."""
    with transaction.atomic():
        payout = (
            Payout.objects.select_for_update(of=("self",))
            .select_related("distribution", "distribution__offering__issuer", "investor")
            .get(pk=payout_id)
        )
        if payout.paid_at is not None:
            return payout
        distribution = payout.distribution
        now = timezone.now()
        if payout.gross_minor == 0 and payout.promote_minor == 0:
            Payout.objects.filter(pk=payout.pk).update(paid_at=now)
            payout.paid_at = now
            return payout
        entry = _payout_entry(payout, distribution)
        changed = Payout.objects.filter(pk=payout.pk, paid_at__isnull=True).update(
            entry=entry, paid_at=now
        )
        assert changed == 1, "a payout is paid under its lock"
        payout_reinvest(payout, distribution)
    payout.refresh_from_db()
    return payout


class _InvestorKey:
    """Just an investor's id, where an account key needs one: building a whole Investor
    instance per payout cost ~0.1 ms, seconds over 100,000 holders."""

    __slots__ = ("pk",)

    def __init__(self, pk: int) -> None:
        self.pk = pk


class PayoutParts(NamedTuple):
    """What a payout's entry needs (a Payout has the same attributes)."""

    pk: int
    investor_id: int
    gross_minor: int
    income_minor: int
    return_of_capital_minor: int
    withholding_minor: int
    net_minor: int
    promote_minor: int


PAYOUT_PARTS_FIELDS = PayoutParts._fields


@dataclass(frozen=True)
class DistributionAccounts:
    payable: ledger.AccountSpec
    withholding: ledger.AccountSpec
    promote: ledger.AccountSpec

    @classmethod
    def of(cls, distribution: Distribution) -> DistributionAccounts:
        currency, issuer = distribution.currency, distribution.offering.issuer
        return cls(
            ledger.distribution_payable_spec(distribution.pk, currency),
            ledger.issuer_spec(issuer, AccountKind.WITHHOLDING_PAYABLE, currency),
            ledger.issuer_spec(issuer, AccountKind.PROMOTE, currency),
        )


def payout_batch_entry(
    payout: Payout | PayoutParts,
    distribution: Distribution,
    accounts: DistributionAccounts | None = None,
) -> ledger.BatchEntry:
    """The payout's ONE ledger entry: payable → the holder's available cash (net), → the
    issuer's withholding payable (withholding) and → its promote account (promote)."""
    found = accounts or DistributionAccounts.of(distribution)
    payable, withholding, promote = found.payable, found.withholding, found.promote
    # cash_spec reads only the investor's id.
    cash = ledger.cash_spec(cast(Investor, _InvestorKey(payout.investor_id)), distribution.currency)
    request: dict[str, object] = {
        "from": payable.key,
        "to": cash.key,
        "net": payout.net_minor,
        "withholding_to": withholding.key,
        "withholding": payout.withholding_minor,
    }
    if payout.promote_minor:  # pro-rata payouts keep the request (and its digest) they had
        request |= {"promote_to": promote.key, "promote": payout.promote_minor}
    legs = [(payable, -(payout.gross_minor + payout.promote_minor))]
    legs += [(cash, payout.net_minor)] if payout.net_minor else []
    legs += [(withholding, payout.withholding_minor)] if payout.withholding_minor else []
    legs += [(promote, payout.promote_minor)] if payout.promote_minor else []
    return ledger.BatchEntry(
        kind=EntryKind.CASH_MOVE,
        idempotency_key=f"distribution:{distribution.pk}:payout:{payout.investor_id}",
        request=request,
        legs=legs,
        memo=f"Distribution #{distribution.pk}: payout",
        metadata={
            "distribution_id": distribution.pk,
            "payout_id": payout.pk,
            "income_minor": payout.income_minor,
            "return_of_capital_minor": payout.return_of_capital_minor,
            "promote_minor": payout.promote_minor,
        },
    )


def _payout_entry(payout: Payout, distribution: Distribution) -> Entry:
    spec = payout_batch_entry(payout, distribution)
    return ledger.entry_post(
        kind=spec.kind,
        idempotency_key=spec.idempotency_key,
        request=spec.request,
        lock_first=[account for account, _ in spec.legs],
        build_legs=lambda locked: [
            ledger.Leg(locked[account.key], amount) for account, amount in spec.legs
        ],
        memo=spec.memo,
        metadata=spec.metadata,
    )


def distribution_pay_run(*, distribution_id: int) -> int:
    """The background pay run: every unpaid payout, each in its own transaction, then the
    distribution becomes paid. Returns how many payouts this run paid. Safe to run twice and
    concurrently (a payout is paid under its row lock, under a ledger key used once)."""
    unpaid = list(
        Payout.objects.filter(distribution_id=distribution_id, paid_at__isnull=True)
        .order_by("investor_id")
        .values_list("pk", flat=True)
    )
    for payout_id in unpaid:
        payout_pay(payout_id=payout_id)
    distribution_complete(distribution_id=distribution_id)
    return len(unpaid)


def distribution_complete(*, distribution_id: int) -> bool:
    """funded → paid once every payout is paid (the payable account is then empty)."""
    with transaction.atomic():
        distribution = _locked(distribution_id)
        if distribution.status == DistributionStatus.PAID:
            return True
        if distribution.status != DistributionStatus.FUNDED or (
            distribution.payouts_computed_at is None
        ):
            return False
        if distribution.payouts.filter(paid_at__isnull=True).exists():
            return False
        payable = ledger.distribution_payable_account(distribution.pk, distribution.currency)
        assert payable.balance == 0, f"distribution {distribution.pk} payable not empty"
        _transition(
            distribution,
            from_statuses=(DistributionStatus.FUNDED,),
            to_status=DistributionStatus.PAID,
            actor=None,
            reason="Every payout paid.",
            paid_at=timezone.now(),
        )
    return True
