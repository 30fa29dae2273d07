"""The waterfall: worked examples to the cent, and properties for all inputs. Pure functions:
no database."""

from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from captable.returns import irr_reaches, xirr
from captable.waterfall import (
    CapitalAccount,
    DatedAmount,
    DirectPayout,
    Hurdle,
    HurdleKind,
    PrefCompounding,
    PromoteTier,
    WaterfallConfig,
    capital_account_merge,
    capital_account_transfer,
    waterfall_compute,
    waterfall_minor_units,
)

pytestmark = pytest.mark.embedded

D = Decimal


def parts(result):
    """{label: (investor, sponsor)} of a WaterfallResult."""
    return {tier.label: (tier.investor_amount, tier.sponsor_amount) for tier in result.tiers}


CFA_CONFIG = WaterfallConfig(
    preferred_return_rate=D("0.08"),
    catch_up_sponsor_share=D(1),  # 100% catch-up
    sponsor_profit_target=D("0.20"),
    promote_tiers=(PromoteTier(sponsor_share=D("0.20")),),  # then 80/20
)


def test_cfa_study_notes_example_to_the_cent():
    # given the LP contributes $50,000,000 at t=0
    account = CapitalAccount(contributions=(DatedAmount(date(2021, 1, 1), D(50_000_000)),))

    # when the property sells and $100,000,000 is distributed at t=1 (365 days: actual/365 = 1)
    result = waterfall_compute(
        account=account, amount=D(100_000_000), on=date(2022, 1, 1), config=CFA_CONFIG
    )

    # then capital 50M, pref 4M (8% of 50M), catch-up 1M (sponsor = 20% of 5M of profit so
    # far), and the remaining 45M split 80/20: 36M / 9M
    assert parts(result) == {
        "return_of_capital": (D(50_000_000), 0),
        "preferred_return": (D(4_000_000), 0),
        "catch_up": (0, D(1_000_000)),
        "promote_1": (D(36_000_000), D(9_000_000)),
    }
    assert result.investor_amount == D(90_000_000)
    assert result.sponsor_amount == D(10_000_000)
    assert result.investor_return_of_capital == D(50_000_000)
    assert result.investor_income == D(40_000_000)
    cents = waterfall_minor_units(result=result, currency="USD")
    assert [(t.investor_amount_minor, t.sponsor_amount_minor) for t in cents] == [
        (5_000_000_000, 0),
        (400_000_000, 0),
        (0, 100_000_000),
        (3_600_000_000, 900_000_000),
    ]


# Several dated contributions and distributions, derived by hand:
# pref 10% compounding annually; 100% catch-up to 20%; 80/20 until the LP's IRR reaches 15%,
# then 60/40. Dates a whole number of 365-day years apart, so every power is exact.
HAND_CONFIG = WaterfallConfig(
    preferred_return_rate=D("0.10"),
    pref_compounding=PrefCompounding.ANNUAL,
    catch_up_sponsor_share=D(1),
    sponsor_profit_target=D("0.20"),
    promote_tiers=(
        PromoteTier(sponsor_share=D("0.20"), until=Hurdle(HurdleKind.LP_IRR, D("0.15"))),
        PromoteTier(sponsor_share=D("0.40")),
    ),
)
HAND_ACCOUNT = CapitalAccount(
    contributions=(
        DatedAmount(date(2021, 1, 1), D(1_000_000)),
        DatedAmount(date(2022, 1, 1), D(1_000_000)),  # 365 days later
    ),
    distributions=(DatedAmount(date(2023, 1, 1), D(500_000)),),  # 365 days later
)


