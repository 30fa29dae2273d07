"""Writes: sponsors, issuers, properties, offerings and the offering lifecycle.

Each function is one transaction. A status change is a compare-and-swap
(`filter(pk=..., status=expected).update(status=new)`, exactly one row or
`InvalidTransition`) plus one append-only history row, so two staff members approving the same
offering at once give one approval and one 409.

    draft → in_review → approved → live → closing → closed_funded | closed_failed
      ↑________↓ (reject)                       (draft, in_review, approved, live → cancelled)

Closing is driven by captable (`captable/closing.py`) through `offering_closing_start`,
`offering_closing_finish` and `offering_deadline_move` (a Reg CF early close).
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterator
from dataclasses import dataclass, fields, replace
from datetime import datetime
from decimal import Decimal
from typing import Any

from django.core.files.base import ContentFile, File
from django.core.files.storage import default_storage
from django.db import IntegrityError, transaction
from django.db.models import Max
from django.utils import timezone
from django.utils.text import slugify

from common.auth import staff_required
from common.errors import (
    Conflict,
    InvalidTransition,
    NotAllowed,
    NotFound,
    ValidationFailed,
)
from common.models import User
from common.outbox import outbox_enqueue
from offerings.models import (
    DocumentKind,
    Issuer,
    Offering,
    OfferingDocument,
    OfferingStatus,
    OfferingStatusChange,
    Property,
    Sponsor,
    SponsorMembership,
    SponsorStatus,
    SponsorStatusChange,
)
from offerings.photos import alt_text_clean, photo_prepare
from offerings.quantities import quanta_to_units, units_to_quanta
from offerings.rules import (
    OfferingTerms,
    cap_window_bounds,
    issuer_cap_check,
    offering_terms_check,
    zone_of,
)
from offerings.selectors import issuer_group_raises, offering_get, sponsor_ids_of

logger = logging.getLogger(__name__)

DOCUMENT_SIZE_MAX_BYTES = 25 * 1024 * 1024


# --- sponsors ---------------------------------------------------------------------------------


def sponsor_apply(*, actor: User, name: str, description: str = "", website: str = "") -> Sponsor:
    """Any signed-in user applies for a sponsor; they become its owner, pending staff review."""
    with transaction.atomic():
        sponsor = Sponsor.objects.create(
            name=name.strip(), description=description, website=website, applied_by=actor
        )
        SponsorMembership.objects.create(
            sponsor=sponsor, user=actor, role=SponsorMembership.Role.OWNER
        )
        SponsorStatusChange.objects.create(
            sponsor=sponsor, from_status="", to_status=SponsorStatus.PENDING, actor=actor
        )
    return sponsor


def _sponsor_decide(*, actor: User, sponsor_id: int, to_status: str, reason: str) -> Sponsor:
    staff_required(actor)
    with transaction.atomic():
        now = timezone.now()
        changed = Sponsor.objects.filter(pk=sponsor_id, status=SponsorStatus.PENDING).update(
            status=to_status,
            decided_by=actor,
            decided_at=now,
            decision_reason=reason,
            updated_at=now,
        )
        if changed != 1:
            current = Sponsor.objects.filter(pk=sponsor_id).values_list("status", flat=True).first()
            if current is None:
                raise NotFound(f"Sponsor {sponsor_id} not found.", code="sponsor_not_found")
            raise InvalidTransition(
                f"sponsor is {current}; only a pending sponsor can be decided.",
                from_status=current,
            )
        SponsorStatusChange.objects.create(
            sponsor_id=sponsor_id,
            from_status=SponsorStatus.PENDING,
            to_status=to_status,
            actor=actor,
            reason=reason,
        )
        return Sponsor.objects.get(pk=sponsor_id)


def sponsor_approve(*, actor: User, sponsor_id: int, reason: str = "") -> Sponsor:
    return _sponsor_decide(
        actor=actor, sponsor_id=sponsor_id, to_status=SponsorStatus.APPROVED, reason=reason
    )


def sponsor_reject(*, actor: User, sponsor_id: int, reason: str) -> Sponsor:
    _require_reason(reason)
    return _sponsor_decide(
        actor=actor, sponsor_id=sponsor_id, to_status=SponsorStatus.REJECTED, reason=reason
    )


def _require_reason(reason: str) -> None:
    if not reason.strip():
        raise ValidationFailed("reason is required.", code="reason_required", field="reason")


def _sponsor_id_for(actor: User, sponsor_id: int | None) -> int:
    """The approved sponsor `actor` acts for: the one given, or their only one."""
    approved = sponsor_ids_of(actor)
    if not approved:
        raise NotAllowed(
            "Only members of an approved sponsor may do this.", code="not_sponsor_member"
        )
    if sponsor_id is None:
        if len(approved) > 1:
            raise ValidationFailed(
                "You belong to several sponsors: give sponsor_id.",
                code="sponsor_required",
                field="sponsor_id",
            )
        return next(iter(approved))
    if sponsor_id not in approved:
        raise NotAllowed(
            f"You are not a member of approved sponsor {sponsor_id}.", code="not_sponsor_member"
        )
    return sponsor_id


# --- issuers and properties -------------------------------------------------------------------


def issuer_create(
    *,
    actor: User,
    legal_name: str,
    jurisdiction_country: str,
    entity_type: str,
    jurisdiction_region: str = "",
    sponsor_id: int | None = None,
    affiliate_of_id: int | None = None,
) -> Issuer:
    with transaction.atomic():
        owner_id = _sponsor_id_for(actor, sponsor_id)
        root_id: int | None = None
        if affiliate_of_id is not None:
            affiliate = Issuer.objects.filter(pk=affiliate_of_id, sponsor_id=owner_id).first()
            if affiliate is None:
                raise ValidationFailed(
                    f"Issuer {affiliate_of_id} is not one of your sponsor's issuers.",
                    code="unknown_issuer",
                    field="affiliate_of_id",
                )
            # Groups are flat: attach to the group's root so one query finds the whole group.
            root_id = affiliate.affiliate_of_id or affiliate.pk
        return Issuer.objects.create(
            sponsor_id=owner_id,
            legal_name=legal_name.strip(),
            jurisdiction_country=jurisdiction_country.upper(),
            jurisdiction_region=jurisdiction_region,
            entity_type=entity_type,
            affiliate_of_id=root_id,
            created_by=actor,
        )


@dataclass(frozen=True)
class PropertyDetails:
    name: str
    address_line1: str
    city: str
    country: str
    property_type: str
    address_line2: str = ""
    region: str = ""
    postal_code: str = ""
    description: str = ""
    year_built: int | None = None
    square_feet: int | None = None
    unit_count: int | None = None
    purchase_price_minor: int | None = None
    purchase_price_currency: str = ""
    projected_irr_bps: int | None = None
    projected_cash_yield_bps: int | None = None
    projected_equity_multiple_bps: int | None = None
    projected_hold_months: int | None = None


def _property_details_check(details: PropertyDetails) -> None:
    if (details.purchase_price_minor is None) != (details.purchase_price_currency == ""):
        raise ValidationFailed(
            "purchase_price needs both an amount and a currency.",
            code="purchase_price_incomplete",
            field="purchase_price",
        )
    if details.purchase_price_minor is not None and details.purchase_price_minor <= 0:
        raise ValidationFailed(
            "purchase_price must be positive.", code="price_not_positive", field="purchase_price"
        )
    for name in ("name", "address_line1", "city"):
        if not getattr(details, name).strip():
            raise ValidationFailed(f"{name} must not be empty.", code="required", field=name)


def _property_values(details: PropertyDetails) -> dict[str, Any]:
    values = {field.name: getattr(details, field.name) for field in fields(details)}
    values["country"] = details.country.upper()
    return values


def property_create(
    *, actor: User, details: PropertyDetails, sponsor_id: int | None = None
) -> Property:
    _property_details_check(details)
    with transaction.atomic():
        owner_id = _sponsor_id_for(actor, sponsor_id)
        values = _property_values(details)
        return Property.objects.create(sponsor_id=owner_id, created_by=actor, **values)


def _property_of_member(*, actor: User, property_id: int) -> Property:
    """The property, locked, when `actor` is a member of its approved sponsor (else 404: a
    property of another sponsor does not exist for them)."""
    property_ = (
        Property.objects.select_for_update()
        .filter(pk=property_id, sponsor_id__in=sponsor_ids_of(actor))
        .first()
    )
    if property_ is None:
        raise NotFound(f"Property {property_id} not found.")
    return property_


def property_update(*, actor: User, property_id: int, details: PropertyDetails) -> Property:
    """Replace a property's details (its key figures included). Only while every offering of
    it is a draft: investors and staff rely on the figures of an offering once submitted."""
    _property_details_check(details)
    with transaction.atomic():
        property_ = _property_of_member(actor=actor, property_id=property_id)
        submitted = property_.offerings.exclude(status=OfferingStatus.DRAFT).first()
        if submitted is not None:
            raise Conflict(
                f"The property is in offering {submitted.title!r}, which is {submitted.status}: "
                "its figures can no longer change.",
                code="property_in_submitted_offering",
            )
        for name, value in _property_values(details).items():
            setattr(property_, name, value)
        property_.save(update_fields=[*_property_values(details)])
        # The offerings' list pages are cached on their `updated_at` (selectors).
        property_.offerings.update(updated_at=timezone.now())
    return property_


def property_photo_set(
    *, actor: User, property_id: int, file: File[Any], alt_text: str
) -> Property:
    """Give a property its photo (replacing any earlier one), checked by its content and
    re-encoded (`offerings/photos.py`). A photo is not a term of the offering, so it may change
    at any time. The file is stored before the transaction (slow I/O stays outside it) and
    removed again if the row cannot be written; the replaced file is removed after commit."""
    description = alt_text_clean(alt_text)
    prepared = photo_prepare(file)
    with transaction.atomic():  # 404 before anything is stored
        _property_of_member(actor=actor, property_id=property_id)
    stored_name = default_storage.save(
        f"properties/{property_id}/photo-{prepared.sha256[:20]}.{prepared.extension}",
        ContentFile(prepared.content),
    )
    try:
        with transaction.atomic():
            property_ = _property_of_member(actor=actor, property_id=property_id)
            replaced = property_.photo.name
            property_.photo.name = stored_name
            property_.photo_alt_text = description
            property_.save(update_fields=["photo", "photo_alt_text"])
            property_.offerings.update(updated_at=timezone.now())
    except BaseException:
        default_storage.delete(stored_name)
        raise
    if replaced and replaced != stored_name:
        default_storage.delete(replaced)
    return property_


# --- offerings: create and edit -----------------------------------------------------------------


@dataclass(frozen=True)
class OfferingDraft:
    """The terms a sponsor writes. Quantities in units (Decimal), money in minor units."""

    title: str
    property_id: int
    issuer_id: int
    security_type: str
    currency: str
    price_per_unit_minor: int
    quanta_per_unit: int
    units_authorized: Decimal
    min_investment_units: Decimal
    max_raise_minor: int
    funding_model: str
    exemption: str
    time_zone: str
    opens_at: datetime
    closes_at: datetime
    summary: str = ""
    max_investment_units: Decimal | None = None  # None: up to the whole supply
    target_raise_minor: int = 0
    # The investor's processing fee on top of each subscription: basis points, optional cap.
    investor_fee_basis_points: int = 0
    investor_fee_cap_minor: int | None = None


@dataclass(frozen=True)
class OfferingChanges:
    """A partial edit of a draft: None leaves a field as it is."""

    title: str | None = None
    summary: str | None = None
    property_id: int | None = None
    issuer_id: int | None = None
    security_type: str | None = None
    currency: str | None = None
    price_per_unit_minor: int | None = None
    quanta_per_unit: int | None = None
    units_authorized: Decimal | None = None
    min_investment_units: Decimal | None = None
    max_investment_units: Decimal | None = None
    target_raise_minor: int | None = None
    max_raise_minor: int | None = None
    funding_model: str | None = None
    exemption: str | None = None
    time_zone: str | None = None
    opens_at: datetime | None = None
    closes_at: datetime | None = None

    def given(self) -> Iterator[str]:
        return (field.name for field in fields(self) if getattr(self, field.name) is not None)


def _aware(moment: datetime, time_zone: str) -> datetime:
    """A datetime without an offset is read in the offering's own time zone."""
    if timezone.is_aware(moment):
        return moment
    return timezone.make_aware(moment, zone_of(time_zone))


