"""Investor returns: Excel's XIRR example, exact Decimal hurdle tests, multiples, income vs
return of capital. Pure functions: no database."""

from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from captable.returns import (
    FlowKind,
    InvestorCashFlow,
    equity_multiple,
    growth_factor,
    investor_returns,
    irr_reaches,
    irr_shortfall,
    value_as_of,
    xirr,
)

pytestmark = pytest.mark.embedded

# Excel's documented XIRR example (support.microsoft.com, "XIRR function").
EXCEL_FLOWS = [
    (date(2008, 1, 1), Decimal(-10000)),
    (date(2008, 3, 1), Decimal(2750)),
    (date(2008, 10, 30), Decimal(4250)),
    (date(2009, 2, 15), Decimal(3250)),
    (date(2009, 4, 1), Decimal(2750)),
]


def test_xirr_matches_excels_documented_example():
    rate = xirr(EXCEL_FLOWS)

    assert isinstance(rate, Decimal)
    assert abs(rate - Decimal("0.373362535")) < Decimal("1e-6")


def test_exact_hurdle_test_brackets_excels_example():
    # 37.336% is reached, 37.337% is not: the exact test agrees with XIRR.
    assert irr_reaches(EXCEL_FLOWS, rate=Decimal("0.37336"))
    assert not irr_reaches(EXCEL_FLOWS, rate=Decimal("0.37337"))


def test_xirr_refuses_flows_without_an_outflow_or_an_inflow():
    with pytest.raises(ValueError, match="negative and one positive"):
        xirr([(date(2020, 1, 1), Decimal(100)), (date(2021, 1, 1), Decimal(5))])
    with pytest.raises(ValueError, match="negative and one positive"):
        xirr([(date(2020, 1, 1), Decimal(-100))])


def test_floats_are_refused_in_cash_flows():
    with pytest.raises(TypeError, match="floats are not allowed"):
        xirr([(date(2020, 1, 1), -100.0), (date(2021, 1, 1), 110.0)])  # type: ignore[list-item]
    with pytest.raises(TypeError):
        value_as_of([(date(2020, 1, 1), 1.5)], rate=Decimal("0.1"), on=date(2020, 1, 1))  # type: ignore[list-item]


def test_growth_factor_is_exact_for_whole_years():
    # 730 days = 2 years of 365: 1.15 ** 2 = 1.3225, no rounding at all.
    assert growth_factor(rate=Decimal("0.15"), days=730) == Decimal("1.3225")
    # 2024 is a leap year: 366 days are 366/365 of a year (actual/365), slightly more than 1.08.
    assert growth_factor(rate=Decimal("0.08"), days=366) > Decimal("1.08")


def test_shortfall_is_the_inflow_that_reaches_the_hurdle_exactly():
    # given 100 paid in on 2021-01-01 and 50 received on 2022-01-01 (365 days later)
    flows = [(date(2021, 1, 1), Decimal(-100)), (date(2022, 1, 1), Decimal(50))]

    # when the investor is owed a 10% IRR on 2023-01-01 (730 days after the start)
    shortfall = irr_shortfall(flows, rate=Decimal("0.10"), on=date(2023, 1, 1))

    # then 100 * 1.1**2 - 50 * 1.1 = 121 - 55 = 66
    assert shortfall == Decimal(66)
    reached = [*flows, (date(2023, 1, 1), shortfall)]
    assert irr_reaches(reached, rate=Decimal("0.10"))
    assert not irr_reaches(reached, rate=Decimal("0.1000001"))
    assert irr_shortfall(reached, rate=Decimal("0.10"), on=date(2023, 1, 1)) == 0
    assert abs(xirr(reached) - Decimal("0.10")) < Decimal("1e-9")


def test_equity_multiple():
    assert equity_multiple(contributed=Decimal(100), distributed=Decimal(250)) == Decimal("2.5")
    assert equity_multiple(contributed=Decimal(0), distributed=Decimal(5)) is None


