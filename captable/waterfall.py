"""The distribution waterfall: pure Decimal arithmetic on one investor's capital account.

European (whole-deal): every distribution flows through the same tiers, in order, against the
investor's whole history — so the preferred return and the hurdles account for every earlier
contribution and distribution. The sponsor's share of what this investor's units receive is the
promote.

Tiers, each filled before the next receives anything:

1. **Return of capital** — 100% to the investor until the unreturned capital is repaid.
2. **Preferred return** — 100% to the investor until the accrued, unpaid pref is paid. Pref
   accrues on unreturned capital from each contribution's date, and stops accruing on capital
   from the date a distribution returns it. Day count actual/365 (the days between two dates,
   over 365, leap years included). `SIMPLE`: capital * rate * days / 365, unpaid pref does not
   earn pref. `ANNUAL` compounding: the balance (unreturned capital + unpaid pref) grows by
   (1 + rate) ** (days / 365) — so the unpaid pref compounds once a year, and an 8% compounding
   pref is exactly an 8% IRR hurdle on the flows of tiers 1 and 2.
3. **Sponsor catch-up** — split `catch_up_sponsor_share` to the sponsor (1 = "100/0", 0.5 =
   "50/50") until the sponsor holds `sponsor_profit_target` (e.g. 20%) of all profit paid so far
   (profit = everything beyond return of capital, to either side). Skipped when the target is 0.
4. **Promote** — a list of splits; each applies until the investor reaches its hurdle (an IRR
   on the investor's own dated flows, or an equity multiple = received / contributed), the last
   one without limit. The amount needed to reach an IRR hurdle is computed exactly (see
   `captable.returns.irr_shortfall`), not searched for.

Earlier distributions are replayed through the same tiers (their gross amounts, i.e. what the
investor's units received before the promote was taken), which rebuilds the state the current
distribution starts from; replaying is deterministic, so a past breakdown is reproduced.

Precision and rounding: all arithmetic runs in Decimal with 60 significant digits; a value that
is not exact (a division, a fractional power) is held to 12 decimal places of the currency's
major unit, far below a cent. By construction the tiers (investor + sponsor) sum *exactly* to
the distributed amount. Money is rounded once, at the end, by `waterfall_minor_units`: each part
goes through `common.money.round_minor_units` (half to even) and the at most a few leftover
units go, one each, to the parts whose rounding moved them furthest from their exact value (ties
to the earlier tier, investor before sponsor), so the integer parts sum exactly to the amount and
each is within one minor unit of its exact value.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import date
from decimal import Decimal, localcontext
from fractions import Fraction

from captable.returns import (
    DAYS_PER_YEAR,
    DECIMAL_PRECISION,
    CashFlow,
    growth_factor,
    irr_shortfall,
)
from common.money import currency_exponent, decimal_to_minor_units, round_minor_units

# Inexact intermediate values (a division, a fractional power) are held to 12 decimal places of
# the major unit (10**-10 of a cent), so every amount this module returns, and every sum of
# them below 10**15, is exact even in Python's default 28-digit Decimal context.
INTERNAL_QUANTUM = Decimal("1e-12")
ZERO = Decimal(0)
ONE = Decimal(1)


class PrefCompounding(enum.StrEnum):
    SIMPLE = "simple"
    ANNUAL = "annual"


class HurdleKind(enum.StrEnum):
    LP_IRR = "lp_irr"
    EQUITY_MULTIPLE = "equity_multiple"


class TierName(enum.StrEnum):
    RETURN_OF_CAPITAL = "return_of_capital"
    PREFERRED_RETURN = "preferred_return"
    CATCH_UP = "catch_up"
    PROMOTE = "promote"


def _check_decimal(name: str, value: object, *, low: Decimal, high: Decimal | None) -> None:
    if not isinstance(value, Decimal) or not value.is_finite():
        raise TypeError(f"{name} must be a finite Decimal")
    if value < low or (high is not None and value > high):
        raise ValueError(f"{name} must be between {low} and {high if high is not None else '∞'}")


@dataclass(frozen=True)
class Hurdle:
    kind: HurdleKind
    value: Decimal  # an annual rate (0.15) or a multiple (2.0)

    def __post_init__(self) -> None:
        _check_decimal("hurdle value", self.value, low=ZERO, high=None)


@dataclass(frozen=True)
class PromoteTier:
    sponsor_share: Decimal  # 0.20 for an 80/20 split
    until: Hurdle | None = None  # None: the last tier, without limit

    def __post_init__(self) -> None:
        _check_decimal("sponsor share", self.sponsor_share, low=ZERO, high=ONE)

    @property
    def investor_share(self) -> Decimal:
        return ONE - self.sponsor_share


@dataclass(frozen=True)
class WaterfallConfig:
    preferred_return_rate: Decimal  # 0.08
    promote_tiers: tuple[PromoteTier, ...] = (PromoteTier(sponsor_share=ZERO),)
    pref_compounding: PrefCompounding = PrefCompounding.SIMPLE
    catch_up_sponsor_share: Decimal = ONE  # 1 = "100/0", 0.5 = "50/50"
    sponsor_profit_target: Decimal = ZERO  # 0.20; 0 = no catch-up

    def __post_init__(self) -> None:
        _check_decimal("preferred return rate", self.preferred_return_rate, low=ZERO, high=ONE)
        _check_decimal("catch-up sponsor share", self.catch_up_sponsor_share, low=ZERO, high=ONE)
        _check_decimal("sponsor profit target", self.sponsor_profit_target, low=ZERO, high=ONE)
        if self.sponsor_profit_target and self.catch_up_sponsor_share <= self.sponsor_profit_target:
            raise ValueError("the catch-up must give the sponsor more than its target share")
        if not self.promote_tiers or self.promote_tiers[-1].until is not None:
            raise ValueError("the last promote tier must have no hurdle")
        if any(tier.until is None for tier in self.promote_tiers[:-1]):
            raise ValueError("every promote tier but the last needs a hurdle")
        if any(tier.investor_share == 0 for tier in self.promote_tiers[:-1]):
            raise ValueError("a tier with a hurdle must pay the investor something")


@dataclass(frozen=True)
class DatedAmount:
    on: date
    amount: Decimal  # positive, in the currency's major unit (dollars)

    def __post_init__(self) -> None:
        _check_decimal("amount", self.amount, low=ZERO, high=None)


@dataclass(frozen=True)
class DirectPayout:
    """A payout the investor received outside the waterfall (a pro-rata distribution), as
    recorded: return of capital reduces unreturned capital, income pays the unpaid pref first;
    both count in the investor's IRR and multiple, and income counts as the investor's profit."""

    on: date
    return_of_capital: Decimal
    income: Decimal

    def __post_init__(self) -> None:
        _check_decimal("return of capital", self.return_of_capital, low=ZERO, high=None)
        _check_decimal("income", self.income, low=ZERO, high=None)


@dataclass(frozen=True)
class CapitalAccount:
    """One investor's history in one offering: contributions (subscriptions, reinvestments,
    carried-over transfers), the gross amounts of earlier waterfall distributions, and payouts
    made outside the waterfall."""

    contributions: tuple[DatedAmount, ...] = ()
    distributions: tuple[DatedAmount, ...] = ()
    direct_payouts: tuple[DirectPayout, ...] = ()

    def with_contribution(self, *, on: date, amount: Decimal) -> CapitalAccount:
        return replace(self, contributions=(*self.contributions, DatedAmount(on=on, amount=amount)))

    def with_distribution(self, *, on: date, amount: Decimal) -> CapitalAccount:
        return replace(self, distributions=(*self.distributions, DatedAmount(on=on, amount=amount)))


@dataclass(frozen=True)
class TierAmount:
    tier: TierName
    index: int  # 0 except for promote tiers: 0, 1, 2 … in config order
    investor_amount: Decimal
    sponsor_amount: Decimal

    @property
    def label(self) -> str:
        return f"{self.tier}_{self.index + 1}" if self.tier == TierName.PROMOTE else str(self.tier)

    @property
    def amount(self) -> Decimal:
        return self.investor_amount + self.sponsor_amount


@dataclass(frozen=True)
class WaterfallResult:
    on: date
    amount: Decimal
    tiers: tuple[TierAmount, ...]

    @property
    def investor_amount(self) -> Decimal:
        return sum((tier.investor_amount for tier in self.tiers), ZERO)

    @property
    def sponsor_amount(self) -> Decimal:
        return sum((tier.sponsor_amount for tier in self.tiers), ZERO)

    @property
    def investor_return_of_capital(self) -> Decimal:
        return sum(
            (t.investor_amount for t in self.tiers if t.tier == TierName.RETURN_OF_CAPITAL), ZERO
        )

    @property
    def investor_income(self) -> Decimal:
        return self.investor_amount - self.investor_return_of_capital


@dataclass(frozen=True)
class TierMinorUnits:
    tier: TierName
    index: int
    investor_amount_minor: int
    sponsor_amount_minor: int


def _internal(value: Decimal) -> Decimal:
    return value.quantize(INTERNAL_QUANTUM)


@dataclass
class _AccountState:
    """The running state of one capital account while its history is replayed."""

    config: WaterfallConfig
    on: date | None = None
    contributed: Decimal = ZERO
    capital_unreturned: Decimal = ZERO
    pref_unpaid: Decimal = ZERO
    profit_investor: Decimal = ZERO
    profit_sponsor: Decimal = ZERO
    received_investor: Decimal = ZERO
    investor_flows: list[CashFlow] = field(default_factory=list)

    def accrue_to(self, on: date) -> None:
        if self.on is not None:
            days = (on - self.on).days
            assert days >= 0, "events are replayed in date order"
            rate = self.config.preferred_return_rate
            if self.config.pref_compounding == PrefCompounding.SIMPLE:
                accrued = self.capital_unreturned * rate * days / DAYS_PER_YEAR
                self.pref_unpaid = _internal(self.pref_unpaid + accrued)
            else:
                balance = self.capital_unreturned + self.pref_unpaid
                grown = balance * growth_factor(rate=rate, days=days)
                self.pref_unpaid = _internal(grown - self.capital_unreturned)
        self.on = on

    def contribute(self, amount: Decimal) -> None:
        assert self.on is not None
        self.contributed += amount
        self.capital_unreturned += amount
        self.investor_flows.append((self.on, -amount))

    def pay(self, *, investor: Decimal, sponsor: Decimal, is_profit: bool) -> None:
        assert self.on is not None
        if is_profit:
            self.profit_investor += investor
            self.profit_sponsor += sponsor
        self.received_investor += investor
        if investor:
            self.investor_flows.append((self.on, investor))

    def pay_direct(self, payout: DirectPayout) -> None:
        capital = min(payout.return_of_capital, self.capital_unreturned)
        self.capital_unreturned -= capital
        profit = payout.income + payout.return_of_capital - capital
        self.pref_unpaid -= min(payout.income, self.pref_unpaid)
        self.pay(investor=capital, sponsor=ZERO, is_profit=False)
        self.pay(investor=profit, sponsor=ZERO, is_profit=True)

    def catch_up_capacity(self) -> Decimal:
        """Gross amount X such that after paying X at the catch-up split the sponsor holds its
        target share s of profit: S + cX = s (L + S + X)  =>  X = (s (L + S) - S) / (c - s)."""
        target = self.config.sponsor_profit_target
        if not target:
            return ZERO
        sponsor_share = self.config.catch_up_sponsor_share
        profit = self.profit_investor + self.profit_sponsor
        deficit = target * profit - self.profit_sponsor
        return max(ZERO, _internal(deficit / (sponsor_share - target)))

    def promote_capacity(self, tier: PromoteTier) -> Decimal | None:
        """Gross amount that brings the investor to the tier's hurdle; None: no limit."""
        if tier.until is None:
            return None
        assert self.on is not None
        if tier.until.kind == HurdleKind.EQUITY_MULTIPLE:
            shortfall = tier.until.value * self.contributed - self.received_investor
        else:
            shortfall = irr_shortfall(self.investor_flows, rate=tier.until.value, on=self.on)
        return max(ZERO, _internal(shortfall / tier.investor_share))