def _terms_of_draft(draft: OfferingDraft) -> OfferingTerms:
    quanta_per_unit = draft.quanta_per_unit
    authorized = units_to_quanta(
        draft.units_authorized, quanta_per_unit=quanta_per_unit, field="units_authorized"
    )
    maximum = (
        authorized
        if draft.max_investment_units is None
        else units_to_quanta(
            draft.max_investment_units,
            quanta_per_unit=quanta_per_unit,
            field="max_investment_units",
        )
    )
    return OfferingTerms(
        exemption=draft.exemption,
        funding_model=draft.funding_model,
        currency=draft.currency,
        price_per_unit_minor=draft.price_per_unit_minor,
        quanta_per_unit=quanta_per_unit,
        units_authorized_quanta=authorized,
        min_investment_quanta=units_to_quanta(
            draft.min_investment_units,
            quanta_per_unit=quanta_per_unit,
            field="min_investment_units",
        ),
        max_investment_quanta=maximum,
        target_raise_minor=draft.target_raise_minor,
        max_raise_minor=draft.max_raise_minor,
        time_zone=draft.time_zone,
        opens_at=_aware(draft.opens_at, draft.time_zone),
        closes_at=_aware(draft.closes_at, draft.time_zone),
    )


def _owned_property_and_issuer(
    *, actor: User, property_id: int, issuer_id: int
) -> tuple[Property, Issuer]:
    sponsor_ids = sponsor_ids_of(actor)
    if not sponsor_ids:
        raise NotAllowed(
            "Only members of an approved sponsor may do this.", code="not_sponsor_member"
        )
    property_ = Property.objects.filter(pk=property_id, sponsor_id__in=sponsor_ids).first()
    if property_ is None:
        raise ValidationFailed(
            f"Property {property_id} is not one of your sponsor's properties.",
            code="unknown_property",
            field="property_id",
        )
    issuer = Issuer.objects.filter(pk=issuer_id, sponsor_id__in=sponsor_ids).first()
    if issuer is None:
        raise ValidationFailed(
            f"Issuer {issuer_id} is not one of your sponsor's issuers.",
            code="unknown_issuer",
            field="issuer_id",
        )
    if issuer.sponsor_id != property_.sponsor_id:
        raise ValidationFailed(
            "The issuer and the property must belong to the same sponsor.",
            code="issuer_property_sponsor_mismatch",
            field="issuer_id",
        )
    return property_, issuer


