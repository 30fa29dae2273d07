"""`manage.py demo`: seed a small, realistic platform and print what an operator would check.

Everything goes through the same services as the API (so history rows, validation and
compliance run for real). The seed is one transaction and keyed on the demo sponsor's email:
a second run finds it and only prints the summary, so the command can be run again and again.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal
from typing import Any

from django.core.management.base import BaseCommand
from django.db import transaction
from django.utils import timezone

from common.models import User
from common.money import money_display
from investors import knowledge_test
from investors.models import Investor
from investors.selectors import investor_limits_summary
from investors.services import (
    MoneyFigure,
    investor_accreditation_verify,
    investor_kyc_decide,
    investor_register,
    investor_update_profile,
    knowledge_test_submit,
)
from offerings.models import Offering, OfferingStatus
from offerings.quantities import cost_of_quanta_minor, quanta_to_units
from offerings.services import (
    OfferingDraft,
    PropertyDetails,
    issuer_create,
    offering_approve,
    offering_create,
    offering_go_live,
    offering_submit,
    property_create,
    sponsor_apply,
    sponsor_approve,
)

DEMO_PASSWORD = "demo-password-2026"
STAFF_EMAIL = "staff@demo.brickbook.test"
SPONSOR_EMAIL = "sponsor@demo.brickbook.test"
OFFERING_SLUG_PREFIX = "maple-court"


@dataclass(frozen=True)
class DemoInvestor:
    email: str
    legal_name: str
    country: str
    us_state: str
    currency: str
    income_minor: tuple[int, int, int]  # two years ago, last year, expected this year
    net_worth_minor: int
    profile: str


DEMO_INVESTORS = (
    DemoInvestor(
        "alice@demo.brickbook.test",
        "Alice Accredited",
        "US",
        "CA",
        "USD",
        (310_000_00, 325_000_00, 340_000_00),
        2_400_000_00,
        "accredited (income and net worth), verified for 506(c)",
    ),
    DemoInvestor(
        "ben@demo.brickbook.test",
        "Ben Lowincome",
        "US",
        "TX",
        "USD",
        (36_000_00, 38_000_00, 40_000_00),
        22_000_00,
        "non-accredited, low income",
    ),
    DemoInvestor(
        "eva@demo.brickbook.test",
        "Eva Beispiel",
        "DE",
        "",
        "EUR",
        (48_000_00, 52_000_00, 55_000_00),
        60_000_00,
        "EU non-sophisticated, knowledge test passed",
    ),
)


class Command(BaseCommand):
    help = "Seed demo data through the services (idempotent) and print a summary."

    def handle(self, *args: Any, **options: Any) -> None:
        if User.objects.filter(email=SPONSOR_EMAIL).exists():
            self.stdout.write("Demo data already present; showing it.\n")
        else:
            with transaction.atomic():
                self._seed()
            self.stdout.write("Demo data seeded.\n")
        self._print_summary()

    # --- seeding ------------------------------------------------------------------------

    def _seed(self) -> None:
        staff = User.objects.create_user(
            username=STAFF_EMAIL,
            email=STAFF_EMAIL,
            password=DEMO_PASSWORD,
            is_staff=True,
            is_superuser=True,
        )
        offering = self._seed_offering(staff)
        offering_go_live(actor=staff, offering_id=offering.pk, reason="Demo launch.")
        for person in DEMO_INVESTORS:
            self._seed_investor(person, staff)

    def _seed_offering(self, staff: User) -> Offering:
        sponsor_user = User.objects.create_user(
            username=SPONSOR_EMAIL, email=SPONSOR_EMAIL, password=DEMO_PASSWORD
        )
        sponsor = sponsor_apply(
            actor=sponsor_user,
            name="Lakeside Capital Partners",
            description="Value-add multifamily sponsor in Texas since 2011.",
            website="https://lakeside.example.com",
        )
        sponsor_approve(actor=staff, sponsor_id=sponsor.pk, reason="Track record verified.")
        issuer = issuer_create(
            actor=sponsor_user,
            legal_name="Maple Court SPV LLC",
            jurisdiction_country="US",
            jurisdiction_region="DE",
            entity_type="llc",
        )
        home = property_create(
            actor=sponsor_user,
            details=PropertyDetails(
                name="Maple Court Apartments",
                address_line1="1200 Maple Court",
                city="Austin",
                region="TX",
                postal_code="78704",
                country="US",
                property_type="multifamily",
                description="96-unit garden-style community, light value-add renovation.",
                year_built=1998,
                square_feet=84_000,
                unit_count=96,
                purchase_price_minor=14_500_000_00,
                purchase_price_currency="USD",
                projected_irr_bps=1_450,
                projected_cash_yield_bps=620,
            ),
        )
        now = timezone.now()
        offering = offering_create(
            actor=sponsor_user,
            draft=OfferingDraft(
                title="Maple Court Apartments — Class A units",
                summary="Reg CF raise for the renovation of a 96-unit community in Austin, TX.",
                property_id=home.pk,
                issuer_id=issuer.pk,
                security_type="equity",
                currency="USD",
                price_per_unit_minor=100_00,
                quanta_per_unit=1_000,
                units_authorized=Decimal(40_000),
                min_investment_units=Decimal(5),
                max_investment_units=Decimal(1_000),
                target_raise_minor=1_000_000_00,
                max_raise_minor=4_000_000_00,
                funding_model="all_or_nothing",
                exemption="reg_cf",
                time_zone="America/Chicago",
                opens_at=now,
                closes_at=now + timedelta(days=60),
            ),
        )
        offering_submit(actor=sponsor_user, offering_id=offering.pk)
        return offering_approve(actor=staff, offering_id=offering.pk, reason="Form C reviewed.")

    def _seed_investor(self, person: DemoInvestor, staff: User) -> None:
        investor = investor_register(
            email=person.email,
            password=DEMO_PASSWORD,
            legal_name=person.legal_name,
            country=person.country,
            us_state=person.us_state,
        )
        two_years_ago, last_year, this_year = person.income_minor
        investor = investor_update_profile(
            investor=investor,
            changes={
                "financials_currency": person.currency,
                "income_year_minus_2": MoneyFigure(two_years_ago, person.currency),
                "income_year_minus_1": MoneyFigure(last_year, person.currency),
                "income_current_year_expected": MoneyFigure(this_year, person.currency),
                "net_worth": MoneyFigure(person.net_worth_minor, person.currency),
            },
        )
        investor_kyc_decide(
            investor_id=investor.pk,
            decided_by=staff,
            decision="approved",
            reason="Identity documents checked (demo).",
        )
        if person.email.startswith("alice"):
            investor_accreditation_verify(
                investor_id=investor.pk,
                approved_by=staff,
                method="income",
                document_reference="IRS transcripts 2024-2025 (demo)",
                verifier="Brickbook compliance desk",
                verified_at=timezone.now(),
            )
        if person.country == "DE":
            right_answers = {q.id: q.correct_choice for q in knowledge_test.QUESTIONS}
            knowledge_test_submit(investor=investor, answers=right_answers)

    # --- summary ------------------------------------------------------------------------

    def _print_summary(self) -> None:
        write = self.stdout.write
        for offering in Offering.objects.filter(
            slug__startswith=OFFERING_SLUG_PREFIX
        ).select_related("issuer", "property", "sponsor"):
            self._print_offering(offering)
        now = timezone.now()
        write("\nInvestors")
        for person in DEMO_INVESTORS:
            investor = Investor.objects.select_related("user").get(user__email=person.email)
            write(
                f"\n{investor.legal_name} <{person.email}> — {person.profile}; "
                f"KYC {investor.kyc_status}, accreditation {investor.accreditation_status}"
            )
            write(investor_limits_summary(investor=investor, on=now).as_text())
        write(
            f"\nSign in: POST /api/v1/auth/token with any email above and password "
            f"{DEMO_PASSWORD!r}; staff {STAFF_EMAIL} can also use /admin/ (make serve)."
        )

    def _print_offering(self, offering: Offering) -> None:
        per_unit = offering.quanta_per_unit
        available = offering.units_available_quanta

        def units(quanta: int) -> str:
            return f"{quanta_to_units(quanta, quanta_per_unit=per_unit):,}"

        def money(amount_minor: int) -> str:
            return money_display(amount_minor, offering.currency)

        available_cost = cost_of_quanta_minor(
            available, price_per_unit_minor=offering.price_per_unit_minor, quanta_per_unit=per_unit
        )
        lines = [
            f"Offering #{offering.pk}: {offering.title}",
            f"  status           {offering.status}"
            + (" (accepting subscriptions)" if offering.status == OfferingStatus.LIVE else ""),
            f"  sponsor / issuer {offering.sponsor.name} / {offering.issuer.legal_name}",
            f"  property         {offering.property.name}, {offering.property.city}, "
            f"{offering.property.region} ({offering.property.property_type})",
            f"  exemption        {offering.get_exemption_display()}, {offering.funding_model}",
            f"  price per unit   {money(offering.price_per_unit_minor)} "
            f"(units divisible to 1/{per_unit})",
            f"  units available  {units(available)} of "
            f"{units(offering.units_authorized_quanta)} "
            f"(worth {money(available_cost)})",
            f"  per investor     {units(offering.min_investment_quanta)} to "
            f"{units(offering.max_investment_quanta)} units",
            f"  raise            target {money(offering.target_raise_minor)}, "
            f"maximum {money(offering.max_raise_minor)}",
            f"  window           {offering.opens_at:%Y-%m-%d %H:%M} to "
            f"{offering.closes_at:%Y-%m-%d %H:%M} UTC ({offering.time_zone})",
        ]
        self.stdout.write("\n".join(lines))
