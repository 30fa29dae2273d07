"""The back office covers every model, and history rows are read-only there."""

import pytest
from django.apps import apps
from django.contrib import admin
from django.test import Client

from tests.conftest import new_user

pytestmark = [pytest.mark.django_db, pytest.mark.embedded]

PROJECT_APPS = ("common", "offerings", "investors", "captable", "reports")


def project_models():
    for app_label in PROJECT_APPS:
        yield from apps.get_app_config(app_label).get_models()


def test_every_project_model_is_in_the_admin():
    missing = [
        model._meta.label
        for model in project_models()
        if not admin.site.is_registered(model) and not model._meta.auto_created
    ]
    # RateCounter is internal plumbing (login throttle windows), not back-office data.
    assert missing == ["common.RateCounter"]


def test_history_models_cannot_be_edited_in_the_admin(rf):
    staff = new_user(is_staff=True)
    staff.is_superuser = True
    request = rf.get("/admin/")
    request.user = staff
    history = [m for m in project_models() if m.__name__.endswith(("StatusChange", "Decision"))]
    assert history, "expected append-only history models"
    for model in history:
        model_admin = admin.site._registry[model]
        assert not model_admin.has_add_permission(request), model._meta.label
        assert not model_admin.has_delete_permission(request), model._meta.label


def test_every_admin_changelist_renders():
    staff = new_user(is_staff=True)
    staff.is_superuser = True
    staff.save()
    client = Client()
    client.force_login(staff)
    for model in admin.site._registry:
        if model._meta.app_label not in PROJECT_APPS:
            continue
        url = f"/admin/{model._meta.app_label}/{model._meta.model_name}/"
        assert client.get(url).status_code == 200, url
