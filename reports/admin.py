"""Back office: statements, batches and their items, read-only (they are produced by the
services, never edited by hand)."""

from __future__ import annotations

from django.contrib import admin

from common.admin import ReadOnlyAdmin, ReadOnlyInline
from reports.models import Statement, StatementBatch, StatementBatchItem


@admin.register(Statement)
class StatementAdmin(ReadOnlyAdmin):
    list_display = ("id", "kind", "period", "investor", "offering", "page_count", "created_at")
    list_filter = ("kind", "period")
    search_fields = ("investor__legal_name", "fingerprint")
    list_select_related = ("investor", "offering")


class StatementBatchItemInline(ReadOnlyInline):
    model = StatementBatchItem
    fields = ("investor", "status", "attempts", "last_error", "statement")
    classes = ("collapse",)


@admin.register(StatementBatch)
class StatementBatchAdmin(ReadOnlyAdmin):
    list_display = ("id", "period", "offering", "status", "total", "done", "failed", "created_at")
    list_filter = ("status", "period")
    inlines = (StatementBatchItemInline,)


@admin.register(StatementBatchItem)
class StatementBatchItemAdmin(ReadOnlyAdmin):
    list_display = ("batch", "investor", "status", "attempts", "updated_at")
    list_filter = ("status",)
    list_select_related = ("batch", "investor")
