"""Property photos, served from the storage (local files or S3 alike) to whoever may see an
offering of the property (the offerings' visibility rule) or is a member of its sponsor. The
URL (`offerings.photos.photo_url`, also in the API's property) carries the stored file's name
as a version."""

from __future__ import annotations

from pathlib import PurePosixPath

from django.core.files.storage import default_storage
from django.http import FileResponse, Http404, HttpRequest
from django.views.decorators.http import require_GET

from offerings.models import Property
from offerings.photos import CONTENT_TYPE_OF_EXTENSION, photo_url
from offerings.selectors import offerings_visible_to, sponsor_ids_of

CACHE_SECONDS = 24 * 3600


def property_photo_url(property_id: int, photo_name: str | None) -> str:
    """'' when the property has no photo (the page shows the placeholder)."""
    return photo_url(property_id, photo_name)


def _may_see(request: HttpRequest, home: Property) -> bool:
    if home.sponsor_id in sponsor_ids_of(request.user):
        return True
    return offerings_visible_to(request.user).filter(property_id=home.pk).exists()


@require_GET
def property_photo(request: HttpRequest, property_id: int) -> FileResponse:
    home = Property.objects.filter(pk=property_id).exclude(photo="").first()
    if home is None or not _may_see(request, home):
        raise Http404("No photo.")
    name = home.photo.name or ""
    extension = PurePosixPath(name).suffix.lstrip(".")
    content_type = CONTENT_TYPE_OF_EXTENSION.get(extension)
    if content_type is None:  # only the service writes this field, with one of these names
        raise Http404("No photo.")
    response = FileResponse(default_storage.open(name), content_type=content_type)
    # Private: a 506(b) offering's photo is not for the general public or shared caches.
    response["Cache-Control"] = f"private, max-age={CACHE_SECONDS}"
    return response