def _distribute(state: _AccountState, amount: Decimal) -> tuple[TierAmount, ...]:
    config = state.config
    remaining = amount
    tiers: list[TierAmount] = []

    def fill(tier: TierName, index: int, capacity: Decimal | None, sponsor_share: Decimal) -> None:
        nonlocal remaining
        gross = remaining if capacity is None else min(remaining, capacity)
        sponsor = _internal(gross * sponsor_share) if sponsor_share else ZERO
        investor = gross - sponsor
        remaining -= gross
        tiers.append(TierAmount(tier, index, investor, sponsor))
        if tier == TierName.RETURN_OF_CAPITAL:
            state.capital_unreturned -= investor
        elif tier == TierName.PREFERRED_RETURN:
            state.pref_unpaid -= investor
        state.pay(investor=investor, sponsor=sponsor, is_profit=tier != TierName.RETURN_OF_CAPITAL)

    fill(TierName.RETURN_OF_CAPITAL, 0, state.capital_unreturned, ZERO)
    fill(TierName.PREFERRED_RETURN, 0, state.pref_unpaid, ZERO)
    fill(TierName.CATCH_UP, 0, state.catch_up_capacity(), config.catch_up_sponsor_share)
    for index, promote in enumerate(config.promote_tiers):
        fill(TierName.PROMOTE, index, state.promote_capacity(promote), promote.sponsor_share)
    assert remaining == 0, "the last promote tier takes everything left"
    assert sum((tier.amount for tier in tiers), ZERO) == amount
    return tuple(tiers)


