"""`manage.py demo` seeds through the services and can be run again and again."""

from io import StringIO

import pytest
from django.core.management import call_command

from common.models import User
from investors.models import Investor
from offerings.models import Offering, OfferingStatus, OfferingStatusChange

pytestmark = [pytest.mark.django_db, pytest.mark.embedded]


def run_demo() -> str:
    out = StringIO()
    call_command("demo", stdout=out)
    return out.getvalue()


def test_demo_seeds_a_live_offering_and_three_investors():
    output = run_demo()
    offering = Offering.objects.get()
    assert offering.status == OfferingStatus.LIVE
    # the lifecycle went through the services: draft → in_review → approved → live
    assert list(
        OfferingStatusChange.objects.filter(offering=offering)
        .order_by("pk")
        .values_list("to_status", flat=True)
    ) == ["draft", "in_review", "approved", "live"]
    assert Investor.objects.filter(kyc_status="approved").count() == 3
    assert "Demo data seeded." in output
    assert "price per unit   $100.00" in output
    assert "units available  40,000.000 of 40,000.000" in output
    # each investor's limits with the rule version
    assert "USD 2500.00    [reg-cf-investor-2021-03-15]" in output  # Ben, low income
    assert "EUR 3000.00    [ecsp-2021-11-10]" in output  # Eva, 5% of EUR 60,000
    assert "Reg CF (12 months)            yes, no limit" in output  # Alice, accredited


def test_demo_runs_again_without_duplicating_anything():
    run_demo()
    counts = (User.objects.count(), Offering.objects.count(), Investor.objects.count())
    output = run_demo()
    assert "already present" in output
    assert (User.objects.count(), Offering.objects.count(), Investor.objects.count()) == counts
    assert "Offering #" in output
