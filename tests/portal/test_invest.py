"""The invest flow over HTTP: review figures from the services, idempotent subscribe (a double
submit subscribes once), every refusal as a message with nothing written, waitlist position,
sign, funding instructions, cancel; another investor's subscription is a 404."""

from __future__ import annotations

import re
from decimal import Decimal

import pytest
from django.test import Client
from django.urls import reverse

from captable.models import Payment, Subscription
from investors.models import Investor
from offerings.models import Offering
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


def _subscribe(client: Client, offering: Offering, units: str, token: str, **extra: str):
    form = {"units": units, "token": token, "risk": "on", **extra}
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
    token = _token(_review(client, offering, "5"))
    first = _subscribe(client, offering, "5", token)
    again = _subscribe(client, offering, "5", token)
    assert first.status_code == again.status_code == 302
    assert first["Location"] == again["Location"]
    assert Subscription.objects.filter(investor=investor).count() == 1
    # a new review gives a new token: a deliberate second subscription is possible
    _subscribe(client, offering, "5", _token(_review(client, offering, "5")))
    assert Subscription.objects.filter(investor=investor).count() == 2


def test_over_the_limit_is_refused_with_the_rule_and_nothing_written():
    offering = offering_in("Austin")
    investor = modest_investor()
    client = signed_in(investor.user)
    response = _subscribe(client, offering, "26", _token(_review(client, offering, "26")))
    assert response.status_code == 422
    assert "is over the limit" in response.content.decode()
    assert not Subscription.objects.filter(investor=investor).exists()


def test_not_kyc_approved_is_refused():
    offering = offering_in("Austin")
    investor = kyc_investor(kyc_status="pending")
    client = signed_in(investor.user)
    response = _subscribe(client, offering, "1", _token(_review(client, offering, "1")))
    assert "only KYC-approved investors can subscribe" in response.content.decode()
    assert not Subscription.objects.exists()


def test_risk_acknowledgement_is_required():
    offering = offering_in("Austin")
    client = signed_in(modest_investor().user)
    token = _token(_review(client, offering, "1"))
    response = client.post(
        reverse("portal:invest_subscribe", args=[offering.pk]), {"units": "1", "token": token}
    )
    assert response.status_code == 422
    assert not Subscription.objects.exists()


def test_sold_out_shows_the_waitlist_position():
    offering = offering_in(
        "Austin", units_authorized=10, max_raise_minor=1_000_00, target_raise_minor=500_00
    )
    first, second = kyc_investor(), kyc_investor()
    client = signed_in(first.user)
    _subscribe(client, offering, "10", _token(_review(client, offering, "10")))
    other = signed_in(second.user)
    response = _subscribe(other, offering, "2", _token(_review(other, offering, "2")))
    page = other.get(response["Location"]).content.decode()
    assert "you are <strong>number 1</strong> on the waitlist" in page


def _reserved(investor: Investor, offering: Offering, client: Client) -> Subscription:
    _subscribe(client, offering, "5", _token(_review(client, offering, "5")))
    return Subscription.objects.get(investor=investor)


def test_sign_fund_and_cancel():
    offering = offering_in("Austin")
    investor = modest_investor(legal_name="Nina Newcomer")
    client = signed_in(investor.user)
    subscription = _reserved(investor, offering, client)
    url = reverse("portal:subscription", args=[subscription.pk])
    page = client.get(url).content.decode()
    sha = re.search(r'name="agreement_sha256" value="([0-9a-f]{64})"', page)
    assert sha is not None
    # a wrong name is refused
    client.post(
        reverse("portal:subscription_sign", args=[subscription.pk]),
        {"typed_name": "Somebody Else", "agreement_sha256": sha[1]},
    )
    subscription.refresh_from_db()
    assert subscription.status == "reserved"
    client.post(
        reverse("portal:subscription_sign", args=[subscription.pk]),
        {"typed_name": "Nina Newcomer", "agreement_sha256": sha[1]},
    )
    subscription.refresh_from_db()
    assert subscription.status == "signed"
    client.post(reverse("portal:subscription_fund", args=[subscription.pk]))
    payment = Payment.objects.get(subscription=subscription)
    page = client.get(url).content.decode()
    assert payment.provider_reference in page
    assert "$500.00" in page
    assert "Cancel until" in page
    client.post(reverse("portal:subscription_cancel", args=[subscription.pk]), {"reason": ""})
    subscription.refresh_from_db()
    assert subscription.status == "cancelled"


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
    assert subscription.status == "reserved"


def test_dashboard_lists_own_subscriptions_only():
    offering = offering_in("Austin", title="Maple Court Apartments")
    owner = modest_investor()
    client = signed_in(owner.user)
    _reserved(owner, offering, client)
    page = client.get(reverse("portal:dashboard")).content.decode()
    assert "Maple Court Apartments" in page
    assert "Reserved" in page
    other = signed_in(modest_investor().user).get(reverse("portal:dashboard")).content.decode()
    assert "Maple Court Apartments" not in other
    assert Decimal(5) == Subscription.objects.get().quanta