def test_hand_derived_example_with_compounding_pref_and_an_irr_hurdle():
    # Balance = unreturned capital + unpaid pref, growing by 1.10 a year:
    # 2021-01-01  contribute 1,000,000                 balance 1,000,000  capital 1,000,000
    # 2022-01-01  * 1.10 = 1,100,000; contribute 1M    balance 2,100,000  capital 2,000,000
    # 2023-01-01  * 1.10 = 2,310,000 (pref 310,000); the 500,000 distribution is all return of
    #             capital                               balance 1,810,000  capital 1,500,000
    # 2024-01-01  * 1.10 = 1,991,000: pref 491,000 (310,000 compounded: 341,000, plus 10% of
    #             the 1,500,000 capital: 150,000)
    # The 3,000,000 distributed on 2024-01-01:
    #   return of capital 1,500,000                                  left 1,500,000
    #   preferred return    491,000                                  left 1,009,000
    #   catch-up: sponsor to 20% of profit: S = 0.2 (491,000 + S), S = 491,000 / 4 = 122,750
    #                                                                left   886,250
    #   80/20 until LP IRR 15%: LP flows -1M (2021), -1M (2022), +500,000 (2023), +1,991,000
    #     (2024 so far); owed on 2024-01-01 at 15%: 1M * 1.15**3 + 1M * 1.15**2
    #     - 500,000 * 1.15 - 1,991,000 = 1,520,875 + 1,322,500 - 575,000 - 1,991,000 = 277,375
    #     to the LP, so 277,375 / 0.8 = 346,718.75 gross: LP 277,375, sponsor 69,343.75
    #                                                                left   539,531.25
    #   60/40: LP 323,718.75, sponsor 215,812.50
    # LP 2,592,093.75 + sponsor 407,906.25 = 3,000,000.
    result = waterfall_compute(
        account=HAND_ACCOUNT, amount=D(3_000_000), on=date(2024, 1, 1), config=HAND_CONFIG
    )

    assert parts(result) == {
        "return_of_capital": (D(1_500_000), 0),
        "preferred_return": (D(491_000), 0),
        "catch_up": (0, D(122_750)),
        "promote_1": (D(277_375), D("69343.75")),
        "promote_2": (D("323718.75"), D("215812.50")),
    }
    assert result.investor_amount == D("2592093.75")
    assert result.sponsor_amount == D("407906.25")
    cents = waterfall_minor_units(result=result, currency="USD")
    assert sum(t.investor_amount_minor + t.sponsor_amount_minor for t in cents) == 300_000_000
    assert cents[3].sponsor_amount_minor == 6_934_375

    # and the LP's IRR is exactly 15% at the end of the first promote tier
    lp_flows = [
        (date(2021, 1, 1), D(-1_000_000)),
        (date(2022, 1, 1), D(-1_000_000)),
        (date(2023, 1, 1), D(500_000)),
        (date(2024, 1, 1), D(1_500_000 + 491_000 + 277_375)),
    ]
    assert irr_reaches(lp_flows, rate=D("0.15"))
    assert not irr_reaches(lp_flows, rate=D("0.150001"))
    assert abs(xirr(lp_flows) - D("0.15")) < D("1e-9")


def test_the_prior_distribution_is_replayed_through_the_same_tiers():
    # The 2023 distribution on its own: all of it returns capital (2,000,000 unreturned).
    account = CapitalAccount(contributions=HAND_ACCOUNT.contributions)

    result = waterfall_compute(
        account=account, amount=D(500_000), on=date(2023, 1, 1), config=HAND_CONFIG
    )

    assert result.investor_return_of_capital == D(500_000)
    assert result.sponsor_amount == 0


def test_a_pro_rata_income_payout_pays_pref_and_counts_as_profit():
    # given the CFA deal, with 2,000,000 of pro-rata income paid on 2022-01-01 (outside the
    # waterfall), when 4,000,000 of pref had accrued: 2,000,000 of pref stays unpaid
    account = CapitalAccount(
        contributions=(DatedAmount(date(2021, 1, 1), D(50_000_000)),),
        direct_payouts=(
            DirectPayout(date(2022, 1, 1), return_of_capital=D(0), income=D(2_000_000)),
        ),
    )

    # when 100,000,000 is distributed a year later (2023-01-01; 2022 has 365 days)
    result = waterfall_compute(
        account=account, amount=D(100_000_000), on=date(2023, 1, 1), config=CFA_CONFIG
    )

    # then pref = 2,000,000 unpaid + 8% of 50,000,000 for the second year = 6,000,000;
    # catch-up: the LP's profit is 2,000,000 + 6,000,000 = 8,000,000, so the sponsor takes
    # 8,000,000 / 4 = 2,000,000 (20% of 10,000,000); the last 42,000,000 split 80/20.
    # Sponsor 10,400,000 = 20% of all profit (2M + 100M - 50M = 52M).
    assert parts(result) == {
        "return_of_capital": (D(50_000_000), 0),
        "preferred_return": (D(6_000_000), 0),
        "catch_up": (0, D(2_000_000)),
        "promote_1": (D(33_600_000), D(8_400_000)),
    }