def _issuer_cap_check(
    *, issuer: Issuer, terms: OfferingTerms, offering_id: int | None, lock: bool
) -> None:
    if lock:
        # Serialize cap checks of one issuer group: lock its root row until commit.
        root_id = issuer.affiliate_of_id or issuer.pk
        list(Issuer.objects.select_for_update().filter(pk=root_id).values_list("pk"))
    opens_after, opens_before = cap_window_bounds(terms.opens_at)
    others = issuer_group_raises(
        issuer=issuer,
        exemption=terms.exemption,
        opens_after=opens_after,
        opens_before=opens_before,
        exclude_offering_id=offering_id,
    )
    issuer_cap_check(terms, others=others)


def _unique_slug(title: str) -> str:
    base = slugify(title)[:80].strip("-") or "offering"
    taken = set(Offering.objects.filter(slug__startswith=base).values_list("slug", flat=True))
    if base not in taken:
        return base
    return next(f"{base}-{n}" for n in range(2, len(taken) + 3) if f"{base}-{n}" not in taken)


def _terms_fields(terms: OfferingTerms) -> dict[str, Any]:
    return {field.name: getattr(terms, field.name) for field in fields(terms)}


def offering_create(*, actor: User, draft: OfferingDraft) -> Offering:
    """A member of an approved sponsor writes a draft; every rule that can be checked now is."""
    title = draft.title.strip()
    if not title:
        raise ValidationFailed("title is required.", code="title_required", field="title")
    terms = _terms_of_draft(draft)
    offering_terms_check(terms)
    with transaction.atomic():
        property_, issuer = _owned_property_and_issuer(
            actor=actor, property_id=draft.property_id, issuer_id=draft.issuer_id
        )
        _issuer_cap_check(issuer=issuer, terms=terms, offering_id=None, lock=False)
        try:
            with transaction.atomic():
                offering = Offering.objects.create(
                    title=title,
                    slug=_unique_slug(title),
                    summary=draft.summary,
                    sponsor_id=property_.sponsor_id,
                    issuer=issuer,
                    property=property_,
                    security_type=draft.security_type,
                    created_by=actor,
                    investor_fee_basis_points=_basis_points(
                        draft.investor_fee_basis_points, "investor_fee_basis_points"
                    ),
                    investor_fee_cap_minor=_fee_cap(draft.investor_fee_cap_minor),
                    **_terms_fields(terms),
                )
        except IntegrityError:
            raise Conflict(
                "Another offering took this title's slug at the same moment; retry.",
                code="slug_taken",
            ) from None
        OfferingStatusChange.objects.create(
            offering=offering, from_status="", to_status=OfferingStatus.DRAFT, actor=actor
        )
    return offering


