"""The invest flow over HTTP: review figures from the services, the agreement shown with its
hash before the one submit that subscribes and signs (idempotent: a double submit subscribes
once), every refusal as a message with nothing written (a wrong name and a changed agreement
included), waitlist position and signing once promoted, funding instructions, cancel; another
investor's subscription is a 404."""

from __future__ import annotations

import hashlib
import html
import re
from decimal import Decimal

import pytest
from django.core.files.base import ContentFile
from django.test import Client
from django.urls import reverse

from captable.models import Payment, Subscription, SubscriptionAgreement
from investors.models import Investor
from offerings.models import Offering
from offerings.services import offering_document_upload
from tests.offerings.factories import member_of
from tests.portal.helpers import kyc_investor, modest_investor, offering_in, signed_in

pytestmark = [pytest.mark.django_db, pytest.mark.embedded]


def _review(client: Client, offering: Offering, units: str) -> str:
    response = client.get(reverse("portal:invest_review", args=[offering.pk]), {"units": units})
    assert response.status_code == 200
    return response.content.decode()


def _token(page: str) -> str:
    match = re.search(r'name="token" value="([^"]+)"', page)
    assert match is not None
    return match[1]


def _agreement_sha256(page: str) -> str:
    match = re.search(r'name="agreement_sha256" value="([0-9a-f]{64})"', page)
    assert match is not None
    return match[1]


def _subscribe(client: Client, offering: Offering, units: str, page: str, **extra: str):
    """The review page's one submit: acknowledged, the agreement it showed signed."""
    investor = Investor.objects.get(user_id=client.session["_auth_user_id"])
    form = {
        "units": units,
        "token": _token(page),
        "risk": "on",
        "typed_name": investor.legal_name,
        "agreement_sha256": _agreement_sha256(page),
        **extra,
    }
    return client.post(reverse("portal:invest_subscribe", args=[offering.pk]), form)


def test_units_step_goes_to_the_review_with_amount_fee_rule_and_limit():
    offering = offering_in("Austin", investor_fee_basis_points=200)
    investor = modest_investor()
    client = signed_in(investor.user)
    step = client.post(reverse("portal:invest", args=[offering.pk]), {"units": "10"})
    assert step.status_code == 302
    page = client.get(step["Location"]).content.decode()
    assert "$1,000.00" in page  # 10 units at $100
    assert "$20.00" in page  # 2% investor fee, from the service's fee function
    assert "$1,020.00" in page
    assert "Reg CF" in page
    assert "$2,500.00" in page  # limit left


def test_double_submit_subscribes_once():
    offering = offering_in("Austin")
    investor = modest_investor()
    client = signed_in(investor.user)
    page = _review(client, offering, "5")
    first = _subscribe(client, offering, "5", page)
    again = _subscribe(client, offering, "5", page)
    assert first.status_code == again.status_code == 302
    assert first["Location"] == again["Location"]
    assert Subscription.objects.filter(investor=investor).count() == 1
    assert SubscriptionAgreement.objects.filter(subscription__investor=investor).count() == 1
    # a new review gives a new token: a deliberate second subscription is possible
    _subscribe(client, offering, "5", _review(client, offering, "5"))
    assert Subscription.objects.filter(investor=investor).count() == 2


def test_over_the_limit_is_refused_with_the_rule_and_nothing_written():
    offering = offering_in("Austin")
    investor = modest_investor()
    client = signed_in(investor.user)
    response = _subscribe(client, offering, "26", _review(client, offering, "26"))
    assert response.status_code == 422
    assert "is over the limit" in response.content.decode()
    assert not Subscription.objects.filter(investor=investor).exists()


def test_not_kyc_approved_is_refused():
    offering = offering_in("Austin")
    investor = kyc_investor(kyc_status="pending")
    client = signed_in(investor.user)
    response = _subscribe(client, offering, "1", _review(client, offering, "1"))
    assert "only KYC-approved investors can subscribe" in response.content.decode()
    assert not Subscription.objects.exists()


def test_risk_acknowledgement_is_required():
    offering = offering_in("Austin")
    client = signed_in(modest_investor().user)
    page = _review(client, offering, "1")
    form = {
        "units": "1",
        "token": _token(page),
        "typed_name": "Nina Newcomer",
        "agreement_sha256": _agreement_sha256(page),
    }
    response = client.post(reverse("portal:invest_subscribe", args=[offering.pk]), form)
    assert response.status_code == 422
    assert not Subscription.objects.exists()


def test_sold_out_shows_the_waitlist_position():
    offering = offering_in(
        "Austin", units_authorized=10, max_raise_minor=1_000_00, target_raise_minor=500_00
    )
    first, second = kyc_investor(), kyc_investor()
    client = signed_in(first.user)
    _subscribe(client, offering, "10", _review(client, offering, "10"))
    other = signed_in(second.user)
    response = _subscribe(other, offering, "2", _review(other, offering, "2"))
    page = other.get(response["Location"]).content.decode()
    assert "you are <strong>number 1</strong> on the waitlist" in page


def _reserved(investor: Investor, offering: Offering, client: Client) -> Subscription:
    _subscribe(client, offering, "5", _review(client, offering, "5"))
    return Subscription.objects.get(investor=investor)


def test_the_agreement_is_shown_with_its_hash_before_the_one_submit():
    offering = offering_in("Austin", title="Maple Court Apartments")
    client = signed_in(modest_investor(legal_name="Nina Newcomer").user)
    page = _review(client, offering, "5")
    text = re.search(r'<pre class="agreement"[^>]*>(.*?)</pre>', page, re.DOTALL)
    assert text is not None
    shown = html.unescape(text[1])
    assert "Maple Court Apartments" in shown
    assert "Subscription amount: USD 500.00" in shown
    assert "Subscription: (numbered when you sign and subscribe)" in shown
    assert hashlib.sha256(shown.encode()).hexdigest() == _agreement_sha256(page)
    assert f'id="agreement-sha256" class="hash">{_agreement_sha256(page)}<' in page
    assert "Type your full legal name to sign" in page


