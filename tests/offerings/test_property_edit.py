"""The property services the sponsor console uses: `property_update` (only a member of its
sponsor, only while every offering of it is a draft, nothing changed on a refusal) and
`property_photo_set` (type by content, size and pixel limits, re-encoded without metadata, the
replaced file removed, a refusal stores nothing)."""

from __future__ import annotations

from dataclasses import replace
from io import BytesIO
from pathlib import Path
from typing import Any

import pytest
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.db import IntegrityError, transaction
from PIL import Image

from common.errors import Conflict, NotFound, ValidationFailed
from offerings import services
from offerings.models import Property
from offerings.services import PropertyDetails, property_photo_set, property_update
from tests.offerings.factories import approved_sponsor, member_of, new_offering

pytestmark = [pytest.mark.django_db, pytest.mark.embedded]


@pytest.fixture(autouse=True)
def media(settings: Any, tmp_path: Path) -> Path:
    settings.MEDIA_ROOT = tmp_path
    return tmp_path


def _details(home: Property, **changes: Any) -> PropertyDetails:
    current = PropertyDetails(
        name=home.name,
        address_line1=home.address_line1,
        city=home.city,
        country=home.country,
        property_type=home.property_type,
    )
    return replace(current, **changes)


def _image(
    image_format: str, size: tuple[int, int] = (40, 20), **options: Any
) -> ContentFile[bytes]:
    output = BytesIO()
    mode = "1" if size[0] * size[1] > 10_000_000 else "RGB"
    Image.new(mode, size).save(output, format=image_format, **options)
    return ContentFile(output.getvalue(), name=f"upload.{image_format.lower()}")


def test_a_member_updates_a_drafts_property_and_its_key_figures():
    draft = new_offering()
    details = _details(
        draft.property,
        city="Salem",
        year_built=1924,
        square_feet=48_000,
        purchase_price_minor=6_500_000_00,
        purchase_price_currency="USD",
        projected_irr_bps=1425,
    )
    property_update(actor=member_of(draft.sponsor), property_id=draft.property_id, details=details)
    home = Property.objects.get(pk=draft.property_id)
    assert (home.city, home.year_built, home.square_feet) == ("Salem", 1924, 48_000)
    assert (home.purchase_price_minor, home.projected_irr_bps) == (6_500_000_00, 1425)


def test_another_sponsor_cannot_update_or_photograph_the_property():
    draft = new_offering()
    outsider = member_of(approved_sponsor(name="Other"))
    with pytest.raises(NotFound):
        property_update(
            actor=outsider,
            property_id=draft.property_id,
            details=_details(draft.property, city="Salem"),
        )
    with pytest.raises(NotFound):
        property_photo_set(
            actor=outsider, property_id=draft.property_id, file=_image("PNG"), alt_text="A house"
        )
    assert Property.objects.get(pk=draft.property_id).city == draft.property.city
    assert not default_storage.listdir("")[1]


def test_the_property_of_a_submitted_offering_cannot_change():
    draft = new_offering()
    member = member_of(draft.sponsor)
    services.offering_submit(actor=member, offering_id=draft.pk)
    with pytest.raises(Conflict):
        property_update(
            actor=member,
            property_id=draft.property_id,
            details=_details(draft.property, city="Salem"),
        )
    assert Property.objects.get(pk=draft.property_id).city == draft.property.city


def test_a_purchase_price_needs_its_currency():
    draft = new_offering()
    with pytest.raises(ValidationFailed) as refused:
        property_update(
            actor=member_of(draft.sponsor),
            property_id=draft.property_id,
            details=_details(draft.property, purchase_price_minor=100),
        )
    assert refused.value.context["field"] == "purchase_price"


@pytest.mark.parametrize(
    ("image_format", "content_type"), [("PNG", "png"), ("JPEG", "jpg"), ("WEBP", "webp")]
)
def test_a_photo_is_stored_re_encoded_without_its_metadata(image_format: str, content_type: str):
    draft = new_offering()
    exif = Image.Exif()
    exif[0x8825] = {2: (51.0, 30.0, 0.0)}  # GPSInfo: where the picture was taken
    upload = _image(image_format, exif=exif.tobytes())
    with Image.open(BytesIO(upload.read())) as original:
        assert original.getexif().get_ifd(0x8825)  # the upload carries the position
    upload.seek(0)
    home = property_photo_set(
        actor=member_of(draft.sponsor),
        property_id=draft.property_id,
        file=upload,
        alt_text="  The   building from the street ",
    )
    stored_name = str(home.photo.name)
    assert stored_name.endswith(f".{content_type}")
    assert home.photo_alt_text == "The building from the street"
    stored = default_storage.open(stored_name).read()
    with Image.open(BytesIO(stored)) as image:
        assert not image.getexif()  # no metadata kept
        assert image.format == image_format
        assert image.size == (40, 20)


def test_a_large_photo_is_scaled_down_and_a_replaced_one_removed():
    draft = new_offering()
    member = member_of(draft.sponsor)
    first = str(
        property_photo_set(
            actor=member, property_id=draft.property_id, file=_image("PNG"), alt_text="First"
        ).photo.name
    )
    second = str(
        property_photo_set(
            actor=member,
            property_id=draft.property_id,
            file=_image("JPEG", (3200, 1000)),
            alt_text="Second",
        ).photo.name
    )
    assert not default_storage.exists(first)
    with Image.open(default_storage.open(second)) as image:
        assert image.size == (1600, 500)


def test_a_photo_declaring_too_many_pixels_is_refused_before_it_is_decoded():
    draft = new_offering()
    with pytest.raises(ValidationFailed) as refused:
        property_photo_set(
            actor=member_of(draft.sponsor),
            property_id=draft.property_id,
            file=_image("PNG", (8000, 6000)),
            alt_text="Huge",
        )
    assert refused.value.code == "photo_too_many_pixels"
    assert not Property.objects.get(pk=draft.property_id).photo


def test_the_database_refuses_a_photo_without_alt_text():
    draft = new_offering()
    with pytest.raises(IntegrityError), transaction.atomic():
        Property.objects.filter(pk=draft.property_id).update(photo="properties/x.png")