def _rescaled(
    quanta: int, *, old_quanta_per_unit: int, new_quanta_per_unit: int, field: str
) -> int:
    units = quanta_to_units(quanta, quanta_per_unit=old_quanta_per_unit)
    return units_to_quanta(units, quanta_per_unit=new_quanta_per_unit, field=field)


def _terms_after(offering: Offering, changes: OfferingChanges) -> OfferingTerms:
    current = OfferingTerms.of(offering)
    given = set(changes.given())
    money_fields = {"price_per_unit_minor", "target_raise_minor", "max_raise_minor"}
    currency_changes = changes.currency is not None and changes.currency != offering.currency
    if currency_changes and not money_fields <= given:
        raise ValidationFailed(
            "To change the currency, give price_per_unit, target_raise and max_raise.",
            code="currency_change_incomplete",
            field="currency",
        )
    quanta_per_unit = changes.quanta_per_unit or offering.quanta_per_unit
    time_zone = changes.time_zone or offering.time_zone

    def quantity(units: Decimal | None, stored_quanta: int, field: str) -> int:
        if units is not None:
            return units_to_quanta(units, quanta_per_unit=quanta_per_unit, field=field)
        return _rescaled(
            stored_quanta,
            old_quanta_per_unit=offering.quanta_per_unit,
            new_quanta_per_unit=quanta_per_unit,
            field=field,
        )

    updated = {
        name: getattr(changes, name) for name in given & {field.name for field in fields(current)}
    }
    updated.update(
        quanta_per_unit=quanta_per_unit,
        time_zone=time_zone,
        units_authorized_quanta=quantity(
            changes.units_authorized, offering.units_authorized_quanta, "units_authorized"
        ),
        min_investment_quanta=quantity(
            changes.min_investment_units, offering.min_investment_quanta, "min_investment_units"
        ),
        max_investment_quanta=quantity(
            changes.max_investment_units, offering.max_investment_quanta, "max_investment_units"
        ),
        opens_at=_aware(changes.opens_at or offering.opens_at, time_zone),
        closes_at=_aware(changes.closes_at or offering.closes_at, time_zone),
    )
    return replace(current, **updated)