def test_investor_returns_separate_income_from_return_of_capital():
    # given 1,000 in, 60 of income after a year, 400 of capital back after two, now worth 700
    flows = [
        InvestorCashFlow(date(2021, 1, 1), Decimal(1000), FlowKind.CONTRIBUTION),
        InvestorCashFlow(date(2022, 1, 1), Decimal(60), FlowKind.INCOME),
        InvestorCashFlow(date(2023, 1, 1), Decimal(400), FlowKind.RETURN_OF_CAPITAL),
        InvestorCashFlow(date(2030, 1, 1), Decimal(999), FlowKind.INCOME),  # after as-of
    ]

    # when
    returns = investor_returns(cash_flows=flows, current_value=Decimal(700), as_of=date(2024, 1, 1))

    # then
    assert returns.contributed == Decimal(1000)
    assert returns.distributed_income == Decimal(60)
    assert returns.distributed_return_of_capital == Decimal(400)
    assert returns.distributed == Decimal(460)
    assert returns.equity_multiple == Decimal("1.16")  # (60 + 400 + 700) / 1000
    assert returns.irr is not None
    expected = xirr(
        [
            (date(2021, 1, 1), Decimal(-1000)),
            (date(2022, 1, 1), Decimal(60)),
            (date(2023, 1, 1), Decimal(400)),
            (date(2024, 1, 1), Decimal(700)),
        ]
    )
    assert returns.irr == expected
    assert Decimal("0.0601") < returns.irr < Decimal("0.0602")


def test_investor_returns_before_any_distribution_has_no_irr():
    flows = [InvestorCashFlow(date(2021, 1, 1), Decimal(1000), FlowKind.CONTRIBUTION)]

    returns = investor_returns(cash_flows=flows, current_value=Decimal(0), as_of=date(2021, 6, 1))

    assert returns.irr is None
    assert returns.equity_multiple == 0


conventional_flows = st.lists(
    st.tuples(
        st.integers(min_value=1, max_value=3000),  # days after the first contribution
        st.integers(min_value=1, max_value=10**9),  # cents
    ),
    min_size=1,
    max_size=5,
).map(
    lambda inflows: [
        (date(2020, 1, 1), Decimal(-sum(c for _, c in inflows)) / 100 * Decimal("0.8")),
        *((date(2020, 1, 1) + timedelta(days=d), Decimal(c) / 100) for d, c in inflows),
    ]
)


@settings(deadline=None, max_examples=60)
@given(flows=conventional_flows, hurdle_basis_points=st.integers(min_value=0, max_value=5000))
def test_exact_hurdle_test_agrees_with_xirr(flows, hurdle_basis_points):
    hurdle = Decimal(hurdle_basis_points) / 10_000
    rate = xirr(flows)
    assume(abs(rate - hurdle) > Decimal("1e-6"))  # pyxirr's float is only that precise

    assert irr_reaches(flows, rate=hurdle) == (rate >= hurdle)


@settings(deadline=None, max_examples=60)
@given(
    flows=conventional_flows,
    hurdle_basis_points=st.integers(min_value=0, max_value=5000),
    days_later=st.integers(min_value=0, max_value=1000),
)
def test_paying_the_shortfall_reaches_the_hurdle(flows, hurdle_basis_points, days_later):
    hurdle = Decimal(hurdle_basis_points) / 10_000
    on = max(d for d, _ in flows) + timedelta(days=days_later)

    shortfall = irr_shortfall(flows, rate=hurdle, on=on)

    assert shortfall >= 0
    topped_up = [*flows, (on, shortfall)]
    # Exact up to the 60 significant digits of a fractional power (1.1 ** (200/365)).
    value = value_as_of(topped_up, rate=hurdle, on=on)
    assert value >= Decimal("-1e-40")
    if shortfall > 0:
        assert abs(value) < Decimal("1e-40")
