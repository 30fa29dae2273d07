"""Business days: Monday to Friday. Public holidays are not known here (no calendar of any
jurisdiction is kept), so a deadline counted in business days may fall on one."""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

SATURDAY = 5


def is_business_day(day: date) -> bool:
    return day.weekday() < SATURDAY


def add_business_days(start: date, days: int) -> date:
    """The date `days` business days after `start`, counting from the day after it: from a
    Friday (or a Saturday), 1 business day is the Monday; 0 is `start` itself."""
    if days < 0:
        raise ValueError("days must not be negative")
    day = start
    while days:
        day += timedelta(days=1)
        if is_business_day(day):
            days -= 1
    return day


def end_of_business_days(moment: datetime, days: int, time_zone: str) -> datetime:
    """The end of the `days`-th business day after `moment`'s date in `time_zone`: the
    following midnight there (an exclusive deadline: on time means strictly before it)."""
    zone = ZoneInfo(time_zone)
    last_day = add_business_days(moment.astimezone(zone).date(), days)
    return datetime.combine(last_day + timedelta(days=1), time.min, tzinfo=zone)
