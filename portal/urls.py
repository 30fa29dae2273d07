"""The portal's pages, mounted at the site root (the API stays under /api/v1/)."""

from __future__ import annotations

from django.contrib.auth import views as auth_views
from django.urls import path, reverse_lazy

from portal import (
    photos,
    views_account,
    views_dashboard,
    views_invest,
    views_public,
    views_sponsor,
)
from portal.auth_forms import ThrottledAuthenticationForm

app_name = "portal"

_auth = [
    path(
        "accounts/login/",
        auth_views.LoginView.as_view(
            template_name="portal/auth/login.html",
            authentication_form=ThrottledAuthenticationForm,
        ),
        name="login",
    ),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path(
        "accounts/password-reset/",
        auth_views.PasswordResetView.as_view(
            template_name="portal/auth/password_reset_form.html",
            email_template_name="portal/auth/password_reset_email.txt",
            subject_template_name="portal/auth/password_reset_subject.txt",
            success_url=reverse_lazy("portal:password_reset_done"),
        ),
        name="password_reset",
    ),
    path(
        "accounts/password-reset/sent/",
        auth_views.PasswordResetDoneView.as_view(
            template_name="portal/auth/password_reset_done.html"
        ),
        name="password_reset_done",
    ),
    path(
        "accounts/reset/<uidb64>/<token>/",
        auth_views.PasswordResetConfirmView.as_view(
            template_name="portal/auth/password_reset_confirm.html",
            success_url=reverse_lazy("portal:password_reset_complete"),
        ),
        name="password_reset_confirm",
    ),
    path(
        "accounts/reset/done/",
        auth_views.PasswordResetCompleteView.as_view(
            template_name="portal/auth/password_reset_complete.html"
        ),
        name="password_reset_complete",
    ),
    path("accounts/signup/", views_account.signup, name="signup"),
    path("account/", views_account.profile, name="profile"),
    path("account/knowledge-test/", views_account.knowledge_test_page, name="knowledge_test"),
]

_investor = [
    path("", views_public.marketplace, name="marketplace"),
    path("offerings/<int:offering_id>/", views_public.offering_detail, name="offering"),
    path("properties/<int:property_id>/photo/", photos.property_photo, name="property_photo"),
    path("offerings/<int:offering_id>/invest/", views_invest.invest_units, name="invest"),
    path(
        "offerings/<int:offering_id>/invest/review/",
        views_invest.invest_review,
        name="invest_review",
    ),
    path(
        "offerings/<int:offering_id>/invest/subscribe/",
        views_invest.invest_subscribe,
        name="invest_subscribe",
    ),
    path(
        "subscriptions/<int:subscription_id>/",
        views_invest.subscription_detail,
        name="subscription",
    ),
    path(
        "subscriptions/<int:subscription_id>/sign/",
        views_invest.subscription_sign_view,
        name="subscription_sign",
    ),
    path(
        "subscriptions/<int:subscription_id>/fund/",
        views_invest.subscription_fund_view,
        name="subscription_fund",
    ),
    path(
        "subscriptions/<int:subscription_id>/cancel/",
        views_invest.subscription_cancel_view,
        name="subscription_cancel",
    ),
    path("dashboard/", views_dashboard.dashboard, name="dashboard"),
    path(
        "statements/<int:statement_id>/pdf/",
        views_dashboard.statement_download,
        name="statement_pdf",
    ),
]

_sponsor = [
    path("sponsor/", views_sponsor.sponsor_home, name="sponsor_home"),
    path("sponsor/offerings/new/", views_sponsor.offering_new, name="sponsor_offering_new"),
    path(
        "sponsor/offerings/<int:offering_id>/",
        views_sponsor.sponsor_offering,
        name="sponsor_offering",
    ),
    path(
        "sponsor/offerings/<int:offering_id>/edit/",
        views_sponsor.offering_edit,
        name="sponsor_offering_edit",
    ),
    path(
        "sponsor/offerings/<int:offering_id>/photo/",
        views_sponsor.property_photo_upload,
        name="sponsor_property_photo",
    ),
    path(
        "sponsor/offerings/<int:offering_id>/submit/",
        views_sponsor.offering_submit_view,
        name="sponsor_offering_submit",
    ),
    path(
        "sponsor/offerings/<int:offering_id>/distributions/",
        views_sponsor.distribution_declare_view,
        name="sponsor_distribution_declare",
    ),
    path(
        "sponsor/offerings/<int:offering_id>/captable.<str:file_format>",
        views_sponsor.captable_download,
        name="sponsor_captable",
    ),
    path(
        "sponsor/offerings/<int:offering_id>/captable-report/",
        views_sponsor.captable_report,
        name="sponsor_captable_report",
    ),
]

urlpatterns = _auth + _investor + _sponsor
