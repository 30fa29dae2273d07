"""Net asset value per unit: posted by the sponsor or staff with an effective date (refusals
for the wrong currency, a fraction of a cent per quantum, a future date, an offering not
closed, an outsider), read "as of" a day, append-only, over HTTP."""

from __future__ import annotations

import json
from datetime import date, timedelta
from typing import Any

import pytest
from django.db import DatabaseError, transaction
from django.test import Client

from common.errors import Conflict, NotAllowed, NotFound, ValidationFailed
from offerings.models import NetAssetValue, Offering, OfferingStatus
from offerings.nav import nav_as_of, nav_post
from tests.captable.test_distributions import closed_offering, staff, today_in
from tests.captable.test_distributions_api import get
from tests.conftest import bearer, new_user
from tests.offerings.factories import member_of

pytestmark = [pytest.mark.django_db, pytest.mark.embedded]


def post_nav(offering: Offering, minor: int, on: date, actor: Any = None) -> NetAssetValue:
    return nav_post(
        actor=actor or member_of(offering.sponsor),
        offering_id=offering.pk,
        nav_per_unit_minor=minor,
        currency="USD",
        effective_date=on,
    )


def test_nav_as_of_takes_the_latest_date_and_the_latest_correction() -> None:
    offering, _ = closed_offering([10])
    today = today_in(offering)
    post_nav(offering, 100_00, today - timedelta(days=30))
    post_nav(offering, 110_00, today - timedelta(days=10))
    corrected = post_nav(offering, 111_00, today - timedelta(days=10), actor=staff())
    assert nav_as_of(offering_id=offering.pk, on=today - timedelta(days=31)) is None
    first = nav_as_of(offering_id=offering.pk, on=today - timedelta(days=11))
    assert first is not None
    assert first.nav_per_unit_minor == 100_00
    assert nav_as_of(offering_id=offering.pk, on=today) == corrected


@pytest.mark.parametrize(
    ("change", "error", "code"),
    [
        ({"currency": "EUR"}, ValidationFailed, "currency_mismatch"),
        ({"nav_per_unit_minor": 0}, ValidationFailed, "nav_not_positive"),
        ({"effective_date": "tomorrow"}, ValidationFailed, "nav_date_future"),
        ({"actor": "investor"}, NotFound, "offering_not_found"),
    ],
)
def test_refusals(change: dict[str, Any], error: type[Exception], code: str) -> None:
    offering, _ = closed_offering([10])
    terms: dict[str, Any] = {
        "actor": member_of(offering.sponsor),
        "offering_id": offering.pk,
        "nav_per_unit_minor": 100_00,
        "currency": "USD",
        "effective_date": today_in(offering),
    }
    if change.get("effective_date") == "tomorrow":
        change = {"effective_date": today_in(offering) + timedelta(days=1)}
    if change.get("actor") == "investor":
        change = {"actor": new_user()}
    with pytest.raises(error) as raised:
        nav_post(**(terms | change))
    assert getattr(raised.value, "code", None) == code
    assert not NetAssetValue.objects.exists()


def test_quantum_must_be_whole_cents_and_offering_closed() -> None:
    offering, _ = closed_offering([10])
    Offering.objects.filter(pk=offering.pk).update(quanta_per_unit=1_000)
    with pytest.raises(ValidationFailed, match="1000 quanta"):
        post_nav(Offering.objects.get(pk=offering.pk), 100_01, today_in(offering))
    Offering.objects.filter(pk=offering.pk).update(status=OfferingStatus.LIVE, quanta_per_unit=1)
    with pytest.raises(Conflict, match="closed funded"):
        post_nav(offering, 100_00, today_in(offering))


def test_another_sponsors_member_may_not_post() -> None:
    offering, _ = closed_offering([10])
    other, _ = closed_offering([10])
    with pytest.raises((NotAllowed, NotFound)):
        post_nav(offering, 100_00, today_in(offering), actor=member_of(other.sponsor))


def test_history_is_append_only() -> None:
    offering, _ = closed_offering([10])
    row = post_nav(offering, 100_00, today_in(offering))
    with pytest.raises(DatabaseError), transaction.atomic():
        NetAssetValue.objects.filter(pk=row.pk).update(nav_per_unit_minor=1)


def test_over_http(api_client: Client) -> None:
    offering, _ = closed_offering([10])
    sponsor = member_of(offering.sponsor)
    today = today_in(offering)
    body = {"nav_per_unit": {"amount": "123.45", "currency": "USD"}, "effective_date": str(today)}
    headers: Any = bearer(sponsor)
    path = f"/api/v1/offerings/{offering.pk}/nav"
    created = api_client.post(path, json.dumps(body), content_type="application/json", **headers)
    assert created.status_code == 201, created.content
    assert created.json()["nav_per_unit"] == {"amount": "123.45", "currency": "USD"}
    extra = api_client.post(
        path, json.dumps(body | {"x": 1}), content_type="application/json", **headers
    )
    assert extra.status_code == 422
    listed = get(api_client, f"/offerings/{offering.pk}/nav", sponsor).json()
    assert [row["nav_per_unit"]["amount"] for row in listed["items"]] == ["123.45"]
    as_of = get(api_client, f"/offerings/{offering.pk}/nav/as-of?on={today}", sponsor)
    assert as_of.json()["id"] == created.json()["id"]
    before = get(
        api_client, f"/offerings/{offering.pk}/nav/as-of?on={today - timedelta(days=1)}", sponsor
    )
    assert before.status_code == 404
