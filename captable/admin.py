"""Back office for the cap table. The ledger is read-only here (only `captable/ledger.py`
writes it); transfer and reversal requests are decided through the services, which refuse
the member of staff who made a request as its approver (four eyes)."""

from __future__ import annotations

from datetime import datetime, time
from typing import Any
from zoneinfo import ZoneInfo

from django.contrib import admin, messages
from django.db.models import QuerySet, Sum
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils.dateparse import parse_date
from django.utils.html import format_html

from captable import closing, transfers
from captable.models import (
    Account,
    ChainSeal,
    CloseRequest,
    CloseRequestStatusChange,
    Distribution,
    DistributionReversal,
    DistributionStatusChange,
    EarlyClose,
    Entry,
    Lot,
    OfferingClosing,
    Payment,
    PaymentEvent,
    PaymentStatusChange,
    Payout,
    Posting,
    ReinvestmentElection,
    ReversalRequest,
    ReversalRequestStatusChange,
    SealedEntry,
    Subscription,
    SubscriptionAgreement,
    SubscriptionReconfirmation,
    SubscriptionStatusChange,
    TransferRequest,
    TransferRequestStatusChange,
    UnsealedEntry,
    WaterfallTerms,
    Withdrawal,
    WithdrawalEvent,
)
from captable.selectors import captable_as_of
from common.admin import ReadOnlyAdmin, ReadOnlyInline
from common.errors import DomainError
from common.models import User
from common.money import format_minor_units
from investors.models import Investor
from offerings.models import Offering
from offerings.quantities import format_units

# --- the ledger -----------------------------------------------------------------------------


@admin.register(Account)
class AccountAdmin(ReadOnlyAdmin):
    """Every account with its balance; filter holdings by offering for a cap table, or by
    investor for their positions. The cap table link opens the as-of view of the offering."""

    list_display = ("key", "kind", "asset", "offering", "investor", "balance", "cap_table")
    list_filter = (
        "kind",
        ("offering", admin.RelatedOnlyFieldListFilter),
        ("investor", admin.RelatedOnlyFieldListFilter),
    )
    search_fields = ("key", "investor__legal_name", "offering__title")
    list_select_related = ("offering", "investor")
    ordering = ("key",)

    @admin.display(description="Cap table")
    def cap_table(self, account: Account) -> str:
        if account.offering_id is None:
            return "—"
        url = reverse("admin:captable_cap_table", args=[account.offering_id])
        return format_html('<a href="{}">cap table</a>', url)

    def get_urls(self) -> list[URLPattern]:
        view = self.admin_site.admin_view(self.cap_table_view)
        return [
            path("cap-table/<int:offering_id>/", view, name="captable_cap_table"),
            *super().get_urls(),
        ]

    def cap_table_view(self, request: HttpRequest, offering_id: int) -> HttpResponse:
        offering = get_object_or_404(Offering, pk=offering_id)
        as_of = None
        day = parse_date(request.GET.get("as_of", ""))
        if day is not None:  # a record date: the end of that day in the offering's zone
            as_of = datetime.combine(day, time.max, tzinfo=ZoneInfo(offering.time_zone))
        table = captable_as_of(offering=offering, as_of=as_of)
        names = dict(
            Investor.objects.filter(pk__in=[row.investor_id for row in table.rows]).values_list(
                "pk", "legal_name"
            )
        )
        per_unit = offering.quanta_per_unit
        context = {
            **self.admin_site.each_context(request),
            "title": f"Cap table of {offering.title}",
            "offering": offering,
            "table": table,
            "as_of_day": day,
            "authorized": format_units(table.authorized_quanta, per_unit),
            "treasury": format_units(table.treasury_quanta, per_unit),
            "issued": format_units(table.issued_quanta, per_unit),
            "rows": [
                {
                    "investor_id": row.investor_id,
                    "name": names.get(row.investor_id, ""),
                    "units": format_units(row.quanta, per_unit),
                    "quanta": row.quanta,
                    "cost": _money(row.cost_minor, offering.currency),
                    "percent": row.percent,
                }
                for row in table.rows
            ],
        }
        return TemplateResponse(request, "admin/captable/cap_table.html", context)


