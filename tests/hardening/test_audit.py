"""Audit: every state change and every ledger entry records who and when; staff see it in the
admin, and no one can edit it there (nor, on PostgreSQL, in the database at all).

The audit models are found, not listed: every model named …StatusChange, …Decision, …Event
or …Attempt, plus the ledger's rows. A stateful model (one with a `status`) must keep a
`<Model>StatusChange` history, unless it is exempted below with the reason."""

from typing import Any

import pytest
from django.apps import apps
from django.contrib import admin
from django.db import DatabaseError, connection, models, transaction
from django.test import Client
from django.urls import reverse

from captable import closing
from captable.models import Entry, SubscriptionStatusChange
from common.models import User
from offerings.models import OfferingStatusChange
from tests.captable.test_closing import after_deadline, success_scenario
from tests.conftest import new_user

PROJECT_APPS = ("common", "offerings", "investors", "captable", "reports")
AUDIT_SUFFIXES = ("StatusChange", "Decision", "Event", "Attempt")
LEDGER_MODELS = {
    "captable.Entry",
    "captable.Posting",
    "captable.Lot",
    "captable.ChainSeal",
    "captable.SealedEntry",
}
# Rows that belong to one entry: who and when are the entry's.
PART_OF_AN_ENTRY = {"captable.Posting", "captable.Lot", "captable.SealedEntry"}
# Written by a machine, never by a person: when is on the row, who is the machine named.
MACHINE_WRITTEN = {
    "captable.ChainSeal": "the sealing task (its key is the seal)",
    "captable.PaymentEvent": "the payment provider (`provider`, signed webhook)",
    "captable.WithdrawalEvent": "the payment provider (signed webhook)",
}
# A person acting on their own record: `investor` is who.
OWN_RECORD = {"investors.KnowledgeTestAttempt": "investor"}

STATUS_HISTORY_EXEMPT = {
    "common.OutboxMessage": "delivery plumbing, not a business state",
    "reports.StatementBatch": "progress of a background job (requested_by and its times on "
    "the row); its output, the statements, is what is kept",
    "reports.StatementBatchItem": "one item of that job's progress",
    "captable.SubscriptionReconfirmation": "its one human step is on the row (requested_by, "
    "requested_at); the outcome is the subscription's own history row",
    "captable.EarlyClose": "its one human step is on the row (scheduled_by, notice_given_at); "
    "the outcome is the offering's and the close's history",
    "captable.Withdrawal": "requested_by and its times on the row; each move is a ledger entry "
    "and each provider event a WithdrawalEvent",
}


def project_models() -> list[type[models.Model]]:
    return [m for a in PROJECT_APPS for m in apps.get_app_config(a).get_models()]


def audit_models() -> list[type[models.Model]]:
    return [
        model
        for model in project_models()
        if model.__name__.endswith(AUDIT_SUFFIXES) or model._meta.label in LEDGER_MODELS
    ]


def fields_of(model: type[models.Model]) -> list[Any]:
    return list(model._meta.fields)


def who_fields(model: type[models.Model]) -> list[str]:
    return [f.name for f in fields_of(model) if f.is_relation and f.related_model is User]


def when_fields(model: type[models.Model]) -> list[str]:
    return [f.name for f in fields_of(model) if isinstance(f, models.DateTimeField)]


def superuser_request(rf: Any) -> Any:
    request = rf.get("/admin/")
    request.user = User(is_staff=True, is_superuser=True, is_active=True)
    return request


def admin_url(model: type[models.Model], view: str, *args: Any) -> str:
    return reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_{view}", args=args)


@pytest.mark.embedded
def test_every_audit_row_says_who_and_when():
    assert len(audit_models()) >= 15
    for model in audit_models():
        label = model._meta.label
        if label in PART_OF_AN_ENTRY:
            assert any(f.related_model is Entry for f in fields_of(model) if f.is_relation), label
            continue
        if label != "captable.SealedEntry":
            assert when_fields(model), f"{label} records no time"
        if label in MACHINE_WRITTEN:
            continue
        if label in OWN_RECORD:
            assert OWN_RECORD[label] in {f.name for f in fields_of(model)}, label
            continue
        assert who_fields(model), f"{label} records no actor"


