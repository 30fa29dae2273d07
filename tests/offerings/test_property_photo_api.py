"""A property's photo in the API: `photo_url` and `photo_alt_text` on every property the API
shows (its own list, an offering's detail), None / '' without a photo; the URL serves the
image to whoever may see the offering, and nothing to others."""

from __future__ import annotations

from io import BytesIO
from pathlib import Path
from typing import Any

import pytest
from django.core.files.base import ContentFile
from django.test import Client
from PIL import Image

from offerings.services import property_photo_set
from tests.conftest import bearer
from tests.offerings.factories import live_offering, member_of, new_offering

pytestmark = [pytest.mark.django_db, pytest.mark.embedded]

BASE = "/api/v1"
ALT = "The building seen from the street"


@pytest.fixture(autouse=True)
def media(settings: Any, tmp_path: Path) -> Path:
    settings.MEDIA_ROOT = tmp_path
    return tmp_path


def _auth(user: Any) -> dict[str, str]:
    return {"Authorization": bearer(user)["HTTP_AUTHORIZATION"]}


def _photograph(property_id: int, actor: Any) -> None:
    output = BytesIO()
    Image.new("RGB", (30, 20), "navy").save(output, format="PNG")
    property_photo_set(
        actor=actor,
        property_id=property_id,
        file=ContentFile(output.getvalue(), name="p.png"),
        alt_text=ALT,
    )


def test_without_a_photo_the_api_says_so():
    draft = new_offering()
    body = Client().get(f"{BASE}/properties", headers=_auth(member_of(draft.sponsor))).json()
    assert body["items"][0]["photo_url"] is None
    assert body["items"][0]["photo_alt_text"] == ""


def test_an_offerings_property_shows_its_photo_which_anyone_who_sees_it_can_load():
    offering = live_offering()
    _photograph(offering.property_id, member_of(offering.sponsor))
    anyone = Client()
    shown = anyone.get(f"{BASE}/offerings/{offering.pk}").json()["property"]
    assert shown["photo_alt_text"] == ALT
    assert shown["photo_url"].startswith(f"/properties/{offering.property_id}/photo/?v=")
    image = anyone.get(shown["photo_url"])
    assert image.status_code == 200
    assert image["Content-Type"] == "image/png"


def test_a_drafts_photo_is_listed_for_its_sponsor_and_served_to_no_one_else():
    draft = new_offering()
    member = member_of(draft.sponsor)
    _photograph(draft.property_id, member)
    listed = Client().get(f"{BASE}/properties", headers=_auth(member)).json()["items"][0]
    assert listed["photo_alt_text"] == ALT
    member_client = Client()
    member_client.force_login(member)
    assert member_client.get(listed["photo_url"]).status_code == 200
    assert Client().get(listed["photo_url"]).status_code == 404
