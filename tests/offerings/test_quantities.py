"""Units ↔ quanta is exact for every quantity (property-based)."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from common.errors import ValidationFailed
from offerings.quantities import (
    cost_of_quanta_minor,
    format_units,
    quanta_to_units,
    units_to_quanta,
)

pytestmark = [pytest.mark.embedded]

quanta_per_unit = st.sampled_from([10**k for k in range(7)])


@given(quanta=st.integers(min_value=0, max_value=10**15), per_unit=quanta_per_unit)
def test_units_round_trip_exactly(quanta, per_unit):
    units = quanta_to_units(quanta, quanta_per_unit=per_unit)
    assert units_to_quanta(units, quanta_per_unit=per_unit, field="x") == quanta
    assert (
        units_to_quanta(
            Decimal(format_units(quanta, per_unit)), quanta_per_unit=per_unit, field="x"
        )
        == quanta
    )


@given(
    quanta=st.integers(min_value=0, max_value=10**12),
    per_unit=quanta_per_unit,
    price_per_quantum=st.integers(min_value=1, max_value=10**6),
)
def test_cost_is_exact_when_a_quantum_costs_whole_cents(quanta, per_unit, price_per_quantum):
    price = price_per_quantum * per_unit
    cost = cost_of_quanta_minor(quanta, price_per_unit_minor=price, quanta_per_unit=per_unit)
    assert cost == quanta * price_per_quantum
    assert Decimal(cost) == quanta_to_units(quanta, quanta_per_unit=per_unit) * price


@given(per_unit=quanta_per_unit)
def test_a_fraction_of_a_quantum_is_refused(per_unit):
    finer = Decimal(1).scaleb(-len(str(per_unit)))  # one tenth of a quantum
    with pytest.raises(ValidationFailed):
        units_to_quanta(Decimal(1) + finer, quanta_per_unit=per_unit, field="x")
