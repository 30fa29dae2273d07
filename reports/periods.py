"""Statement periods: what `--period` and `POST /statements/batches` accept, and the instants
a period's figures are read at.

Labels: a quarter `2026-Q3`, a month `2026-07`, a year `2026`, a day `2026-09-30` (the
cap-table report's "as of" date) or a range `2026-07-01..2026-09-30`. A period's figures are
read as of the end of its last day, in the offering's time zone (as a record date is), so they
never change once the period is over — which is why a period that has not ended yet
everywhere on Earth is refused.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from common.errors import ValidationFailed

_QUARTER = re.compile(r"^(\d{4})-Q([1-4])$")
_MONTH = re.compile(r"^(\d{4})-(\d{2})$")
_YEAR = re.compile(r"^(\d{4})$")
_DAY = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_RANGE = re.compile(r"^(\d{4}-\d{2}-\d{2})\.\.(\d{4}-\d{2}-\d{2})$")
# The last time zone to finish a day is UTC-12: a day is over everywhere 12 h after UTC's end.
_LATEST_OFFSET = timedelta(hours=12)


@dataclass(frozen=True, slots=True)
class Period:
    label: str
    start: date
    end: date

    def start_instant(self, time_zone: str) -> datetime:
        """The last instant *before* the period (postings up to it make the opening figures)."""
        return end_of_day(self.start - timedelta(days=1), time_zone)

    def end_instant(self, time_zone: str) -> datetime:
        return end_of_day(self.end, time_zone)

    def is_over(self, now: datetime) -> bool:
        over_everywhere = datetime.combine(self.end + timedelta(days=1), time.min, UTC)
        return now >= over_everywhere + _LATEST_OFFSET

    @property
    def is_single_day(self) -> bool:
        return self.start == self.end


def last_day_over(now: datetime) -> date:
    """The latest day that is over everywhere at `now` (its figures can no longer change): until
    noon UTC that is the day before yesterday in UTC, since UTC-12 is still living yesterday."""
    return (now.astimezone(UTC) - _LATEST_OFFSET).date() - timedelta(days=1)


def end_of_day(day: date, time_zone: str) -> datetime:
    """The end of `day` in `time_zone`, as a UTC instant (the selectors compare `<=`)."""
    return datetime.combine(day, time.max, tzinfo=ZoneInfo(time_zone)).astimezone(UTC)


def _last_day_of_month(year: int, month: int) -> date:
    first_of_next = date(year + month // 12, month % 12 + 1, 1)
    return first_of_next - timedelta(days=1)


def _invalid(text: str) -> ValidationFailed:
    return ValidationFailed(
        f"Period {text!r} is not one of 2026-Q3, 2026-07, 2026, 2026-09-30 or "
        "2026-07-01..2026-09-30.",
        code="period_invalid",
    )


def period_parse(text: str) -> Period:
    raw = text.strip()
    try:
        if match := _QUARTER.match(raw):
            year, quarter = int(match[1]), int(match[2])
            first_month = 3 * quarter - 2
            return Period(
                raw, date(year, first_month, 1), _last_day_of_month(year, first_month + 2)
            )
        if match := _MONTH.match(raw):
            year, month = int(match[1]), int(match[2])
            return Period(raw, date(year, month, 1), _last_day_of_month(year, month))
        if match := _YEAR.match(raw):
            year = int(match[1])
            return Period(raw, date(year, 1, 1), date(year, 12, 31))
        if _DAY.match(raw):
            day = date.fromisoformat(raw)
            return Period(raw, day, day)
        if match := _RANGE.match(raw):
            start, end = date.fromisoformat(match[1]), date.fromisoformat(match[2])
            if end < start:
                raise ValidationFailed(
                    f"Period {raw!r} ends before it starts.", code="period_invalid"
                )
            return Period(raw, start, end)
    except ValueError:  # month 13, February 30th, year 0
        raise _invalid(raw) from None
    raise _invalid(raw)