def test_simple_pref_accrues_from_each_contribution_and_stops_on_returned_capital():
    # pref 7.3% simple (0.02% a day on actual/365), no catch-up, then 80/20
    config = WaterfallConfig(
        preferred_return_rate=D("0.073"),
        promote_tiers=(PromoteTier(sponsor_share=D("0.20")),),
    )
    account = CapitalAccount(
        contributions=(
            DatedAmount(date(2021, 1, 1), D(1000)),
            DatedAmount(date(2021, 7, 2), D(1000)),  # 182 days later
        ),
        # 2022-01-01: pref 1000 * 0.073 (365 days) + 1000 * 0.073 * 183/365 = 73 + 36.6 = 109.6;
        # the 1,500 returns capital only: 500 left unreturned, 109.6 of pref unpaid
        distributions=(DatedAmount(date(2022, 1, 1), D(1500)),),
    )

    # 2023-01-01 (365 days): + 500 * 0.073 = 36.5 of pref (none on the unpaid pref) = 146.1;
    # 1,000: capital 500, pref 146.1, then 353.9 split 80/20 = 283.12 / 70.78
    result = waterfall_compute(account=account, amount=D(1000), on=date(2023, 1, 1), config=config)

    assert parts(result) == {
        "return_of_capital": (D(500), 0),
        "preferred_return": (D("146.1"), 0),
        "catch_up": (0, 0),
        "promote_1": (D("283.12"), D("70.78")),
    }


def test_equity_multiple_hurdle():
    # no pref; 80/20 until the LP has 2.0x its capital, then 70/30
    config = WaterfallConfig(
        preferred_return_rate=D(0),
        promote_tiers=(
            PromoteTier(D("0.20"), until=Hurdle(HurdleKind.EQUITY_MULTIPLE, D(2))),
            PromoteTier(D("0.30")),
        ),
    )
    account = CapitalAccount(contributions=(DatedAmount(date(2021, 1, 1), D(100)),))

    # 300: capital 100; the LP needs 100 more for 2.0x: 100 / 0.8 = 125 gross (100 / 25);
    # the last 75 split 70/30: 52.5 / 22.5
    result = waterfall_compute(account=account, amount=D(300), on=date(2021, 6, 1), config=config)

    assert parts(result)["promote_1"] == (D(100), D(25))
    assert parts(result)["promote_2"] == (D("52.5"), D("22.5"))


def test_fifty_fifty_catch_up_gives_the_sponsor_its_target_share():
    config = WaterfallConfig(
        preferred_return_rate=D("0.08"),
        catch_up_sponsor_share=D("0.5"),
        sponsor_profit_target=D("0.20"),
        promote_tiers=(PromoteTier(sponsor_share=D("0.20")),),
    )
    account = CapitalAccount(contributions=(DatedAmount(date(2021, 1, 1), D(50_000_000)),))

    # catch-up: 0.5 X = 0.2 (4,000,000 + X) => X = 800,000 / 0.3 = 2,666,666.66…
    result = waterfall_compute(
        account=account, amount=D(60_000_000), on=date(2022, 1, 1), config=config
    )

    catch_up_lp, catch_up_sponsor = parts(result)["catch_up"]
    assert abs(catch_up_sponsor - D("1333333.333333")) < D("0.000001")
    assert abs(catch_up_lp - catch_up_sponsor) <= D("1e-12")  # the internal quantum
    profit = result.amount - result.investor_return_of_capital
    assert abs(result.sponsor_amount / profit - D("0.2")) < D("1e-15")
    cents = waterfall_minor_units(result=result, currency="USD")
    assert sum(t.investor_amount_minor + t.sponsor_amount_minor for t in cents) == 6_000_000_000