def _money(amount_minor: int, currency: str) -> str:
    return f"{currency} {format_minor_units(amount_minor, currency)}"


class PostingInline(ReadOnlyInline):
    model = Posting
    fields = ("account", "asset", "amount", "cost_minor", "lot", "effective_at")
    readonly_fields = fields


@admin.register(Entry)
class EntryAdmin(ReadOnlyAdmin):
    list_display = ("id", "kind", "effective_at", "chain", "created_by", "reverses", "memo")
    list_filter = ("kind",)
    search_fields = ("idempotency_key", "memo", "chain")
    date_hierarchy = "effective_at"
    inlines = [PostingInline]
    ordering = ("-id",)


@admin.register(Posting)
class PostingAdmin(ReadOnlyAdmin):
    list_display = (
        "id",
        "entry",
        "account",
        "asset",
        "amount",
        "cost_minor",
        "lot",
        "effective_at",
    )
    list_filter = ("asset",)
    search_fields = ("account__key",)
    list_select_related = ("account", "entry", "lot")
    ordering = ("-id",)


@admin.register(Lot)
class LotAdmin(ReadOnlyAdmin):
    """An investor's lots: filter by investor (positions) or offering; the remaining quanta
    are the sum of the lot's postings."""

    list_display = (
        "id",
        "investor",
        "offering",
        "issued_at",
        "quanta_acquired",
        "quanta_remaining",
        "cost_minor_acquired",
        "acquired_by",
        "origin_lot",
    )
    list_filter = (
        ("holding__investor", admin.RelatedOnlyFieldListFilter),
        ("holding__offering", admin.RelatedOnlyFieldListFilter),
    )
    list_select_related = ("holding__investor", "holding__offering")
    ordering = ("holding__investor", "issued_at", "id")

    def get_queryset(self, request: HttpRequest) -> QuerySet[Lot]:
        return super().get_queryset(request).annotate(remaining=Sum("postings__amount"))

    @admin.display(description="Investor")
    def investor(self, lot: Lot) -> Investor | None:
        return lot.holding.investor

    @admin.display(description="Offering")
    def offering(self, lot: Lot) -> Offering | None:
        return lot.holding.offering

    @admin.display(description="Quanta remaining")
    def quanta_remaining(self, lot: Lot) -> int:
        return int(getattr(lot, "remaining", 0) or 0)


@admin.register(ChainSeal)
class ChainSealAdmin(ReadOnlyAdmin):
    list_display = ("chain", "sequence", "entry_count", "digest", "sealed_at")
    list_filter = ("chain",)
    ordering = ("chain", "-sequence")


@admin.register(SealedEntry)
class SealedEntryAdmin(ReadOnlyAdmin):
    list_display = ("entry", "seal", "entry_digest")
    list_select_related = ("seal",)
    ordering = ("-entry",)


@admin.register(UnsealedEntry)
class UnsealedEntryAdmin(ReadOnlyAdmin):
    list_display = ("entry", "chain")
    list_filter = ("chain",)
    ordering = ("entry",)


# --- requests that need four eyes -----------------------------------------------------------


def _decide(
    model_admin: admin.ModelAdmin,  # type: ignore[type-arg]
    request: HttpRequest,
    queryset: QuerySet[Any],
    decide: Any,
    verb: str,
) -> None:
    """Run a service per selected request; report what it refused, one message per request."""
    assert isinstance(request.user, User)
    done = 0
    for pk in queryset.order_by("pk").values_list("pk", flat=True):
        try:
            decide(request.user, pk)
            done += 1
        except DomainError as error:
            model_admin.message_user(request, f"#{pk}: {error.detail}", messages.ERROR)
    if done:
        model_admin.message_user(request, f"{done} request(s) {verb}.", messages.SUCCESS)


