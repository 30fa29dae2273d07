"""No record date inside a period already reported (DESIGN.md: nothing may be back-dated into
a period already closed or reported). Once a periodic investor statement of the offering (or
of all of a holder's offerings) has been issued for a period, or a batch of them started, a
distribution whose record date falls on or before that period's end is refused with a 409 and
nothing is written — when declared, and when approved if the statement went out in between.
The statements are the real ones (rendered by `reports`), on both databases."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from typing import Any

import pytest
from django.test import Client

from captable.distributions import distribution_approve
from captable.models import Distribution, DistributionStatus, DistributionStatusChange
from common.errors import Conflict
from investors.models import Investor
from offerings.models import Offering
from reports.kinds import StatementScope
from reports.periods import period_parse
from reports.services import statement_batch_create, statement_generate
from tests.captable.factories import investors
from tests.captable.test_distributions import closed_offering, declare, staff, today_in
from tests.captable.test_payments import at
from tests.conftest import bearer
from tests.offerings.factories import member_of

pytestmark = [pytest.mark.django_db, pytest.mark.embedded]

QUARTER = "2026-Q1"
QUARTER_END = date(2026, 3, 31)


def holders_since_january() -> tuple[Offering, list[Investor]]:
    """An offering closed funded with two holders since 10 January 2026, so a record date in
    the first quarter has holders of record."""
    with at(datetime(2026, 1, 10, 15, tzinfo=UTC)):
        return closed_offering([3, 1])


def periodic_statement(investor: Investor, offering: Offering | None) -> None:
    """The investor's periodic statement for the quarter, as `reports` issues it."""
    scope = StatementScope(
        "investor_periodic",
        period_parse(QUARTER),
        investor_id=investor.pk,
        offering_id=offering.pk if offering else None,
    )
    statement_generate(scope=scope)


def declare_on(offering: Offering, record_date: date) -> Distribution:
    return declare(offering, record_date=record_date, payment_date=today_in(offering))


def refused_on(offering: Offering, record_date: date) -> Conflict:
    before = (Distribution.objects.count(), DistributionStatusChange.objects.count())
    with pytest.raises(Conflict) as refused:
        declare_on(offering, record_date)
    assert refused.value.code == "record_date_in_reported_period"
    assert (Distribution.objects.count(), DistributionStatusChange.objects.count()) == before
    return refused.value


def test_a_record_date_up_to_the_end_of_a_reported_quarter_is_refused() -> None:
    # given: the quarter's statement of the offering went to one of its holders
    offering, holders = holders_since_january()
    periodic_statement(holders[0], offering)
    # then: a record date inside the quarter, or on its last day, is refused, saying why
    refused_on(offering, date(2026, 2, 14))
    refused = refused_on(offering, QUARTER_END)
    assert "2026-03-31" in refused.detail
    assert "already reported" in refused.detail
    assert refused.context["reported_to"] == "2026-03-31"
    # and: the day after the quarter is free
    distribution = declare_on(offering, date(2026, 4, 1))
    assert distribution.status == DistributionStatus.DRAFT


def test_a_statement_of_all_a_holders_offerings_reports_this_one_too() -> None:
    # given: a holder's statement for all their offerings (no offering named)
    offering, holders = holders_since_january()
    periodic_statement(holders[1], None)
    # then: the quarter is reported for this offering
    refused_on(offering, QUARTER_END)


def test_statements_that_do_not_cover_the_offering_do_not_block_it() -> None:
    # given: another offering's statement, and an all-offerings statement of an investor who
    # never held this offering
    offering, _ = holders_since_january()
    other, other_holders = holders_since_january()
    periodic_statement(other_holders[0], other)
    periodic_statement(investors(1)[0], None)
    # then: this offering's quarter is not reported: its record date is accepted
    assert declare_on(offering, QUARTER_END).status == DistributionStatus.DRAFT


def test_a_batch_of_statements_started_for_all_offerings_reports_the_quarter() -> None:
    # given: a batch for the quarter, all offerings (not yet run: its statements are going out)
    offering, _ = holders_since_january()
    statement_batch_create(requested_by=staff(), period=QUARTER, start_in_background=False)
    # then
    refused_on(offering, date(2026, 1, 31))


def test_a_batch_for_another_offering_does_not_block_this_one() -> None:
    offering, _ = holders_since_january()
    other, _ = holders_since_january()
    statement_batch_create(
        requested_by=staff(), period=QUARTER, offering_id=other.pk, start_in_background=False
    )
    assert declare_on(offering, QUARTER_END).status == DistributionStatus.DRAFT


def test_approval_is_refused_when_the_quarter_was_reported_after_the_declaration() -> None:
    # given: declared with a record date in the quarter, then the quarter's statements went out
    offering, holders = holders_since_january()
    distribution = declare_on(offering, QUARTER_END)
    periodic_statement(holders[0], offering)
    # when / then: approving it is refused, and it stays a draft
    with pytest.raises(Conflict) as refused:
        distribution_approve(actor=staff(), distribution_id=distribution.pk)
    assert refused.value.code == "record_date_in_reported_period"
    distribution.refresh_from_db()
    assert (distribution.status, distribution.approved_by_id) == (DistributionStatus.DRAFT, None)


def test_over_http_the_declaration_is_a_409_and_nothing_is_written(api_client: Client) -> None:
    # given
    offering, holders = holders_since_january()
    periodic_statement(holders[0], offering)
    body = {
        "amount": {"amount": "1000.00", "currency": "USD"},
        "kind": "income",
        "record_date": "2026-03-31",
        "payment_date": today_in(offering).isoformat(),
    }
    headers: Any = bearer(member_of(offering.sponsor))
    # when
    response = api_client.post(
        f"/api/v1/offerings/{offering.pk}/distributions",
        data=json.dumps(body),
        content_type="application/json",
        **headers,
    )
    # then
    assert response.status_code == 409, response.content
    assert response.json()["code"] == "record_date_in_reported_period"
    assert "2026-03-31" in response.json()["detail"]
    assert not Distribution.objects.filter(offering=offering).exists()
    # and: the first day after the quarter is accepted over HTTP too
    accepted = api_client.post(
        f"/api/v1/offerings/{offering.pk}/distributions",
        data=json.dumps(body | {"record_date": "2026-04-01"}),
        content_type="application/json",
        **headers,
    )
    assert accepted.status_code == 201, accepted.content
