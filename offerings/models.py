"""Sponsors, issuers, properties, offerings, their documents and their audit history.

Invariants kept here (database constraints where a constraint can say it, triggers in
migration 0002 for append-only history):

- money is an integer of minor units (`..._minor`) next to a currency column, never a float;
  an offering's currency is USD or EUR;
- every quantity of an offering's units is an integer of *quanta*; `quanta_per_unit` is a power
  of ten from 1 to 10**6, and one quantum costs a whole number of cents
  (`price_per_unit_minor % quanta_per_unit == 0`);
- price > 0; 0 < min investment <= max investment <= units authorized; target <= max raise;
  an all-or-nothing offering has a target; `closes_at > opens_at`;
- `units_reserved + units_issued <= units_authorized`, none negative: subscriptions
  (captable) reserve with a conditional UPDATE that this constraint backs;
- a live (or later) offering has `went_live_at`;
- the optional investor processing fee is 0 to 10,000 basis points of the subscription
  amount, with an optional cap (minor units, not negative; NULL = no cap);
- the platform fee, taken from the raise at closing, is 0 to 10,000 basis points;
- a status change of an offering or a sponsor is a compare-and-swap in `services.py` plus one
  `OfferingStatusChange` / `SponsorStatusChange` row; those rows and `OfferingDocument` rows
  are append-only (the database refuses UPDATE and DELETE on them);
- a property's photo has a text alternative (`photo_alt_text`);
- an issuer's `affiliate_of` points at the root of its group (groups are flat), so one query
  finds every issuer whose raises count towards the same 12-month exemption cap.
"""

from __future__ import annotations

import builtins

from django.conf import settings
from django.db import models
from django.db.models import F, Q
from django.db.models.lookups import Exact

from offerings.exemptions import Exemption

SUPPORTED_CURRENCIES = ("USD", "EUR")
QUANTA_PER_UNIT_ALLOWED = tuple(10**exponent for exponent in range(7))


class SponsorStatus(models.TextChoices):
    PENDING = "pending"
    APPROVED = "approved"
    REJECTED = "rejected"


class Sponsor(models.Model):
    """The real-estate firm that lists properties and runs offerings; approved by staff."""

    name = models.CharField(max_length=200)
    description = models.TextField(blank=True)
    website = models.URLField(blank=True)
    status = models.CharField(
        max_length=12, choices=SponsorStatus.choices, default=SponsorStatus.PENDING
    )
    applied_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="sponsor_applications"
    )
    members = models.ManyToManyField(
        settings.AUTH_USER_MODEL, through="SponsorMembership", related_name="sponsors"
    )
    decided_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="+",
    )
    decided_at = models.DateTimeField(null=True, blank=True)
    decision_reason = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        indexes = [models.Index(fields=["status", "created_at"])]
        constraints = [
            models.CheckConstraint(
                condition=Q(status__in=SponsorStatus.values), name="sponsor_status_valid"
            ),
            models.CheckConstraint(
                condition=Q(status=SponsorStatus.PENDING) | Q(decided_at__isnull=False),
                name="sponsor_decision_has_time",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.status})"


class SponsorMembership(models.Model):
    class Role(models.TextChoices):
        OWNER = "owner"
        MEMBER = "member"

    sponsor = models.ForeignKey(Sponsor, on_delete=models.CASCADE, related_name="memberships")
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="sponsor_memberships"
    )
    role = models.CharField(max_length=10, choices=Role.choices, default=Role.MEMBER)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["sponsor", "user"], name="sponsor_membership_unique")
        ]
        indexes = [models.Index(fields=["user", "sponsor"])]

    def __str__(self) -> str:
        return f"{self.user} in {self.sponsor} ({self.role})"


