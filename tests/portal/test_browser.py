"""The portal in a real browser: headless Chromium (Debian's `chromium`, driven by Playwright
with its executable path — no browser download) against pytest-django's live server on
PostgreSQL, Celery tasks in-process (no broker: the outbox runs them after each commit).

The investor's journey: sign up, questionnaire, approved by staff in the Django admin (a second
browser window, the admin's own action), the limit refusal, the agreement read and signed in
the same submit that subscribes, fund, and after the close a position and a distribution on the
dashboard and a statement downloaded. An EU investor: the knowledge test, then the ECSP risk
warning to acknowledge above the threshold, and the reflection period. The sponsor creates a
draft, edits it and its property's key figures (errors shown under their fields), uploads the
property's photo, submits it, and staff approve it in the admin; the photo is then on the
marketplace card. Every portal step asserts what is on the page, runs axe-core (no serious or
critical violation) and saves a screenshot under var/portal-screenshots/ (three of them are in
docs/); the admin's pages are Django's own and are only photographed.

axe-core is the copy bundled in the `axe-playwright-python` package pinned in uv.lock
(axe-core 4.12.1), injected as a script: nothing is fetched from a CDN."""

from __future__ import annotations

import importlib.util
import os
import re
from collections.abc import Iterator
from datetime import UTC, date, datetime, time, timedelta
from io import BytesIO
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import time_machine
from django.contrib.auth.models import Permission
from django.core.files.base import ContentFile
from django.utils import timezone
from PIL import Image, ImageDraw
from playwright.sync_api import Browser, Page, expect, sync_playwright

from captable.closing import close_request_prepare, offering_close
from captable.distributions import (
    distribution_approve,
    distribution_fund,
    distribution_pay,
    distribution_pay_run,
)
from captable.models import Distribution, Payment, PaymentEventType
from captable.payments import payment_simulate
from common.models import User
from investors import knowledge_test
from investors.models import Investor
from offerings.exemptions import Exemption
from offerings.models import Offering, OfferingStatus, Property, Sponsor
from offerings.services import PropertyDetails, property_create, property_photo_set
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
# Generous: the machine running the suite is often shared, and a page is slow under load.
STEP_TIMEOUT_MS = 30_000
# The width of an image once the browser has fetched and decoded it: `decode()` waits for the
# load (reading `complete` straight after the page renders races it) and rejects, failing the
# test, when the image cannot be loaded.
LOADED_WIDTH = "img => img.decode().then(() => img.naturalWidth)"
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
    tab.set_default_timeout(STEP_TIMEOUT_MS)
    yield tab
    context.close()


# What the compliance desk may do in the admin: decide KYC, review offerings, approve closes.
STAFF_PERMISSIONS = (
    "view_investor",
    "change_investor",
    "view_offering",
    "change_offering",
    "view_closerequest",
    "change_closerequest",
)
STAFF_EMAIL = "compliance@example.com"


@pytest.fixture
def staff_page(browser: Browser, live_server: Any) -> Iterator[Page]:
    """A second window, signed in as a staff member of the compliance desk."""
    staff = new_user(is_staff=True, email=STAFF_EMAIL)
    staff.user_permissions.add(*Permission.objects.filter(codename__in=STAFF_PERMISSIONS))
    context = browser.new_context(base_url=live_server.url, viewport={"width": 1280, "height": 860})
    tab = context.new_page()
    tab.set_default_timeout(STEP_TIMEOUT_MS)
    sign_in(tab, STAFF_EMAIL, SPONSOR_PASSWORD)
    yield tab
    context.close()


