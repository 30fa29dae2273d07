"""Reg CF early close (17 CFR 227.304(b)) on a controlled clock: only once the target is met,
at least 21 days after launch, with at least 5 business days' notice of the new deadline;
cancellation allowed until 48 hours before it; at the new deadline the target must still be
met, or the original deadline comes back. And the US federal business-day calendar."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from django.core import mail

from captable import closing, subscriptions
from captable.closing_selectors import business_days_after_notice, us_federal_holidays
from captable.models import EarlyClose, Subscription
from captable.tasks import close_due_offerings
from common.errors import Conflict, DomainError, NotAllowed, ValidationFailed
from offerings.exemptions import Exemption
from offerings.models import Offering, OfferingStatusChange
from tests.captable.test_closing import fresh, staff
from tests.captable.test_payments import at, funded, signed
from tests.captable.test_subscriptions import kyc_investor, open_offering, statuses

pytestmark = [pytest.mark.django_db, pytest.mark.embedded]

# Monday 3 March 2025, 09:00 in New York: the offering goes live (it opened an hour before)
# and its deadline is 60 days after it opened, 2 May 2025 13:00 UTC.
LAUNCH = datetime(2025, 3, 3, 14, 0, tzinfo=UTC)
# Monday 24 March 2025, 11:00 in New York (EDT): 21 days live.
NOTICE = datetime(2025, 3, 24, 15, 0, tzinfo=UTC)
# 5 business days after the notice's day: Tue 25 … Mon 31 March; the earliest deadline is
# midnight ending Monday 31 March in New York.
EARLIEST = datetime(2025, 4, 1, 4, 0, tzinfo=UTC)


def reg_cf_offering(
    *, units_funded: tuple[int, ...] = (3, 3)
) -> tuple[Offering, list[Subscription]]:
    """Reg CF, $100.00 units, target $500.00; investors fund `units_funded` at launch."""
    with at(LAUNCH):
        offering = open_offering(target_raise_minor=500_00)
        subs = [funded(kyc_investor(), offering, units)[0] for units in units_funded]
    assert fresh(offering).went_live_at == LAUNCH
    return offering, subs


def schedule(offering: Offering, closes_at: datetime, **kwargs: Any) -> EarlyClose:
    return closing.offering_schedule_early_close(
        actor=kwargs.pop("actor", None) or staff(),
        offering_id=offering.pk,
        closes_at=closes_at,
        reason=kwargs.pop("reason", "Target met; the sponsor asks to close early."),
    )


def refused(offering: Offering, closes_at: datetime, kind: type[DomainError], code: str) -> None:
    before = fresh(offering).closes_at, OfferingStatusChange.objects.count()
    with pytest.raises(kind) as caught:
        schedule(offering, closes_at)
    assert caught.value.code == code, caught.value.detail
    assert (fresh(offering).closes_at, OfferingStatusChange.objects.count()) == before
    assert not EarlyClose.objects.exists()


# --- the rules ------------------------------------------------------------------------------------


def test_only_once_the_target_is_met():
    offering, _ = reg_cf_offering(units_funded=(3,))
    with at(NOTICE):
        refused(offering, EARLIEST, Conflict, "target_not_met")


def test_the_new_deadline_is_at_least_21_days_after_launch():
    offering, _ = reg_cf_offering()
    with at(LAUNCH + timedelta(days=7)):  # Monday 10 March: notice alone allows 18 March
        refused(
            offering,
            datetime(2025, 3, 24, 13, 59, tzinfo=UTC),
            ValidationFailed,
            "early_close_too_soon_after_launch",
        )
        assert schedule(offering, LAUNCH + timedelta(days=21)).closes_at == LAUNCH + timedelta(
            days=21
        )


def test_at_least_5_business_days_notice():
    offering, _ = reg_cf_offering()
    with at(NOTICE):
        refused(
            offering,
            EARLIEST - timedelta(seconds=1),
            ValidationFailed,
            "early_close_notice_too_short",
        )
        early = schedule(offering, EARLIEST)
    assert early.closes_at == EARLIEST
    assert early.original_closes_at == datetime(2025, 5, 2, 13, 0, tzinfo=UTC)


def test_other_refusals():
    offering, _ = reg_cf_offering()
    with at(NOTICE):
        refused(offering, fresh(offering).closes_at, ValidationFailed, "early_close_not_earlier")
        with pytest.raises(NotAllowed):
            closing.offering_schedule_early_close(
                actor=kyc_investor().user, offering_id=offering.pk, closes_at=EARLIEST, reason="x"
            )
        schedule(offering, EARLIEST)
        with pytest.raises(Conflict) as caught:
            schedule(offering, EARLIEST + timedelta(days=1))
        assert caught.value.code == "early_close_scheduled"
    other = open_offering(exemption=Exemption.REG_A_TIER2, target_raise_minor=100_00)
    funded(kyc_investor(), other, 2)
    with pytest.raises(Conflict) as caught:
        schedule(other, fresh(other).closes_at - timedelta(days=10))
    assert caught.value.code == "early_close_not_reg_cf"


# --- the notice, the cancellation window and the close ----------------------------------------


def test_early_close_moves_the_deadline_notifies_and_closes_at_the_new_deadline(
    django_capture_on_commit_callbacks,
):
    # given a funded offering, and two investors who signed but never paid
    offering, subs = reg_cf_offering()
    with at(LAUNCH):
        leaving, staying = (signed(kyc_investor(), offering, 1) for _ in range(2))
    # when staff give notice of an early close
    with at(NOTICE), django_capture_on_commit_callbacks(execute=True):
        early = schedule(offering, EARLIEST)
    # then the deadline moved (with its history row), and every committed investor was told
    assert fresh(offering).closes_at == EARLIEST
    moved = OfferingStatusChange.objects.filter(offering=offering).order_by("pk").last()
    assert moved is not None
    assert (moved.from_status, moved.to_status) == ("live", "live")
    assert "Reg CF early close" in moved.reason
    notified = sorted(address for message in mail.outbox for address in message.to)
    assert notified == sorted(s.investor.user.email for s in (*subs, leaving, staying))
    assert "2025-03-30T04:00:00+00:00" in mail.outbox[0].body  # cancel until 48 h before
    # and the cancellation window follows the new deadline: 49 h before it, yes; 47 h, no
    with at(EARLIEST - timedelta(hours=49)):
        subscriptions.subscription_cancel(actor=leaving.investor.user, subscription_id=leaving.pk)
    with at(EARLIEST - timedelta(hours=47)), pytest.raises(Conflict) as caught:
        subscriptions.subscription_cancel(actor=staying.investor.user, subscription_id=staying.pk)
    assert caught.value.code == "cancel_window_closed"
    # when the new deadline passes with the target still met, the scheduled task closes it
    with at(EARLIEST - timedelta(minutes=1)):
        assert close_due_offerings() == []
    with at(EARLIEST + timedelta(minutes=1)):
        assert close_due_offerings() == [offering.pk]
    assert fresh(offering).status == "closed_funded"
    early.refresh_from_db()
    assert early.status == "closed"
    assert statuses(*subs, leaving, staying) == ["accepted", "accepted", "cancelled", "cancelled"]


def test_an_early_close_lapses_when_the_target_is_no_longer_met_at_the_new_deadline():
    # given an early close scheduled with $600.00 funded of a $500.00 target
    offering, subs = reg_cf_offering()
    original = fresh(offering).closes_at
    with at(NOTICE):
        early = schedule(offering, EARLIEST)
    # when one funded investor cancels in time (refunded), leaving $300.00
    with at(EARLIEST - timedelta(hours=50)):
        subscriptions.subscription_cancel(actor=subs[0].investor.user, subscription_id=subs[0].pk)
    # then at the new deadline nothing closes: the original deadline is back
    with at(EARLIEST + timedelta(minutes=1)):
        assert close_due_offerings() == []
    offering = fresh(offering)
    assert (offering.status, offering.closes_at) == ("live", original)
    early.refresh_from_db()
    assert early.status == "lapsed"
    assert early.resolved_at == EARLIEST + timedelta(minutes=1)
    assert "Target no longer met" in early.resolution
    # and the offering carries on to its original deadline (then fails all-or-nothing)
    with at(original + timedelta(minutes=1)):
        assert close_due_offerings() == [offering.pk]
    assert fresh(offering).status == "closed_failed"
    assert statuses(*subs) == ["cancelled", "refunded"]


# --- the business-day calendar -----------------------------------------------------------------


def test_us_federal_holidays_2025():
    assert sorted(us_federal_holidays(2025)) == [
        date(2025, 1, 1),
        date(2025, 1, 20),  # Martin Luther King, Jr.
        date(2025, 2, 17),  # Washington's Birthday
        date(2025, 5, 26),  # Memorial Day
        date(2025, 6, 19),  # Juneteenth
        date(2025, 7, 4),
        date(2025, 9, 1),  # Labor Day
        date(2025, 10, 13),  # Columbus Day
        date(2025, 11, 11),
        date(2025, 11, 27),  # Thanksgiving
        date(2025, 12, 25),
    ]


def test_holidays_on_a_weekend_are_observed_on_the_nearest_weekday():
    assert date(2026, 7, 3) in us_federal_holidays(2026)  # 4 July 2026 is a Saturday
    assert date(2026, 7, 4) not in us_federal_holidays(2026)
    assert date(2023, 1, 2) in us_federal_holidays(2023)  # 1 January 2023 is a Sunday
    # 1 January 2022 (a Saturday) was observed on Friday 31 December 2021
    assert date(2021, 12, 31) in us_federal_holidays(2021)
    assert all(day.year == 2022 for day in us_federal_holidays(2022))
    assert date(2020, 6, 19) not in us_federal_holidays(2020)  # Juneteenth: since 2021


def test_business_days_skip_weekends_and_holidays():
    new_york = "America/New_York"
    # Thursday 3 July 2025: Friday 4 July is a holiday; 7, 8, 9, 10, 11 July count
    assert business_days_after_notice(
        datetime(2025, 7, 3, 14, 0, tzinfo=UTC), days=5, time_zone=new_york
    ) == datetime(2025, 7, 12, 4, 0, tzinfo=UTC)
    # a notice on a Saturday: Monday to Friday of the next week
    assert business_days_after_notice(
        datetime(2025, 3, 1, 15, 0, tzinfo=UTC), days=5, time_zone=new_york
    ) == datetime(2025, 3, 8, 5, 0, tzinfo=UTC)
    # late on Friday evening in New York is still Friday (already Saturday in UTC)
    assert business_days_after_notice(
        datetime(2025, 3, 8, 2, 0, tzinfo=UTC), days=5, time_zone=new_york
    ) == datetime(2025, 3, 15, 4, 0, tzinfo=UTC)


def test_a_close_request_approved_at_a_lapsing_early_deadline_closes_nothing():
    offering, subs = reg_cf_offering()
    original = fresh(offering).closes_at
    with at(NOTICE):
        schedule(offering, EARLIEST)
        close_request = closing.close_request_prepare(
            actor=staff(), offering_id=offering.pk, reason="At the early deadline."
        )
    with at(EARLIEST - timedelta(hours=50)):
        subscriptions.subscription_cancel(actor=subs[0].investor.user, subscription_id=subs[0].pk)
    with at(EARLIEST + timedelta(minutes=1)):
        approved = closing.close_request_approve(actor=staff(), close_request_id=close_request.pk)
    assert approved.status == "cancelled"
    assert (fresh(offering).status, fresh(offering).closes_at) == ("live", original)
    assert EarlyClose.objects.get(offering=offering).status == "lapsed"
