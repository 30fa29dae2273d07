"""Back office for investors. Decisions go through the services (history rows written); the
tax id is never shown or edited in clear; history and evidence are read-only here."""

from __future__ import annotations

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from common.admin import ReadOnlyAdmin, ReadOnlyInline
from common.errors import DomainError
from common.models import User
from investors.models import (
    AccreditationEvidence,
    Investor,
    InvestorDecision,
    KnowledgeTestAttempt,
    KycStatus,
)
from investors.services import investor_kyc_decide

# Set only by services: KYC and accreditation decisions, sophistication from tests, tax id.
SERVICE_ONLY_FIELDS = (
    "user",
    "tax_id_masked",
    "kyc_status",
    "kyc_reason",
    "kyc_decided_at",
    "accreditation_status",
    "accreditation_expires_at",
    "knowledge_test_valid_until",
    "created_at",
    "updated_at",
)


class AccreditationEvidenceInline(ReadOnlyInline):
    model = AccreditationEvidence
    fields = (
        "method",
        "document_reference",
        "verifier",
        "verified_at",
        "expires_at",
        "approved_by",
        "created_at",
    )
    readonly_fields = fields


class InvestorDecisionInline(ReadOnlyInline):
    model = InvestorDecision
    fields = (
        "decided_at",
        "subject",
        "from_status",
        "to_status",
        "reason",
        "decided_by",
        "rule_version",
    )
    readonly_fields = fields


class KnowledgeTestAttemptInline(ReadOnlyInline):
    model = KnowledgeTestAttempt
    fields = ("taken_at", "test_version", "score", "max_score", "passed", "valid_until")
    readonly_fields = fields


@admin.register(Investor)
class InvestorAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    list_display = (
        "legal_name",
        "user",
        "kind",
        "country",
        "kyc_status",
        "accreditation_status",
        "created_at",
    )
    list_filter = ("kyc_status", "accreditation_status", "kind", "country")
    search_fields = ("legal_name", "user__email")
    exclude = ("tax_id",)
    readonly_fields = SERVICE_ONLY_FIELDS
    inlines = [AccreditationEvidenceInline, KnowledgeTestAttemptInline, InvestorDecisionInline]
    actions = ["approve_kyc", "reject_kyc"]

    @admin.display(description="Tax id")
    def tax_id_masked(self, obj: Investor) -> str:
        return obj.tax_id_masked or "—"

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # investors register through the API (user + profile in one transaction)

    def _decide(self, request: HttpRequest, queryset: QuerySet[Investor], decision: str) -> None:
        assert isinstance(request.user, User)
        done = 0
        for investor in queryset.order_by("pk"):
            try:
                investor_kyc_decide(
                    investor_id=investor.pk,
                    decided_by=request.user,
                    decision=decision,
                    reason=f"KYC {decision} in the admin by {request.user.email}.",
                )
                done += 1
            except DomainError as error:
                self.message_user(request, f"{investor}: {error.detail}", messages.WARNING)
        self.message_user(request, f"KYC {decision} for {done} investor(s).", messages.SUCCESS)

    @admin.action(description="Approve KYC (pending only)")
    def approve_kyc(self, request: HttpRequest, queryset: QuerySet[Investor]) -> None:
        self._decide(request, queryset, KycStatus.APPROVED)

    @admin.action(description="Reject KYC (pending only)")
    def reject_kyc(self, request: HttpRequest, queryset: QuerySet[Investor]) -> None:
        self._decide(request, queryset, KycStatus.REJECTED)


@admin.register(InvestorDecision)
class InvestorDecisionAdmin(ReadOnlyAdmin):
    list_display = (
        "decided_at",
        "investor",
        "subject",
        "from_status",
        "to_status",
        "decided_by",
        "rule_version",
    )
    list_filter = ("subject", "to_status")
    search_fields = ("investor__legal_name", "investor__user__email")


@admin.register(AccreditationEvidence)
class AccreditationEvidenceAdmin(ReadOnlyAdmin):
    list_display = ("investor", "method", "verifier", "verified_at", "expires_at", "approved_by")
    list_filter = ("method",)
    search_fields = ("investor__legal_name", "document_reference", "verifier")


@admin.register(KnowledgeTestAttempt)
class KnowledgeTestAttemptAdmin(ReadOnlyAdmin):
    list_display = ("investor", "test_version", "score", "max_score", "passed", "taken_at")
    list_filter = ("passed", "test_version")
    search_fields = ("investor__legal_name", "investor__user__email")
