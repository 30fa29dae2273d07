"""Numbers, money and dates for people, in the reader's locale (babel, exact: Decimal in,
never float). Money goes through `common.money.money_display`, the project's one money
formatter; this module adds units, percentages and dates in the same locale."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from zoneinfo import ZoneInfo

from babel import Locale, UnknownLocaleError
from babel.dates import format_date, format_datetime
from babel.numbers import format_decimal

from common.money import money_display
from offerings.quantities import quanta_exponent, quanta_to_units

DEFAULT_LOCALE = "en_US"


def locale_for_country(country: str, default: str = DEFAULT_LOCALE) -> str:
    """The most likely locale of a country (ISO 3166-1 alpha-2): DE → de_DE, US → en_US."""
    try:
        return str(Locale.parse(f"und_{country.upper()}"))
    except (UnknownLocaleError, ValueError):
        return default


@dataclass(frozen=True)
class Formatter:
    locale: str = DEFAULT_LOCALE

    def money(self, amount_minor: int, currency: str) -> str:
        return money_display(amount_minor, currency, locale=self.locale)

    def signed_money(self, amount_minor: int, currency: str) -> str:
        """'+$5,000.00', a true minus sign (U+2212) for outflows, '' for zero (reads better)."""
        if amount_minor == 0:
            return ""
        text = self.money(abs(amount_minor), currency)
        return f"+{text}" if amount_minor > 0 else f"\u2212{text}"

    def units(self, quanta: int, quanta_per_unit: int) -> str:
        """All the places a quantum has, so 12.500 of a 1/1000 offering stays 12.500."""
        places = quanta_exponent(quanta_per_unit)
        pattern = "#,##0" + ("." + "0" * places if places else "")
        return format_decimal(
            quanta_to_units(quanta, quanta_per_unit=quanta_per_unit),
            format=pattern,
            locale=self.locale,
        )

    def signed_units(self, quanta: int, quanta_per_unit: int) -> str:
        if quanta == 0:
            return ""
        text = self.units(abs(quanta), quanta_per_unit)
        return f"+{text}" if quanta > 0 else f"\u2212{text}"

    def percent(self, value: Decimal) -> str:
        """A percentage already in percent (12.5 → '12.5000 %' in the locale's style)."""
        return format_decimal(value, format="#,##0.0000", locale=self.locale) + "\u00a0%"

    def ratio_percent(self, value: Decimal) -> str:
        """A rate as a fraction (an IRR: 0.1234 → '12.34 %'), two places, half to even as
        the dashboard rounds it."""
        shown = (value * 100).quantize(Decimal("0.01"))
        return format_decimal(shown, format="#,##0.00", locale=self.locale) + "\u00a0%"

    def multiple(self, value: Decimal) -> str:
        """An equity multiple: 1.45 → '1.45' and the multiplication sign."""
        shown = value.quantize(Decimal("0.01"))
        return format_decimal(shown, format="#,##0.00", locale=self.locale) + "\u00d7"

    def basis_points(self, value: int) -> str:
        """A rate in basis points as a short percentage: 2400 → '24 %', 1250 → '12.5 %'."""
        percent = Decimal(value).scaleb(-2)
        return format_decimal(percent, format="#,##0.##", locale=self.locale) + "\u00a0%"

    def date(self, day: date) -> str:
        return format_date(day, format="medium", locale=self.locale)

    def moment(self, instant: datetime, time_zone: str) -> str:
        return format_datetime(
            instant, format="medium", tzinfo=ZoneInfo(time_zone), locale=self.locale
        )

    def day_in(self, instant: datetime, time_zone: str) -> str:
        return self.date(instant.astimezone(ZoneInfo(time_zone)).date())
