"""HTTP for distributions: declared by the sponsor, approved by a second person (staff), funded,
paid in the background. Schema → one service or selector → schema. Mounted at the API root (its
paths are absolute).

No `from __future__ import annotations` here: ninja reads the parameter annotations at import
time, and `@paginate` re-wraps the view, so string annotations could not be resolved.
"""

from datetime import datetime

from django.db.models import QuerySet
from django.http import HttpRequest
from ninja import Query, Router, Schema, Status
from ninja.pagination import paginate
from pydantic import Field

# Paying enqueues `captable.pay_distribution` through the outbox, which the embedded default
# runs in this process: its tasks must be registered here, not only in workers.
from captable import (  # noqa: F401
    distribution_reinvestment,
    distribution_reversal,
    distributions,
    tasks,
)
from captable.api import actor_of
from captable.distribution_schemas import (
    DistributionDeclareIn,
    DistributionDetailOut,
    DistributionOut,
    PayoutOut,
    PayoutPageOut,
    PayoutTotalsOut,
    WaterfallTermsIn,
    WaterfallTermsOut,
)
from captable.distribution_selectors import (
    distribution_get,
    distributions_visible_to,
    payout_totals,
    payouts_visible_to,
)
from captable.distribution_waterfall import (
    PromoteTierTerms,
    waterfall_terms_get,
    waterfall_terms_set,
)
from captable.models import Distribution, DistributionReversal
from captable.portfolio_api import portfolio_router
from captable.schemas import READ_ERRORS, WRITE_ERRORS, OptionalReasonIn, ReasonIn
from captable.withdrawals_api import withdrawals_router
from common.errors import ValidationFailed
from common.pagination import BoundedLimitOffsetPagination
from common.schemas import ErrorOut, StrictSchema
from offerings.nav_api import nav_router
from offerings.selectors import offering_get

distributions_router = Router(tags=["distributions"])

PAGE_SIZE_MAX = 100


class PayoutPageIn(Schema):
    limit: int = Field(50, ge=1, le=PAGE_SIZE_MAX)
    offset: int = Field(0, ge=0)


@distributions_router.post(
    "/offerings/{int:offering_id}/distributions",
    response={201: DistributionOut, **WRITE_ERRORS},
)
def distribution_declare(
    request: HttpRequest, offering_id: int, payload: DistributionDeclareIn
) -> Status[Distribution]:
    """A member of the offering's sponsor declares a distribution (status `draft`) for an
    offering that closed funded; staff other than the declarer approve it."""
    currency = payload.amount.currency
    if payload.income is not None and payload.income.currency != currency:
        raise ValidationFailed("The income part is in another currency.", code="currency_mismatch")
    distribution = distributions.distribution_declare(
        actor=actor_of(request),
        offering_id=offering_id,
        amount_minor=payload.amount.to_minor_units(),
        currency=currency,
        kind=payload.kind,
        income_minor=payload.income.to_minor_units() if payload.income else None,
        record_date=payload.record_date,
        payment_date=payload.payment_date,
        method=payload.method,
        memo=payload.memo,
    )
    return Status(201, distribution)


@distributions_router.get("/distributions", response={200: list[DistributionOut], **READ_ERRORS})
@paginate(BoundedLimitOffsetPagination, max_limit=PAGE_SIZE_MAX)
def distribution_list(
    request: HttpRequest, offering_id: int | None = None, status: str | None = None
) -> QuerySet[Distribution]:
    """Distributions you may see, newest first: staff all, a sponsor its offerings', an
    investor those that pay them. Filter by `offering_id` or `status`."""
    return distributions_visible_to(user=actor_of(request), offering_id=offering_id, status=status)


@distributions_router.get(
    "/distributions/{int:distribution_id}", response={200: DistributionDetailOut, **READ_ERRORS}
)
def distribution_detail(
    request: HttpRequest, distribution_id: int, page: Query[PayoutPageIn]
) -> DistributionDetailOut:
    """A distribution with its history, its payouts (paginated by investor id: `limit`,
    `offset`) and their totals. The sponsor and staff see every payout; an investor only
    their own."""
    actor = actor_of(request)
    distribution = distribution_get(user=actor, distribution_id=distribution_id)
    payouts = payouts_visible_to(user=actor, distribution=distribution)
    currency = distribution.currency
    quanta_per_unit = distribution.offering.quanta_per_unit
    totals = payout_totals(payouts)
    rows = payouts[page.offset : page.offset + page.limit]
    # ninja's schemas read the distribution and its history off the ORM objects.
    return DistributionDetailOut.model_validate(
        {
            "distribution": distribution,
            "history": list(distribution.status_changes.all()),
            "totals": PayoutTotalsOut.of(totals, currency=currency),
            "payouts": PayoutPageOut(
                items=[
                    PayoutOut.of(payout, currency=currency, quanta_per_unit=quanta_per_unit)
                    for payout in rows
                ],
                count=totals.payouts,
                limit=page.limit,
                offset=page.offset,
            ),
        }
    )


@distributions_router.post(
    "/distributions/{int:distribution_id}/approve",
    response={200: DistributionOut, **WRITE_ERRORS},
)
def distribution_approve(
    request: HttpRequest, distribution_id: int, payload: OptionalReasonIn | None = None
) -> Distribution:
    """Staff other than the declarer (403 `four_eyes`) approve a declared distribution."""
    actor = actor_of(request)
    distribution_get(user=actor, distribution_id=distribution_id)
    return distributions.distribution_approve(
        actor=actor, distribution_id=distribution_id, reason=payload.reason if payload else ""
    )


