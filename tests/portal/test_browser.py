"""The portal in a real browser: headless Chromium (Debian's `chromium`, driven by Playwright
with its executable path — no browser download) against pytest-django's live server on
PostgreSQL, Celery tasks in-process (no broker: the outbox runs them after each commit).

The investor's journey: sign up, questionnaire, approved by staff, the limit refusal, subscribe,
sign, fund, and after the close a position and a distribution on the dashboard and a statement
downloaded; the sponsor creates and submits an offering and declares the distribution. Every
step asserts what is on the page, runs axe-core (no serious or critical violation) and saves a
screenshot under var/portal-screenshots/ (three of them are in docs/).

axe-core is the copy bundled in the `axe-playwright-python` package pinned in uv.lock
(axe-core 4.12.1), injected as a script: nothing is fetched from a CDN."""

from __future__ import annotations

import importlib.util
import os
import re
from collections.abc import Iterator
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import time_machine
from django.utils import timezone
from playwright.sync_api import Browser, Page, expect, sync_playwright

from captable.closing import close_request_approve, close_request_prepare, offering_close
from captable.distributions import (
    distribution_approve,
    distribution_fund,
    distribution_pay,
    distribution_pay_run,
)
from captable.models import Distribution, Payment, PaymentEventType
from captable.payments import payment_simulate
from common.models import User
from investors.models import Investor
from investors.services import investor_kyc_decide
from offerings.models import Offering, OfferingStatus, Property, Sponsor
from offerings.services import PropertyDetails, property_create
from reports.kinds import StatementScope
from reports.periods import period_parse
from reports.services import statement_generate
from tests.conftest import new_user
from tests.offerings.factories import approved_sponsor, member_of
from tests.portal.helpers import open_offering

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.postgres_only]

CHROMIUM = "/usr/bin/chromium"


def _axe_script() -> Path:
    """axe.min.js as shipped in the pinned axe-playwright-python package (not imported: only
    its bundled script is used)."""
    spec = importlib.util.find_spec("axe_playwright_python")
    assert spec is not None, "axe-playwright-python is a dev dependency (uv.lock)"
    assert spec.origin is not None
    return Path(spec.origin).with_name("axe.min.js")


AXE_SCRIPT = _axe_script()
PASSWORD = "plum-orchard-velvet-42"
SPONSOR_PASSWORD = "correct-horse-battery"  # tests.conftest.new_user's


def _screenshot_dir() -> Path:
    folder = Path(os.environ.get("BRICKBOOK_VAR_DIR", Path(__file__).parents[2] / "var"))
    folder = folder / "portal-screenshots"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    # Playwright's sync API runs an event loop in this thread; the ORM calls the test makes
    # between browser steps are ordinary blocking calls on the test's own connection, so
    # Django's async-safety check is lifted for these tests only.
    previous = os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    try:
        yield from _chromium()
    finally:
        if previous is None:
            os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
        else:
            os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = previous


def _chromium() -> Iterator[Browser]:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: run through `make test` (scripts/system-deps.sh)")
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser: Browser, live_server: Any, settings: Any, tmp_path: Path) -> Iterator[Page]:
    settings.MEDIA_ROOT = tmp_path / "media"
    context = browser.new_context(
        base_url=live_server.url, viewport={"width": 1280, "height": 860}, accept_downloads=True
    )
    tab = context.new_page()
    tab.set_default_timeout(15_000)
    yield tab
    context.close()


class Steps:
    """Numbered screenshots and an accessibility check at each step."""

    def __init__(self, page: Page, prefix: str) -> None:
        self.page = page
        self.prefix = prefix
        self.number = 0
        self.folder = _screenshot_dir()

    def check(self, name: str) -> None:
        self.number += 1
        self.page.screenshot(
            path=str(self.folder / f"{self.prefix}-{self.number:02d}-{name}.png"), full_page=True
        )
        assert_accessible(self.page)


def assert_accessible(page: Page) -> None:
    page.add_script_tag(path=str(AXE_SCRIPT))
    result = page.evaluate("async () => await axe.run(document, {resultTypes: ['violations']})")
    bad = [
        f"{violation['id']} ({violation['impact']}): {violation['help']} — "
        + "; ".join(node["target"][0] for node in violation["nodes"][:3])
        for violation in result["violations"]
        if violation["impact"] in ("serious", "critical")
    ]
    assert not bad, f"{page.url}: " + " | ".join(bad)


def sign_in(page: Page, email: str, password: str) -> None:
    page.goto("/accounts/login/")
    page.get_by_label("Email address").fill(email)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()