class TransferRequestStatusChangeInline(ReadOnlyInline):
    model = TransferRequestStatusChange
    fields = ("created_at", "from_status", "to_status", "actor", "reason")
    readonly_fields = fields


@admin.register(TransferRequest)
class TransferRequestAdmin(ReadOnlyAdmin):
    list_display = (
        "id",
        "kind",
        "status",
        "offering",
        "seller",
        "buyer",
        "quanta",
        "exception",
        "legal_basis",
        "requested_by",
        "decided_by",
        "created_at",
    )
    list_filter = ("status", "kind", "exception", "legal_basis")
    search_fields = ("seller__legal_name", "buyer__legal_name", "evidence_reference")
    list_select_related = ("offering", "seller", "buyer", "requested_by", "decided_by")
    inlines = [TransferRequestStatusChangeInline]
    actions = ["approve", "reject"]
    ordering = ("-created_at", "-id")

    @admin.action(description="Approve the selected requests (posts the transfers)")
    def approve(self, request: HttpRequest, queryset: QuerySet[TransferRequest]) -> None:
        def decide(user: User, pk: int) -> None:
            transfers.transfer_request_approve(
                actor=user, transfer_id=pk, reason=f"Approved in the admin by {user.email}."
            )

        _decide(self, request, queryset, decide, "approved")

    @admin.action(description="Reject the selected requests")
    def reject(self, request: HttpRequest, queryset: QuerySet[TransferRequest]) -> None:
        def decide(user: User, pk: int) -> None:
            transfers.transfer_request_reject(
                actor=user, transfer_id=pk, reason=f"Rejected in the admin by {user.email}."
            )

        _decide(self, request, queryset, decide, "rejected")


@admin.register(TransferRequestStatusChange)
class TransferRequestStatusChangeAdmin(ReadOnlyAdmin):
    list_display = ("transfer", "from_status", "to_status", "actor", "reason", "created_at")
    list_filter = ("to_status",)
    list_select_related = ("transfer", "actor")


class ReversalRequestStatusChangeInline(ReadOnlyInline):
    model = ReversalRequestStatusChange
    fields = ("created_at", "from_status", "to_status", "actor", "reason")
    readonly_fields = fields


@admin.register(ReversalRequest)
class ReversalRequestAdmin(ReadOnlyAdmin):
    list_display = (
        "id",
        "entry",
        "status",
        "reason",
        "requested_by",
        "decided_by",
        "reversal_entry",
        "created_at",
    )
    list_filter = ("status",)
    list_select_related = ("entry", "requested_by", "decided_by", "reversal_entry")
    inlines = [ReversalRequestStatusChangeInline]
    actions = ["approve", "reject"]
    ordering = ("-created_at", "-id")

    @admin.action(description="Approve the selected reversals (posts the reversing entries)")
    def approve(self, request: HttpRequest, queryset: QuerySet[ReversalRequest]) -> None:
        def decide(user: User, pk: int) -> None:
            transfers.reversal_approve(
                actor=user, reversal_id=pk, reason=f"Approved in the admin by {user.email}."
            )

        _decide(self, request, queryset, decide, "approved")

    @admin.action(description="Reject the selected reversals")
    def reject(self, request: HttpRequest, queryset: QuerySet[ReversalRequest]) -> None:
        def decide(user: User, pk: int) -> None:
            transfers.reversal_reject(
                actor=user, reversal_id=pk, reason=f"Rejected in the admin by {user.email}."
            )

        _decide(self, request, queryset, decide, "rejected")


@admin.register(ReversalRequestStatusChange)
class ReversalRequestStatusChangeAdmin(ReadOnlyAdmin):
    list_display = ("reversal", "from_status", "to_status", "actor", "reason", "created_at")
    list_filter = ("to_status",)
    list_select_related = ("reversal", "actor")


# --- subscriptions --------------------------------------------------------------------------
# Read-only: every change goes through `captable/subscriptions.py` (compare-and-swap plus a
# history row, units reserved and released with the offering's counter).