@distributions_router.post(
    "/distributions/{int:distribution_id}/fund",
    response={200: DistributionOut, **WRITE_ERRORS},
)
def distribution_fund(request: HttpRequest, distribution_id: int) -> Distribution:
    """The sponsor (or staff) fund an approved distribution: the amount arrives in the
    issuer's operating account and moves to the distribution's payable account. Funding
    again changes nothing."""
    return distributions.distribution_fund(actor=actor_of(request), distribution_id=distribution_id)


@distributions_router.post(
    "/distributions/{int:distribution_id}/pay",
    response={202: DistributionOut, **WRITE_ERRORS},
)
def distribution_pay(request: HttpRequest, distribution_id: int) -> Status[Distribution]:
    """Staff start the pay run of a funded distribution once its record date has passed and
    its payment date has come: payouts are computed from the holders of record and paid in
    the background (`GET /distributions/{id}` shows progress). Starting it again pays only
    what is left."""
    actor = actor_of(request)
    distribution_get(user=actor, distribution_id=distribution_id)
    distribution = distributions.distribution_pay(actor=actor, distribution_id=distribution_id)
    return Status(202, distribution)


@distributions_router.post(
    "/distributions/{int:distribution_id}/cancel",
    response={200: DistributionOut, **WRITE_ERRORS},
)
def distribution_cancel(
    request: HttpRequest, distribution_id: int, payload: ReasonIn
) -> Distribution:
    """The sponsor or staff cancel a distribution that is not funded yet."""
    return distributions.distribution_cancel(
        actor=actor_of(request), distribution_id=distribution_id, reason=payload.reason
    )


@distributions_router.put(
    "/offerings/{int:offering_id}/waterfall",
    response={200: WaterfallTermsOut, **WRITE_ERRORS},
)
def waterfall_terms_put(
    request: HttpRequest, offering_id: int, payload: WaterfallTermsIn
) -> WaterfallTermsOut:
    """The sponsor (or staff) set the offering's waterfall terms; refused (409) once a
    waterfall distribution has been paid under them."""
    terms = waterfall_terms_set(
        actor=actor_of(request),
        offering_id=offering_id,
        preferred_return_rate=payload.preferred_return_rate,
        pref_compounding=payload.pref_compounding,
        catch_up_sponsor_share=payload.catch_up_sponsor_share,
        sponsor_profit_target=payload.sponsor_profit_target,
        promote_tiers=[
            PromoteTierTerms(tier.sponsor_share, tier.hurdle_kind, tier.hurdle_value)
            for tier in payload.promote_tiers
        ],
    )
    return WaterfallTermsOut.of(terms)


@distributions_router.get(
    "/offerings/{int:offering_id}/waterfall",
    response={200: WaterfallTermsOut, **READ_ERRORS, 409: ErrorOut},  # 409: no terms set
)
def waterfall_terms_detail(request: HttpRequest, offering_id: int) -> WaterfallTermsOut:
    """The offering's waterfall terms, for whoever may see the offering (409 if none)."""
    offering = offering_get(user=actor_of(request), offering_id=offering_id)
    return WaterfallTermsOut.of(waterfall_terms_get(offering=offering))


# Mounted here, under a router already mounted at the API root, so that config/api.py needs no
# edit: net asset value (offerings/) and the investor's portfolio and withdrawals.
distributions_router.add_router("", nav_router)
distributions_router.add_router("", portfolio_router)
distributions_router.add_router("", withdrawals_router)


class ReinvestmentIn(StrictSchema):
    enabled: bool


class ReinvestmentOut(Schema):
    offering_id: int
    investor_id: int
    enabled: bool


@distributions_router.put(
    "/offerings/{int:offering_id}/reinvestment",
    response={200: ReinvestmentOut, **WRITE_ERRORS},
)
def reinvestment_elect(
    request: HttpRequest, offering_id: int, payload: ReinvestmentIn
) -> ReinvestmentOut:
    """Turn reinvestment (DRIP) of your distributions from this offering on or off: each net
    payout then buys newly authorized units at NAV in whole quanta, through the subscription
    checks; the remainder (or all of it, if a check refuses) is paid in cash."""
    election = distribution_reinvestment.reinvestment_elect(
        actor=actor_of(request), offering_id=offering_id, is_enabled=payload.enabled
    )
    return ReinvestmentOut(
        offering_id=election.offering_id,
        investor_id=election.investor_id,
        enabled=election.is_enabled,
    )


class ReversalOut(Schema):
    distribution_id: int
    reason: str
    prepared_by_id: int
    prepared_at: datetime
    approved_by_id: int | None
    approved_at: datetime | None
    entries_reversed: int


@distributions_router.post(
    "/distributions/{int:distribution_id}/reversal",
    response={201: ReversalOut, **WRITE_ERRORS},
)
def distribution_reversal_prepare(
    request: HttpRequest, distribution_id: int, payload: ReasonIn
) -> Status[DistributionReversal]:
    """Staff prepare undoing a paid distribution (by reversing its entries); another staff
    member approves it."""
    reversal = distribution_reversal.distribution_reversal_prepare(
        actor=actor_of(request), distribution_id=distribution_id, reason=payload.reason
    )
    return Status(201, reversal)


@distributions_router.post(
    "/distributions/{int:distribution_id}/reversal/approve",
    response={200: ReversalOut, **WRITE_ERRORS},
)
def distribution_reversal_approve(
    request: HttpRequest, distribution_id: int
) -> DistributionReversal:
    """A second staff member (403 `four_eyes` for the preparer) approves: every entry of the
    distribution is reversed in one transaction and it becomes `reversed` (409 if an account
    can no longer give the money back, nothing reversed)."""
    return distribution_reversal.distribution_reversal_approve(
        actor=actor_of(request), distribution_id=distribution_id
    )