# What sticks out to the right of the viewport (for the message of a failed layout check).
WIDER_THAN_THE_SCREEN = """() => [...document.querySelectorAll('body *')]
  .filter(e => e.getBoundingClientRect().right > window.innerWidth + 1)
  .filter(e => !e.closest('.table-wrap table'))
  .slice(0, 8)
  .map(e => `${e.tagName}.${e.className} ${Math.round(e.getBoundingClientRect().right)}`)
  .join(', ')"""


def _property(sponsor: Sponsor, city: str, region: str, property_type: str) -> Property:
    return property_create(
        actor=member_of(sponsor),
        sponsor_id=sponsor.pk,
        details=PropertyDetails(
            name=f"{city} property",
            address_line1="1 Main St",
            city=city,
            region=region,
            country="US",
            property_type=property_type,
            year_built=1998,
            purchase_price_minor=2_400_000_00,
            purchase_price_currency="USD",
        ),
    )


def _journey_offering() -> Offering:
    """Reg A+ Tier 2 (it may close as soon as its target is met): $100 a unit, 100 units."""
    sponsor = approved_sponsor(name="Lakeside Capital")
    return open_offering(
        sponsor=sponsor,
        property_=_property(sponsor, "Columbus", "OH", "multifamily"),
        title="Birch Street Duplex",
        exemption="reg_a_tier2",
        units_authorized=100,
        max_investment_units=60,
        target_raise_minor=1_000_00,
        max_raise_minor=10_000_00,
    )


def _other_offerings() -> None:
    """Two more live offerings, so the marketplace has something to filter."""
    for city, region, title, property_type, price in (
        ("Denver", "CO", "Larimer Square Offices", "office", 250_00),
        ("Austin", "TX", "South Congress Retail", "retail", 50_00),
    ):
        sponsor = approved_sponsor(name=f"{city} Partners")
        open_offering(
            sponsor=sponsor,
            property_=_property(sponsor, city, region, property_type),
            title=title,
            price_per_unit_minor=price,
            max_raise_minor=price * 10_000,
        )


def _today_in(offering: Offering) -> date:
    return timezone.now().astimezone(ZoneInfo(offering.time_zone)).date()


