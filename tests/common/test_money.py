from decimal import Decimal
from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st
from moneyed import Money

from common.errors import ValidationFailed
from common.money import (
    ALLOCATE_VECTOR_MIN,
    INT64_MAX,
    _allocate_int64,
    _allocate_ints,
    allocate,
    basis_points_of,
    decimal_to_minor_units,
    format_minor_units,
    minor_units_to_money,
    money_display,
    money_to_minor_units,
    round_minor_units,
)

pytestmark = pytest.mark.embedded


def test_money_round_trips_through_minor_units():
    assert money_to_minor_units(Money("1234.56", "USD")) == 123456
    assert minor_units_to_money(123456, "EUR") == Money("1234.56", "EUR")
    assert format_minor_units(100000, "USD") == "1000.00"
    assert format_minor_units(-5, "USD") == "-0.05"


def test_sub_cent_amounts_are_refused_not_rounded():
    with pytest.raises(ValidationFailed, match="more decimal places"):
        decimal_to_minor_units(Decimal("10.005"), "USD")


def test_floats_are_refused():
    with pytest.raises(TypeError):
        decimal_to_minor_units(10.5, "USD")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        round_minor_units(0.5)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (Decimal("0.5"), 0),
        (Decimal("1.5"), 2),
        (Decimal("2.5"), 2),
        (Decimal("-2.5"), -2),
        (Decimal("2.5001"), 3),
        (Fraction(5, 2), 2),
        (Fraction(7, 2), 4),
        (Fraction(-7, 2), -4),
        (Fraction(10, 3), 3),
        (7, 7),
    ],
)
def test_round_minor_units_is_half_to_even(value, expected):
    assert round_minor_units(value) == expected


def test_basis_points_rounds_once():
    # 1.5% of $333.33 = 499.995 cents → 500 cents (half to even on .995 is 500)
    assert basis_points_of(33333, 150) == 500
    assert basis_points_of(100, 1) == 0  # 0.01 cent


def test_allocate_worked_example():
    # $100.00 over three equal holders: 3333, 3333, 3334 would be wrong order; ties go first.
    assert allocate(10000, [1, 1, 1]) == [3334, 3333, 3333]
    assert allocate(10, [0, 5, 5]) == [0, 5, 5]
    assert allocate(0, [0, 0]) == [0, 0]


def test_allocate_rejects_bad_input():
    with pytest.raises(ValueError):
        allocate(-1, [1])
    with pytest.raises(ValueError):
        allocate(5, [0, 0])
    with pytest.raises(ValueError):
        allocate(5, [1, -1])


weights_strategy = st.lists(st.integers(min_value=0, max_value=10**9), min_size=1, max_size=60)


@given(total=st.integers(min_value=0, max_value=10**12), weights=weights_strategy)
def test_allocate_properties(total, weights):
    if sum(weights) == 0:
        weights = [*weights[:-1], 1]
    shares = allocate(total, weights)
    weight_sum = sum(weights)
    # sums exactly
    assert sum(shares) == total
    # each share within one unit of its exact value
    for share, weight in zip(shares, weights, strict=True):
        exact = Fraction(total * weight, weight_sum)
        assert abs(share - exact) < 1
        assert share >= 0
    # deterministic
    assert allocate(total, list(weights)) == shares


@given(total=st.integers(min_value=0, max_value=10**9), weights=weights_strategy)
def test_allocate_is_largest_remainder(total, weights):
    if sum(weights) == 0:
        weights = [*weights[:-1], 1]
    shares = allocate(total, weights)
    weight_sum = sum(weights)
    remainders = [(total * w) % weight_sum for w in weights]
    bumped = [
        i
        for i, (s, w) in enumerate(zip(shares, weights, strict=True))
        if s * weight_sum > total * w
    ]
    not_bumped = [i for i in range(len(weights)) if i not in bumped]
    # every bumped share had a remainder at least as large as any share left at its floor
    if bumped and not_bumped:
        assert min(remainders[i] for i in bumped) >= max(remainders[i] for i in not_bumped)


def test_money_display_is_exact_and_localized():
    assert money_display(400000000, "USD") == "$4,000,000.00"
    assert money_display(300000, "EUR", locale="de_DE") == "3.000,00\xa0€"
    assert money_display(1, "USD") == "$0.01"


# --- allocate in numpy's int64 (many weights): the same result as the plain-int loop ----------


@given(
    weights=st.lists(st.integers(min_value=0, max_value=10**6), min_size=1, max_size=60).filter(
        any
    ),
    total=st.integers(min_value=0, max_value=10**12),
)
def test_allocate_in_int64_equals_the_plain_int_split(weights, total):
    weight_sum = sum(weights)
    assert _allocate_int64(total, weights, weight_sum) == _allocate_ints(total, weights, weight_sum)


@given(
    ties=st.integers(min_value=2, max_value=50),
    total=st.integers(min_value=0, max_value=10**6),
)
def test_allocate_in_int64_breaks_ties_to_the_earlier_weight(ties, total):
    weights = [7] * ties + [3] * ties
    assert _allocate_int64(total, weights, sum(weights)) == _allocate_ints(
        total, weights, sum(weights)
    )


@given(seed=st.integers(min_value=0, max_value=2**32 - 1))
def test_allocate_over_many_weights_equals_the_plain_int_split(seed):
    import random

    draw = random.Random(seed)
    count = ALLOCATE_VECTOR_MIN + draw.randrange(2_000)
    weights = [draw.choice([0, 1, 1, 5, draw.randrange(10**7)]) for _ in range(count)]
    weights[0] = 1
    # near the int64 guard from both sides, and ordinary totals
    largest = max(weights)
    total = draw.choice([draw.randrange(10**12), INT64_MAX // largest, INT64_MAX // largest + 1])
    shares = allocate(total, weights)
    assert shares == _allocate_ints(total, weights, sum(weights))
    assert all(type(share) is int for share in shares)
