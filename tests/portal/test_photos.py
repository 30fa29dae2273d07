"""A property's photo in the portal: the sponsor uploads it in the console (checked by content:
SVG, a text file named .png and an oversized file refused under the field, nothing stored);
the marketplace card and the offering page show it with its alt text, the placeholder
otherwise; it is served only to those who may see an offering of the property."""

from __future__ import annotations

from io import BytesIO
from pathlib import Path
from typing import Any

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from django.urls import reverse
from PIL import Image

from offerings.models import Offering
from offerings.photos import PHOTO_SIZE_MAX_BYTES
from tests.offerings.factories import approved_sponsor, member_of, new_offering
from tests.portal.helpers import offering_in, signed_in

pytestmark = [pytest.mark.django_db, pytest.mark.embedded]

ALT = "Red-brick duplex with a porch, seen from Birch Street"


@pytest.fixture(autouse=True)
def media(settings: Any, tmp_path: Path) -> Path:
    settings.MEDIA_ROOT = tmp_path
    return tmp_path


def png_bytes(size: tuple[int, int] = (64, 32), color: str = "teal") -> bytes:
    output = BytesIO()
    Image.new("RGB", size, color).save(output, format="PNG")
    return output.getvalue()


def _upload(client: Client, offering: Offering, content: bytes, name: str, alt: str = ALT):
    photo = SimpleUploadedFile(name, content, content_type="image/png")
    return client.post(
        reverse("portal:sponsor_property_photo", args=[offering.pk]),
        {"photo": photo, "photo_alt_text": alt},
    )


def test_a_photo_shows_on_the_card_and_the_offering_page_with_its_alt_text(media: Path):
    offering = offering_in("Columbus", title="Birch Street Duplex")
    sponsor = signed_in(member_of(offering.sponsor))
    response = _upload(sponsor, offering, png_bytes(), "duplex.png")
    assert response.status_code == 302
    offering.property.refresh_from_db()
    photo_url = reverse("portal:property_photo", args=[offering.property_id])
    anyone = Client()
    card = anyone.get(reverse("portal:marketplace")).content.decode()
    assert f'src="{photo_url}?v=' in card
    assert f'alt="{ALT}"' in card
    page = anyone.get(reverse("portal:offering", args=[offering.pk])).content.decode()
    assert f'alt="{ALT}"' in page
    assert "placeholder.svg" not in page.split('id="property-photo"')[1].split(">")[0]
    served = anyone.get(photo_url)
    assert served.status_code == 200
    assert served["Content-Type"] == "image/png"
    assert Image.open(BytesIO(served.getvalue())).size == (64, 32)


def test_without_a_photo_the_placeholder_is_shown():
    offering = offering_in("Columbus", title="Birch Street Duplex")
    card = Client().get(reverse("portal:marketplace")).content.decode()
    assert "placeholder.svg" in card
    assert "Placeholder picture of" in card
    assert (
        Client().get(reverse("portal:property_photo", args=[offering.property_id])).status_code
        == 404
    )


@pytest.mark.parametrize(
    ("content", "name", "message"),
    [
        (
            b'<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>',
            "house.svg",
            "must be a JPEG, PNG or WebP image",
        ),
        (b"just some text, not an image", "house.png", "must be a JPEG, PNG or WebP image"),
        (b"GIF89a" + png_bytes()[6:], "house.gif", "must be a JPEG, PNG or WebP image"),
        (b"\x00" * (PHOTO_SIZE_MAX_BYTES + 1), "huge.png", "larger than 8 MB"),
    ],
    ids=["svg", "text-named-png", "not-an-image", "too-large"],
)
def test_a_bad_photo_is_refused_under_the_field_and_nothing_is_stored(
    media: Path, content: bytes, name: str, message: str
):
    offering = offering_in("Columbus")
    response = _upload(signed_in(member_of(offering.sponsor)), offering, content, name)
    assert response.status_code == 422
    page = response.content.decode()
    assert message in page
    assert 'id="id_photo_error"' in page
    offering.property.refresh_from_db()
    assert not offering.property.photo
    assert not any(path.is_file() for path in media.rglob("*"))


def test_a_photo_needs_its_description(media: Path):
    offering = offering_in("Columbus")
    response = _upload(signed_in(member_of(offering.sponsor)), offering, png_bytes(), "a.png", "")
    assert response.status_code == 422
    offering.property.refresh_from_db()
    assert not offering.property.photo
    assert not any(path.is_file() for path in media.rglob("*"))


def test_only_the_sponsor_uploads_and_a_drafts_photo_is_not_public(media: Path):
    draft = new_offering()
    outsider = signed_in(member_of(approved_sponsor(name="Other")))
    assert _upload(outsider, draft, png_bytes(), "a.png").status_code == 404
    member = signed_in(member_of(draft.sponsor))
    assert _upload(member, draft, png_bytes(), "a.png").status_code == 302
    url = reverse("portal:property_photo", args=[draft.property_id])
    assert member.get(url).status_code == 200
    assert Client().get(url).status_code == 404  # the draft is not visible to the public
    assert outsider.get(url).status_code == 404