@pytest.mark.embedded
@pytest.mark.parametrize(
    "label",
    sorted(
        m._meta.label for m in project_models() if any(f.name == "status" for f in m._meta.fields)
    ),
)
def test_every_stateful_model_keeps_a_status_history(label):
    if label in STATUS_HISTORY_EXEMPT:
        return
    model = apps.get_model(label)
    history = {m.__name__: m for m in project_models()}.get(f"{model.__name__}StatusChange")
    assert history is not None, f"{label} changes status without a history: add one or exempt it"
    assert any(f.related_model is model for f in fields_of(history) if f.is_relation), label
    names = {f.name for f in fields_of(history)}
    assert {"from_status", "to_status"} <= names, label
    assert who_fields(history), label
    assert when_fields(history), label


@pytest.mark.embedded
@pytest.mark.django_db
def test_audit_models_are_read_only_in_the_admin_for_everyone(rf):
    request = superuser_request(rf)
    for model in audit_models():
        label = model._meta.label
        assert admin.site.is_registered(model), f"{label}: staff cannot see it"
        model_admin = admin.site._registry[model]
        assert model_admin.has_view_permission(request), label
        assert not model_admin.has_add_permission(request), label
        assert not model_admin.has_change_permission(request), label
        assert not model_admin.has_delete_permission(request), label


def snapshot(model: type[models.Model]) -> list[tuple[Any, ...]]:
    return list(model._default_manager.order_by("pk").values_list())


@pytest.mark.embedded
@pytest.mark.django_db
def test_staff_see_the_audit_rows_and_cannot_change_or_delete_them_over_http():
    # given a closed offering: subscriptions, payments, entries, history rows of each kind
    offering, _ = success_scenario()
    staff = new_user(is_staff=True)
    with after_deadline(offering):
        closing.offering_close(offering=offering, actor=staff)
    superuser = new_user(is_staff=True)
    User.objects.filter(pk=superuser.pk).update(is_superuser=True)
    client = Client()
    client.force_login(superuser)
    tried = 0
    for model in audit_models():
        if not admin.site.is_registered(model):
            continue  # reported by the test above
        row = model._default_manager.order_by("pk").first()
        assert client.get(admin_url(model, "add")).status_code == 403, model._meta.label
        if row is None:
            continue
        before = snapshot(model)
        # staff see it...
        assert client.get(admin_url(model, "change", row.pk)).status_code == 200
        # ...and nothing they send changes or deletes it
        assert client.post(admin_url(model, "change", row.pk), {}).status_code == 403
        assert client.post(admin_url(model, "delete", row.pk), {"post": "yes"}).status_code == 403
        client.post(
            admin_url(model, "changelist"),
            {"action": "delete_selected", "_selected_action": [row.pk], "post": "yes"},
        )
        assert snapshot(model) == before, model._meta.label
        tried += 1
    assert tried >= 8, "the scenario left too few audit rows to try"
    # and the rows name who did it: the investors subscribed, the staff member closed
    closed = OfferingStatusChange.objects.filter(offering=offering, to_status="closed_funded")
    assert closed.get().actor_id == staff.pk
    assert SubscriptionStatusChange.objects.filter(to_status="accepted", actor=staff).exists()
    reserved = SubscriptionStatusChange.objects.filter(to_status="reserved").select_related(
        "subscription__investor"
    )
    assert all(change.actor_id == change.subscription.investor.user_id for change in reserved)
    close_entries = Entry.objects.filter(idempotency_key__startswith=f"close:{offering.pk}:")
    assert close_entries.exists()
    assert set(close_entries.values_list("created_by", flat=True)) == {staff.pk}


@pytest.mark.postgres_only
@pytest.mark.django_db
def test_the_database_refuses_to_update_or_delete_audit_rows():
    offering, _ = success_scenario()
    with after_deadline(offering):
        closing.offering_close(offering=offering, actor=new_user(is_staff=True))
    refused = 0
    for model in audit_models():
        row = model._default_manager.order_by("pk").first()
        if row is None:
            continue
        table, key = model._meta.db_table, model._meta.pk.column
        for statement in (
            f"UPDATE {table} SET {key} = {key} WHERE {key} = %s",
            f"DELETE FROM {table} WHERE {key} = %s",
        ):
            with pytest.raises(DatabaseError), transaction.atomic():
                with connection.cursor() as cursor:
                    cursor.execute(statement, [row.pk])
                pytest.fail(f"{model._meta.label}: {statement.split()[0]} was allowed")
        refused += 1
    assert refused >= 8
