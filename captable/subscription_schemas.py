"""API schemas for subscriptions. Inputs are strict; units go in as a decimal string of the
offering's units and come out both as units and as quanta (int); money as `MoneyOut`."""

from __future__ import annotations

import functools
from collections.abc import Callable
from datetime import datetime
from typing import Any

from ninja import Schema
from pydantic import BaseModel, Field

from captable.models import Subscription, SubscriptionAgreement, SubscriptionStatusChange
from captable.schemas import UnitsString
from captable.subscription_selectors import cancel_deadline, waitlist_position
from common.api_json import api_json
from common.schemas import MoneyOut, StrictSchema
from offerings.quantities import format_units


class SubscriptionCreateIn(StrictSchema):
    units: UnitsString
    risk_warning_acknowledged: bool = Field(
        False,
        description="ECSP: the investor read and accepts the risk warning shown when one "
        "investment exceeds the greater of EUR 1,000 and 5% of their net worth.",
    )


class SubscriptionSignIn(StrictSchema):
    typed_name: str = Field(
        min_length=1, max_length=200, description="Your full legal name, as on your profile."
    )
    agreement_sha256: str | None = Field(
        None,
        pattern=r"^[0-9a-fA-F]{64}$",
        description="The SHA-256 of the agreement text you were shown "
        "(`GET /subscriptions/{id}/agreement`); if the agreement changed since, signing is "
        "refused with 409.",
    )


class SubscriptionCancelIn(StrictSchema):
    reason: str = Field("", max_length=2000)


class ComplianceOut(Schema):
    code: str
    reason: str
    rule_version: str


class SubscriptionOut(Schema):
    id: int
    offering_id: int
    offering_title: str
    status: str
    units: str
    quanta: int
    amount: MoneyOut
    fee: MoneyOut
    total: MoneyOut = Field(description="Amount plus the processing fee: what is to be paid.")
    waitlist_position: int | None = Field(
        description="1 for the head of the offering's waitlist; null when not waitlisted."
    )
    compliance: ComplianceOut
    risk_warning_acknowledged_at: datetime | None
    revocable_until: datetime | None = Field(
        description="ECSP: end of the 4-day reflection period (revocation without reason)."
    )
    cancel_deadline: datetime = Field(
        description="Until when an unfunded subscription can be cancelled (Reg CF: 48 hours "
        "before the offering deadline; others: the deadline)."
    )
    reserved_at: datetime | None
    expires_at: datetime | None = Field(
        description="When an unfunded reservation lapses and its units are released."
    )
    signed_at: datetime | None
    created_at: datetime
    updated_at: datetime

    @staticmethod
    def resolve_offering_id(obj: Subscription) -> int:
        return obj.offering_id

    @staticmethod
    def resolve_offering_title(obj: Subscription) -> str:
        return obj.offering.title

    @staticmethod
    def resolve_units(obj: Subscription) -> str:
        return format_units(obj.quanta, obj.offering.quanta_per_unit)

    @staticmethod
    def resolve_amount(obj: Subscription) -> MoneyOut:
        return MoneyOut.of_minor_units(obj.amount_minor, obj.currency)

    @staticmethod
    def resolve_fee(obj: Subscription) -> MoneyOut:
        return MoneyOut.of_minor_units(obj.fee_minor, obj.currency)

    @staticmethod
    def resolve_total(obj: Subscription) -> MoneyOut:
        return MoneyOut.of_minor_units(obj.amount_minor + obj.fee_minor, obj.currency)

    @staticmethod
    def resolve_waitlist_position(obj: Subscription) -> int | None:
        return waitlist_position(obj)

    @staticmethod
    def resolve_compliance(obj: Subscription) -> ComplianceOut:
        return ComplianceOut(
            code=obj.compliance_code, reason=obj.compliance_reason, rule_version=obj.rule_version
        )

    @staticmethod
    def resolve_cancel_deadline(obj: Subscription) -> datetime:
        return cancel_deadline(offering=obj.offering)