def test_investor_journey_from_sign_up_to_statement(page: Page) -> None:
    staff, approver = new_user(is_staff=True), new_user(is_staff=True)
    offering = _journey_offering()
    _other_offerings()
    steps = Steps(page, "investor")

    # the marketplace, as anyone sees it
    page.goto("/")
    expect(page.get_by_role("heading", name="Birch Street Duplex")).to_be_visible()
    card = page.get_by_role("listitem").filter(has_text="Birch Street Duplex")
    expect(card).to_contain_text("$100.00")
    expect(card).to_contain_text("Columbus")
    steps.check("marketplace")
    # a filter swaps the grid in place (htmx) and keeps the URL shareable
    page.get_by_label("Property type").select_option("office")
    expect(page.get_by_role("heading", name="Birch Street Duplex")).to_have_count(0)
    expect(page.get_by_role("heading", name="Larimer Square Offices")).to_be_visible()
    expect(page).to_have_url(re.compile(r"property_type=office"))
    page.get_by_label("Property type").select_option("")

    # sign up
    page.get_by_role("link", name="Create account").click()
    page.get_by_label("Email").fill("nina@example.com")
    page.get_by_label("Full legal name").fill("Nina Newcomer")
    page.get_by_label("Country of residence").fill("US")
    page.get_by_label("US state").fill("OH")
    page.get_by_label("Password", exact=True).fill(PASSWORD)
    page.get_by_label("Password (again)").fill(PASSWORD)
    steps.check("sign-up")
    page.get_by_role("button", name="Create account").click()

    # the questionnaire; KYC is pending and says so
    expect(page.get_by_role("heading", name="Your profile")).to_be_visible()
    expect(page.locator("#kyc-status")).to_have_text("Pending")
    page.get_by_label("Income two years ago").fill("36000")
    page.get_by_label("Income last year").fill("38000")
    page.get_by_label("Income expected this year").fill("40000")
    page.get_by_label("Net worth (excluding your primary residence)").fill("30000")
    page.get_by_role("button", name="Save").click()
    expect(page.get_by_text("Your questionnaire is saved.")).to_be_visible()
    expect(page.locator("#kyc-missing")).to_contain_text("identity check (KYC)")
    steps.check("questionnaire")

    # staff approve the identity check
    investor = Investor.objects.get(user__email="nina@example.com")
    investor_kyc_decide(
        investor_id=investor.pk, decided_by=staff, decision="approved", reason="Passport checked."
    )
    page.reload()
    expect(page.locator("#kyc-status")).to_have_text("Approved")
    expect(page.locator("#kyc-missing")).to_have_text("Nothing is missing: you can invest.")

    # the offering page shows the investor's own limit (10% of $40,000 under Reg A+)
    page.goto("/")
    page.get_by_role("link", name="Birch Street Duplex").click()
    expect(page.locator("#own-limit")).to_contain_text("$4,000.00")
    steps.check("offering")

    # asking for too much is refused with the rule's reason, and nothing is subscribed
    page.get_by_role("link", name="Invest").click()
    page.get_by_label("Number of units").fill("50")
    page.get_by_role("button", name="Review").click()
    expect(page.locator("#review-amount")).to_have_text("$5,000.00")
    page.get_by_label("I understand that I may lose").check()
    page.get_by_role("button", name="Subscribe").click()
    expect(page.locator(".message.error")).to_contain_text("is over the limit")
    steps.check("limit-refused")
    assert not investor.subscriptions.exists()

    # ten units: review, acknowledge, subscribe
    page.get_by_role("link", name="Change the number of units").click()
    page.get_by_label("Number of units").fill("10")
    page.get_by_role("button", name="Review").click()
    expect(page.locator("#review-amount")).to_have_text("$1,000.00")
    page.get_by_label("I understand that I may lose").check()
    steps.check("review")
    page.get_by_role("button", name="Subscribe").click()
    expect(page.locator("#subscription-status")).to_have_text("Reserved")
    page.go_back()  # the review page again, with the same one-time token
    page.get_by_role("button", name="Subscribe").click()
    expect(page.locator("#subscription-status")).to_have_text("Reserved")
    assert investor.subscriptions.count() == 1  # a second submit did not subscribe again

    # sign the agreement, then the funding instructions
    expect(page.get_by_role("heading", name="Sign the subscription agreement")).to_be_visible()
    page.get_by_label("Type your full legal name to sign").fill("Nina Newcomer")
    steps.check("sign")
    page.get_by_role("button", name="Sign the agreement").click()
    expect(page.locator("#subscription-status")).to_have_text("Signed")
    page.get_by_role("button", name="Fund by bank transfer").click()
    payment = Payment.objects.get(subscription__investor=investor)
    expect(page.locator("#payment-reference")).to_have_text(payment.provider_reference)
    expect(page.locator("#funding-instructions")).to_contain_text("$1,000.00")
    steps.check("funding")

    # the bank confirms; the page shows the money in escrow
    payment_simulate(payment=payment, event_type=PaymentEventType.CONFIRMED)
    page.reload()
    expect(page.locator("#subscription-status")).to_have_text("Funded")

    # staff close the offering (four eyes); the sponsor declares a distribution in the console
    request = close_request_prepare(actor=staff, offering_id=offering.pk, reason="Target met.")
    close_request_approve(actor=approver, close_request_id=request.pk, reason="Checked.")
    offering.refresh_from_db()
    if offering.status == OfferingStatus.CLOSING:
        offering_close(offering=offering, actor=None)
    offering.refresh_from_db()
    assert offering.status == OfferingStatus.CLOSED_FUNDED
    _sponsor_declares_distribution(page, offering, steps)
    _staff_pay_the_distribution(offering, staff, approver)
    page.reload()  # the sponsor sees the payouts
    expect(page.locator("#sponsor-distributions")).to_contain_text("1 of 1")
    expect(page.locator("#sponsor-distributions")).to_contain_text(
        "$38.00"
    )  # 24% backup withholding
    _staff_generate_the_quarterly_statement(offering, investor)

    # the dashboard: the position, the distribution, the statement to download
    # (seen the day after the record date, when the payout was made)
    paid_on = Distribution.objects.get(offering=offering).record_at + timedelta(hours=1)
    with time_machine.travel(paid_on, tick=True):
        page.get_by_role("button", name="Sign out").click()
        sign_in(page, "nina@example.com", PASSWORD)
        expect(page.get_by_role("heading", name="Hello, Nina Newcomer")).to_be_visible()
        expect(page.locator("#positions")).to_contain_text("Birch Street Duplex")
        expect(page.locator("#positions")).to_contain_text("10")
        summary = page.locator("#portfolio-USD")
        expect(summary).to_contain_text("$1,000.00")  # value today, at the offering price
        expect(summary).to_contain_text("$50.00")  # distributions received (gross)
        expect(summary).to_contain_text("1.05\u00d7")  # equity multiple (1,000 + 50) / 1,000
        expect(page.get_by_role("img", name="Money still invested")).to_be_visible()
        expect(page.locator("#distributions")).to_contain_text("$50.00")
        expect(page.locator("#subscriptions")).to_contain_text("Accepted")
        steps.check("dashboard")
        with page.expect_download() as download_info:
            page.locator("#statements a").first.click()
        saved = download_info.value.path()
        assert Path(saved).read_bytes().startswith(b"%PDF")
        # the same page on a phone: one column, nothing cut off
        page.set_viewport_size({"width": 390, "height": 844})
        page.reload()
        width = page.evaluate("document.documentElement.scrollWidth")
        assert width <= 390, f"the page scrolls sideways on a phone ({width}px): " + page.evaluate(
            WIDER_THAN_THE_SCREEN
        )
        steps.check("dashboard-phone")