def test_transfer_carries_the_capital_account_to_the_buyer():
    # given the seller sells half of its units
    kept, moved = capital_account_transfer(account=HAND_ACCOUNT, share=Fraction(1, 2))

    # then each half of the history goes with the units, dates unchanged
    assert [c.amount for c in moved.contributions] == [D(500_000), D(500_000)]
    assert [c.on for c in moved.contributions] == [c.on for c in HAND_ACCOUNT.contributions]
    assert [d.amount for d in kept.distributions] == [D(250_000)]
    # and the buyer's half of the next distribution splits like half of the seller's would
    whole = waterfall_compute(
        account=HAND_ACCOUNT, amount=D(3_000_000), on=date(2024, 1, 1), config=HAND_CONFIG
    )
    half = waterfall_compute(
        account=moved, amount=D(1_500_000), on=date(2024, 1, 1), config=HAND_CONFIG
    )
    for whole_tier, half_tier in zip(whole.tiers, half.tiers, strict=True):
        assert half_tier.investor_amount * 2 == whole_tier.investor_amount
        assert half_tier.sponsor_amount * 2 == whole_tier.sponsor_amount
    # the seller's and buyer's accounts together are the original history
    merged = capital_account_merge(kept, moved)
    assert sum(c.amount for c in merged.contributions) == D(2_000_000)


def test_refusals():
    with pytest.raises(TypeError):
        waterfall_compute(
            account=CapitalAccount(),
            amount=100.0,  # type: ignore[arg-type]
            on=date(2021, 1, 1),
            config=CFA_CONFIG,
        )
    with pytest.raises(ValueError, match="after the distribution date"):
        waterfall_compute(
            account=HAND_ACCOUNT, amount=D(1), on=date(2022, 6, 1), config=HAND_CONFIG
        )
    with pytest.raises(ValueError, match="last promote tier"):
        WaterfallConfig(
            preferred_return_rate=D("0.08"),
            promote_tiers=(PromoteTier(D("0.2"), until=Hurdle(HurdleKind.LP_IRR, D("0.1"))),),
        )
    with pytest.raises(ValueError, match="more than its target"):
        WaterfallConfig(
            preferred_return_rate=D("0.08"),
            catch_up_sponsor_share=D("0.2"),
            sponsor_profit_target=D("0.2"),
        )
    with pytest.raises(TypeError):
        WaterfallConfig(preferred_return_rate=0.08)  # type: ignore[arg-type]


# --- properties ---------------------------------------------------------------------------

START = date(2020, 1, 1)
cents = st.integers(min_value=1, max_value=10**10).map(lambda c: Decimal(c) / 100)
configs = st.builds(
    WaterfallConfig,
    preferred_return_rate=st.sampled_from([D(0), D("0.06"), D("0.08"), D("0.1")]),
    pref_compounding=st.sampled_from(list(PrefCompounding)),
    catch_up_sponsor_share=st.sampled_from([D(1), D("0.5")]),
    sponsor_profit_target=st.sampled_from([D(0), D("0.2"), D("0.3")]),
    promote_tiers=st.sampled_from(
        [
            (PromoteTier(D("0.2")),),
            (
                PromoteTier(D("0.1"), until=Hurdle(HurdleKind.LP_IRR, D("0.12"))),
                PromoteTier(D("0.25"), until=Hurdle(HurdleKind.EQUITY_MULTIPLE, D("2.5"))),
                PromoteTier(D("0.4")),
            ),
            (
                PromoteTier(D("0.2"), until=Hurdle(HurdleKind.EQUITY_MULTIPLE, D("1.5"))),
                PromoteTier(D("0.35")),
            ),
        ]
    ),
)


@st.composite
def histories(draw):
    """A capital account and the date of the next distribution after its last event."""
    contributions = draw(st.lists(st.tuples(st.integers(0, 1500), cents), min_size=1, max_size=4))
    distributions = draw(st.lists(st.tuples(st.integers(0, 2000), cents), max_size=3))
    direct = draw(st.lists(st.tuples(st.integers(0, 2000), cents, cents), max_size=2))
    account = CapitalAccount(
        contributions=tuple(DatedAmount(START + timedelta(days=d), a) for d, a in contributions),
        distributions=tuple(DatedAmount(START + timedelta(days=d), a) for d, a in distributions),
        direct_payouts=tuple(DirectPayout(START + timedelta(days=d), r, i) for d, r, i in direct),
    )
    last = max(d for d, *_ in contributions + distributions + direct)
    return account, START + timedelta(days=last + draw(st.integers(0, 1500)))


