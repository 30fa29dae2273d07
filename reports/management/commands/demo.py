"""`manage.py demo`: seed a small, realistic platform, run an investor journey through closing,
and print what an operator would check.

Everything goes through the same services as the API, so history rows, validation, compliance
and the ledger run for real; nothing here writes a model directly.

- The seed: two members of staff, a sponsor with a live Reg CF offering (Maple Court, open for
  60 days) and four KYC-approved investors.
- The journey, on a second, small Reg A+ Tier 2 offering (Birch Street, 100 units): a Reg CF
  offering cannot close before its deadline (only by an early close with 5 business days'
  notice), a Reg A+ one may close as soon as its target is met. Three investors subscribe (the
  third is waitlisted), sign and fund by simulated bank transfer (the bank's notifications go
  through the signed webhook); one transfer bounces and is paid again; one investor cancels,
  which promotes the waitlist; then one member of staff prepares the close and another
  approves it (four eyes). The close itself runs from the outbox after the commit.

Idempotent: each piece is keyed on what it creates (each person's email, the sponsor's email,
the journey offering's slug) and only what is missing is created, in one transaction, so a
failure half-way leaves nothing behind. The close runs after that commit, each subscription in
its own transaction; a close left unfinished (a crash) is finished by the next run. A run that
finds everything prints "already present" and the same summary.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal
from typing import Any

from django.core.management.base import BaseCommand, CommandError
from django.db import transaction
from django.db.models import Q, Sum
from django.utils import timezone

from captable import ledger
from captable.closing import (
    close_request_approve,
    close_request_prepare,
    offering_close,
    platform_fee_minor,
)
from captable.closing_selectors import offering_closing_of, offering_stats
from captable.demo_distributions import demo_distributions
from captable.models import (
    Account,
    AccountKind,
    Payment,
    PaymentEventType,
    PaymentStatus,
    Subscription,
    SubscriptionStatus,
    SubscriptionStatusChange,
)
from captable.payments import payment_simulate, subscription_fund
from captable.selectors import captable_as_of
from captable.subscription_selectors import subscription_agreement_document, waitlist_position
from captable.subscriptions import subscription_cancel, subscription_create, subscription_sign
from captable.verification import ledger_verify
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
from reports.demo_statements import demo_statements_dir, demo_statements_write

DEMO_PASSWORD = "demo-password-2026"
STAFF_EMAIL = "staff@demo.brickbook.example"
APPROVER_EMAIL = "approver@demo.brickbook.example"  # the second pair of eyes on a close
SPONSOR_EMAIL = "sponsor@demo.brickbook.example"
OFFERING_SLUG_PREFIX = "maple-court"
JOURNEY_SLUG_PREFIX = "birch-street"


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


ALICE = DemoInvestor(
    "alice@demo.brickbook.example",
    "Alice Accredited",
    "US",
    "CA",
    "USD",
    (310_000_00, 325_000_00, 340_000_00),
    2_400_000_00,
    "accredited (income and net worth), verified for 506(c)",
)
BEN = DemoInvestor(
    "ben@demo.brickbook.example",
    "Ben Lowincome",
    "US",
    "TX",
    "USD",
    (36_000_00, 38_000_00, 40_000_00),
    22_000_00,
    "non-accredited, low income",
)
DANA = DemoInvestor(
    "dana@demo.brickbook.example",
    "Dana Rivera",
    "US",
    "NY",
    "USD",
    (82_000_00, 86_000_00, 90_000_00),
    140_000_00,
    "non-accredited, moderate income",
)
EVA = DemoInvestor(
    "eva@demo.brickbook.example",
    "Eva Beispiel",
    "DE",
    "",
    "EUR",
    (48_000_00, 52_000_00, 55_000_00),
    60_000_00,
    "EU non-sophisticated, knowledge test passed",
)
DEMO_INVESTORS = (ALICE, BEN, DANA, EVA)

# The journey: who subscribes for how many units of the 100 on offer (Ben's 40 units are his
# whole Reg A+ Tier 2 allowance, 10% of his $40,000 income; Dana's 30 find the offering sold
# out and wait).
JOURNEY_UNITS = ((ALICE, 60), (BEN, 40), (DANA, 30))

# What the simulated bank says about each payment once the journey is over.
PAYMENT_NOTES: dict[str, str] = {
    PaymentStatus.PENDING: "pending: no money yet",
    PaymentStatus.CONFIRMED: "confirmed",
    PaymentStatus.RETURNED: "returned: the transfer bounced, funding reversed",
    PaymentStatus.FAILED: "failed: no money arrived",
    PaymentStatus.REFUNDED: "refunded: sent back to the payer",
}


def _money(amount_minor: int, currency: str) -> str:
    return money_display(amount_minor, currency)


def _units(offering: Offering, quanta: int) -> str:
    return f"{quanta_to_units(quanta, quanta_per_unit=offering.quanta_per_unit):,}"


def _first_name(investor: Investor) -> str:
    return investor.legal_name.split()[0]


def _balance_minor(spec: ledger.AccountSpec) -> int:
    """An account's balance, read without creating it (a re-run creates nothing)."""
    balance = Account.objects.filter(key=spec.key).values_list("balance", flat=True).first()
    return int(balance or 0)


