"""The demo's distribution step: a pro-rata income distribution and a waterfall sale paid
through the services, printed with each investor's tiers and IRR; a second run creates
nothing."""

from __future__ import annotations

import pytest

from captable.demo_distributions import demo_distributions
from captable.models import Distribution, DistributionStatus, Entry
from captable.verification import ledger_verify
from tests.captable.test_distribution_waterfall import offering_held
from tests.captable.test_distributions import staff
from tests.offerings.factories import member_of

pytestmark = [pytest.mark.django_db, pytest.mark.embedded]


def test_two_distributions_paid_printed_and_not_repeated() -> None:
    offering, _ = offering_held([6_000, 3_000], quanta_each=60)
    people = {"sponsor": member_of(offering.sponsor), "staff": staff(), "approver": staff()}
    lines: list[str] = []
    demo_distributions(offering=offering, write=lines.append, **people)
    output = "\n".join(lines)
    distributions = Distribution.objects.filter(offering=offering).order_by("record_date")
    assert [d.method for d in distributions] == ["pro_rata", "waterfall"]
    assert all(d.status == DistributionStatus.PAID for d in distributions)
    assert "preferred return" in output
    assert "promote" in output
    assert "IRR" in output
    assert ledger_verify().ok
    entries = Entry.objects.count()
    again: list[str] = []
    demo_distributions(offering=offering, write=again.append, **people)
    assert Entry.objects.count() == entries
    assert Distribution.objects.filter(offering=offering).count() == 2
    assert again == lines