def assert_all_decimal(result):
    assert isinstance(result.amount, Decimal)
    for tier in result.tiers:
        assert type(tier.investor_amount) is Decimal
        assert type(tier.sponsor_amount) is Decimal


@settings(deadline=None, max_examples=150)
@given(history=histories(), amount=cents, config=configs)
def test_tiers_sum_exactly_to_the_amount(history, amount, config):
    account, on = history

    result = waterfall_compute(account=account, amount=amount, on=on, config=config)

    assert_all_decimal(result)
    assert sum(t.investor_amount + t.sponsor_amount for t in result.tiers) == amount
    assert result.investor_amount + result.sponsor_amount == amount
    assert all(t.investor_amount >= 0 and t.sponsor_amount >= 0 for t in result.tiers)
    minor = waterfall_minor_units(result=result, currency="USD")
    assert all(type(t.investor_amount_minor) is int for t in minor)
    assert sum(t.investor_amount_minor + t.sponsor_amount_minor for t in minor) == int(amount * 100)
    for exact, rounded in zip(result.tiers, minor, strict=True):
        assert abs(exact.investor_amount * 100 - rounded.investor_amount_minor) < 1
        assert abs(exact.sponsor_amount * 100 - rounded.sponsor_amount_minor) < 1


@settings(deadline=None, max_examples=150)
@given(history=histories(), amount=cents, extra=cents, config=configs)
def test_more_money_never_reduces_a_tier(history, amount, extra, config):
    account, on = history

    smaller = waterfall_compute(account=account, amount=amount, on=on, config=config)
    larger = waterfall_compute(account=account, amount=amount + extra, on=on, config=config)

    for small, large in zip(smaller.tiers, larger.tiers, strict=True):
        assert small.investor_amount <= large.investor_amount
        assert small.sponsor_amount <= large.sponsor_amount


@settings(deadline=None, max_examples=100)
@given(
    history=histories(),
    share=st.fractions(min_value=0, max_value=1, max_denominator=1000),
)
def test_transfer_conserves_the_capital_account(history, share):
    account, _ = history

    kept, moved = capital_account_transfer(account=account, share=share)

    for original, k, m in zip(
        account.contributions, kept.contributions, moved.contributions, strict=True
    ):
        assert k.amount + m.amount == original.amount
        assert k.on == m.on == original.on
    for original, k, m in zip(
        account.distributions, kept.distributions, moved.distributions, strict=True
    ):
        assert k.amount + m.amount == original.amount
    for payout, kept_payout, moved_payout in zip(
        account.direct_payouts, kept.direct_payouts, moved.direct_payouts, strict=True
    ):
        assert kept_payout.income + moved_payout.income == payout.income
        assert (
            kept_payout.return_of_capital + moved_payout.return_of_capital
            == payout.return_of_capital
        )


@settings(deadline=None, max_examples=100)
@given(history=histories(), amount=cents, config=configs)
def test_the_buyer_of_half_the_units_gets_half_of_each_tier(history, amount, config):
    # given the seller's account, and the half a buyer takes over with half the units
    account, on = history
    _, moved = capital_account_transfer(account=account, share=Fraction(1, 2))

    # when the next distribution is paid on both
    whole = waterfall_compute(account=account, amount=amount, on=on, config=config)
    half = waterfall_compute(account=moved, amount=amount / 2, on=on, config=config)

    # then the waterfall scales: half the history and half the amount give half of each tier
    # (up to the internal quantum of 10**-12 carried through a few steps)
    for whole_tier, half_tier in zip(whole.tiers, half.tiers, strict=True):
        assert abs(half_tier.investor_amount * 2 - whole_tier.investor_amount) < D("1e-9")
        assert abs(half_tier.sponsor_amount * 2 - whole_tier.sponsor_amount) < D("1e-9")
