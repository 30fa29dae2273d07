"""Investor profiles, KYC, accreditation evidence, knowledge-test attempts and decision history.

Invariants kept here (by database constraints unless said otherwise):
- one investor profile per user; `country` is two capital letters, and `us_state` is a valid
  US state or territory code exactly when the country is US (empty otherwise);
- money figures are integer minor units in `financials_currency` and never negative (NULL
  while not given); the treaty withholding rate is 0 to 10,000 basis points, only with a W-8BEN;
- the tax id is stored encrypted (`EncryptedTextField`); nothing outside this app's services
  reads it in clear, and the API shows only its last four characters;
- status columns only hold their choices; `verified` accreditation always has an expiry;
  a decided KYC status (approved/rejected) always has a decision time;
- a knowledge-test attempt scores between 0 and its maximum, and is valid until a date
  exactly when it passed;
- decision history rows are append-only: the services only insert them, the admin cannot
  change them, and a database trigger refuses UPDATE (and DELETE on PostgreSQL; SQLite keeps
  DELETE possible so test-database flushes still work);
- statuses change only by compare-and-swap in `investors/services.py`, each change with a
  history row (who, when, from, to, why, rule version).
"""

from __future__ import annotations

from django.conf import settings
from django.db import models

from common.crypto import EncryptedTextField

US_STATES = [
    "AL",
    "AK",
    "AZ",
    "AR",
    "CA",
    "CO",
    "CT",
    "DE",
    "FL",
    "GA",
    "HI",
    "ID",
    "IL",
    "IN",
    "IA",
    "KS",
    "KY",
    "LA",
    "ME",
    "MD",
    "MA",
    "MI",
    "MN",
    "MS",
    "MO",
    "MT",
    "NE",
    "NV",
    "NH",
    "NJ",
    "NM",
    "NY",
    "NC",
    "ND",
    "OH",
    "OK",
    "OR",
    "PA",
    "RI",
    "SC",
    "SD",
    "TN",
    "TX",
    "UT",
    "VT",
    "VA",
    "WA",
    "WV",
    "WI",
    "WY",
    "DC",
    "AS",
    "GU",
    "MP",
    "PR",
    "VI",
]


def _non_negative_or_null(field: str) -> models.Q:
    return models.Q(**{f"{field}__isnull": True}) | models.Q(**{f"{field}__gte": 0})


class InvestorKind(models.TextChoices):
    INDIVIDUAL = "individual"
    JOINT = "joint"
    ENTITY = "entity"
    TRUST = "trust"
    IRA = "ira", "IRA"


class TaxForm(models.TextChoices):
    W9 = "w9", "W-9"
    W8BEN = "w8ben", "W-8BEN"
    NONE = "none", "None on file"


class AccreditationStatus(models.TextChoices):
    NONE = "none"
    SELF_CERTIFIED = "self_certified"
    VERIFIED = "verified"


class KycStatus(models.TextChoices):
    PENDING = "pending"
    APPROVED = "approved"
    REJECTED = "rejected"


class FinancialsCurrency(models.TextChoices):
    USD = "USD"
    EUR = "EUR"