class SubscriptionStatusChangeInline(ReadOnlyInline):
    model = SubscriptionStatusChange
    fields = ("created_at", "from_status", "to_status", "actor", "reason")
    readonly_fields = fields


class SubscriptionAgreementInline(ReadOnlyInline):
    model = SubscriptionAgreement
    fields = ("signed_at", "typed_name", "ip_address", "document_version", "document_sha256")
    readonly_fields = fields


@admin.register(Subscription)
class SubscriptionAdmin(ReadOnlyAdmin):
    list_display = (
        "id",
        "offering",
        "investor",
        "status",
        "quanta",
        "amount",
        "fee",
        "rule_version",
        "expires_at",
        "created_at",
    )
    list_filter = ("status", ("offering", admin.RelatedOnlyFieldListFilter))
    search_fields = ("investor__legal_name", "offering__title")
    list_select_related = ("offering", "investor")
    inlines = [SubscriptionAgreementInline, SubscriptionStatusChangeInline]
    ordering = ("-created_at", "-id")

    @admin.display(description="Amount")
    def amount(self, subscription: Subscription) -> str:
        return _money(subscription.amount_minor, subscription.currency)

    @admin.display(description="Fee")
    def fee(self, subscription: Subscription) -> str:
        return _money(subscription.fee_minor, subscription.currency)


@admin.register(SubscriptionStatusChange)
class SubscriptionStatusChangeAdmin(ReadOnlyAdmin):
    list_display = ("subscription", "from_status", "to_status", "actor", "reason", "created_at")
    list_filter = ("to_status",)
    list_select_related = ("subscription", "actor")


@admin.register(SubscriptionAgreement)
class SubscriptionAgreementAdmin(ReadOnlyAdmin):
    list_display = (
        "subscription",
        "typed_name",
        "signed_at",
        "ip_address",
        "document_version",
        "document_sha256",
    )
    list_select_related = ("subscription",)
    search_fields = ("typed_name", "document_sha256")
    ordering = ("-signed_at", "-id")


# --- closing --------------------------------------------------------------------------------
# Close requests are decided through `captable/closing.py`, which refuses the staff member who
# prepared a request as its approver (four eyes); the close itself runs in the background.


class CloseRequestStatusChangeInline(ReadOnlyInline):
    model = CloseRequestStatusChange
    fields = ("created_at", "from_status", "to_status", "actor", "reason")
    readonly_fields = fields


@admin.register(CloseRequest)
class CloseRequestAdmin(ReadOnlyAdmin):
    list_display = (
        "id",
        "offering",
        "status",
        "reason",
        "requested_by",
        "decided_by",
        "created_at",
        "completed_at",
    )
    list_filter = ("status",)
    list_select_related = ("offering", "requested_by", "decided_by")
    inlines = [CloseRequestStatusChangeInline]
    actions = ["approve", "reject"]
    ordering = ("-created_at", "-id")

    @admin.action(description="Approve the selected close requests (the offerings close)")
    def approve(self, request: HttpRequest, queryset: QuerySet[CloseRequest]) -> None:
        def decide(user: User, pk: int) -> None:
            closing.close_request_approve(
                actor=user, close_request_id=pk, reason=f"Approved in the admin by {user.email}."
            )

        _decide(self, request, queryset, decide, "approved")

    @admin.action(description="Reject the selected close requests")
    def reject(self, request: HttpRequest, queryset: QuerySet[CloseRequest]) -> None:
        def decide(user: User, pk: int) -> None:
            closing.close_request_reject(
                actor=user, close_request_id=pk, reason=f"Rejected in the admin by {user.email}."
            )

        _decide(self, request, queryset, decide, "rejected")


@admin.register(CloseRequestStatusChange)
class CloseRequestStatusChangeAdmin(ReadOnlyAdmin):
    list_display = ("close_request", "from_status", "to_status", "actor", "reason", "created_at")
    list_filter = ("to_status",)
    list_select_related = ("close_request", "actor")