class Command(BaseCommand):
    help = (
        "Seed demo data and run an investor journey through closing, through the services "
        "(idempotent), then print a summary."
    )

    def handle(self, *args: Any, **options: Any) -> None:
        self.step_number = 0
        with transaction.atomic():
            created = self._seed()
            journey = self._journey_offering()
            if journey is None:
                self._run_journey(self._user(STAFF_EMAIL), self._user(APPROVER_EMAIL))
                created = True
        # The close approved in the journey runs from the outbox once the seed has committed
        # (in this process when no broker is configured); a close left unfinished (a crash,
        # a broker's worker still busy) is finished here, where it stopped.
        self._close_finish(journey_ran=journey is None)
        demo_distributions(
            offering=self._journey_offering(),
            sponsor=self._user(SPONSOR_EMAIL),
            staff=self._user(STAFF_EMAIL),
            approver=self._user(APPROVER_EMAIL),
            write=self.stdout.write,
        )
        self.stdout.write(
            "\nDemo data seeded." if created else "Demo data already present; showing it."
        )
        self._print_summary()
        self._write_statements()

    # --- seeding ------------------------------------------------------------------------

    def _seed(self) -> bool:
        """Create whatever is missing (a database seeded by an older demo gets the rest);
        True when anything was."""
        created: list[str] = []
        for email in (STAFF_EMAIL, APPROVER_EMAIL):
            if not User.objects.filter(email=email).exists():
                User.objects.create_user(
                    username=email,
                    email=email,
                    password=DEMO_PASSWORD,
                    is_staff=True,
                    is_superuser=email == STAFF_EMAIL,
                )
                created.append(f"staff member {email}")
        staff = self._user(STAFF_EMAIL)
        if not User.objects.filter(email=SPONSOR_EMAIL).exists():
            offering = self._seed_offering(staff)
            offering_go_live(actor=staff, offering_id=offering.pk, reason="Demo launch.")
            created.append(f"sponsor {SPONSOR_EMAIL}: {offering.title} (Reg CF), live")
        for person in DEMO_INVESTORS:
            if not Investor.objects.filter(user__email=person.email).exists():
                self._seed_investor(person, staff)
                created.append(f"investor {person.legal_name} <{person.email}>, KYC approved")
        if created:
            self.stdout.write("Seeding through the services:")
            self.stdout.write("\n".join(f"  + {line}" for line in created))
        return bool(created)

    def _user(self, email: str) -> User:
        return User.objects.get(email=email)

    def _journey_offering(self) -> Offering | None:
        return Offering.objects.filter(slug__startswith=JOURNEY_SLUG_PREFIX).first()

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
        if person == ALICE:
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

    # --- the journey --------------------------------------------------------------------

    def _seed_journey_offering(self, staff: User) -> Offering:
        """A small Reg A+ Tier 2 offering of the demo sponsor, through the same lifecycle."""
        sponsor_user = self._user(SPONSOR_EMAIL)
        issuer = issuer_create(
            actor=sponsor_user,
            legal_name="Birch Street SPV LLC",
            jurisdiction_country="US",
            jurisdiction_region="DE",
            entity_type="llc",
        )
        duplex = property_create(
            actor=sponsor_user,
            details=PropertyDetails(
                name="Birch Street Duplex",
                address_line1="48 Birch Street",
                city="Columbus",
                region="OH",
                postal_code="43215",
                country="US",
                property_type="multifamily",
                description="Two-unit rental; the raise pays for a new roof and solar panels.",
                year_built=1924,
                square_feet=2_600,
                unit_count=2,
                purchase_price_minor=410_000_00,
                purchase_price_currency="USD",
            ),
        )
        now = timezone.now()
        offering = offering_create(
            actor=sponsor_user,
            draft=OfferingDraft(
                title="Birch Street Duplex — roof and solar fund",
                summary="A small Reg A+ Tier 2 raise that closes as soon as its target is met.",
                property_id=duplex.pk,
                issuer_id=issuer.pk,
                security_type="equity",
                currency="USD",
                price_per_unit_minor=100_00,
                quanta_per_unit=1,
                units_authorized=Decimal(100),
                min_investment_units=Decimal(10),
                max_investment_units=Decimal(60),
                target_raise_minor=5_000_00,
                max_raise_minor=10_000_00,
                funding_model="all_or_nothing",
                exemption="reg_a_tier2",
                time_zone="America/New_York",
                opens_at=now,
                closes_at=now + timedelta(days=30),
            ),
        )
        offering_submit(actor=sponsor_user, offering_id=offering.pk)
        offering_approve(
            actor=staff,
            offering_id=offering.pk,
            reason="Form 1-A qualified.",
            platform_fee_basis_points=250,
        )
        return offering_go_live(actor=staff, offering_id=offering.pk, reason="Demo launch.")

    def _run_journey(self, staff: User, approver: User) -> None:
        offering = self._seed_journey_offering(staff)
        self._journey_heading(offering)
        alice, ben, dana = [
            self._subscribe(offering, person, units) for person, units in JOURNEY_UNITS
        ]
        self._sign(alice)
        first_transfer = self._pay(alice)
        self._sign(ben)
        self._pay(ben)
        self._bounce(alice, first_transfer)
        self._cancel(ben, waiting=dana)
        self._sign(dana)
        self._pay(dana)
        self._pay(alice, again=True)
        self._close_approve(offering, staff, approver)

    def _journey_heading(self, offering: Offering) -> None:
        def units(quanta: int) -> str:
            return _units(offering, quanta)

        self.stdout.write(
            f"\nThe investor journey on offering #{offering.pk}, {offering.title}\n"
            f"  {offering.get_exemption_display()}, all or nothing: "
            f"{units(offering.units_authorized_quanta)} units at "
            f"{_money(offering.price_per_unit_minor, offering.currency)}, "
            f"{units(offering.min_investment_quanta)} to {units(offering.max_investment_quanta)} "
            f"per investor, target {_money(offering.target_raise_minor, offering.currency)}\n"
            "  It may close as soon as its target is met (a Reg CF offering waits for its "
            "deadline).\n"
        )

    def _step(self, text: str, *details: str) -> None:
        self.step_number += 1
        self.stdout.write(f"{self.step_number:>4}. {text}")
        for detail in details:
            self.stdout.write(f"      {detail}")

    def _subscribe(self, offering: Offering, person: DemoInvestor, units: int) -> Subscription:
        subscription = subscription_create(
            actor=self._user(person.email),
            offering_id=offering.pk,
            quanta=units * offering.quanta_per_unit,
        )
        offering.refresh_from_db()
        left = offering.units_available_quanta
        total = _units(offering, offering.units_authorized_quanta)
        supply = f"{_units(offering, left)} of {total} units left" if left else "sold out"
        position = waitlist_position(subscription)
        outcome = f"waitlisted #{position}" if position else str(subscription.status)
        self._step(
            f"{_first_name(subscription.investor)} subscribes {units} units "
            f"({_money(subscription.amount_minor, subscription.currency)}) → {outcome} ({supply})",
            f"compliance: {subscription.compliance_reason} [{subscription.rule_version}]",
        )
        return subscription

    def _sign(self, subscription: Subscription) -> None:
        investor = subscription.investor
        shown = subscription_agreement_document(subscription)  # the text the investor reads
        subscription_sign(
            actor=investor.user,
            subscription_id=subscription.pk,
            typed_name=investor.legal_name,
            ip_address="127.0.0.1",
            agreement_sha256=shown.sha256,
        )
        subscription.refresh_from_db()
        self._step(
            f"{_first_name(investor)} signs the agreement (types {investor.legal_name!r}; "
            f"document sha256 {shown.sha256[:12]}…) → {subscription.status}"
        )

    def _pay(self, subscription: Subscription, *, again: bool = False) -> Payment:
        """Fund: a payment with the bank's reference, then the simulated bank's confirmation
        through the signed webhook."""
        investor = subscription.investor
        payment, _ = subscription_fund(actor=investor.user, subscription_id=subscription.pk)
        payment_simulate(payment=payment, event_type=PaymentEventType.CONFIRMED)
        subscription.refresh_from_db()
        self._step(
            f"{_first_name(investor)} wires "
            f"{_money(payment.amount_expected_minor, payment.currency)}{' again' if again else ''}"
            f" quoting {payment.provider_reference}; the bank's signed webhook confirms it "
            f"→ {subscription.status} (money in escrow)"
        )
        return payment

    def _bounce(self, subscription: Subscription, payment: Payment) -> None:
        payment_simulate(payment=payment, event_type=PaymentEventType.RETURNED)
        subscription.refresh_from_db()
        self._step(
            f"{_first_name(subscription.investor)}'s transfer {payment.provider_reference} "
            f"bounced (the bank returned it) → funding reversed, {subscription.status} again"
        )

    def _cancel(self, subscription: Subscription, *, waiting: Subscription) -> None:
        investor = subscription.investor
        subscription_cancel(
            actor=investor.user, subscription_id=subscription.pk, reason="Changed plans (demo)."
        )
        refunded = Payment.objects.filter(
            subscription=subscription, status=PaymentStatus.REFUNDED
        ).aggregate(total=Sum("amount_refunded_minor"))["total"]
        waiting.refresh_from_db()
        self._step(
            f"{_first_name(investor)} cancels → "
            f"{_money(int(refunded or 0), subscription.currency)} refunded from escrow, "
            f"units released; {_first_name(waiting.investor)} promoted from the waitlist "
            f"→ {waiting.status}"
        )

    def _close_approve(self, offering: Offering, staff: User, approver: User) -> None:
        """Four eyes: one member of staff prepares the close, another approves it."""
        offering.refresh_from_db()
        stats = offering_stats(offering=offering)
        raised = _money(stats.amount_raised_minor, offering.currency)
        target = _money(offering.target_raise_minor, offering.currency)
        request = close_request_prepare(
            actor=staff, offering_id=offering.pk, reason=f"Target met: {raised} of {target}."
        )
        self._step(
            f"{staff.email} prepares the close ({raised} funded, target {target}) → "
            f"close request #{request.pk} {request.status}"
        )
        close_request_approve(
            actor=approver, close_request_id=request.pk, reason="Escrow and subscriptions checked."
        )
        offering.refresh_from_db()
        self._step(
            f"{approver.email}, a second member of staff, approves → offering "
            f"{offering.status}; the close runs once this is committed"
        )

    def _close_finish(self, *, journey_ran: bool) -> None:
        offering = self._journey_offering()
        assert offering is not None, "seeded in the same run, or before"
        how = "ran from the outbox after the commit"
        if offering.status == OfferingStatus.CLOSING:
            closing = offering_close(offering=offering, actor=None)  # resumes where it stopped
            if closing is None or closing.completed_at is None:
                raise CommandError(
                    f"Offering {offering.pk} has not finished closing; run the demo again."
                )
            offering.refresh_from_db()
            how = "was finished here"
        elif not journey_ran:
            return
        self._step(
            f"The close {how} → {offering.status}: "
            f"{_units(offering, offering.units_issued_quanta)} units issued, escrow paid out to "
            "the issuer's proceeds and the platform's fees"
        )

    # --- summary ------------------------------------------------------------------------

    def _print_summary(self) -> None:
        write = self.stdout.write
        offerings = (
            Offering.objects.filter(
                Q(slug__startswith=OFFERING_SLUG_PREFIX) | Q(slug__startswith=JOURNEY_SLUG_PREFIX)
            )
            .select_related("issuer", "property", "sponsor")
            .order_by("pk")
        )
        for offering in offerings:
            write("")
            self._print_offering(offering)
        journey = self._journey_offering()
        if journey is not None:
            self._print_subscriptions(journey)
            self._print_captable(journey)
            self._print_closing(journey)
        write("\nLedger check (every hash chain and invariant)")
        write("  " + ledger_verify().summary().replace("\n", "\n  "))
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

    def _write_statements(self) -> None:
        """The PDFs the demo's data supports (see `reports/demo_statements.py`), after every
        commit: rendering never holds a transaction open."""
        written = demo_statements_write()
        write = self.stdout.write
        write(f"\nStatements (PDF), generated once and copied to {demo_statements_dir()}:")
        for item in written:
            statement = item.statement
            write(
                f"  {statement.get_kind_display()} #{statement.pk} ({statement.period}, "
                f"{statement.page_count} page{'s' if statement.page_count != 1 else ''}, "
                f"fingerprint {statement.fingerprint[:16]}…)\n    {item.path}"
            )
        if not written:
            write("  none yet (no accepted subscription or paid distribution)")
        write(
            "  Periodic statements and cap-table reports cover periods that are over: "
            "manage.py generate_statements --period <quarter> once it has ended."
        )

    def _print_subscriptions(self, offering: Offering) -> None:
        write = self.stdout.write
        write(f"\nSubscriptions to {offering.title}, with every status they went through")
        subscriptions = (
            Subscription.objects.filter(offering=offering).select_related("investor").order_by("pk")
        )
        for subscription in subscriptions:
            path = SubscriptionStatusChange.objects.filter(subscription=subscription).order_by("pk")
            write(
                f"  #{subscription.pk:<3} {subscription.investor.legal_name:<17} "
                f"{_units(offering, subscription.quanta):>3} units "
                f"{_money(subscription.amount_minor, subscription.currency):>10}  "
                + " → ".join(path.values_list("to_status", flat=True))
            )
        write("Payments (simulated bank transfers)")
        payments = (
            Payment.objects.filter(subscription__offering=offering)
            .select_related("subscription__investor")
            .order_by("pk")
        )
        for payment in payments:
            write(
                f"  {payment.provider_reference:<15} {payment.subscription.investor.legal_name:<17}"
                f" {_money(payment.amount_expected_minor, payment.currency):>10}  "
                f"{PAYMENT_NOTES.get(payment.status, payment.status)}"
            )

    def _print_captable(self, offering: Offering) -> None:
        write = self.stdout.write
        table = captable_as_of(offering=offering)
        names = dict(
            Investor.objects.filter(pk__in=[row.investor_id for row in table.rows]).values_list(
                "pk", "legal_name"
            )
        )
        write(f"\nCap table of {offering.title}")
        write(f"  {'holder':<17} {'units':>7} {'%':>9} {'cost':>10}")
        for row in table.rows:
            write(
                f"  {names[row.investor_id]:<17} {_units(offering, row.quanta):>7} "
                f"{row.percent:>8}% {_money(row.cost_minor, offering.currency):>10}"
            )
        cost = sum(row.cost_minor for row in table.rows)
        write(
            f"  {'total':<17} {_units(offering, table.issued_quanta):>7} {'':>9} "
            f"{_money(cost, offering.currency):>10}"
        )
        write(
            f"  {_units(offering, table.issued_quanta)} of "
            f"{_units(offering, table.authorized_quanta)} authorized units issued, "
            f"{_units(offering, table.treasury_quanta)} left in the issuer's treasury"
        )

    def _print_closing(self, offering: Offering) -> None:
        closing = offering_closing_of(offering_id=offering.pk)
        if closing is None or closing.completed_at is None:
            return
        currency = offering.currency
        stats = offering_stats(offering=offering)
        accepted = Subscription.objects.filter(
            offering=offering, status=SubscriptionStatus.ACCEPTED
        )
        fee = sum(platform_fee_minor(offering, s.amount_minor) + s.fee_minor for s in accepted)
        proceeds = _balance_minor(
            ledger.issuer_spec(offering.issuer, AccountKind.PROCEEDS, currency)
        )
        escrow = Account.objects.filter(offering=offering, kind=AccountKind.ESCROW).aggregate(
            total=Sum("balance")
        )["total"]
        percent = f"{stats.percent_of_target:.0f}%" if stats.percent_of_target is not None else "-"
        lines = [f"\nClosing of {offering.title}"]
        request = closing.close_request
        if request is not None and request.decided_by is not None:
            lines.append(
                f"  four eyes        request #{request.pk} prepared by "
                f"{request.requested_by.email}, approved by {request.decided_by.email}"
            )
        lines += [
            f"  outcome          {offering.status}, completed "
            f"{closing.completed_at:%Y-%m-%d %H:%M} UTC",
            f"  raised           {_money(stats.amount_raised_minor, currency)} from "
            f"{stats.investor_count} investors ({percent} of the "
            f"{_money(offering.target_raise_minor, currency)} target)",
            f"  platform fee     {_money(fee, currency)} "
            f"({offering.platform_fee_basis_points} basis points"
            + (": this offering charges none)" if not offering.platform_fee_basis_points else ")")
            + " → platform fees",
            f"  issuer proceeds  {_money(proceeds, currency)} → {offering.issuer.legal_name}",
            f"  left in escrow   {_money(int(escrow or 0), currency)}",
        ]
        self.stdout.write("\n".join(lines))

    def _print_offering(self, offering: Offering) -> None:
        per_unit = offering.quanta_per_unit
        available = offering.units_available_quanta

        def units(quanta: int) -> str:
            return _units(offering, quanta)

        def money(amount_minor: int) -> str:
            return _money(amount_minor, offering.currency)

        available_cost = cost_of_quanta_minor(
            available, price_per_unit_minor=offering.price_per_unit_minor, quanta_per_unit=per_unit
        )
        is_live = offering.status == OfferingStatus.LIVE
        supply = (
            f"  units available  {units(available)} of {units(offering.units_authorized_quanta)} "
            f"(worth {money(available_cost)})"
            if is_live
            else f"  units issued     {units(offering.units_issued_quanta)} of "
            f"{units(offering.units_authorized_quanta)}"
        )
        lines = [
            f"Offering #{offering.pk}: {offering.title}",
            f"  status           {offering.status}" + (" (accepting subscriptions)" * is_live),
            f"  sponsor / issuer {offering.sponsor.name} / {offering.issuer.legal_name}",
            f"  property         {offering.property.name}, {offering.property.city}, "
            f"{offering.property.region} ({offering.property.property_type})",
            f"  exemption        {offering.get_exemption_display()}, {offering.funding_model}",
            f"  price per unit   {money(offering.price_per_unit_minor)} "
            + (f"(units divisible to 1/{per_unit})" if per_unit > 1 else "(whole units)"),
            supply,
            f"  per investor     {units(offering.min_investment_quanta)} to "
            f"{units(offering.max_investment_quanta)} units",
            f"  raise            target {money(offering.target_raise_minor)}, "
            f"maximum {money(offering.max_raise_minor)}",
            f"  window           {offering.opens_at:%Y-%m-%d %H:%M} to "
            f"{offering.closes_at:%Y-%m-%d %H:%M} UTC ({offering.time_zone})",
        ]
        self.stdout.write("\n".join(lines))