def offering_update(*, actor: User, offering_id: int, changes: OfferingChanges) -> Offering:
    """Partial edit of a draft by a member of its sponsor."""
    if changes.title is not None and not changes.title.strip():
        raise ValidationFailed("title must not be empty.", code="title_required", field="title")
    with transaction.atomic():
        offering = _offering_of_member(actor=actor, offering_id=offering_id, lock=True)
        if offering.status != OfferingStatus.DRAFT:
            raise InvalidTransition(
                f"offering is {offering.status}; only a draft can be edited.",
                from_status=offering.status,
            )
        terms = _terms_after(offering, changes)
        offering_terms_check(terms)
        issuer = offering.issuer
        if changes.property_id is not None or changes.issuer_id is not None:
            property_, issuer = _owned_property_and_issuer(
                actor=actor,
                property_id=changes.property_id or offering.property_id,
                issuer_id=changes.issuer_id or offering.issuer_id,
            )
            if property_.sponsor_id != offering.sponsor_id:
                raise ValidationFailed(
                    "The property must belong to the offering's sponsor.",
                    code="issuer_property_sponsor_mismatch",
                    field="property_id",
                )
            offering.property = property_
            offering.issuer = issuer
        _issuer_cap_check(issuer=issuer, terms=terms, offering_id=offering.pk, lock=False)
        for name, value in _terms_fields(terms).items():
            setattr(offering, name, value)
        for name in ("title", "summary", "security_type"):
            value = getattr(changes, name)
            if value is not None:
                setattr(offering, name, value.strip() if name == "title" else value)
        offering.save()
    return offering