def waterfall_compute(
    *, account: CapitalAccount, amount: Decimal, on: date, config: WaterfallConfig
) -> WaterfallResult:
    """Split `amount`, distributed on `on` on this capital account, into tiers, each with the
    investor's and the sponsor's part, in exact Decimal (see the module docstring)."""
    _check_decimal("amount", amount, low=ZERO, high=None)
    # Same day: contributions first, so capital paid in that day can be returned that day.
    events: list[tuple[date, int, DatedAmount | DirectPayout]] = [
        *((c.on, 0, c) for c in account.contributions),
        *((d.on, 1, d) for d in account.distributions),
        *((p.on, 2, p) for p in account.direct_payouts),
    ]
    if any(event_on > on for event_on, _, _ in events):
        raise ValueError("the capital account has events after the distribution date")
    state = _AccountState(config=config)
    with localcontext() as context:
        context.prec = DECIMAL_PRECISION
        for event_on, kind, event in sorted(events, key=lambda e: (e[0], e[1])):
            state.accrue_to(event_on)
            if isinstance(event, DirectPayout):
                state.pay_direct(event)
            elif kind == 1:
                _distribute(state, event.amount)
            else:
                state.contribute(event.amount)
        state.accrue_to(on)
        tiers = _distribute(state, amount)
    return WaterfallResult(on=on, amount=amount, tiers=tiers)


