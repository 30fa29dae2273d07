"""Waterfall distributions on the ledger: the offering's terms, each holder's capital account
rebuilt from the ledger, and each payout split into tiers (the pure arithmetic is
`captable/waterfall.py`).

- Terms: one `WaterfallTerms` row per offering, set by the sponsor or staff; refused once a
  waterfall distribution of the offering has computed payouts (the replay of the history must
  keep reproducing what was paid).
- Capital accounts, as of the record date, replayed in ledger order: an issue (a subscription
  accepted at close, or a reinvestment) is a contribution of its cost on its date in the
  offering's time zone; a transfer carries the seller's share of their account (units sold /
  units held) to the buyer with the original dates; a redemption drops the redeemed share; the
  earlier distributions of the offering whose record date came first are replayed too: a
  waterfall one as a distribution of what the holder's units received (investor + promote), a
  pro-rata one as a direct payout (income / return of capital as recorded). Entries reversed by
  the record date (and the reversals) are left out: they never happened.
- Each holder's units receive their pro-rata share of the amount (the one allocation function,
  exact cents), and the waterfall splits that share between the holder and the sponsor. So the
  payouts and promotes sum exactly to the declared amount.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from fractions import Fraction
from typing import Any
from zoneinfo import ZoneInfo

from django.db import transaction

from captable.models import (
    AccountKind,
    Distribution,
    DistributionMethod,
    DistributionStatus,
    EntryKind,
    Payout,
    Posting,
    PrefCompoundingChoice,
    WaterfallTerms,
    units_asset,
)
from captable.waterfall import (
    CapitalAccount,
    DirectPayout,
    Hurdle,
    HurdleKind,
    PrefCompounding,
    PromoteTier,
    TierName,
    WaterfallConfig,
    capital_account_merge,
    capital_account_transfer,
    waterfall_compute,
    waterfall_minor_units,
)
from common.errors import Conflict, NotAllowed, NotFound, ValidationFailed
from common.models import User
from common.money import allocate, minor_units_to_decimal
from offerings.models import Offering
from offerings.selectors import is_sponsor_member, offerings_visible_to

# --- terms -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class PromoteTierTerms:
    sponsor_share: Decimal
    hurdle_kind: str | None = None  # "lp_irr" or "equity_multiple"; None on the last tier
    hurdle_value: Decimal | None = None

    def as_json(self) -> dict[str, str]:
        built = {"sponsor_share": str(self.sponsor_share)}
        if self.hurdle_kind is not None and self.hurdle_value is not None:
            built |= {"hurdle_kind": self.hurdle_kind, "hurdle_value": str(self.hurdle_value)}
        return built


def _promote_tier(terms: PromoteTierTerms) -> PromoteTier:
    if (terms.hurdle_kind is None) != (terms.hurdle_value is None):
        raise ValueError("a hurdle needs both its kind and its value")
    until = None
    if terms.hurdle_kind is not None and terms.hurdle_value is not None:
        until = Hurdle(HurdleKind(terms.hurdle_kind), terms.hurdle_value)
    return PromoteTier(sponsor_share=terms.sponsor_share, until=until)


def waterfall_config_build(
    *,
    preferred_return_rate: Decimal,
    pref_compounding: str,
    catch_up_sponsor_share: Decimal,
    sponsor_profit_target: Decimal,
    promote_tiers: list[PromoteTierTerms],
) -> WaterfallConfig:
    """The pure config, or ValidationFailed saying what is wrong with the terms."""
    try:
        return WaterfallConfig(
            preferred_return_rate=preferred_return_rate,
            pref_compounding=PrefCompounding(pref_compounding),
            catch_up_sponsor_share=catch_up_sponsor_share,
            sponsor_profit_target=sponsor_profit_target,
            promote_tiers=tuple(_promote_tier(tier) for tier in promote_tiers),
        )
    except (ValueError, TypeError) as error:
        raise ValidationFailed(
            f"Invalid waterfall terms: {error}.", code="waterfall_invalid"
        ) from None


def _tier_terms(raw: dict[str, Any]) -> PromoteTierTerms:
    value = raw.get("hurdle_value")
    return PromoteTierTerms(
        sponsor_share=Decimal(raw["sponsor_share"]),
        hurdle_kind=raw.get("hurdle_kind"),
        hurdle_value=Decimal(value) if value is not None else None,
    )


def waterfall_config_of(terms: WaterfallTerms) -> WaterfallConfig:
    return waterfall_config_build(
        preferred_return_rate=terms.preferred_return_rate,
        pref_compounding=terms.pref_compounding,
        catch_up_sponsor_share=terms.catch_up_sponsor_share,
        sponsor_profit_target=terms.sponsor_profit_target,
        promote_tiers=[_tier_terms(raw) for raw in terms.promote_tiers],
    )


def waterfall_terms_set(
    *,
    actor: User,
    offering_id: int,
    preferred_return_rate: Decimal,
    promote_tiers: list[PromoteTierTerms],
    pref_compounding: str = PrefCompoundingChoice.SIMPLE,
    catch_up_sponsor_share: Decimal = Decimal(1),
    sponsor_profit_target: Decimal = Decimal(0),
) -> WaterfallTerms:
    """The sponsor (or staff) sets the offering's waterfall terms (creates or replaces them)."""
    waterfall_config_build(
        preferred_return_rate=preferred_return_rate,
        pref_compounding=pref_compounding,
        catch_up_sponsor_share=catch_up_sponsor_share,
        sponsor_profit_target=sponsor_profit_target,
        promote_tiers=promote_tiers,
    )
    with transaction.atomic():
        offering = Offering.objects.select_for_update().filter(pk=offering_id).first()
        if offering is None or not offerings_visible_to(actor).filter(pk=offering_id).exists():
            raise NotFound(f"Offering {offering_id} not found.", code="offering_not_found")
        if not (actor.is_staff or is_sponsor_member(actor, sponsor_id=offering.sponsor_id)):
            raise NotAllowed(
                "Only the offering's sponsor (or staff) set its waterfall.", code="sponsor_only"
            )
        if Distribution.objects.filter(
            offering=offering,
            method=DistributionMethod.WATERFALL,
            payouts_computed_at__isnull=False,
        ).exists():
            raise Conflict(
                "A waterfall distribution of this offering has been paid under the current "
                "terms; they can no longer change.",
                code="waterfall_terms_in_use",
            )
        terms, _ = WaterfallTerms.objects.update_or_create(
            offering=offering,
            defaults={
                "preferred_return_rate": preferred_return_rate,
                "pref_compounding": pref_compounding,
                "catch_up_sponsor_share": catch_up_sponsor_share,
                "sponsor_profit_target": sponsor_profit_target,
                "promote_tiers": [tier.as_json() for tier in promote_tiers],
                "updated_by": actor,
            },
        )
    return terms