@admin.register(OfferingClosing)
class OfferingClosingAdmin(ReadOnlyAdmin):
    list_display = (
        "offering",
        "trigger",
        "outcome",
        "amount_funded",
        "target",
        "started_by",
        "started_at",
        "decided_at",
        "completed_at",
    )
    list_filter = ("outcome", "trigger")
    list_select_related = ("offering", "started_by")
    ordering = ("-started_at", "-id")

    @admin.display(description="Funded")
    def amount_funded(self, record: OfferingClosing) -> str:
        return _money(record.amount_funded_minor, record.currency)

    @admin.display(description="Target")
    def target(self, record: OfferingClosing) -> str:
        return _money(record.target_raise_minor, record.currency)


@admin.register(EarlyClose)
class EarlyCloseAdmin(ReadOnlyAdmin):
    list_display = (
        "offering",
        "status",
        "original_closes_at",
        "closes_at",
        "notice_given_at",
        "scheduled_by",
        "resolved_at",
    )
    list_filter = ("status",)
    list_select_related = ("offering", "scheduled_by")
    ordering = ("-notice_given_at", "-id")


# --- payments and reconfirmations ----------------------------------------------------------
# Read-only: money moves only through the webhook and the services (captable/payments.py).


class PaymentStatusChangeInline(ReadOnlyInline):
    model = PaymentStatusChange
    fields = ("created_at", "from_status", "to_status", "event", "actor", "reason")
    readonly_fields = fields


class PaymentEventInline(ReadOnlyInline):
    model = PaymentEvent
    fields = ("received_at", "provider_event_id", "event_type", "amount_minor", "outcome")
    readonly_fields = fields


@admin.register(Payment)
class PaymentAdmin(ReadOnlyAdmin):
    list_display = (
        "id",
        "subscription",
        "provider_reference",
        "status",
        "expected",
        "received",
        "over",
        "short",
        "refunded",
        "created_at",
        "confirmed_at",
    )
    list_filter = ("status", "provider", "currency")
    search_fields = ("provider_reference", "subscription__investor__legal_name")
    list_select_related = ("subscription",)
    inlines = [PaymentEventInline, PaymentStatusChangeInline]
    ordering = ("-created_at", "-id")

    @admin.display(description="Expected")
    def expected(self, payment: Payment) -> str:
        return _money(payment.amount_expected_minor, payment.currency)

    @admin.display(description="Received")
    def received(self, payment: Payment) -> str:
        return _money(payment.amount_received_minor, payment.currency)

    @admin.display(description="Over-paid")
    def over(self, payment: Payment) -> str:
        return _money(payment.amount_over_minor, payment.currency)

    @admin.display(description="Short")
    def short(self, payment: Payment) -> str:
        return _money(payment.amount_short_minor, payment.currency)

    @admin.display(description="Refunded")
    def refunded(self, payment: Payment) -> str:
        return _money(payment.amount_refunded_minor, payment.currency)


@admin.register(PaymentEvent)
class PaymentEventAdmin(ReadOnlyAdmin):
    list_display = ("provider_event_id", "event_type", "payment", "amount_minor", "outcome")
    list_filter = ("event_type", "provider")
    search_fields = ("provider_event_id", "payment__provider_reference")
    list_select_related = ("payment",)
    ordering = ("-received_at", "-id")


@admin.register(PaymentStatusChange)
class PaymentStatusChangeAdmin(ReadOnlyAdmin):
    list_display = ("payment", "from_status", "to_status", "event", "reason", "created_at")
    list_filter = ("to_status",)
    list_select_related = ("payment", "event")


@admin.register(SubscriptionReconfirmation)
class SubscriptionReconfirmationAdmin(ReadOnlyAdmin):
    list_display = (
        "subscription",
        "status",
        "document",
        "requested_at",
        "due_at",
        "resolved_at",
        "agreement_sha256",
    )
    list_filter = ("status",)
    list_select_related = ("subscription", "document")
    ordering = ("-requested_at", "-id")