def admin_action(
    page: Page, *, changelist: str, row_text: str, action: str, done: str, screenshot: str
) -> None:
    """Select one row of an admin change list, run one of its actions, check the message."""
    page.goto(changelist)
    page.get_by_role("row").filter(has_text=row_text).get_by_role("checkbox").check()
    page.locator("select[name=action]").select_option(label=action)
    page.get_by_role("button", name="Go").click()
    expect(page.locator("ul.messagelist")).to_contain_text(done)
    page.screenshot(path=str(_screenshot_dir() / f"{screenshot}.png"), full_page=True)
    # The row has left the filtered list; the whole list shows it with its new status.
    page.goto(changelist.split("?")[0])


def house_picture(sky: str = "#9cc9e8", walls: str = "#b5523b") -> ContentFile[bytes]:
    """A drawn house (JPEG), for the marketplace to show a photo rather than the placeholder."""
    image = Image.new("RGB", (800, 400), sky)
    draw = ImageDraw.Draw(image)
    draw.rectangle((0, 300, 800, 400), fill="#6a9a4f")
    draw.rectangle((220, 170, 580, 330), fill=walls)
    draw.polygon([(200, 175), (400, 70), (600, 175)], fill="#4a3b36")
    for left in (250, 350, 470):
        draw.rectangle((left, 200, left + 60, 250), fill="#f3e6b3")
    draw.rectangle((380, 260, 430, 330), fill="#3d2b22")
    output = BytesIO()
    image.save(output, format="JPEG", quality=90)
    return ContentFile(output.getvalue(), name="house.jpg")


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
    """Reg A+ Tier 2 (it may close as soon as its target is met): $100 a unit, 100 units; its
    property has a photo."""
    sponsor = approved_sponsor(name="Lakeside Capital")
    home = _property(sponsor, "Columbus", "OH", "multifamily")
    property_photo_set(
        actor=member_of(sponsor),
        property_id=home.pk,
        file=house_picture(),
        alt_text="Red-brick duplex with a dark roof, seen from Birch Street",
    )
    return open_offering(
        sponsor=sponsor,
        property_=home,
        title="Birch Street Duplex",
        summary="A fully let two-family brick house near German Village, Columbus.",
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


def test_investor_journey_from_sign_up_to_statement(page: Page, staff_page: Page) -> None:
    staff, approver = new_user(is_staff=True), new_user(is_staff=True)
    offering = _journey_offering()
    _other_offerings()
    steps = Steps(page, "investor")

    # the marketplace, as anyone sees it: the property's photo, or the placeholder
    page.goto("/")
    expect(page.get_by_role("heading", name="Birch Street Duplex")).to_be_visible()
    card = page.get_by_role("listitem").filter(has_text="Birch Street Duplex")
    expect(card).to_contain_text("$100.00")
    expect(card).to_contain_text("Columbus")
    photo = card.get_by_role(
        "img", name="Red-brick duplex with a dark roof, seen from Birch Street"
    )
    expect(photo).to_have_attribute("src", re.compile(r"^/properties/\d+/photo/\?v="))
    assert photo.evaluate(LOADED_WIDTH) == 800  # it loaded
    other = page.get_by_role("listitem").filter(has_text="Larimer Square Offices")
    expect(other.get_by_role("img")).to_have_attribute("src", re.compile(r"placeholder\.svg$"))
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

    # staff approve the identity check, in the admin
    investor = Investor.objects.get(user__email="nina@example.com")
    admin_action(
        staff_page,
        changelist="/admin/investors/investor/?kyc_status__exact=pending",
        row_text="Nina Newcomer",
        action="Approve KYC (pending only)",
        done="KYC approved for 1 investor(s).",
        screenshot="staff-01-kyc-approved",
    )
    expect(staff_page.get_by_role("row").filter(has_text="Nina Newcomer")).to_contain_text(
        "Approved"
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
    page.get_by_label("Type your full legal name to sign").fill("Nina Newcomer")
    page.get_by_role("button", name="Sign and subscribe").click()
    expect(page.locator(".message.error")).to_contain_text("is over the limit")
    steps.check("limit-refused")
    assert not investor.subscriptions.exists()

    # ten units: review, acknowledge, read the agreement and sign it — one submit
    page.get_by_role("link", name="Change the number of units").click()
    page.get_by_label("Number of units").fill("10")
    page.get_by_role("button", name="Review").click()
    expect(page.locator("#review-amount")).to_have_text("$1,000.00")
    page.get_by_label("I understand that I may lose").check()
    agreement = page.get_by_label("Agreement text")
    expect(agreement).to_contain_text("Offering: Birch Street Duplex")
    expect(agreement).to_contain_text("Units: 10 at USD 100.00 per unit")
    expect(agreement).to_contain_text("Subscription: (numbered when you sign and subscribe)")
    shown_sha256 = page.locator("#agreement-sha256").inner_text()
    assert re.fullmatch(r"[0-9a-f]{64}", shown_sha256)
    page.get_by_label("Type your full legal name to sign").fill("Nina Newcomer")
    steps.check("review")
    page.get_by_role("button", name="Sign and subscribe").click()
    expect(page.locator("#subscription-status")).to_have_text("Signed")
    page.go_back()  # the review page again, with the same one-time token
    expect(page.get_by_label("Type your full legal name to sign")).to_have_value("Nina Newcomer")
    page.get_by_role("button", name="Sign and subscribe").click()
    expect(page.locator("#subscription-status")).to_have_text("Signed")
    assert investor.subscriptions.count() == 1  # a second submit did not subscribe again
    signed = investor.subscriptions.get().agreements.get()
    expect(page.locator("#signed-agreement summary")).to_contain_text(
        "Agreement signed by Nina Newcomer"
    )
    page.locator("#signed-agreement summary").click()
    expect(page.locator("#signed-agreement")).to_contain_text(signed.document_sha256)

    # the funding instructions
    page.get_by_role("button", name="Fund by bank transfer").click()
    payment = Payment.objects.get(subscription__investor=investor)
    expect(page.locator("#payment-reference")).to_have_text(payment.provider_reference)
    expect(page.locator("#funding-instructions")).to_contain_text("$1,000.00")
    steps.check("funding")

    # the bank confirms; the page shows the money in escrow
    payment_simulate(payment=payment, event_type=PaymentEventType.CONFIRMED)
    page.reload()
    expect(page.locator("#subscription-status")).to_have_text("Funded")

    # staff close the offering (four eyes: one prepares, the compliance desk approves in the
    # admin); the sponsor declares a distribution in the console
    request = close_request_prepare(actor=staff, offering_id=offering.pk, reason="Target met.")
    assert request.requested_by_id != User.objects.get(email=STAFF_EMAIL).pk  # four eyes
    admin_action(
        staff_page,
        changelist="/admin/captable/closerequest/?status__exact=pending_approval",
        row_text="Birch Street Duplex",
        action="Approve the selected close requests (the offerings close)",
        done="1 request(s) approved.",
        screenshot="staff-04-close-approved",
    )
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


def test_sponsor_creates_edits_and_submits_an_offering(
    page: Page, staff_page: Page, tmp_path: Path
) -> None:
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

    # edit the draft: the property's key figures and the terms, in one form
    page.get_by_role("link", name="Edit the draft").click()
    expect(page.get_by_label("Street address")).to_have_value("9 Harbor Way")
    expect(page.get_by_label("Price per unit")).to_have_value("250.00")
    page.get_by_label("Year built").fill("1912")
    page.get_by_label("Size (square feet)").fill("52000")
    page.get_by_label("Units in the building").fill("40")
    page.get_by_label("Purchase price", exact=True).fill("7250000.00")
    page.get_by_label("Purchase price currency").select_option("USD")
    page.get_by_label("Projected IRR (%)").fill("13.5")
    page.get_by_label("Projected cash yield (%)").fill("6.25")
    page.get_by_label("Projected equity multiple (e.g. 1.85)").fill("1.9")
    page.get_by_label("Projected hold (months)").fill("84")
    page.get_by_label("Title").fill("Harbor Lofts — first round")
    # a rule the service checks: the target above the maximum raise, shown under its field
    page.get_by_label("Target raise").fill("2000000.00")
    page.get_by_role("button", name="Save the draft").click()
    expect(page.locator("#form-errors")).to_be_visible()
    target_error = page.locator("#id_offering-target_raise_error")
    expect(target_error).to_have_text("Target raise must not exceed maximum raise.")
    steps.check("edit-refused")
    offering = Offering.objects.get(title="Harbor Lofts — community round")  # nothing saved
    assert offering.property.year_built is None
    page.get_by_label("Target raise").fill("250000.00")
    page.get_by_role("button", name="Save the draft").click()
    expect(page.get_by_text("Draft updated.")).to_be_visible()
    offering.refresh_from_db()
    assert offering.title == "Harbor Lofts — first round"
    home = offering.property
    assert (home.year_built, home.square_feet, home.unit_count) == (1912, 52000, 40)
    assert (home.purchase_price_minor, home.projected_irr_bps) == (7_250_000_00, 1350)
    assert (home.projected_cash_yield_bps, home.projected_equity_multiple_bps) == (625, 19000)

    # the property's photo: an SVG is refused, a JPEG is shown
    svg = tmp_path / "lofts.svg"
    svg.write_text('<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>')
    page.get_by_label("Photo (JPEG, PNG or WebP, up to 8 MB)").set_input_files(str(svg))
    page.get_by_label("Describe the photo").fill("Brick lofts over shops on Harbor Way")
    page.get_by_role("button", name="Upload the photo").click()
    expect(page.locator("#id_photo_error")).to_contain_text("must be a JPEG, PNG or WebP image")
    jpeg = tmp_path / "lofts.jpg"
    jpeg.write_bytes(house_picture(sky="#c9dde8", walls="#8b5a3c").read())
    page.get_by_label("Photo (JPEG, PNG or WebP, up to 8 MB)").set_input_files(str(jpeg))
    page.get_by_label("Describe the photo").fill("Brick lofts over shops on Harbor Way")
    page.get_by_role("button", name="Upload the photo").click()
    expect(page.get_by_text("Photo saved.")).to_be_visible()
    photo = page.get_by_role("img", name="Brick lofts over shops on Harbor Way")
    expect(photo).to_have_attribute("src", re.compile(r"^/properties/\d+/photo/"))
    assert photo.evaluate(LOADED_WIDTH) == 800
    steps.check("photo")

    page.get_by_role("button", name="Submit for review").click()
    expect(page.locator("#offering-status")).to_have_text("In Review")
    steps.check("submitted")

    # staff approve it in the admin; the sponsor sees it approved
    admin_action(
        staff_page,
        changelist="/admin/offerings/offering/?status__exact=in_review",
        row_text="Harbor Lofts — first round",
        action="Approve selected offerings (in review)",
        done="1 offering(s) approved.",
        screenshot="staff-02-offering-approved",
    )
    page.reload()
    expect(page.locator("#offering-status")).to_have_text("Approved")
    assert Offering.objects.get(pk=offering.pk).status == OfferingStatus.APPROVED


def _eu_offering() -> Offering:
    """ECSP, in euros: EUR 100 a unit, opened an hour ago in Berlin."""
    sponsor = approved_sponsor(name="Spree Immobilien")
    home = property_create(
        actor=member_of(sponsor),
        sponsor_id=sponsor.pk,
        details=PropertyDetails(
            name="Kastanienallee 12",
            address_line1="Kastanienallee 12",
            city="Berlin",
            country="DE",
            property_type="multifamily",
            year_built=1908,
        ),
    )
    return open_offering(
        sponsor=sponsor,
        property_=home,
        title="Kastanienhof Berlin",
        exemption=Exemption.EU_ECSP,
        currency="EUR",
        time_zone="Europe/Berlin",
    )


def test_eu_investor_knowledge_test_and_ecsp_warning(page: Page, staff_page: Page) -> None:
    _eu_offering()
    steps = Steps(page, "ecsp")

    # an EU resident signs up and fills in the questionnaire in euros
    page.goto("/accounts/signup/")
    page.get_by_label("Email").fill("lena@example.com")
    page.get_by_label("Full legal name").fill("Lena Schmidt")
    page.get_by_label("Country of residence").fill("DE")
    page.get_by_label("Password", exact=True).fill(PASSWORD)
    page.get_by_label("Password (again)").fill(PASSWORD)
    page.get_by_role("button", name="Create account").click()
    expect(page.get_by_role("heading", name="Your profile")).to_be_visible()
    page.get_by_label("Currency of your figures").select_option("EUR")
    page.get_by_label("Income last year").fill("52000")
    page.get_by_label("Net worth (excluding your primary residence)").fill("40000")
    page.get_by_role("button", name="Save").click()
    expect(page.get_by_text("Your questionnaire is saved.")).to_be_visible()

    # the knowledge test, scored on the server
    page.get_by_role("link", name="take the test").click()
    for question in knowledge_test.QUESTIONS:
        answer = dict(question.choices)[question.correct_choice]
        page.get_by_role("group", name=question.prompt).get_by_label(answer).check()
    steps.check("knowledge-test")
    page.get_by_role("button", name="Submit my answers").click()
    expect(page.get_by_text("passed, valid until")).to_be_visible()

    admin_action(
        staff_page,
        changelist="/admin/investors/investor/?kyc_status__exact=pending",
        row_text="Lena Schmidt",
        action="Approve KYC (pending only)",
        done="KYC approved for 1 investor(s).",
        screenshot="staff-03-kyc-approved-eu",
    )

    # EUR 2,500 is above the greater of EUR 1,000 and 5% of EUR 40,000: the warning applies
    page.goto("/")
    page.get_by_role("link", name="Kastanienhof Berlin").click()
    page.get_by_role("link", name="Invest").click()
    page.get_by_label("Number of units").fill("25")
    page.get_by_role("button", name="Review").click()
    expect(page.locator("#review-amount")).to_have_text("€2,500.00")
    expect(page.locator("#ecsp-warning")).to_contain_text("ECSP risk warning")
    expect(page.locator("#warning-threshold")).to_have_text("€2,000.00")  # not a cap
    page.get_by_label("I understand that I may lose").check()
    page.get_by_label("Type your full legal name to sign").fill("Lena Schmidt")
    steps.check("ecsp-review")
    # without the warning's acknowledgement: refused, nothing written
    page.get_by_role("button", name="Sign and subscribe").click()
    expect(page.locator(".message.error")).to_contain_text(
        "the risk warning must be acknowledged first"
    )
    investor = Investor.objects.get(user__email="lena@example.com")
    assert not investor.subscriptions.exists()
    page.get_by_label("I understand that I may lose").check()
    page.get_by_label("I have read the ECSP risk warning").check()
    page.get_by_label("Type your full legal name to sign").fill("Lena Schmidt")
    page.get_by_role("button", name="Sign and subscribe").click()
    expect(page.locator("#subscription-status")).to_have_text("Signed")
    subscription = investor.subscriptions.get()
    assert subscription.risk_warning_acknowledged_at is not None
    assert subscription.revocable_until is not None  # the 4-day reflection period
    expect(page.locator("#reflection-until")).to_be_visible()
    # cancellable until the later of the reflection period and the offering's own deadline
    expect(page.locator("#cancel-until")).not_to_have_text(
        page.locator("#reflection-until").inner_text()
    )
    page.locator("#signed-agreement summary").click()
    expect(page.locator("#signed-agreement")).to_contain_text(
        "Reflection period (revocation without reason) until"
    )
    steps.check("ecsp-signed")