def _sponsor_declares_distribution(page: Page, offering: Offering, steps: Steps) -> None:
    member = member_of(offering.sponsor)
    page.get_by_role("button", name="Sign out").click()
    sign_in(page, member.email, SPONSOR_PASSWORD)
    page.goto(f"/sponsor/offerings/{offering.pk}/")
    expect(page.locator("#offering-status")).to_have_text("Closed Funded")
    expect(page.locator("#raise")).to_contain_text("Nina Newcomer")
    today = _today_in(offering).isoformat()
    page.get_by_label("Amount to distribute").fill("50.00")
    page.get_by_label("Record date").fill(today)
    page.get_by_label("Payment date").fill(today)
    page.get_by_role("button", name="Declare").click()
    expect(page.get_by_text("Distribution declared")).to_be_visible()
    expect(page.locator("#sponsor-distributions")).to_contain_text("$50.00")
    steps.check("sponsor-distribution")


def _staff_pay_the_distribution(offering: Offering, staff: User, approver: User) -> None:
    distribution = Distribution.objects.get(offering=offering)
    distribution_approve(actor=approver, distribution_id=distribution.pk)
    distribution_fund(actor=member_of(offering.sponsor), distribution_id=distribution.pk)
    distribution.refresh_from_db()
    # Payouts go to the holders of record once the record date is over.
    with time_machine.travel(distribution.record_at + timedelta(minutes=5)):
        distribution_pay(actor=staff, distribution_id=distribution.pk)
        distribution_pay_run(distribution_id=distribution.pk)


def _staff_generate_the_quarterly_statement(offering: Offering, investor: Investor) -> None:
    """This quarter's statement, generated once the quarter is over everywhere (travelled to)."""
    today = _today_in(offering)
    period = period_parse(f"{today.year}-Q{(today.month + 2) // 3}")
    with time_machine.travel(datetime.combine(period.end + timedelta(days=2), time(12), UTC)):
        statement_generate(
            scope=StatementScope(kind="investor_periodic", period=period, investor_id=investor.pk)
        )


def test_sponsor_creates_and_submits_an_offering(page: Page) -> None:
    member = member_of(approved_sponsor(name="Harbor Partners"))
    steps = Steps(page, "sponsor")
    sign_in(page, member.email, SPONSOR_PASSWORD)
    page.goto("/sponsor/")
    page.get_by_role("link", name="New offering").click()
    opens = timezone.localtime() + timedelta(days=2)
    fields = {
        "Property name": "Harbor Lofts",
        "Street address": "9 Harbor Way",
        "City": "Portland",
        "State or region": "OR",
        "Postal code": "97201",
        "Country (two letters)": "US",
        "Title": "Harbor Lofts — community round",
        "Issuer (SPV) legal name": "Harbor Lofts SPV LLC",
        "Issuer country (two letters)": "US",
        "Price per unit": "250.00",
        "Units offered": "4000",
        "Minimum units per investor": "2",
        "Target raise": "250000.00",
        "Maximum raise": "1000000.00",
        "Time zone (IANA, e.g. America/New_York)": "America/Los_Angeles",
    }
    for label, value in fields.items():
        page.get_by_label(label, exact=True).fill(value)
    page.get_by_label("Property type").select_option("mixed_use")
    page.get_by_label("Opens at").fill(opens.strftime("%Y-%m-%dT%H:%M"))
    page.get_by_label("Closes at").fill((opens + timedelta(days=45)).strftime("%Y-%m-%dT%H:%M"))
    steps.check("new-offering")
    page.get_by_role("button", name="Save the draft").click()
    expect(page.locator("#offering-status")).to_have_text("Draft")
    page.get_by_role("button", name="Submit for review").click()
    expect(page.locator("#offering-status")).to_have_text("In Review")
    steps.check("submitted")
    assert Offering.objects.get(title="Harbor Lofts — community round").status == "in_review"
