"""Statement data: plain frozen dataclasses built from ledger reads, ints in the smallest
unit (minor units, quanta), Decimal only for percentages, never float. Nothing here formats
or renders; `reports/kinds.py` turns the data into a template context.

Every figure is read as of the period's end (end of day in the offering's time zone, like a
record date), and the period must be over, so a statement built again later — whatever was
posted since — has the same numbers. Its fingerprint is the SHA-256 of exactly the postings
the figures were computed from (ids, amounts, costs), so two documents with the same
fingerprint were built from the same ledger rows.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal

from django.conf import settings
from django.utils import timezone

from captable.models import Account, AccountKind, EntryKind
from captable.selectors import (
    Position,
    account_balance_as_of,
    captable_as_of,
    percent_of,
    positions_as_of,
)
from common.errors import Conflict
from investors.models import Investor
from offerings.models import Offering
from reports import returns, selectors
from reports.formatting import locale_for_country
from reports.periods import Period
from reports.returns import Returns, Valuation
from reports.selectors import PaidPayoutRow, PostingRow

FINGERPRINT_DOMAIN = b"brickbook/statement-postings/v1\n"


# --- shared parts ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Fingerprint:
    sha256: str
    posting_count: int


def postings_fingerprint(postings: Iterable[tuple[int, int, int]]) -> Fingerprint:
    """SHA-256 over (posting id, amount, cost), given in ascending id order: ids and amounts
    only, never a name, so a fingerprint can be printed and compared without exposing
    anyone. Streams (a cap table's postings may be millions)."""
    digest = hashlib.sha256(FINGERPRINT_DOMAIN)
    count = 0
    previous_id = 0
    for posting_id, amount, cost_minor in postings:
        assert posting_id > previous_id, "postings must come in ascending id order, once each"
        digest.update(f"{posting_id}:{amount}:{cost_minor}\n".encode())
        previous_id = posting_id
        count += 1
    return Fingerprint(digest.hexdigest(), count)


@dataclass(frozen=True)
class PlatformDetails:
    name: str
    address: str
    support_email: str
    legal_note: str


DEFAULT_LEGAL_NOTE = (
    "This document is provided for information only and is not a tax document. Values are "
    "shown at cost unless stated otherwise and are not an appraisal of the property. "
    "Investments in private real estate are illiquid and may lose value. Please report any "
    "discrepancy to the platform within 30 days."
)


def platform_details() -> PlatformDetails:
    return PlatformDetails(
        name=getattr(settings, "REPORTS_PLATFORM_NAME", "Brickbook"),
        address=getattr(settings, "REPORTS_PLATFORM_ADDRESS", ""),
        support_email=getattr(settings, "REPORTS_SUPPORT_EMAIL", settings.DEFAULT_FROM_EMAIL),
        legal_note=getattr(settings, "REPORTS_LEGAL_NOTE", DEFAULT_LEGAL_NOTE),
    )


def platform_time_zone() -> str:
    """Where investor-level figures (available cash) are cut when the investor's offerings are
    in more than one time zone: offerings use their own zone."""
    return str(getattr(settings, "REPORTS_TIME_ZONE", settings.TIME_ZONE))


def cash_time_zone(offering_time_zones: Iterable[str]) -> str:
    """Available cash is cut and dated in the zone of the offerings shown when they share one
    (the usual case), so a distribution paid late in the evening is on the same day in the
    distributions table and in the cash table; the platform's zone otherwise."""
    zones = set(offering_time_zones)
    return zones.pop() if len(zones) == 1 else platform_time_zone()


def require_period_over(period: Period) -> None:
    if not period.is_over(timezone.now()):
        raise Conflict(
            f"Period {period.label} is not over everywhere yet; its figures could still change.",
            code="period_not_over",
        )


@dataclass(frozen=True)
class InvestorDetails:
    investor_id: int
    legal_name: str
    email: str
    country: str
    region: str
    kind: str


def investor_details(investor: Investor) -> InvestorDetails:
    return InvestorDetails(
        investor_id=investor.pk,
        legal_name=investor.legal_name,
        email=investor.user.email,
        country=investor.country,
        region=investor.us_state,
        kind=investor.get_kind_display(),
    )


@dataclass(frozen=True)
class OfferingDetails:
    offering_id: int
    title: str
    issuer_name: str
    property_name: str
    currency: str
    quanta_per_unit: int
    price_per_unit_minor: int
    time_zone: str


def offering_details(offering: Offering) -> OfferingDetails:
    return OfferingDetails(
        offering_id=offering.pk,
        title=offering.title,
        issuer_name=offering.issuer.legal_name,
        property_name=offering.property.name,
        currency=offering.currency,
        quanta_per_unit=offering.quanta_per_unit,
        price_per_unit_minor=offering.price_per_unit_minor,
        time_zone=offering.time_zone,
    )


@dataclass(frozen=True)
class TaxLine:
    """One payout as paid: what it was (income, return of capital), what was withheld, and
    the net that reached the investor's available cash."""

    offering_title: str
    distribution_id: int
    paid_on: date
    currency: str
    income_minor: int
    return_of_capital_minor: int
    withholding_minor: int
    net_minor: int


# --- the periodic investor statement --------------------------------------------------------


@dataclass(frozen=True)
class TransactionLine:
    effective_at: datetime
    entry_id: int
    description: str
    units_quanta: int
    cost_minor: int
    cash_minor: int


@dataclass(frozen=True)
class OfferingSection:
    offering: OfferingDetails
    opening_as_of: datetime
    closing_as_of: datetime
    units_opening_quanta: int
    units_closing_quanta: int
    cost_opening_minor: int
    cost_closing_minor: int
    escrow_opening_minor: int
    escrow_closing_minor: int
    contributions_minor: int
    refunds_minor: int
    released_to_issuer_minor: int
    # Payouts paid in the period (gross, by kind).
    income_minor: int
    return_of_capital_minor: int
    transactions: tuple[TransactionLine, ...]
    # Since the first investment, as of the period's end (`reports/returns.py`).
    valuation: Valuation
    returns: Returns


@dataclass(frozen=True)
class CashSection:
    currency: str
    time_zone: str
    opening_as_of: datetime
    closing_as_of: datetime
    opening_minor: int
    closing_minor: int
    transactions: tuple[TransactionLine, ...]


@dataclass(frozen=True)
class CurrencyTotals:
    currency: str
    contributions_minor: int
    cost_closing_minor: int
    escrow_closing_minor: int


@dataclass(frozen=True)
class InvestorPeriodicStatement:
    platform: PlatformDetails
    investor: InvestorDetails
    period: Period
    locale: str
    sections: tuple[OfferingSection, ...]
    cash_accounts: tuple[CashSection, ...]
    fingerprint: Fingerprint
    # Per currency: every offering's flows and value together, as one investment.
    currency_returns: tuple[Returns, ...] = ()
    # The payouts paid in the period (`reports/kinds.py` adds them).
    distributions: tuple[TaxLine, ...] = ()

    @property
    def totals(self) -> tuple[CurrencyTotals, ...]:
        currencies = sorted({section.offering.currency for section in self.sections})
        return tuple(
            CurrencyTotals(
                currency=currency,
                contributions_minor=sum(
                    s.contributions_minor for s in self.sections if s.offering.currency == currency
                ),
                cost_closing_minor=sum(
                    s.cost_closing_minor for s in self.sections if s.offering.currency == currency
                ),
                escrow_closing_minor=sum(
                    s.escrow_closing_minor for s in self.sections if s.offering.currency == currency
                ),
            )
            for currency in currencies
        )


def describe(row: PostingRow, counterparts: frozenset[str]) -> str:
    """What an entry did, from the investor's side of it."""
    if row.entry_kind == EntryKind.REVERSAL:
        return f"Correction: reversal of entry #{row.reverses_id}"
    if row.account_kind == AccountKind.HOLDING:
        descriptions: dict[str, str] = {
            EntryKind.ISSUE: "Units issued",
            EntryKind.TRANSFER: (
                "Units received by transfer" if row.amount > 0 else "Units transferred out"
            ),
            EntryKind.REDEEM: "Units redeemed by the issuer",
        }
        return descriptions.get(row.entry_kind, "Units moved")
    from_investor = bool(counterparts & {AccountKind.EXTERNAL, AccountKind.CASH})
    if row.account_kind == AccountKind.ESCROW:
        if from_investor:
            return "Payment received into escrow" if row.amount > 0 else "Refund from escrow"
        if row.amount < 0 and counterparts == {AccountKind.PLATFORM_FEES}:
            return "Fees paid from escrow"
        return "Escrow released to the issuer" if row.amount < 0 else "Returned to escrow"
    if row.entry_kind == EntryKind.REDEEM:
        return "Redemption proceeds"
    if AccountKind.EXTERNAL in counterparts:
        return "Deposit" if row.amount > 0 else "Withdrawal"
    if AccountKind.ESCROW in counterparts:
        return "Refund to available cash" if row.amount > 0 else "Paid into escrow"
    if AccountKind.DISTRIBUTION_PAYABLE in counterparts:
        return "Distribution received" if row.amount > 0 else "Distribution returned"
    return "Received" if row.amount > 0 else "Paid"


def transaction_lines(
    rows: list[PostingRow], counterparts: dict[int, frozenset[str]]
) -> tuple[TransactionLine, ...]:
    """One line per entry: its units, cost and cash on the investor's accounts."""
    by_entry: dict[int, list[PostingRow]] = {}
    for row in rows:
        by_entry.setdefault(row.entry_id, []).append(row)
    lines = []
    for entry_rows in by_entry.values():
        first = next(
            (r for r in entry_rows if r.account_kind == AccountKind.HOLDING), entry_rows[0]
        )
        units = [r for r in entry_rows if r.account_kind == AccountKind.HOLDING]
        cash = [r for r in entry_rows if r.account_kind != AccountKind.HOLDING]
        lines.append(
            TransactionLine(
                effective_at=first.effective_at,
                entry_id=first.entry_id,
                description=describe(first, counterparts.get(first.entry_id, frozenset())),
                units_quanta=sum(r.amount for r in units),
                cost_minor=sum(r.cost_minor for r in units),
                cash_minor=sum(r.amount for r in cash),
            )
        )
    return tuple(lines)


def escrow_flows(
    rows: list[PostingRow], counterparts: dict[int, frozenset[str]]
) -> tuple[int, int, int]:
    """Contributions (paid in by the investor), refunds, and net released to the issuer."""
    contributions = refunds = released = 0
    for row in rows:
        if row.account_kind != AccountKind.ESCROW:
            continue
        if counterparts.get(row.entry_id, frozenset()) & {AccountKind.EXTERNAL, AccountKind.CASH}:
            if row.amount > 0:
                contributions += row.amount
            else:
                refunds -= row.amount
        else:
            released -= row.amount
    return contributions, refunds, released


class _Positions:
    """`positions_as_of` once per instant (offerings in the same time zone share them)."""

    def __init__(self, investor: Investor) -> None:
        self.investor = investor
        self.by_instant: dict[datetime, dict[int, Position]] = {}

    def of(self, offering_id: int, moment: datetime) -> Position:
        if moment not in self.by_instant:
            self.by_instant[moment] = {
                p.offering_id: p for p in positions_as_of(investor=self.investor, as_of=moment)
            }
        return self.by_instant[moment].get(offering_id, Position(offering_id, 0, 0))


def _offering_section(
    offering: Offering,
    period: Period,
    *,
    positions: _Positions,
    rows: list[PostingRow],
    payouts: list[PaidPayoutRow],
    counterparts: dict[int, frozenset[str]],
    escrow: Account | None,
) -> OfferingSection:
    opening = period.start_instant(offering.time_zone)
    closing = period.end_instant(offering.time_zone)
    held_opening = positions.of(offering.pk, opening)
    held_closing = positions.of(offering.pk, closing)
    during = [r for r in rows if opening < r.effective_at <= closing]
    contributions, refunds, released = escrow_flows(during, counterparts)
    paid_in_period = [
        p for p in payouts if opening < p.paid_at and returns.payout_counts(p, closing)
    ]
    valuation = returns.valuation_on(offering, period.end)
    zone, currency = offering.time_zone, offering.currency
    section = OfferingSection(
        offering=offering_details(offering),
        opening_as_of=opening,
        closing_as_of=closing,
        units_opening_quanta=held_opening.quanta,
        units_closing_quanta=held_closing.quanta,
        cost_opening_minor=held_opening.cost_minor,
        cost_closing_minor=held_closing.cost_minor,
        escrow_opening_minor=account_balance_as_of(account=escrow, as_of=opening) if escrow else 0,
        escrow_closing_minor=account_balance_as_of(account=escrow, as_of=closing) if escrow else 0,
        contributions_minor=contributions,
        refunds_minor=refunds,
        released_to_issuer_minor=released,
        income_minor=sum(p.income_minor for p in paid_in_period),
        return_of_capital_minor=sum(p.return_of_capital_minor for p in paid_in_period),
        transactions=transaction_lines(during, counterparts),
        valuation=valuation,
        returns=returns.returns_as_of(
            units=returns.unit_flows(rows, closing=closing, time_zone=zone, currency=currency),
            payouts=returns.payout_flows(
                payouts, closing=closing, time_zone=zone, currency=currency
            ),
            value_minor=returns.value_minor(
                held_closing.quanta, valuation, offering.quanta_per_unit
            ),
            currency=currency,
            as_of=period.end,
        ),
    )
    _check_section(section)
    return section


def _check_section(section: OfferingSection) -> None:
    """The as-of balances (captable selectors) and the period's postings (read separately)
    must tell the same story; a statement that disagrees with itself is never rendered."""
    lines = section.transactions
    assert section.units_closing_quanta - section.units_opening_quanta == sum(
        line.units_quanta for line in lines
    ), f"units do not reconcile for offering {section.offering.offering_id}"
    assert section.cost_closing_minor - section.cost_opening_minor == sum(
        line.cost_minor for line in lines
    ), f"cost does not reconcile for offering {section.offering.offering_id}"
    assert section.escrow_closing_minor - section.escrow_opening_minor == (
        section.contributions_minor - section.refunds_minor - section.released_to_issuer_minor
    ), f"escrow does not reconcile for offering {section.offering.offering_id}"


def _has_anything(section: OfferingSection) -> bool:
    return bool(
        section.transactions
        or section.units_opening_quanta
        or section.escrow_opening_minor
        or section.income_minor
        or section.return_of_capital_minor
    )


def _currency_returns(
    sections: list[OfferingSection],
    period: Period,
    *,
    rows: list[PostingRow],
    payouts: list[PaidPayoutRow],
) -> tuple[Returns, ...]:
    """Every offering in one currency as one investment (as the dashboard's totals)."""
    totals = []
    for currency in sorted({s.offering.currency for s in sections}):
        group = [s for s in sections if s.offering.currency == currency]
        units, paid = [], []
        for section in group:
            offering_id, zone = section.offering.offering_id, section.offering.time_zone
            closing = section.closing_as_of
            units += returns.unit_flows(
                [r for r in rows if r.offering_id == offering_id],
                closing=closing,
                time_zone=zone,
                currency=currency,
            )
            paid += returns.payout_flows(
                [p for p in payouts if p.offering_id == offering_id],
                closing=closing,
                time_zone=zone,
                currency=currency,
            )
        totals.append(
            returns.returns_as_of(
                units=units,
                payouts=paid,
                value_minor=sum(s.returns.value_minor for s in group),
                currency=currency,
                as_of=period.end,
                with_chart=False,
            )
        )
    return tuple(totals)


def _cash_section(
    account: Account,
    period: Period,
    *,
    rows: list[PostingRow],
    counterparts: dict[int, frozenset[str]],
    zone: str,
) -> CashSection:
    opening, closing = period.start_instant(zone), period.end_instant(zone)
    during = [r for r in rows if r.account_id == account.pk and opening < r.effective_at <= closing]
    section = CashSection(
        currency=account.asset,
        time_zone=zone,
        opening_as_of=opening,
        closing_as_of=closing,
        opening_minor=account_balance_as_of(account=account, as_of=opening),
        closing_minor=account_balance_as_of(account=account, as_of=closing),
        transactions=transaction_lines(during, counterparts),
    )
    assert section.closing_minor - section.opening_minor == sum(
        line.cash_minor for line in section.transactions
    ), f"cash does not reconcile for account {account.pk}"
    return section


def investor_periodic_statement(
    *, investor: Investor, period: Period, offering: Offering | None = None
) -> InvestorPeriodicStatement:
    """Per offering: units and cost at the period's start and end, escrow, contributions,
    refunds, the transaction list; available cash per currency (all-offering statements)."""
    require_period_over(period)
    accounts = selectors.investor_accounts(
        investor_id=investor.pk, offering_id=offering.pk if offering else None
    )
    offerings = {
        o.pk: o
        for o in Offering.objects.select_related("issuer", "property").filter(
            pk__in={a.offering_id for a in accounts if a.offering_id is not None}
        )
    }
    cutoffs = [period.end_instant(o.time_zone) for o in offerings.values()]
    cutoffs.append(period.end_instant(platform_time_zone()))
    rows = selectors.account_postings_until(
        account_ids=[a.pk for a in accounts], until=max(cutoffs)
    )
    counterparts = selectors.entry_counterpart_kinds(
        entry_ids=sorted({r.entry_id for r in rows}), own_account_ids=[a.pk for a in accounts]
    )
    escrows = {a.offering_id: a for a in accounts if a.kind == AccountKind.ESCROW}
    payouts = [
        p
        for p in selectors.payouts_paid_until(investor_id=investor.pk, until=max(cutoffs))
        if p.offering_id in offerings
    ]
    positions = _Positions(investor)
    sections = [
        _offering_section(
            offerings[offering_id],
            period,
            positions=positions,
            rows=[r for r in rows if r.offering_id == offering_id],
            payouts=[p for p in payouts if p.offering_id == offering_id],
            counterparts=counterparts,
            escrow=escrows.get(offering_id),
        )
        for offering_id in sorted(offerings)
    ]
    sections = [s for s in sections if _has_anything(s)]
    cash_zone = cash_time_zone(s.offering.time_zone for s in sections)
    cash = [
        _cash_section(a, period, rows=rows, counterparts=counterparts, zone=cash_zone)
        for a in accounts
        if a.kind == AccountKind.CASH
    ]
    cash = [c for c in cash if c.transactions or c.opening_minor]
    used = _used_postings(rows, sections, cash)
    used = sorted(set(used) | set(_payout_postings(investor.pk, payouts, sections)))
    return InvestorPeriodicStatement(
        platform=platform_details(),
        investor=investor_details(investor),
        period=period,
        locale=locale_for_country(investor.country),
        sections=tuple(sections),
        cash_accounts=tuple(sorted(cash, key=lambda c: c.currency)),
        fingerprint=postings_fingerprint(used),
        currency_returns=_currency_returns(sections, period, rows=rows, payouts=payouts),
    )


def _payout_postings(
    investor_id: int, payouts: list[PaidPayoutRow], sections: list[OfferingSection]
) -> list[tuple[int, int, int]]:
    """The investor's postings of the payouts (and reversals) the returns were computed from:
    a statement for one offering has no cash account rows to carry them."""
    closing_of_offering = {s.offering.offering_id: s.closing_as_of for s in sections}
    entry_ids = []
    for payout in payouts:
        closing = closing_of_offering.get(payout.offering_id)
        if closing is None or payout.paid_at > closing:
            continue
        entry_ids.append(payout.entry_id)
        if payout.reversal_entry_id and payout.reversed_at and payout.reversed_at <= closing:
            entry_ids.append(payout.reversal_entry_id)
    return selectors.investor_postings_of_entries(investor_id=investor_id, entry_ids=entry_ids)


def _used_postings(
    rows: list[PostingRow], sections: list[OfferingSection], cash: list[CashSection]
) -> list[tuple[int, int, int]]:
    """The postings the shown figures were computed from: every posting up to each section's
    closing instant on that section's accounts (opening balances include all before)."""
    closing_of_offering = {s.offering.offering_id: s.closing_as_of for s in sections}
    cash_closing = {c.currency: c.closing_as_of for c in cash}
    used = []
    for row in rows:
        if row.offering_id is not None:
            closing = closing_of_offering.get(row.offering_id)
        else:
            closing = cash_closing.get(row.asset)
        if closing is not None and row.effective_at <= closing:
            used.append((row.posting_id, row.amount, row.cost_minor))
    return sorted(used)


# --- the sponsor's cap-table report ---------------------------------------------------------


@dataclass(frozen=True)
class HolderLine:
    investor_id: int
    legal_name: str
    quanta: int
    cost_minor: int
    percent: Decimal


@dataclass(frozen=True)
class CapTableReport:
    platform: PlatformDetails
    offering: OfferingDetails
    sponsor_name: str
    period: Period
    as_of: datetime
    locale: str
    authorized_quanta: int
    treasury_quanta: int
    issued_quanta: int
    holders: tuple[HolderLine, ...]
    fingerprint: Fingerprint

    @property
    def cost_total_minor(self) -> int:
        return sum(holder.cost_minor for holder in self.holders)

    @property
    def issued_percent_of_authorized(self) -> Decimal:
        return percent_of(self.issued_quanta, self.authorized_quanta)


def captable_report(*, offering: Offering, period: Period) -> CapTableReport:
    """The offering's holders as of the end of the period's last day (offering time zone)."""
    require_period_over(period)
    as_of = period.end_instant(offering.time_zone)
    table = captable_as_of(offering=offering, as_of=as_of)
    names = dict(
        Investor.objects.filter(pk__in=[row.investor_id for row in table.rows]).values_list(
            "pk", "legal_name"
        )
    )
    return CapTableReport(
        platform=platform_details(),
        offering=offering_details(offering),
        sponsor_name=offering.sponsor.name,
        period=period,
        as_of=as_of,
        locale=getattr(settings, "REPORTS_SPONSOR_LOCALE", "en_US"),
        authorized_quanta=table.authorized_quanta,
        treasury_quanta=table.treasury_quanta,
        issued_quanta=table.issued_quanta,
        holders=tuple(
            HolderLine(
                row.investor_id,
                names.get(row.investor_id, ""),
                row.quanta,
                row.cost_minor,
                row.percent,
            )
            for row in table.rows
        ),
        fingerprint=postings_fingerprint(
            selectors.offering_unit_postings_until(offering_id=offering.pk, until=as_of)
        ),
    )