def _offering_of_member(*, actor: User, offering_id: int, lock: bool = False) -> Offering:
    """The offering, if `actor` may see it (else 404) and is a member of its sponsor (else 403)."""
    offering = offering_get(user=actor, offering_id=offering_id)
    if offering.sponsor_id not in sponsor_ids_of(actor):
        raise NotAllowed(
            "Only members of the offering's sponsor may do this.", code="not_sponsor_member"
        )
    if lock:
        offering = (
            Offering.objects.select_for_update(of=("self",))
            .select_related("issuer", "property", "sponsor")
            .get(pk=offering_id)
        )
    return offering


# --- offerings: lifecycle --------------------------------------------------------------------


def _offering_transition(
    *,
    offering: Offering,
    allowed_from: tuple[str, ...],
    to_status: str,
    requirement: str,
    actor: User | None,
    reason: str = "",
    **extra_updates: Any,
) -> Offering:
    """Compare-and-swap the status (exactly one row changes) and write the history row.
    Must run inside the caller's transaction."""
    expected = offering.status
    if expected not in allowed_from:
        raise InvalidTransition(f"offering is {expected}; {requirement}.", from_status=expected)
    now = timezone.now()
    changed = Offering.objects.filter(pk=offering.pk, status=expected).update(
        status=to_status, updated_at=now, **extra_updates
    )
    if changed != 1:
        current = Offering.objects.filter(pk=offering.pk).values_list("status", flat=True).first()
        raise InvalidTransition(f"offering is {current}; {requirement}.", from_status=current)
    OfferingStatusChange.objects.create(
        offering_id=offering.pk,
        from_status=expected,
        to_status=to_status,
        actor=actor,
        reason=reason,
    )
    offering.refresh_from_db()
    return offering


def _full_check(offering: Offering) -> None:
    terms = OfferingTerms.of(offering)
    offering_terms_check(terms, now=timezone.now())
    _issuer_cap_check(issuer=offering.issuer, terms=terms, offering_id=offering.pk, lock=True)


def offering_submit(*, actor: User, offering_id: int) -> Offering:
    """draft → in_review, after every rule (including the issuer's 12-month cap)."""
    with transaction.atomic():
        offering = _offering_of_member(actor=actor, offering_id=offering_id)
        if offering.status == OfferingStatus.DRAFT:
            _full_check(offering)
        return _offering_transition(
            offering=offering,
            allowed_from=(OfferingStatus.DRAFT,),
            to_status=OfferingStatus.IN_REVIEW,
            requirement="only a draft can be submitted",
            actor=actor,
        )


def _offering_for_staff(*, actor: User, offering_id: int) -> Offering:
    staff_required(actor)
    return offering_get(user=actor, offering_id=offering_id)