def waterfall_terms_get(*, offering: Offering) -> WaterfallTerms:
    terms = WaterfallTerms.objects.filter(offering=offering).first()
    if terms is None:
        raise Conflict(
            f"Offering {offering.pk} has no waterfall terms; set them first.",
            code="waterfall_terms_missing",
        )
    return terms


# --- capital accounts from the ledger -------------------------------------------------------


class _Accounts:
    """Every holder's capital account and units while the offering's history is replayed."""

    def __init__(self, currency: str) -> None:
        self.currency = currency
        self.accounts: dict[int, CapitalAccount] = defaultdict(CapitalAccount)
        self.quanta: dict[int, int] = defaultdict(int)

    def major(self, amount_minor: int) -> Decimal:
        return minor_units_to_decimal(amount_minor, self.currency)

    def issue(self, investor_id: int, quanta: int, cost_minor: int, on: date) -> None:
        self.quanta[investor_id] += quanta
        if cost_minor:
            account = self.accounts[investor_id]
            self.accounts[investor_id] = account.with_contribution(
                on=on, amount=self.major(cost_minor)
            )

    def move(self, seller_id: int, quanta: int, buyer_id: int | None) -> None:
        """`quanta` of the seller's units leave (to the buyer, or back to the issuer)."""
        held = self.quanta[seller_id]
        kept, moved = capital_account_transfer(
            account=self.accounts[seller_id], share=Fraction(quanta, held)
        )
        self.accounts[seller_id] = kept
        self.quanta[seller_id] = held - quanta
        if buyer_id is not None:
            self.accounts[buyer_id] = capital_account_merge(self.accounts[buyer_id], moved)
            self.quanta[buyer_id] += quanta

    def entry(self, kind: str, legs: list[tuple[int, int, int]], on: date) -> None:
        """One ledger entry's holding legs (investor, quanta, cost)."""
        net: dict[int, int] = defaultdict(int)
        cost: dict[int, int] = defaultdict(int)
        for investor_id, quanta, cost_minor in legs:
            net[investor_id] += quanta
            cost[investor_id] += cost_minor
        if kind == EntryKind.ISSUE:
            for investor_id, quanta in net.items():
                self.issue(investor_id, quanta, cost[investor_id], on)
            return
        sellers = [(i, -q) for i, q in net.items() if q < 0]
        buyers = [i for i, q in net.items() if q > 0]
        for seller_id, quanta in sellers:
            self.move(seller_id, quanta, buyers[0] if len(buyers) == 1 else None)