class SponsorStatusChange(models.Model):
    """Append-only: who decided what about a sponsor, when and why."""

    sponsor = models.ForeignKey(Sponsor, on_delete=models.PROTECT, related_name="status_changes")
    from_status = models.CharField(max_length=12, blank=True)
    to_status = models.CharField(max_length=12, choices=SponsorStatus.choices)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    reason = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["created_at", "id"]
        indexes = [models.Index(fields=["sponsor", "created_at"])]

    def __str__(self) -> str:
        return f"sponsor {self.sponsor_id}: {self.from_status or '-'} → {self.to_status}"


class IssuerEntityType(models.TextChoices):
    LLC = "llc", "LLC"
    LP = "lp", "Limited partnership"
    CORPORATION = "corporation"
    TRUST = "trust"
    GMBH = "gmbh", "GmbH"
    SAS = "sas", "SAS"
    OTHER = "other"


class Issuer(models.Model):
    """The legal entity that sells the securities (usually one SPV per property)."""

    sponsor = models.ForeignKey(Sponsor, on_delete=models.PROTECT, related_name="issuers")
    legal_name = models.CharField(max_length=200)
    jurisdiction_country = models.CharField(max_length=2, help_text="ISO 3166-1 alpha-2")
    jurisdiction_region = models.CharField(max_length=100, blank=True, help_text="state")
    entity_type = models.CharField(max_length=20, choices=IssuerEntityType.choices)
    # The root of this issuer's affiliate group (never an affiliate itself: groups are flat).
    affiliate_of = models.ForeignKey(
        "self", on_delete=models.PROTECT, null=True, blank=True, related_name="affiliates"
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        indexes = [models.Index(fields=["sponsor", "legal_name"])]
        constraints = [
            models.CheckConstraint(
                condition=~Q(affiliate_of=F("pk")), name="issuer_not_own_affiliate"
            ),
            models.CheckConstraint(
                condition=Q(entity_type__in=IssuerEntityType.values),
                name="issuer_entity_type_valid",
            ),
        ]

    def __str__(self) -> str:
        return self.legal_name


class PropertyType(models.TextChoices):
    MULTIFAMILY = "multifamily"
    OFFICE = "office"
    RETAIL = "retail"
    INDUSTRIAL = "industrial"
    HOSPITALITY = "hospitality"
    SINGLE_FAMILY = "single_family"
    MIXED_USE = "mixed_use"
    LAND = "land"


class Property(models.Model):
    sponsor = models.ForeignKey(Sponsor, on_delete=models.PROTECT, related_name="properties")
    name = models.CharField(max_length=200)
    address_line1 = models.CharField(max_length=200)
    address_line2 = models.CharField(max_length=200, blank=True)
    city = models.CharField(max_length=100)
    region = models.CharField(max_length=100, blank=True)
    postal_code = models.CharField(max_length=20, blank=True)
    country = models.CharField(max_length=2, help_text="ISO 3166-1 alpha-2")
    property_type = models.CharField(max_length=20, choices=PropertyType.choices)
    description = models.TextField(blank=True)
    year_built = models.PositiveSmallIntegerField(null=True, blank=True)
    square_feet = models.PositiveIntegerField(null=True, blank=True)
    unit_count = models.PositiveIntegerField(null=True, blank=True)
    purchase_price_minor = models.BigIntegerField(null=True, blank=True)
    purchase_price_currency = models.CharField(max_length=3, blank=True)
    projected_irr_bps = models.IntegerField(null=True, blank=True)
    projected_cash_yield_bps = models.IntegerField(null=True, blank=True)
    projected_equity_multiple_bps = models.IntegerField(null=True, blank=True)
    projected_hold_months = models.PositiveSmallIntegerField(null=True, blank=True)
    # Written only by `services.property_photo_set`, which checks and re-encodes the image
    # (offerings/photos.py); the name is the stored file's, never the uploader's.
    photo = models.FileField(upload_to="properties/", max_length=300, blank=True)
    photo_alt_text = models.CharField(max_length=200, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        verbose_name_plural = "properties"
        indexes = [models.Index(fields=["sponsor", "name"])]
        constraints = [
            models.CheckConstraint(
                condition=Q(property_type__in=PropertyType.values),
                name="property_type_valid",
            ),
            models.CheckConstraint(
                condition=Q(purchase_price_minor__isnull=True, purchase_price_currency="")
                | Q(
                    purchase_price_minor__gt=0,
                    purchase_price_currency__in=SUPPORTED_CURRENCIES,
                ),
                name="property_purchase_price_has_currency",
            ),
            models.CheckConstraint(
                condition=Q(photo="") | ~Q(photo_alt_text=""), name="property_photo_has_alt_text"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.name}, {self.city}"


class OfferingStatus(models.TextChoices):
    DRAFT = "draft"
    IN_REVIEW = "in_review"
    APPROVED = "approved"
    LIVE = "live"
    CLOSING = "closing"
    CLOSED_FUNDED = "closed_funded"
    CLOSED_FAILED = "closed_failed"
    CANCELLED = "cancelled"


# Statuses in which the offering has been live (went_live_at is set).
STATUSES_AFTER_LAUNCH = (
    OfferingStatus.LIVE,
    OfferingStatus.CLOSING,
    OfferingStatus.CLOSED_FUNDED,
    OfferingStatus.CLOSED_FAILED,
)


class SecurityType(models.TextChoices):
    EQUITY = "equity"
    PREFERRED_EQUITY = "preferred_equity"
    DEBT = "debt"


class FundingModel(models.TextChoices):
    ALL_OR_NOTHING = "all_or_nothing"
    KEEP_WHAT_YOU_RAISE = "keep_what_you_raise"


class Offering(models.Model):
    title = models.CharField(max_length=200)
    slug = models.SlugField(max_length=100, unique=True)
    summary = models.TextField(blank=True)
    sponsor = models.ForeignKey(Sponsor, on_delete=models.PROTECT, related_name="offerings")
    issuer = models.ForeignKey(Issuer, on_delete=models.PROTECT, related_name="offerings")
    property = models.ForeignKey(Property, on_delete=models.PROTECT, related_name="offerings")
    security_type = models.CharField(max_length=20, choices=SecurityType.choices)
    currency = models.CharField(max_length=3)
    price_per_unit_minor = models.BigIntegerField()
    quanta_per_unit = models.BigIntegerField(default=1)
    units_authorized_quanta = models.BigIntegerField()
    min_investment_quanta = models.BigIntegerField()
    max_investment_quanta = models.BigIntegerField()
    # The minimum raise; 0 = none (only for keep-what-you-raise offerings).
    target_raise_minor = models.BigIntegerField(default=0)
    max_raise_minor = models.BigIntegerField()
    funding_model = models.CharField(max_length=20, choices=FundingModel.choices)
    exemption = models.CharField(max_length=20, choices=Exemption.choices)
    time_zone = models.CharField(max_length=64, help_text="IANA name, e.g. America/New_York")
    opens_at = models.DateTimeField()
    closes_at = models.DateTimeField()
    status = models.CharField(
        max_length=20, choices=OfferingStatus.choices, default=OfferingStatus.DRAFT
    )
    went_live_at = models.DateTimeField(null=True, blank=True)
    units_reserved_quanta = models.BigIntegerField(default=0)
    units_issued_quanta = models.BigIntegerField(default=0)
    # Charged to the investor on top of the subscription amount (0 = none); captable computes
    # it once per subscription with `common.money.basis_points_of`, then applies the cap.
    investor_fee_basis_points = models.PositiveIntegerField(default=0)
    investor_fee_cap_minor = models.BigIntegerField(null=True, blank=True)
    # Taken from each accepted subscription's amount at closing (escrow → platform fees, the
    # rest to the issuer's proceeds); captable rounds it once per subscription.
    platform_fee_basis_points = models.PositiveIntegerField(default=0)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        indexes = [
            models.Index(fields=["status", "exemption"], name="offering_status_exemption"),
            models.Index(fields=["status", "-opens_at", "-id"], name="offering_status_opens_at"),
            models.Index(fields=["sponsor", "status"], name="offering_sponsor_status"),
            models.Index(fields=["issuer", "exemption", "opens_at"], name="offering_issuer_cap"),
            models.Index(fields=["updated_at"], name="offering_updated_at"),
        ]
        constraints = [
            models.CheckConstraint(
                condition=Q(price_per_unit_minor__gt=0), name="offering_price_positive"
            ),
            models.CheckConstraint(
                condition=Q(quanta_per_unit__in=QUANTA_PER_UNIT_ALLOWED),
                name="offering_quanta_per_unit_power_of_ten",
            ),
            models.CheckConstraint(
                condition=Exact(F("price_per_unit_minor") % F("quanta_per_unit"), 0),
                name="offering_quantum_price_whole_cents",
            ),
            models.CheckConstraint(
                condition=Q(units_authorized_quanta__gt=0),
                name="offering_units_authorized_positive",
            ),
            models.CheckConstraint(
                condition=Q(min_investment_quanta__gt=0), name="offering_min_investment_positive"
            ),
            models.CheckConstraint(
                condition=Q(min_investment_quanta__lte=F("max_investment_quanta")),
                name="offering_min_investment_lte_max",
            ),
            models.CheckConstraint(
                condition=Q(max_investment_quanta__lte=F("units_authorized_quanta")),
                name="offering_max_investment_lte_authorized",
            ),
            models.CheckConstraint(
                condition=Q(target_raise_minor__gte=0), name="offering_target_not_negative"
            ),
            models.CheckConstraint(
                condition=Q(max_raise_minor__gt=0), name="offering_max_raise_positive"
            ),
            models.CheckConstraint(
                condition=Q(target_raise_minor__lte=F("max_raise_minor")),
                name="offering_target_lte_max_raise",
            ),
            models.CheckConstraint(
                condition=~Q(funding_model=FundingModel.ALL_OR_NOTHING)
                | Q(target_raise_minor__gt=0),
                name="offering_all_or_nothing_has_target",
            ),
            models.CheckConstraint(
                condition=Q(closes_at__gt=F("opens_at")), name="offering_closes_after_opens"
            ),
            models.CheckConstraint(
                condition=Q(units_reserved_quanta__gte=0, units_issued_quanta__gte=0),
                name="offering_units_not_negative",
            ),
            models.CheckConstraint(
                condition=Q(
                    units_authorized_quanta__gte=F("units_reserved_quanta")
                    + F("units_issued_quanta")
                ),
                name="offering_no_overselling",
            ),
            models.CheckConstraint(
                condition=Q(currency__in=SUPPORTED_CURRENCIES), name="offering_currency_supported"
            ),
            models.CheckConstraint(
                condition=Q(status__in=OfferingStatus.values), name="offering_status_valid"
            ),
            models.CheckConstraint(
                condition=Q(exemption__in=Exemption.values), name="offering_exemption_valid"
            ),
            models.CheckConstraint(
                condition=Q(funding_model__in=FundingModel.values),
                name="offering_funding_model_valid",
            ),
            models.CheckConstraint(
                condition=Q(security_type__in=SecurityType.values),
                name="offering_security_type_valid",
            ),
            models.CheckConstraint(
                condition=~Q(status__in=STATUSES_AFTER_LAUNCH) | Q(went_live_at__isnull=False),
                name="offering_launched_has_went_live_at",
            ),
            models.CheckConstraint(
                condition=Q(investor_fee_basis_points__gte=0, investor_fee_basis_points__lte=10_000)
                & (Q(investor_fee_cap_minor__isnull=True) | Q(investor_fee_cap_minor__gte=0)),
                name="offering_investor_fee_valid",
            ),
            models.CheckConstraint(
                condition=Q(
                    platform_fee_basis_points__gte=0, platform_fee_basis_points__lte=10_000
                ),
                name="offering_platform_fee_valid",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.title} ({self.status})"

    @builtins.property  # the `property` field shadows the builtin in this class body
    def units_available_quanta(self) -> int:
        return self.units_authorized_quanta - self.units_reserved_quanta - self.units_issued_quanta


class OfferingStatusChange(models.Model):
    """Append-only: every status an offering went through, who moved it and why."""

    offering = models.ForeignKey(Offering, on_delete=models.PROTECT, related_name="status_changes")
    from_status = models.CharField(max_length=20, blank=True)
    to_status = models.CharField(max_length=20, choices=OfferingStatus.choices)
    # Null: the system (the scheduled task that opens due offerings).
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    reason = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["created_at", "id"]
        indexes = [models.Index(fields=["offering", "created_at"])]

    def __str__(self) -> str:
        return f"offering {self.offering_id}: {self.from_status or '-'} → {self.to_status}"


class DocumentKind(models.TextChoices):
    OFFERING_MEMORANDUM = "offering_memorandum"
    FORM_C = "form_c", "Form C"
    SUBSCRIPTION_AGREEMENT_TEMPLATE = "subscription_agreement_template"
    OTHER = "other"


def _document_path(instance: OfferingDocument, filename: str) -> str:
    return f"offerings/{instance.offering_id}/{instance.kind}/{instance.sha256[:16]}-{filename}"


class OfferingDocument(models.Model):
    """Append-only and versioned: a new upload of the same kind is the next version."""

    offering = models.ForeignKey(Offering, on_delete=models.PROTECT, related_name="documents")
    kind = models.CharField(max_length=40, choices=DocumentKind.choices)
    version = models.PositiveIntegerField()
    file = models.FileField(upload_to=_document_path, max_length=300)
    original_name = models.CharField(max_length=200)
    content_type = models.CharField(max_length=100, blank=True)
    size_bytes = models.BigIntegerField()
    sha256 = models.CharField(max_length=64)
    uploaded_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+"
    )
    uploaded_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["offering", "kind", "version"]
        constraints = [
            models.UniqueConstraint(
                fields=["offering", "kind", "version"], name="offering_document_version_unique"
            ),
            models.CheckConstraint(condition=Q(version__gte=1), name="offering_document_version"),
            models.CheckConstraint(
                condition=Q(kind__in=DocumentKind.values), name="offering_document_kind_valid"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.kind} v{self.version} of offering {self.offering_id}"


class NetAssetValue(models.Model):
    """Append-only: the offering's net asset value per unit from `effective_date` on, posted by
    the sponsor or staff. A correction is a new row for the same date; the latest posted row
    of the latest date on or before a day is the NAV as of that day (`offerings/nav.py`)."""

    offering = models.ForeignKey(Offering, on_delete=models.PROTECT, related_name="nav_history")
    effective_date = models.DateField()
    # Per whole unit, in minor units of the offering's currency; one quantum's share is whole
    # cents (the service checks it, as for the price), so reinvestment buys whole quanta.
    nav_per_unit_minor = models.BigIntegerField()
    currency = models.CharField(max_length=3)
    memo = models.TextField(blank=True)
    posted_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+"
    )
    posted_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["offering", "effective_date", "id"]
        indexes = [models.Index(fields=["offering", "effective_date"], name="nav_offering_date")]
        constraints = [
            models.CheckConstraint(
                condition=Q(nav_per_unit_minor__gt=0), name="nav_per_unit_positive"
            ),
            models.CheckConstraint(
                condition=Q(currency__in=SUPPORTED_CURRENCIES), name="nav_currency_supported"
            ),
        ]

    def __str__(self) -> str:
        return f"NAV of offering {self.offering_id} from {self.effective_date}"