class Investor(models.Model):
    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="investor"
    )
    kind = models.CharField(
        max_length=12, choices=InvestorKind.choices, default=InvestorKind.INDIVIDUAL
    )
    legal_name = models.CharField(max_length=200)
    country = models.CharField(max_length=2, help_text="ISO 3166-1 alpha-2")
    us_state = models.CharField(max_length=2, blank=True, default="")

    income_year_minus_2_minor = models.BigIntegerField(null=True, blank=True)
    income_year_minus_1_minor = models.BigIntegerField(null=True, blank=True)
    income_current_year_expected_minor = models.BigIntegerField(null=True, blank=True)
    is_joint_income = models.BooleanField(default=False)
    net_worth_minor = models.BigIntegerField(
        null=True, blank=True, help_text="Excluding the primary residence."
    )
    entity_assets_minor = models.BigIntegerField(
        null=True, blank=True, help_text="Entities and trusts: total assets."
    )
    financials_currency = models.CharField(
        max_length=3, choices=FinancialsCurrency.choices, default=FinancialsCurrency.USD
    )
    has_securities_license = models.BooleanField(
        default=False, help_text="Series 7, 65 or 82 in good standing."
    )

    tax_form = models.CharField(max_length=8, choices=TaxForm.choices, default=TaxForm.NONE)
    tax_id = EncryptedTextField(blank=True, default="")
    treaty_withholding_rate_basis_points = models.PositiveIntegerField(null=True, blank=True)

    accreditation_status = models.CharField(
        max_length=16, choices=AccreditationStatus.choices, default=AccreditationStatus.NONE
    )
    accreditation_expires_at = models.DateTimeField(null=True, blank=True)
    is_sophisticated = models.BooleanField(
        default=False, help_text="ECSP sophisticated investor (Annex II), granted by staff."
    )
    knowledge_test_valid_until = models.DateTimeField(null=True, blank=True)

    kyc_status = models.CharField(
        max_length=10, choices=KycStatus.choices, default=KycStatus.PENDING
    )
    kyc_reason = models.TextField(blank=True, default="")
    kyc_decided_at = models.DateTimeField(null=True, blank=True)

    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=models.Q(kind__in=[choice.value for choice in InvestorKind]),
                name="investor_kind_valid",
            ),
            models.CheckConstraint(
                condition=models.Q(country__regex=r"^[A-Z]{2}$"), name="investor_country_format"
            ),
            models.CheckConstraint(
                condition=(
                    models.Q(country="US", us_state__in=US_STATES)
                    | (~models.Q(country="US") & models.Q(us_state=""))
                ),
                name="investor_us_state_iff_us",
            ),
            *[
                models.CheckConstraint(
                    condition=_non_negative_or_null(field), name=f"investor_{field}_non_negative"
                )
                for field in (
                    "income_year_minus_2_minor",
                    "income_year_minus_1_minor",
                    "income_current_year_expected_minor",
                    "net_worth_minor",
                    "entity_assets_minor",
                )
            ],
            models.CheckConstraint(
                condition=models.Q(financials_currency__in=["USD", "EUR"]),
                name="investor_financials_currency_valid",
            ),
            models.CheckConstraint(
                condition=models.Q(tax_form__in=[choice.value for choice in TaxForm]),
                name="investor_tax_form_valid",
            ),
            models.CheckConstraint(
                condition=models.Q(treaty_withholding_rate_basis_points__isnull=True)
                | models.Q(
                    tax_form="w8ben",
                    treaty_withholding_rate_basis_points__gte=0,
                    treaty_withholding_rate_basis_points__lte=10_000,
                ),
                name="investor_treaty_rate_only_w8ben",
            ),
            models.CheckConstraint(
                condition=models.Q(
                    accreditation_status__in=[choice.value for choice in AccreditationStatus]
                ),
                name="investor_accreditation_status_valid",
            ),
            models.CheckConstraint(
                condition=~models.Q(accreditation_status="verified")
                | models.Q(accreditation_expires_at__isnull=False),
                name="investor_verified_has_expiry",
            ),
            models.CheckConstraint(
                condition=models.Q(kyc_status__in=[choice.value for choice in KycStatus]),
                name="investor_kyc_status_valid",
            ),
            models.CheckConstraint(
                condition=models.Q(kyc_status="pending") | models.Q(kyc_decided_at__isnull=False),
                name="investor_kyc_decided_has_time",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.legal_name} (investor #{self.pk})"

    @property
    def tax_id_masked(self) -> str:
        if not self.tax_id:
            return ""
        return "•" * max(len(self.tax_id) - 4, 1) + self.tax_id[-4:]


class EvidenceMethod(models.TextChoices):
    INCOME = "income"
    NET_WORTH = "net_worth"
    LICENSE = "license"
    ENTITY_ASSETS = "entity_assets"
    OTHER = "other"


class AccreditationEvidence(models.Model):
    investor = models.ForeignKey(
        Investor, on_delete=models.PROTECT, related_name="accreditation_evidence"
    )
    method = models.CharField(max_length=16, choices=EvidenceMethod.choices)
    document_reference = models.CharField(max_length=200)
    verifier = models.CharField(max_length=200, help_text="Who checked the documents.")
    verified_at = models.DateTimeField()
    expires_at = models.DateTimeField()
    approved_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        verbose_name_plural = "accreditation evidence"
        ordering = ["-verified_at", "-pk"]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(method__in=[choice.value for choice in EvidenceMethod]),
                name="accreditationevidence_method_valid",
            ),
            models.CheckConstraint(
                condition=models.Q(expires_at__gt=models.F("verified_at")),
                name="accreditationevidence_expires_after_verified",
            ),
            models.CheckConstraint(
                condition=~models.Q(document_reference="") & ~models.Q(verifier=""),
                name="accreditationevidence_reference_and_verifier",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.method} evidence for investor #{self.investor_id}"


class KnowledgeTestAttempt(models.Model):
    investor = models.ForeignKey(
        Investor, on_delete=models.PROTECT, related_name="knowledge_test_attempts"
    )
    test_version = models.CharField(max_length=40)
    answers = models.JSONField()
    score = models.PositiveSmallIntegerField()
    max_score = models.PositiveSmallIntegerField()
    passed = models.BooleanField()
    taken_at = models.DateTimeField()
    valid_until = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-taken_at", "-pk"]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(score__gte=0, score__lte=models.F("max_score"), max_score__gt=0),
                name="knowledgetestattempt_score_in_range",
            ),
            models.CheckConstraint(
                condition=models.Q(passed=True, valid_until__gt=models.F("taken_at"))
                | models.Q(passed=False, valid_until__isnull=True),
                name="knowledgetestattempt_valid_iff_passed",
            ),
        ]

    def __str__(self) -> str:
        return f"knowledge test {self.score}/{self.max_score} for investor #{self.investor_id}"


class DecisionSubject(models.TextChoices):
    KYC = "kyc", "KYC"
    ACCREDITATION = "accreditation"


class InvestorDecision(models.Model):
    """Append-only history of KYC and accreditation decisions."""

    investor = models.ForeignKey(Investor, on_delete=models.PROTECT, related_name="decisions")
    subject = models.CharField(max_length=16, choices=DecisionSubject.choices)
    from_status = models.CharField(max_length=16, blank=True)
    to_status = models.CharField(max_length=16)
    reason = models.TextField()
    # Null only for decisions the platform made on the investor's own request (self-service).
    decided_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    rule_version = models.CharField(max_length=60, blank=True)
    decided_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["decided_at", "pk"]
        indexes = [models.Index(fields=["investor", "subject", "decided_at"])]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(subject__in=[choice.value for choice in DecisionSubject]),
                name="investordecision_subject_valid",
            ),
            models.CheckConstraint(
                condition=~models.Q(reason=""), name="investordecision_reason_given"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.subject}: {self.from_status or '∅'} → {self.to_status} (#{self.investor_id})"
