"""The investor's dashboard and statement downloads: positions from the ledger (as of now),
what they put in, the distributions paid to them, their subscriptions and their statements —
all through the selectors that scope every read to the caller."""

from __future__ import annotations

from dataclasses import dataclass

from django.contrib.auth.decorators import login_required
from django.http import FileResponse, HttpRequest, HttpResponse
from django.shortcuts import render

from captable.models import Payout
from captable.selectors import positions_as_of
from captable.subscription_selectors import subscriptions_of_user
from common.money import money_display
from offerings.models import Offering
from offerings.quantities import format_units
from portal.errors import or_404
from portal.offering_page import investor_of
from reports.selectors import statement_get, statement_list


@dataclass(frozen=True)
class PositionRow:
    offering: Offering
    units: str
    cost: str


@login_required
def dashboard(request: HttpRequest) -> HttpResponse:
    investor = investor_of(request.user)
    if investor is None:
        return render(request, "portal/no_investor.html", status=404)
    positions = positions_as_of(investor=investor)
    offerings = Offering.objects.in_bulk([position.offering_id for position in positions])
    rows = [
        PositionRow(
            offering=offerings[position.offering_id],
            units=format_units(position.quanta, offerings[position.offering_id].quanta_per_unit),
            cost=money_display(position.cost_minor, offerings[position.offering_id].currency),
        )
        for position in positions
    ]
    payouts = (
        Payout.objects.filter(investor=investor, paid_at__isnull=False)
        .select_related("distribution__offering")
        .order_by("-paid_at", "-pk")
    )
    context = {
        "investor": investor,
        "positions": rows,
        "payouts": payouts,
        "subscriptions": subscriptions_of_user(user=request.user),
        "statements": statement_list(user=request.user, investor_id=investor.pk).order_by(
            "-created_at", "-pk"
        ),
    }
    return render(request, "portal/dashboard.html", context)


@login_required
def statement_download(request: HttpRequest, statement_id: int) -> FileResponse:
    statement = or_404(statement_get, user=request.user, statement_id=statement_id)
    filename = f"brickbook-{statement.kind.replace('_', '-')}-{statement.period}.pdf"
    return FileResponse(
        statement.file.open("rb"),
        as_attachment=True,
        filename=filename.replace("..", "_to_"),
        content_type="application/pdf",
    )
