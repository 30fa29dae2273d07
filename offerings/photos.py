"""A property's photo: checked by its content, never by its name or the browser's content type,
and re-encoded before it is stored.

- JPEG, PNG and WebP only, recognised by Pillow from the bytes (an SVG, which can carry
  script, or anything else is refused);
- at most `PHOTO_SIZE_MAX_BYTES` uploaded and `PHOTO_PIXELS_MAX` pixels declared in the header
  (checked before the pixels are decoded: a small file can claim a huge image);
- re-encoded at most `PHOTO_SIDE_MAX_PIXELS` on its longer side: what is stored is an image
  Pillow wrote (no metadata such as GPS position, nothing appended to the pixels) and a card
  does not download a camera's 20 MB original.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from io import BytesIO
from pathlib import PurePosixPath
from typing import Any

from django.core.files.base import File
from django.urls import reverse
from PIL import Image, ImageOps, UnidentifiedImageError

from common.errors import ValidationFailed

PHOTO_SIZE_MAX_BYTES = 8 * 1024 * 1024
PHOTO_PIXELS_MAX = 40_000_000
PHOTO_SIDE_MAX_PIXELS = 1600
PHOTO_ALT_TEXT_MAX_LENGTH = 200
# Pillow's format name → the stored file's extension and content type.
PHOTO_FORMATS = {
    "JPEG": ("jpg", "image/jpeg"),
    "PNG": ("png", "image/png"),
    "WEBP": ("webp", "image/webp"),
}
CONTENT_TYPE_OF_EXTENSION = dict(PHOTO_FORMATS.values())


@dataclass(frozen=True)
class PreparedPhoto:
    content: bytes
    extension: str
    sha256: str


def _refuse(detail: str, code: str) -> ValidationFailed:
    return ValidationFailed(detail, code=code, field="photo")


def _read_bounded(file: File[Any]) -> bytes:
    size = file.size or 0
    if size == 0:
        raise _refuse("The photo is empty.", "photo_empty")
    if size > PHOTO_SIZE_MAX_BYTES:
        raise _refuse(
            f"The photo is larger than {PHOTO_SIZE_MAX_BYTES // (1024 * 1024)} MB.",
            "photo_too_large",
        )
    file.seek(0)
    data = file.read(PHOTO_SIZE_MAX_BYTES + 1)
    if len(data) > PHOTO_SIZE_MAX_BYTES:  # the declared size was wrong
        raise _refuse("The photo is too large.", "photo_too_large")
    return bytes(data)


def _format_of(data: bytes) -> str:
    """Pillow's name for the image's format, from its bytes; refused unless one we keep."""
    try:
        with Image.open(BytesIO(data)) as probe:
            image_format = probe.format or ""
            width, height = probe.size
            probe.verify()
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError):
        raise _refuse(
            "The photo must be a JPEG, PNG or WebP image.", "photo_type_invalid"
        ) from None
    if image_format not in PHOTO_FORMATS:
        raise _refuse("The photo must be a JPEG, PNG or WebP image.", "photo_type_invalid")
    if width * height > PHOTO_PIXELS_MAX:
        raise _refuse(
            f"The photo has more than {PHOTO_PIXELS_MAX // 1_000_000} million pixels.",
            "photo_too_many_pixels",
        )
    return image_format


def _reencoded(data: bytes, image_format: str) -> bytes:
    try:
        with Image.open(BytesIO(data)) as original:
            image = ImageOps.exif_transpose(original)  # the camera's rotation, then no EXIF
            image.thumbnail((PHOTO_SIDE_MAX_PIXELS, PHOTO_SIDE_MAX_PIXELS))
            if image_format == "JPEG" and image.mode not in ("RGB", "L"):
                image = image.convert("RGB")
            output = BytesIO()
            options: dict[str, Any] = {"quality": 85} if image_format != "PNG" else {}
            image.save(output, format=image_format, **options)
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError):
        raise _refuse("The photo could not be read.", "photo_type_invalid") from None
    return output.getvalue()


def photo_prepare(file: File[Any]) -> PreparedPhoto:
    """The photo as it will be stored, or a `ValidationFailed` on the field `photo`."""
    data = _read_bounded(file)
    image_format = _format_of(data)
    content = _reencoded(data, image_format)
    return PreparedPhoto(
        content=content,
        extension=PHOTO_FORMATS[image_format][0],
        sha256=hashlib.sha256(content).hexdigest(),
    )


def alt_text_clean(alt_text: str) -> str:
    """A photo needs a description for people who cannot see it."""
    cleaned = " ".join(alt_text.split())
    if not cleaned:
        raise ValidationFailed(
            "Describe the photo for people who cannot see it.",
            code="photo_alt_text_required",
            field="photo_alt_text",
        )
    if len(cleaned) > PHOTO_ALT_TEXT_MAX_LENGTH:
        raise ValidationFailed(
            f"The description is longer than {PHOTO_ALT_TEXT_MAX_LENGTH} characters.",
            code="photo_alt_text_too_long",
            field="photo_alt_text",
        )
    return cleaned


def photo_url(property_id: int, photo_name: str | None) -> str:
    """Where a property's photo is served ('' without one): by the portal's view, which checks
    who may see it (the storage itself may be a private bucket). The stored file's name is the
    version, so a new photo is a new URL and an old one may stay in a browser's cache."""
    if not photo_name:
        return ""
    version = PurePosixPath(photo_name).stem
    return reverse("portal:property_photo", args=[property_id]) + f"?v={version}"
