"""Property tests of the allocation as distributions use it (`payout_amounts`, which splits
with `common.money.allocate`): for any positive amount and any holdings the payouts sum exactly
to the amount, each is within one cent of its exact share, the result is the same on every run,
and paying more never lowers a payout by more than one cent. Pure arithmetic (no database), so
the result cannot depend on the database: marked `embedded`, it runs in both `make test` runs.
"""

from __future__ import annotations

from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from captable.distributions import payout_amounts, withholding_rate_basis_points
from common.money import basis_points_of

pytestmark = pytest.mark.embedded

amounts = st.integers(min_value=1, max_value=10**12)
holdings_lists = st.lists(st.integers(min_value=1, max_value=10**9), min_size=1, max_size=60).map(
    lambda quanta: [(investor_id, q) for investor_id, q in enumerate(quanta, start=1)]
)


def _exact_share(amount_minor: int, quanta: int, total_quanta: int) -> Fraction:
    return Fraction(amount_minor * quanta, total_quanta)


@given(amount_minor=amounts, holdings=holdings_lists, data=st.data())
def test_payouts_sum_exactly_and_each_is_within_a_cent(
    amount_minor: int, holdings: list[tuple[int, int]], data: st.DataObject
) -> None:
    # given: an income part anywhere from nothing to everything
    income_minor = data.draw(st.integers(min_value=0, max_value=amount_minor))
    # when
    payouts = payout_amounts(
        amount_minor=amount_minor, income_minor=income_minor, holdings=holdings
    )
    # then
    total_quanta = sum(quanta for _, quanta in holdings)
    assert sum(p.gross_minor for p in payouts) == amount_minor
    assert sum(p.income_minor for p in payouts) == income_minor
    assert sum(p.return_of_capital_minor for p in payouts) == amount_minor - income_minor
    for payout, (investor_id, quanta) in zip(payouts, holdings, strict=True):
        assert (payout.investor_id, payout.quanta) == (investor_id, quanta)
        assert abs(payout.gross_minor - _exact_share(amount_minor, quanta, total_quanta)) < 1
        assert payout.gross_minor == payout.income_minor + payout.return_of_capital_minor
        assert payout.income_minor >= 0
        assert payout.return_of_capital_minor >= 0


@given(amount_minor=amounts, holdings=holdings_lists)
def test_payouts_are_deterministic(amount_minor: int, holdings: list[tuple[int, int]]) -> None:
    first = payout_amounts(amount_minor=amount_minor, income_minor=amount_minor, holdings=holdings)
    again = payout_amounts(
        amount_minor=amount_minor, income_minor=amount_minor, holdings=list(holdings)
    )
    assert first == again


@given(amount_minor=amounts, extra_minor=st.integers(1, 10**6), holdings=holdings_lists)
def test_paying_more_never_lowers_a_payout_by_more_than_a_cent(
    amount_minor: int, extra_minor: int, holdings: list[tuple[int, int]]
) -> None:
    smaller = payout_amounts(amount_minor=amount_minor, income_minor=0, holdings=holdings)
    larger = payout_amounts(
        amount_minor=amount_minor + extra_minor, income_minor=0, holdings=holdings
    )
    for before, after in zip(smaller, larger, strict=True):
        assert after.gross_minor >= before.gross_minor - 1


def test_largest_remainder_is_not_monotone_but_loses_at_most_a_cent() -> None:
    """The known counterexample shape: three equal holders of 3 units out of 7. 10 cents →
    exact 4.2857, 4.2857, 1.4286 → 4, 4, 2 (the small holder takes the leftover cent); 11 cents
    → 4.714, 4.714, 1.571 → 5, 5, 1: paying more lowered the third payout by one cent."""
    holdings = [(1, 3), (2, 3), (3, 1)]
    ten = [
        p.gross_minor for p in payout_amounts(amount_minor=10, income_minor=0, holdings=holdings)
    ]
    eleven = [
        p.gross_minor for p in payout_amounts(amount_minor=11, income_minor=0, holdings=holdings)
    ]
    assert ten == [4, 4, 2]
    assert eleven == [5, 5, 1]


def test_ties_go_to_the_earlier_holder() -> None:
    # 100 cents over three equal holders: 33.33 each, the leftover cent to investor 1.
    payouts = payout_amounts(amount_minor=100, income_minor=100, holdings=[(1, 1), (2, 1), (3, 1)])
    assert [p.gross_minor for p in payouts] == [34, 33, 33]


@pytest.mark.parametrize(
    ("tax_form", "treaty", "rate"),
    [("w9", None, 0), ("none", None, 2_400), ("w8ben", None, 3_000), ("w8ben", 1_500, 1_500)],
)
def test_withholding_rate_follows_the_tax_form(
    tax_form: str, treaty: int | None, rate: int
) -> None:
    assert withholding_rate_basis_points(tax_form=tax_form, treaty_rate_basis_points=treaty) == rate
    # $123.45 of income withheld at that rate, rounded once (half to even)
    assert basis_points_of(12_345, rate) == {0: 0, 2_400: 2_963, 3_000: 3_704, 1_500: 1_852}[rate]