def waterfall_minor_units(*, result: WaterfallResult, currency: str) -> tuple[TierMinorUnits, ...]:
    """The result in integer minor units: every part within one unit of its exact value, and
    all parts summing exactly to the distributed amount (which must be whole minor units)."""
    total_minor = decimal_to_minor_units(result.amount, currency)
    exponent = currency_exponent(currency)
    exact: list[Decimal] = []
    for tier in result.tiers:
        exact += [tier.investor_amount.scaleb(exponent), tier.sponsor_amount.scaleb(exponent)]
    rounded = [round_minor_units(value) for value in exact]
    difference = total_minor - sum(rounded)
    # Each rounding moved a part by at most half a unit, so |difference| <= len(parts) / 2 and
    # the parts pushed furthest the other way (ties: the earlier part) take one unit each.
    residual = [value - whole for value, whole in zip(exact, rounded, strict=True)]
    step = 1 if difference > 0 else -1
    order = sorted(range(len(exact)), key=lambda i: (-step * residual[i], i))
    for index in order[: abs(difference)]:
        rounded[index] += step
    assert sum(rounded) == total_minor
    assert all(part >= 0 for part in rounded)
    return tuple(
        TierMinorUnits(tier.tier, tier.index, rounded[2 * i], rounded[2 * i + 1])
        for i, tier in enumerate(result.tiers)
    )


def capital_account_transfer(
    *, account: CapitalAccount, share: Fraction | Decimal
) -> tuple[CapitalAccount, CapitalAccount]:
    """A transfer of `share` of the seller's units (units sold / units held) carries the same
    share of every contribution and distribution, with their original dates, to the buyer.
    Returns (what the seller keeps, what the buyer receives); the two sum exactly to `account`.
    The buyer's purchase price is not a contribution: the buyer steps into the seller's shoes.
    """
    share = Fraction(share)
    if not 0 <= share <= 1:
        raise ValueError("share must be between 0 and 1")

    def moved(amount: Decimal) -> Decimal:
        with localcontext() as context:
            context.prec = DECIMAL_PRECISION
            return _internal(amount * Decimal(share.numerator) / Decimal(share.denominator))

    def kept(amount: Decimal) -> Decimal:
        with localcontext() as context:
            context.prec = DECIMAL_PRECISION
            return amount - moved(amount)

    def part(account: CapitalAccount, take: Callable[[Decimal], Decimal]) -> CapitalAccount:
        return CapitalAccount(
            contributions=tuple(DatedAmount(c.on, take(c.amount)) for c in account.contributions),
            distributions=tuple(DatedAmount(d.on, take(d.amount)) for d in account.distributions),
            direct_payouts=tuple(
                DirectPayout(p.on, take(p.return_of_capital), take(p.income))
                for p in account.direct_payouts
            ),
        )

    return part(account, kept), part(account, moved)


def capital_account_merge(*accounts: CapitalAccount) -> CapitalAccount:
    """A buyer who already held units keeps one account: the histories side by side."""
    return CapitalAccount(
        contributions=tuple(c for account in accounts for c in account.contributions),
        distributions=tuple(d for account in accounts for d in account.distributions),
        direct_payouts=tuple(p for account in accounts for p in account.direct_payouts),
    )