def _basis_points(value: int, field: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 10_000:
        raise ValidationFailed(
            f"{field} must be a whole number of basis points from 0 to 10,000.",
            code="basis_points_invalid",
            field=field,
        )
    return value


def _fee_cap(value: int | None) -> int | None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
        raise ValidationFailed(
            "investor_fee_cap_minor must be a non-negative amount in minor units.",
            code="fee_cap_invalid",
            field="investor_fee_cap_minor",
        )
    return value


def offering_approve(
    *,
    actor: User,
    offering_id: int,
    reason: str = "",
    platform_fee_basis_points: int | None = None,
) -> Offering:
    """in_review → approved (staff). The cap is checked again: other offerings may have moved.
    Staff agree the platform's fee on the raise here (None keeps the offering's, default 0)."""
    with transaction.atomic():
        offering = _offering_for_staff(actor=actor, offering_id=offering_id)
        if offering.status == OfferingStatus.IN_REVIEW:
            _full_check(offering)
            if platform_fee_basis_points is not None:
                fee = _basis_points(platform_fee_basis_points, "platform_fee_basis_points")
                Offering.objects.filter(pk=offering.pk).update(platform_fee_basis_points=fee)
                offering.platform_fee_basis_points = fee
        return _offering_transition(
            offering=offering,
            allowed_from=(OfferingStatus.IN_REVIEW,),
            to_status=OfferingStatus.APPROVED,
            requirement="only an offering in review can be approved",
            actor=actor,
            reason=reason,
        )


def offering_reject(*, actor: User, offering_id: int, reason: str) -> Offering:
    """in_review → draft (staff), with the reason the sponsor must address."""
    _require_reason(reason)
    with transaction.atomic():
        offering = _offering_for_staff(actor=actor, offering_id=offering_id)
        return _offering_transition(
            offering=offering,
            allowed_from=(OfferingStatus.IN_REVIEW,),
            to_status=OfferingStatus.DRAFT,
            requirement="only an offering in review can be rejected",
            actor=actor,
            reason=reason,
        )


def offering_go_live(*, actor: User | None, offering_id: int, reason: str = "") -> Offering:
    """approved → live. `actor` None is the scheduled task (opens_at reached)."""
    with transaction.atomic():
        if actor is None:
            offering = Offering.objects.select_related("issuer").get(pk=offering_id)
        else:
            offering = _offering_for_staff(actor=actor, offering_id=offering_id)
        now = timezone.now()
        if offering.status == OfferingStatus.APPROVED and offering.closes_at <= now:
            raise ValidationFailed(
                "closes_at is in the past; the offering can no longer go live.",
                code="closes_at_in_past",
                field="closes_at",
            )
        return _offering_transition(
            offering=offering,
            allowed_from=(OfferingStatus.APPROVED,),
            to_status=OfferingStatus.LIVE,
            requirement="only an approved offering can go live",
            actor=actor,
            reason=reason,
            went_live_at=now,
        )


CANCELLABLE_STATUSES = (
    OfferingStatus.DRAFT,
    OfferingStatus.IN_REVIEW,
    OfferingStatus.APPROVED,
    OfferingStatus.LIVE,
)


def offering_cancel(*, actor: User, offering_id: int, reason: str) -> Offering:
    """Sponsor member or staff; refunds of a live offering's subscriptions are captable's job."""
    _require_reason(reason)
    with transaction.atomic():
        offering = offering_get(user=actor, offering_id=offering_id)
        if not actor.is_staff and offering.sponsor_id not in sponsor_ids_of(actor):
            raise NotAllowed(
                "Only the offering's sponsor or staff may cancel it.", code="not_sponsor_member"
            )
        return _offering_transition(
            offering=offering,
            allowed_from=CANCELLABLE_STATUSES,
            to_status=OfferingStatus.CANCELLED,
            requirement="only a draft, in-review, approved or live offering can be cancelled",
            actor=actor,
            reason=reason,
        )


# Closing itself (accepting, issuing, refunding) is captable's: these move the offering's own
# state for it, inside the caller's transaction, each with its history row.


def offering_closing_start(*, offering: Offering, actor: User | None, reason: str) -> Offering:
    """live → closing: no more subscriptions or cancellations (captable's closing)."""
    return _offering_transition(
        offering=offering,
        allowed_from=(OfferingStatus.LIVE,),
        to_status=OfferingStatus.CLOSING,
        requirement="only a live offering can start closing",
        actor=actor,
        reason=reason,
    )


def offering_closing_finish(
    *, offering: Offering, is_funded: bool, actor: User | None, reason: str
) -> Offering:
    """closing → closed_funded (units issued) or closed_failed (every investor refunded)."""
    return _offering_transition(
        offering=offering,
        allowed_from=(OfferingStatus.CLOSING,),
        to_status=OfferingStatus.CLOSED_FUNDED if is_funded else OfferingStatus.CLOSED_FAILED,
        requirement="only a closing offering can finish closing",
        actor=actor,
        reason=reason,
    )


def offering_deadline_move(
    *, offering: Offering, closes_at: datetime, actor: User | None, reason: str
) -> Offering:
    """A live offering's deadline moves (captable: a Reg CF early close, or back when it
    lapses). Compare-and-swap on the status and the deadline read, so two moves never both
    apply; the history row (live → live) keeps both deadlines and the reason."""
    if closes_at <= offering.opens_at:
        raise ValidationFailed(
            "closes_at must be after opens_at.", code="closes_before_opens", field="closes_at"
        )
    previous = offering.closes_at
    now = timezone.now()
    changed = Offering.objects.filter(
        pk=offering.pk, status=OfferingStatus.LIVE, closes_at=previous
    ).update(closes_at=closes_at, updated_at=now)
    if changed != 1:
        current = Offering.objects.filter(pk=offering.pk).values_list("status", flat=True).first()
        raise InvalidTransition(
            f"offering is {current} or its deadline moved meanwhile; only a live offering's "
            "deadline can move.",
            from_status=current,
        )
    OfferingStatusChange.objects.create(
        offering_id=offering.pk,
        from_status=OfferingStatus.LIVE,
        to_status=OfferingStatus.LIVE,
        actor=actor,
        reason=f"Deadline moved from {previous.isoformat()} to {closes_at.isoformat()}: {reason}",
    )
    offering.refresh_from_db()
    return offering


def offerings_open_due(*, now: datetime | None = None) -> list[int]:
    """Take every approved offering whose opens_at has passed live; safe to run twice."""
    moment = now or timezone.now()
    due = Offering.objects.filter(
        status=OfferingStatus.APPROVED, opens_at__lte=moment, closes_at__gt=moment
    ).order_by("opens_at", "pk")
    opened: list[int] = []
    for offering_id in due.values_list("pk", flat=True):
        try:
            offering_go_live(actor=None, offering_id=offering_id, reason="opens_at reached")
        except InvalidTransition:
            continue  # someone else (staff, or another run of the task) got there first
        opened.append(offering_id)
    return opened


# --- documents -------------------------------------------------------------------------------

DOCUMENT_STATUSES_OPEN = (
    OfferingStatus.DRAFT,
    OfferingStatus.IN_REVIEW,
    OfferingStatus.APPROVED,
    OfferingStatus.LIVE,
    OfferingStatus.CLOSING,
)


def _sha256_of(file: File[Any]) -> str:
    digest = hashlib.sha256()
    for chunk in file.chunks():
        digest.update(chunk)
    file.seek(0)
    return digest.hexdigest()


def _document_check(*, actor: User, offering_id: int) -> Offering:
    offering = _offering_of_member(actor=actor, offering_id=offering_id)
    if offering.status not in DOCUMENT_STATUSES_OPEN:
        raise Conflict(
            f"offering is {offering.status}; documents can no longer be added.",
            code="offering_closed",
        )
    return offering


def offering_document_upload(
    *, actor: User, offering_id: int, kind: str, file: File[Any], content_type: str = ""
) -> OfferingDocument:
    """A new version of a document kind. The file is stored before the transaction (slow I/O
    stays outside it) and removed again if the row cannot be written."""
    if kind not in DocumentKind.values:
        raise ValidationFailed(
            f"kind {kind!r} is unknown.", code="document_kind_invalid", field="kind"
        )
    size = file.size or 0
    if size == 0:
        raise ValidationFailed("The file is empty.", code="file_empty", field="file")
    if size > DOCUMENT_SIZE_MAX_BYTES:
        raise ValidationFailed(
            f"The file is larger than {DOCUMENT_SIZE_MAX_BYTES // (1024 * 1024)} MB.",
            code="file_too_large",
            field="file",
        )
    offering = _document_check(actor=actor, offering_id=offering_id)
    original_name = (file.name or "document").rsplit("/", 1)[-1][:200]
    document = OfferingDocument(
        offering=offering,
        kind=kind,
        original_name=original_name,
        content_type=content_type[:100],
        size_bytes=size,
        sha256=_sha256_of(file),
        uploaded_by=actor,
    )
    document.file.save(original_name, file, save=False)
    try:
        with transaction.atomic():
            locked = _document_check(actor=actor, offering_id=offering_id)
            # Lock the offering row so two uploads of the same kind get consecutive versions.
            list(Offering.objects.select_for_update().filter(pk=locked.pk).values_list("pk"))
            latest = OfferingDocument.objects.filter(offering=locked, kind=kind).aggregate(
                latest=Max("version")
            )["latest"]
            document.version = (latest or 0) + 1
            document.save()
            # A material change: subscribers whose signed agreement it changes must reconfirm
            # (captable decides which; offerings does not import captable).
            outbox_enqueue(
                task_name="captable.require_reconfirmation",
                kwargs={
                    "offering_id": locked.pk,
                    "document_id": document.pk,
                    "actor_id": actor.pk,
                },
                dedupe_key=f"reconfirm:{document.pk}",
            )
    except BaseException:
        document.file.delete(save=False)
        raise
    return document