# --- distributions ------------------------------------------------------------------------------
# Read-only: distributions are declared, approved (by a second person), funded and paid through
# `captable/distributions.py`; payouts are written only by the pay run.


class DistributionStatusChangeInline(ReadOnlyInline):
    model = DistributionStatusChange
    fields = ("created_at", "from_status", "to_status", "actor", "reason")
    readonly_fields = fields


@admin.register(Distribution)
class DistributionAdmin(ReadOnlyAdmin):
    list_display = (
        "id",
        "offering",
        "kind",
        "amount",
        "record_date",
        "payment_date",
        "status",
        "declared_by",
        "approved_by",
        "paid_at",
    )
    list_filter = ("status", "kind")
    list_select_related = ("offering", "declared_by", "approved_by")
    inlines = [DistributionStatusChangeInline]
    ordering = ("-created_at", "-id")

    @admin.display(description="Amount")
    def amount(self, distribution: Distribution) -> str:
        return _money(distribution.amount_minor, distribution.currency)


@admin.register(DistributionStatusChange)
class DistributionStatusChangeAdmin(ReadOnlyAdmin):
    list_display = ("distribution", "from_status", "to_status", "actor", "reason", "created_at")
    list_filter = ("to_status",)
    list_select_related = ("distribution", "actor")


@admin.register(Payout)
class PayoutAdmin(ReadOnlyAdmin):
    list_display = (
        "distribution",
        "investor",
        "quanta",
        "gross_minor",
        "income_minor",
        "return_of_capital_minor",
        "tax_form",
        "withholding_minor",
        "net_minor",
        "entry",
        "paid_at",
    )
    list_filter = ("tax_form",)
    list_select_related = ("distribution", "investor", "entry")
    ordering = ("-distribution_id", "investor_id")


@admin.register(DistributionReversal)
class DistributionReversalAdmin(ReadOnlyAdmin):
    """Prepared by one member of staff, approved by another (captable/distributions.py)."""

    list_display = (
        "distribution",
        "prepared_by",
        "prepared_at",
        "approved_by",
        "approved_at",
        "entries_reversed",
    )
    list_select_related = ("distribution", "prepared_by", "approved_by")
    ordering = ("-prepared_at", "-id")


@admin.register(WaterfallTerms)
class WaterfallTermsAdmin(ReadOnlyAdmin):
    """Set by the sponsor or staff through PUT /offerings/{id}/waterfall."""

    list_display = (
        "offering",
        "preferred_return_rate",
        "pref_compounding",
        "catch_up_sponsor_share",
        "sponsor_profit_target",
        "updated_by",
        "updated_at",
    )
    list_select_related = ("offering", "updated_by")


@admin.register(ReinvestmentElection)
class ReinvestmentElectionAdmin(ReadOnlyAdmin):
    list_display = ("investor", "offering", "is_enabled", "updated_at")
    list_filter = ("is_enabled",)
    list_select_related = ("investor", "offering")


# --- withdrawals --------------------------------------------------------------------------------
# Read-only: requested through POST /withdrawals, settled by the provider's signed webhook.


@admin.register(Withdrawal)
class WithdrawalAdmin(ReadOnlyAdmin):
    list_display = (
        "id",
        "investor",
        "amount",
        "status",
        "provider",
        "provider_reference",
        "requested_by",
        "created_at",
    )
    list_filter = ("status", "provider")
    list_select_related = ("investor", "requested_by")
    ordering = ("-created_at", "-id")

    @admin.display(description="Amount")
    def amount(self, withdrawal: Withdrawal) -> str:
        return _money(withdrawal.amount_minor, withdrawal.currency)


@admin.register(WithdrawalEvent)
class WithdrawalEventAdmin(ReadOnlyAdmin):
    list_display = (
        "provider",
        "provider_event_id",
        "event_type",
        "withdrawal",
        "outcome",
        "received_at",
    )
    list_filter = ("provider", "event_type", "outcome")
    list_select_related = ("withdrawal",)
    ordering = ("-received_at", "-id")
