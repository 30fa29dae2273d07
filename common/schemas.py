"""Schemas shared by every router: strict input base, Money in/out, errors, pagination."""

from __future__ import annotations

from decimal import Decimal
from functools import cache
from types import NoneType, UnionType
from typing import Annotated, Any, Union, get_args, get_origin

from moneyed import Money
from ninja import Schema
from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from common.money import (
    SUPPORTED_CURRENCIES,
    decimal_to_minor_units,
    format_minor_units,
    money_to_minor_units,
)


class StrictSchema(Schema):
    """Base for every input schema: an unknown field is a 422, never silently ignored, and so
    is a value the database cannot store: PostgreSQL refuses NUL characters, a lone surrogate
    cannot be encoded as UTF-8, SQLite refuses an integer beyond 64 bits (each was a 500,
    found by tests/hardening/test_bad_input)."""

    model_config = ConfigDict(extra="forbid")

    # Before (the text as sent) and after (a float or a string that became an integer).
    @field_validator("*", mode="before")
    @classmethod
    def _storable_as_sent(cls, value: Any, info: ValidationInfo) -> Any:
        if info.field_name is not None and _whole_number_only(cls, info.field_name):
            _refuse_non_number(value)
        return _refuse_unstorable(value)

    @field_validator("*", mode="after")
    @classmethod
    def _storable_as_parsed(cls, value: Any) -> Any:
        return _refuse_unstorable(value)


def _refuse_non_number(value: Any) -> None:
    # Pydantic's lax mode turns true into 1 and "12" into 12; the OpenAPI document says
    # "integer", so a client sending either has a bug we should tell it about (found by the
    # schemathesis stress run: POST /properties took false as projected_cash_yield_bps).
    if isinstance(value, bool | str):
        raise ValueError("must be a whole number (a JSON integer, not a string or true/false)")


@cache
def _whole_number_only(schema: type[BaseModel], field_name: str) -> bool:
    """True when the field accepts integers and nothing else but null (amounts and units are
    strings by design and are not affected)."""
    field = schema.model_fields.get(field_name)
    if field is None:
        return False
    kinds = _leaf_types(field.annotation) - {NoneType}
    return kinds == {int}


def _leaf_types(annotation: Any) -> set[Any]:
    origin = get_origin(annotation)
    if origin is Annotated:
        return _leaf_types(get_args(annotation)[0])
    if origin is Union or origin is UnionType:
        return set().union(*(_leaf_types(arg) for arg in get_args(annotation)))
    return {annotation}


def _refuse_unstorable(value: Any) -> Any:
    if not _storable(value):
        raise ValueError(
            "text must be valid Unicode without NUL (\\u0000) characters, "
            "and whole numbers must fit in 64 bits"
        )
    return value


INTEGER_MIN, INTEGER_MAX = -(2**63), 2**63 - 1


def _storable(value: Any) -> bool:
    if isinstance(value, int):
        return INTEGER_MIN <= value <= INTEGER_MAX
    if isinstance(value, str):
        if "\x00" in value:
            return False
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return False
        return True
    if isinstance(value, list | tuple):
        return all(_storable(item) for item in value)
    if isinstance(value, dict):
        return all(_storable(key) and _storable(item) for key, item in value.items())
    return True


AmountString = Annotated[
    str,
    Field(
        pattern=r"^-?\d{1,15}(\.\d{1,6})?$",
        examples=["1000.00"],
        description="Decimal amount as a string (never a JSON number, to stay exact).",
    ),
]


class MoneyIn(StrictSchema):
    amount: AmountString
    currency: str = Field(examples=["USD"], min_length=3, max_length=3)

    @field_validator("currency")
    @classmethod
    def _known_currency(cls, value: str) -> str:
        if value not in SUPPORTED_CURRENCIES:
            raise ValueError(f"currency must be one of {', '.join(SUPPORTED_CURRENCIES)}")
        return value

    def to_money(self) -> Money:
        return Money(Decimal(self.amount), self.currency)

    def to_minor_units(self) -> int:
        return decimal_to_minor_units(Decimal(self.amount), self.currency)


class MoneyOut(BaseModel):
    """A plain pydantic model, not a ninja `Schema`: it is always built explicitly, never read
    off an ORM object, and skipping ninja's per-object getter matters in long lists."""

    amount: str = Field(examples=["1000.00"])
    currency: str = Field(examples=["USD"])

    @classmethod
    def of_minor_units(cls, amount_minor: int, currency: str) -> MoneyOut:
        return cls(amount=format_minor_units(amount_minor, currency), currency=currency)

    @classmethod
    def of_money(cls, money: Money) -> MoneyOut:
        code = money.currency.code
        return cls.of_minor_units(money_to_minor_units(money), code)


class ErrorOut(Schema):
    detail: str
    code: str


class ValidationErrorOut(ErrorOut):
    errors: list[dict[str, object]] = []
