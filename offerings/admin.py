"""Back office. Status changes go through the services (so history rows are written); the
status fields themselves are read-only here, and history rows can be neither edited nor deleted."""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from common.admin import ReadOnlyAdmin, ReadOnlyInline
from common.errors import DomainError
from common.models import User
from offerings import services
from offerings.models import (
    Issuer,
    NetAssetValue,
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


class OfferingStatusChangeInline(ReadOnlyInline):
    model = OfferingStatusChange
    fields = ("created_at", "from_status", "to_status", "actor", "reason")
    readonly_fields = fields


class SponsorStatusChangeInline(ReadOnlyInline):
    model = SponsorStatusChange
    fields = ("created_at", "from_status", "to_status", "actor", "reason")
    readonly_fields = fields


class OfferingDocumentInline(ReadOnlyInline):
    model = OfferingDocument
    fields = ("kind", "version", "original_name", "size_bytes", "sha256", "uploaded_by")
    readonly_fields = fields


class SponsorMembershipInline(admin.TabularInline):  # type: ignore[type-arg]
    model = SponsorMembership
    extra = 0
    raw_id_fields = ("user",)


def _run_each(
    request: HttpRequest,
    queryset: QuerySet[Any],
    action: Any,
    done: str,
) -> None:
    """Call a service per row; report successes and each refusal, never stop half-way."""
    succeeded = 0
    for obj in queryset.order_by("pk"):
        try:
            action(obj)
        except DomainError as error:
            messages.error(request, f"{obj}: {error.detail}")
        else:
            succeeded += 1
    if succeeded:
        messages.success(request, f"{succeeded} {done}.")


def _staff(request: HttpRequest) -> User:
    user = request.user
    assert isinstance(user, User)
    return user


@admin.register(Sponsor)
class SponsorAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    list_display = ("name", "status", "applied_by", "created_at", "decided_at")
    list_filter = ("status",)
    search_fields = ("name", "applied_by__email")
    readonly_fields = ("status", "applied_by", "decided_by", "decided_at", "decision_reason")
    inlines = [SponsorMembershipInline, SponsorStatusChangeInline]
    actions = ["approve_selected"]

    @admin.action(description="Approve selected sponsors")
    def approve_selected(self, request: HttpRequest, queryset: QuerySet[Sponsor]) -> None:
        _run_each(
            request,
            queryset.filter(status=SponsorStatus.PENDING),
            lambda sponsor: services.sponsor_approve(actor=_staff(request), sponsor_id=sponsor.pk),
            "sponsor(s) approved",
        )


@admin.register(Issuer)
class IssuerAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    list_display = ("legal_name", "sponsor", "entity_type", "jurisdiction_country", "affiliate_of")
    list_filter = ("entity_type", "jurisdiction_country")
    search_fields = ("legal_name", "sponsor__name")
    raw_id_fields = ("sponsor", "affiliate_of", "created_by")


@admin.register(Property)
class PropertyAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    list_display = ("name", "sponsor", "property_type", "city", "country")
    list_filter = ("property_type", "country")
    search_fields = ("name", "city", "sponsor__name")
    raw_id_fields = ("sponsor", "created_by")
    # The photo is checked and re-encoded by services.property_photo_set only.
    readonly_fields = ("photo", "photo_alt_text")


@admin.register(Offering)
class OfferingAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    list_display = ("title", "sponsor", "status", "exemption", "opens_at", "closes_at")
    list_filter = ("status", "exemption", "security_type", "funding_model")
    search_fields = ("title", "slug", "sponsor__name", "issuer__legal_name")
    list_select_related = ("sponsor",)
    raw_id_fields = ("sponsor", "issuer", "property", "created_by")
    # The lifecycle and the unit counters change only through services (and captable).
    readonly_fields = (
        "status",
        "went_live_at",
        "units_reserved_quanta",
        "units_issued_quanta",
        "created_by",
        "created_at",
        "updated_at",
    )
    inlines = [OfferingDocumentInline, OfferingStatusChangeInline]
    actions = ["approve_selected", "launch_selected"]

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # cancel instead: history rows point at the offering

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        # Terms are fixed once submitted: investors rely on what was reviewed.
        if obj is not None and obj.status != OfferingStatus.DRAFT:
            return [field.name for field in Offering._meta.fields]
        return self.readonly_fields

    @admin.action(description="Approve selected offerings (in review)")
    def approve_selected(self, request: HttpRequest, queryset: QuerySet[Offering]) -> None:
        _run_each(
            request,
            queryset.filter(status=OfferingStatus.IN_REVIEW),
            lambda offering: services.offering_approve(
                actor=_staff(request), offering_id=offering.pk
            ),
            "offering(s) approved",
        )

    @admin.action(description="Launch selected offerings (approved → live)")
    def launch_selected(self, request: HttpRequest, queryset: QuerySet[Offering]) -> None:
        _run_each(
            request,
            queryset.filter(status=OfferingStatus.APPROVED),
            lambda offering: services.offering_go_live(
                actor=_staff(request), offering_id=offering.pk
            ),
            "offering(s) launched",
        )


class AppendOnlyAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(OfferingStatusChange)
class OfferingStatusChangeAdmin(AppendOnlyAdmin):
    list_display = ("offering", "from_status", "to_status", "actor", "created_at")
    list_filter = ("to_status",)
    search_fields = ("offering__title", "actor__email", "reason")
    list_select_related = ("offering", "actor")


@admin.register(SponsorStatusChange)
class SponsorStatusChangeAdmin(AppendOnlyAdmin):
    list_display = ("sponsor", "from_status", "to_status", "actor", "created_at")
    list_filter = ("to_status",)
    search_fields = ("sponsor__name", "actor__email", "reason")
    list_select_related = ("sponsor", "actor")


@admin.register(OfferingDocument)
class OfferingDocumentAdmin(AppendOnlyAdmin):
    list_display = ("offering", "kind", "version", "original_name", "uploaded_by", "uploaded_at")
    list_filter = ("kind",)
    search_fields = ("offering__title", "original_name", "sha256")
    list_select_related = ("offering", "uploaded_by")


@admin.register(SponsorMembership)
class SponsorMembershipAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    list_display = ("sponsor", "user", "role", "created_at")
    list_filter = ("role",)
    search_fields = ("sponsor__name", "user__email")
    raw_id_fields = ("sponsor", "user")


@admin.register(NetAssetValue)
class NetAssetValueAdmin(ReadOnlyAdmin):
    """Append-only NAV history, posted by the sponsor or staff through POST
    /offerings/{id}/nav (a correction is a new row)."""

    list_display = (
        "offering",
        "effective_date",
        "nav_per_unit_minor",
        "currency",
        "posted_by",
        "posted_at",
    )
    list_select_related = ("offering", "posted_by")
    ordering = ("-effective_date", "-posted_at")
