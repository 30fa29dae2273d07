"""A small world for the hardening suites, built through the services and the tests'
factories: two sides, A and B, each with an approved sponsor (one member), an issuer, a
property, a draft, a live and a closed-funded offering, a document, an investor with a funded
subscription, a holding, a transfer waiting for staff, a declared distribution, a close
request, a reversal request and a statement of each kind a caller can download; plus two
members of staff. Everything on side B is what a caller of side A must never reach."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from django.core.files.base import ContentFile
from django.db import connection
from django.utils import timezone

from captable import ledger, transfers
from captable.closing import close_request_prepare
from captable.models import Entry, Payment, Subscription
from captable.withdrawals import withdrawal_request
from common.auth import api_token_issue
from common.models import User
from investors.models import Investor
from offerings import services as offering_services
from offerings.models import Offering, OfferingStatus, Sponsor
from reports.kinds import StatementScope
from reports.periods import period_parse
from reports.services import statement_batch_create, statement_generate
from tests.captable.factories import issue, key
from tests.captable.test_distributions import declare
from tests.captable.test_payments import funded
from tests.captable.test_subscriptions import kyc_investor, open_offering
from tests.conftest import new_user
from tests.offerings.factories import (
    advance,
    approved_sponsor,
    issuer_for,
    member_of,
    new_offering,
    property_for,
)

PERIOD = "2025-Q3"
_names = itertools.count(1)


@dataclass
class Side:
    """What one sponsor and one investor own. `ids` names each object by the path
    parameter an operation takes for it."""

    sponsor: Sponsor
    sponsor_user: User
    investor: Investor
    buyer: Investor
    draft: Offering
    live: Offering
    closed: Offering
    subscription: Subscription
    payment: Payment
    ids: dict[str, int] = field(default_factory=dict)

    @property
    def investor_user(self) -> User:
        return self.investor.user


@dataclass
class World:
    a: Side
    b: Side
    staff: User
    staff_second: User
    tokens: dict[str, str] = field(default_factory=dict)

    def headers(self, role: str) -> dict[str, str]:
        """HTTP headers (requests style) for a role: anonymous, investor, sponsor or staff
        (side A's, for the first two)."""
        if role == "anonymous":
            return {}
        return {"Authorization": f"Bearer {self.tokens[role]}"}

    def user(self, role: str) -> User | None:
        return {
            "anonymous": None,
            "investor": self.a.investor_user,
            "sponsor": self.a.sponsor_user,
            "staff": self.staff,
        }[role]


TAX_ID_SECRET = "SECRET-TAX-ID"


def tax_id_secret() -> str:
    """A clear tax id no response may ever show (only its last four characters, masked)."""
    return f"{TAX_ID_SECRET}-{next(_names):05d}-0000"


def _sponsor_side() -> tuple[Sponsor, User]:
    sponsor = approved_sponsor(name=f"Realty {next(_names)}")
    return sponsor, member_of(sponsor)


def _offerings(sponsor: Sponsor) -> tuple[Offering, Offering, Offering]:
    """A draft, a live (open now) and a soon-closed offering of one issuer and property."""
    issuer = issuer_for(sponsor, legal_name=f"SPV {next(_names)} LLC")
    property_ = property_for(sponsor)
    parts: dict[str, Any] = {"sponsor": sponsor, "issuer": issuer, "property_": property_}
    draft = new_offering(**parts)
    live = open_offering(**parts)
    closed = advance(new_offering(opens_at=timezone.now() - timedelta(hours=2), **parts), to="live")
    return draft, live, closed


def _close(offering: Offering, holder: Investor) -> tuple[Offering, Entry]:
    """Units issued to `holder` on the ledger, then marked closed-funded (as the
    distributions tests do: the closing run itself is not under test here)."""
    ledger.units_authorize(offering=offering, quanta=1_000, idempotency_key=key("auth"))
    entry = issue(offering, holder, 100, cost_minor=100 * 100_00)
    Offering.objects.filter(pk=offering.pk).update(status=OfferingStatus.CLOSED_FUNDED)
    return Offering.objects.get(pk=offering.pk), entry


def _side(staff: User, staff_second: User) -> Side:
    sponsor, sponsor_user = _sponsor_side()
    draft, live, closed = _offerings(sponsor)
    investor, buyer = (kyc_investor(tax_id=tax_id_secret()) for _ in range(2))
    subscription, payment = funded(investor, live, 2)
    closed, entry = _close(closed, investor)
    side = Side(sponsor, sponsor_user, investor, buyer, draft, live, closed, subscription, payment)
    side.ids = _owned_ids(side, staff, entry.pk)
    return side


def _owned_ids(side: Side, staff: User, entry_id: int) -> dict[str, int]:
    transfer, _ = transfers.transfer_request_create(
        actor=side.investor_user,
        offering_id=side.closed.pk,
        quanta=10,
        idempotency_key=key("transfer"),
        buyer_email=side.buyer.user.email,
        exception="family_member",
        evidence_reference="doc-1",
        evidence_description="Marriage certificate.",
    )
    distribution = declare(side.closed)
    close_request = close_request_prepare(actor=staff, offering_id=side.live.pk, reason="Check.")
    reversal = transfers.reversal_prepare(actor=staff, entry_id=entry_id, reason="Mistake?")
    document = offering_services.offering_document_upload(
        actor=side.sponsor_user,
        offering_id=side.draft.pk,
        kind="offering_memorandum",
        file=ContentFile(b"%PDF-1.4 memorandum", name="memo.pdf"),
        content_type="application/pdf",
    )
    ledger.cash_move(  # available cash, as a paid distribution leaves it
        source=ledger.external_spec("USD"),
        destination=ledger.cash_spec(side.investor, "USD"),
        amount_minor=50_00,
        idempotency_key=key("cash"),
    )
    withdrawal = withdrawal_request(
        actor=side.investor_user, amount_minor=10_00, currency="USD", payee_account="…1234"
    )
    pending = offering_services.sponsor_apply(
        actor=side.sponsor_user, name=f"Applicant {next(_names)}"
    )
    return {
        "sponsor_id": side.sponsor.pk,
        "pending_sponsor_id": pending.pk,
        "issuer_id": side.closed.issuer_id,
        "property_id": side.closed.property_id,
        "investor_id": side.investor.pk,
        "offering_id": side.closed.pk,
        "draft_offering_id": side.draft.pk,
        "live_offering_id": side.live.pk,
        "subscription_id": side.subscription.pk,
        "transfer_id": transfer.pk,
        "distribution_id": distribution.pk,
        "close_request_id": close_request.pk,
        "entry_id": entry_id,
        "reversal_id": reversal.pk,
        "document_id": document.pk,
        "withdrawal_id": withdrawal.pk,
    }


def _statements(world: World) -> None:
    """One investor statement and one cap-table report per side, and a batch per side."""
    period = period_parse(PERIOD)
    for side in (world.a, world.b):
        mine = StatementScope("investor_periodic", period, investor_id=side.investor.pk)
        side.ids["statement_id"] = statement_generate(scope=mine).statement.pk
        report = StatementScope("captable_report", period, offering_id=side.closed.pk)
        side.ids["report_statement_id"] = statement_generate(scope=report).statement.pk
        batch = statement_batch_create(
            requested_by=world.staff,
            period=PERIOD,
            offering_id=side.closed.pk,
            start_in_background=False,
        )
        side.ids["task_id"] = batch.pk


def world_build(*, statements: bool = True) -> World:
    staff, staff_second = new_user(is_staff=True), new_user(is_staff=True)
    world = World(
        a=_side(staff, staff_second),
        b=_side(staff, staff_second),
        staff=staff,
        staff_second=staff_second,
    )
    if statements:
        _statements(world)
    world.tokens = {
        "investor": api_token_issue(user=world.a.investor_user).token,
        "sponsor": api_token_issue(user=world.a.sponsor_user).token,
        "staff": api_token_issue(user=world.staff).token,
        "investor_b": api_token_issue(user=world.b.investor_user).token,
        "sponsor_b": api_token_issue(user=world.b.sponsor_user).token,
    }
    return world


def table_row_counts() -> dict[str, int]:
    """Rows in every table of the project's apps (and users/tokens): a cheap picture of
    "nothing changed" for a request that must have no effect."""
    tables = sorted(
        name
        for name in connection.introspection.table_names()
        if name.split("_", 1)[0] in {"offerings", "investors", "captable", "reports", "common"}
        # Throttles count attempts, refused ones included: that is their job, not a change.
        and name != "common_ratecounter"
    )
    # One round trip for every table (names from the catalog, not from input).
    counts = ", ".join(f'(SELECT COUNT(*) FROM "{table}")' for table in tables)
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {counts}")
        row = cursor.fetchone()
    return {table: int(count) for table, count in zip(tables, row, strict=True)}