def test_a_wrong_name_writes_nothing_then_the_right_one_subscribes_and_signs():
    offering = offering_in("Austin")
    investor = modest_investor(legal_name="Nina Newcomer")
    client = signed_in(investor.user)
    page = _review(client, offering, "5")
    refused = _subscribe(client, offering, "5", page, typed_name="Somebody Else")
    assert refused.status_code == 422
    assert "The typed name must be your full legal name" in refused.content.decode()
    assert 'id="typed-name-error"' in refused.content.decode()  # under the field
    assert not Subscription.objects.exists()
    assert not SubscriptionAgreement.objects.exists()
    # the same page (same one-time token), now with the right name
    done = _subscribe(client, offering, "5", page)
    subscription = Subscription.objects.get(investor=investor)
    assert done["Location"] == reverse("portal:subscription", args=[subscription.pk])
    assert subscription.status == "signed"
    signed = SubscriptionAgreement.objects.get(subscription=subscription)
    assert signed.typed_name == "Nina Newcomer"
    # the signed text is the one shown, with the subscription's number filled in
    assert f"Subscription: #{subscription.pk}" in signed.document_text
    assert signed.document_sha256 == hashlib.sha256(signed.document_text.encode()).hexdigest()
    shown = client.get(done["Location"]).content.decode()
    assert signed.document_sha256 in shown


def test_an_agreement_that_changed_after_it_was_shown_writes_nothing(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path
    offering = offering_in("Austin")
    investor = modest_investor(legal_name="Nina Newcomer")
    client = signed_in(investor.user)
    page = _review(client, offering, "5")
    offering_document_upload(
        actor=member_of(offering.sponsor),
        offering_id=offering.pk,
        kind="offering_memorandum",
        file=ContentFile(b"%PDF-1.4 new terms", name="memorandum.pdf"),
    )
    refused = _subscribe(client, offering, "5", page)
    assert refused.status_code == 422
    body = refused.content.decode()
    assert "The agreement changed since it was shown to you" in body
    assert not Subscription.objects.exists()
    assert _agreement_sha256(body) != _agreement_sha256(page)  # the new text, to read again
    assert "offering_memorandum v1" in body


def test_fund_and_cancel():
    offering = offering_in("Austin")
    investor = modest_investor(legal_name="Nina Newcomer")
    client = signed_in(investor.user)
    subscription = _reserved(investor, offering, client)
    assert subscription.status == "signed"
    url = reverse("portal:subscription", args=[subscription.pk])
    client.post(reverse("portal:subscription_fund", args=[subscription.pk]))
    payment = Payment.objects.get(subscription=subscription)
    page = client.get(url).content.decode()
    assert payment.provider_reference in page
    assert "$500.00" in page
    assert "Cancel until" in page
    client.post(reverse("portal:subscription_cancel", args=[subscription.pk]), {"reason": ""})
    subscription.refresh_from_db()
    assert subscription.status == "cancelled"


def test_a_waitlisted_subscription_is_signed_on_its_page_once_promoted():
    offering = offering_in(
        "Austin", units_authorized=10, max_raise_minor=1_000_00, target_raise_minor=500_00
    )
    first, second = kyc_investor(), kyc_investor(legal_name="Wendy Waiting")
    client = signed_in(first.user)
    _subscribe(client, offering, "10", _review(client, offering, "10"))
    other = signed_in(second.user)
    _subscribe(other, offering, "2", _review(other, offering, "2"))
    waiting = Subscription.objects.get(investor=second)
    assert waiting.status == "waitlisted"
    assert not waiting.agreements.exists()  # nothing to sign while no units are reserved
    mine = Subscription.objects.get(investor=first)
    client.post(reverse("portal:subscription_cancel", args=[mine.pk]), {"reason": ""})
    waiting.refresh_from_db()
    assert waiting.status == "reserved"
    page = other.get(reverse("portal:subscription", args=[waiting.pk])).content.decode()
    assert "Sign the subscription agreement" in page
    other.post(
        reverse("portal:subscription_sign", args=[waiting.pk]),
        {"typed_name": "Wendy Waiting", "agreement_sha256": _agreement_sha256(page)},
    )
    waiting.refresh_from_db()
    assert waiting.status == "signed"


def test_another_investors_subscription_is_a_404():
    offering = offering_in("Austin")
    owner = modest_investor()
    subscription = _reserved(owner, offering, signed_in(owner.user))
    intruder = signed_in(modest_investor().user)
    for name in ("portal:subscription",):
        assert intruder.get(reverse(name, args=[subscription.pk])).status_code == 404
    for name in (
        "portal:subscription_sign",
        "portal:subscription_fund",
        "portal:subscription_cancel",
    ):
        assert intruder.post(reverse(name, args=[subscription.pk])).status_code == 404
    subscription.refresh_from_db()
    assert subscription.status == "signed"


def test_dashboard_lists_own_subscriptions_only():
    offering = offering_in("Austin", title="Maple Court Apartments")
    owner = modest_investor()
    client = signed_in(owner.user)
    _reserved(owner, offering, client)
    page = client.get(reverse("portal:dashboard")).content.decode()
    assert "Maple Court Apartments" in page
    assert "Signed" in page
    other = signed_in(modest_investor().user).get(reverse("portal:dashboard")).content.decode()
    assert "Maple Court Apartments" not in other
    assert Decimal(5) == Subscription.objects.get().quanta