def _holding_legs(offering: Offering, as_of: datetime) -> list[tuple[Any, ...]]:
    reversed_by_then = Posting.objects.filter(
        entry__kind=EntryKind.REVERSAL, effective_at__lte=as_of
    ).values("entry__reverses_id")
    return list(
        Posting.objects.filter(
            asset=units_asset(offering.pk),
            account__kind=AccountKind.HOLDING,
            effective_at__lte=as_of,
        )
        .exclude(entry__kind=EntryKind.REVERSAL)
        .exclude(entry_id__in=reversed_by_then)
        .order_by("effective_at", "entry_id", "id")
        .values_list(
            "effective_at",
            "entry_id",
            "entry__kind",
            "account__investor_id",
            "amount",
            "cost_minor",
        )
    )


def _earlier_payouts(distribution: Distribution) -> list[tuple[Any, ...]]:
    return list(
        Payout.objects.filter(
            distribution__offering_id=distribution.offering_id,
            distribution__record_at__lt=distribution.record_at,
            distribution__payouts_computed_at__isnull=False,
        )
        .exclude(
            distribution__status__in=(DistributionStatus.CANCELLED, DistributionStatus.REVERSED)
        )
        .order_by("distribution__record_at", "distribution_id", "investor_id")
        .values_list(
            "distribution__record_at",
            "distribution_id",
            "distribution__method",
            "distribution__payment_date",
            "investor_id",
            "income_minor",
            "return_of_capital_minor",
            "promote_minor",
        )
    )


def capital_accounts_at_record(*, distribution: Distribution) -> dict[int, CapitalAccount]:
    """Each holder's capital account in the offering at the distribution's record date."""
    offering = distribution.offering
    zone = ZoneInfo(offering.time_zone)
    state = _Accounts(distribution.currency)
    # (instant, order, payload): ledger entries and earlier distributions, in time order.
    events: list[tuple[datetime, int, Any]] = []
    by_entry: dict[int, list[tuple[Any, ...]]] = defaultdict(list)
    for leg in _holding_legs(offering, distribution.record_at):
        by_entry[leg[1]].append(leg)
    for entry_id, legs in by_entry.items():
        events.append((legs[0][0], entry_id, ("entry", legs)))
    by_distribution: dict[int, list[tuple[Any, ...]]] = defaultdict(list)
    for payout in _earlier_payouts(distribution):
        by_distribution[payout[1]].append(payout)
    for payouts in by_distribution.values():
        events.append((payouts[0][0], 0, ("distribution", payouts)))
    for _, _, (what, rows) in sorted(events, key=lambda event: (event[0], event[1])):
        if what == "entry":
            on = rows[0][0].astimezone(zone).date()
            state.entry(rows[0][2], [(r[3], r[4], r[5]) for r in rows], on)
        else:
            _replay_distribution(state, rows)
    return dict(state.accounts)


