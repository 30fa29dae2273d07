"""The investor's dashboard and statement downloads: the portfolio (`captable/portfolio.py`:
value at NAV, contributions, distributions, equity multiple and IRR — computed there, shown
here), the payouts received, their subscriptions and their statements — every read scoped to
the signed-in investor."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date
from decimal import Decimal

from django.contrib.auth.decorators import login_required
from django.http import FileResponse, HttpRequest, HttpResponse
from django.shortcuts import render

from captable.models import Payout
from captable.portfolio import decimal_places, portfolio_of
from captable.returns import InvestorCashFlow
from captable.subscription_selectors import subscriptions_of_user
from portal.chart import money_chart
from portal.errors import or_404
from portal.offering_page import investor_of
from reports.selectors import statement_get, statement_list

# An annualised rate over a few days or months says nothing useful (a 5% payout a day after
# investing annualises to billions of percent): like most platforms, show it after a year.
IRR_SHOWN_AFTER_DAYS = 365


def _irr(value: Decimal | None, flows: Sequence[InvestorCashFlow], as_of: date) -> str | None:
    if value is None or not flows:
        return None
    if (as_of - min(flow.on for flow in flows)).days < IRR_SHOWN_AFTER_DAYS:
        return "shown after 1 year"
    return f"{decimal_places(value * 100, 2)}%"


@login_required
def dashboard(request: HttpRequest) -> HttpResponse:
    investor = investor_of(request.user)
    if investor is None:
        return render(request, "portal/no_investor.html", status=404)
    portfolio = portfolio_of(investor=investor)
    flows_by_currency: dict[str, list[InvestorCashFlow]] = {}
    for position in portfolio.positions:
        flows_by_currency.setdefault(position.offering.currency, []).extend(position.flows)
    totals = [
        {
            "currency": total.currency,
            "value_minor": total.value_minor,
            "returns": total.returns,
            "multiple": decimal_places(total.returns.equity_multiple, 2),
            "irr": _irr(
                total.returns.irr, flows_by_currency.get(total.currency, []), portfolio.as_of
            ),
            "chart": money_chart(
                tuple(flows_by_currency.get(total.currency, [])),
                value=total.returns.current_value,
                today=portfolio.as_of,
            ),
        }
        for total in portfolio.totals
    ]
    positions = [
        {
            "position": position,
            "multiple": decimal_places(position.returns.equity_multiple, 2),
            "irr": _irr(position.returns.irr, position.flows, portfolio.as_of),
        }
        for position in portfolio.positions
        if position.quanta
    ]
    payouts = (
        Payout.objects.filter(investor=investor, paid_at__isnull=False)
        .select_related("distribution__offering")
        .order_by("-paid_at", "-pk")
    )
    context = {
        "investor": investor,
        "totals": totals,
        "positions": positions,
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