class SubscriptionStatusChangeOut(Schema):
    from_status: str
    to_status: str
    actor_id: int | None
    reason: str
    created_at: datetime

    @staticmethod
    def resolve_actor_id(obj: SubscriptionStatusChange) -> int | None:
        return obj.actor_id


class SignatureOut(Schema):
    typed_name: str
    signed_at: datetime
    ip_address: str | None
    document_sha256: str
    document_version: str


class SubscriptionDetailOut(SubscriptionOut):
    history: list[SubscriptionStatusChangeOut]
    signatures: list[SignatureOut]

    # Both in their models' default order (time, then id); `.all()` so that rows a service
    # already holds (a prefetch, or a subscription just created) are not read again.
    @staticmethod
    def resolve_history(obj: Subscription) -> list[SubscriptionStatusChange]:
        return list(obj.status_changes.all())

    @staticmethod
    def resolve_signatures(obj: Subscription) -> list[SubscriptionAgreement]:
        return list(obj.agreements.all())


class AgreementOut(Schema):
    subscription_id: int
    document_version: str
    document_sha256: str
    text: str


def subscription_detail_out(subscription: Subscription) -> SubscriptionDetailOut:
    """`SubscriptionDetailOut.from_orm(subscription)`, built field by field with the same
    resolvers and not validated again (what the models hold already has the schema's types):
    the subscribe path renders every response, and validating through ninja's per-object
    getter costs more than the rest of the rendering. The same JSON (tests compare them)."""
    values = _fields_of(SubscriptionDetailOut, subscription, skip=("history", "signatures"))
    values["history"] = [
        SubscriptionStatusChangeOut.model_construct(**_fields_of(SubscriptionStatusChangeOut, row))
        for row in subscription.status_changes.all()
    ]
    values["signatures"] = [
        SignatureOut.model_construct(**_fields_of(SignatureOut, row))
        for row in subscription.agreements.all()
    ]
    return SubscriptionDetailOut.model_construct(**values)


def subscription_detail_json(subscription: Subscription) -> bytes:
    """The JSON of `subscription_detail_out(subscription)` as the API renders it, without
    building the response models: every subscribe renders one, and dumping the models (the
    renderer's route) cost more than reading the values. Same bytes (tests compare them):
    datetimes in UTC end in "Z", as pydantic writes them."""
    values = _plain_fields_of(SubscriptionDetailOut, subscription, skip=("history", "signatures"))
    values["history"] = [
        _plain_fields_of(SubscriptionStatusChangeOut, row)
        for row in subscription.status_changes.all()
    ]
    values["signatures"] = [
        _plain_fields_of(SignatureOut, row) for row in subscription.agreements.all()
    ]
    return api_json(values)


def _plain_fields_of(
    schema: type[Schema], row: object, skip: tuple[str, ...] = ()
) -> dict[str, Any]:
    """`_fields_of`, nested models (money, compliance) as the dicts of their fields."""
    values = _fields_of(schema, row, skip)
    for name, value in values.items():
        if isinstance(value, BaseModel):
            values[name] = dict(value.__dict__)
    return values


def _fields_of(schema: type[Schema], row: object, skip: tuple[str, ...] = ()) -> dict[str, Any]:
    """The schema's fields of `row`: its `resolve_<field>` where it has one, else the
    attribute."""
    values: dict[str, Any] = {}
    for name, resolver in _read_plan(schema):
        if name not in skip:
            values[name] = resolver(row) if resolver is not None else getattr(row, name)
    return values


@functools.cache
def _read_plan(schema: type[Schema]) -> list[tuple[str, Callable[[Any], Any] | None]]:
    # Looked up once: a missing attribute of a pydantic model class is slow to find missing.
    return [(name, getattr(schema, f"resolve_{name}", None)) for name in schema.model_fields]