def _replay_distribution(state: _Accounts, payouts: list[tuple[Any, ...]]) -> None:
    for _, _, method, paid_on, investor_id, income, capital, promote in payouts:
        account = state.accounts[investor_id]
        if method == DistributionMethod.WATERFALL:
            received = state.major(income + capital + promote)
            state.accounts[investor_id] = account.with_distribution(on=paid_on, amount=received)
        else:
            direct = DirectPayout(paid_on, state.major(capital), state.major(income))
            state.accounts[investor_id] = CapitalAccount(
                account.contributions, account.distributions, (*account.direct_payouts, direct)
            )


# --- the payouts -----------------------------------------------------------------------------


@dataclass(frozen=True)
class WaterfallPayoutAmounts:
    investor_id: int
    quanta: int
    gross_minor: int  # to the investor (income + return of capital)
    income_minor: int
    return_of_capital_minor: int
    promote_minor: int  # to the sponsor
    tiers: tuple[dict[str, Any], ...]


def _one_holder(
    *,
    account: CapitalAccount,
    share_minor: int,
    on: date,
    config: WaterfallConfig,
    currency: str,
) -> tuple[int, int, int, tuple[dict[str, Any], ...]]:
    """(investor gross, return of capital, promote, tiers) of one holder's share."""
    amount = minor_units_to_decimal(share_minor, currency)
    try:
        result = waterfall_compute(account=account, amount=amount, on=on, config=config)
    except ValueError as error:
        raise Conflict(f"The waterfall cannot run: {error}.", code="waterfall_history") from None
    tiers = waterfall_minor_units(result=result, currency=currency)
    investor = sum(t.investor_amount_minor for t in tiers)
    capital = sum(t.investor_amount_minor for t in tiers if t.tier == TierName.RETURN_OF_CAPITAL)
    promote = sum(t.sponsor_amount_minor for t in tiers)
    rows = tuple(
        {
            "tier": str(t.tier),
            "index": t.index,
            "investor_minor": t.investor_amount_minor,
            "sponsor_minor": t.sponsor_amount_minor,
        }
        for t in tiers
    )
    return investor, capital, promote, rows


def waterfall_payout_amounts(
    *, distribution: Distribution, holdings: list[tuple[int, int]]
) -> list[WaterfallPayoutAmounts]:
    """Every holder of record's payout through the offering's waterfall: their units' pro-rata
    share of the amount, split by the waterfall on their own capital account."""
    config = waterfall_config_of(waterfall_terms_get(offering=distribution.offering))
    accounts = capital_accounts_at_record(distribution=distribution)
    shares = allocate(distribution.amount_minor, [quanta for _, quanta in holdings])
    amounts = []
    for (investor_id, quanta), share_minor in zip(holdings, shares, strict=True):
        investor, capital, promote, tiers = _one_holder(
            account=accounts.get(investor_id, CapitalAccount()),
            share_minor=share_minor,
            on=distribution.payment_date,
            config=config,
            currency=distribution.currency,
        )
        amounts.append(
            WaterfallPayoutAmounts(
                investor_id, quanta, investor, investor - capital, capital, promote, tiers
            )
        )
    assert sum(a.gross_minor + a.promote_minor for a in amounts) == distribution.amount_minor
    return amounts
