"""Offering documents: multipart upload, versions per kind, sha256, who may upload and see."""

from __future__ import annotations

import hashlib

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from offerings.models import OfferingDocument
from tests.conftest import bearer, new_user
from tests.offerings.factories import (
    approved_sponsor,
    live_offering,
    member_of,
    new_offering,
    post_json,
    staff,
)

pytestmark = [pytest.mark.django_db, pytest.mark.embedded]


@pytest.fixture(autouse=True)
def _media_in_tmp(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path


def upload(api_client, offering_id: int, headers: dict[str, str], *, kind: str, content: bytes):
    return api_client.post(
        f"/api/v1/offerings/{offering_id}/documents",
        data={"kind": kind, "file": SimpleUploadedFile("memo.pdf", content, "application/pdf")},
        **headers,
    )


def test_uploads_are_versioned_per_kind_with_their_hash(api_client):
    offering = new_offering()
    headers = bearer(member_of(offering.sponsor))

    first = upload(api_client, offering.pk, headers, kind="offering_memorandum", content=b"v1")
    second = upload(api_client, offering.pk, headers, kind="offering_memorandum", content=b"v2")
    form_c = upload(api_client, offering.pk, headers, kind="form_c", content=b"form c")

    assert first.status_code == 201, first.content
    assert (first.json()["version"], second.json()["version"], form_c.json()["version"]) == (
        1,
        2,
        1,
    )
    assert second.json()["sha256"] == hashlib.sha256(b"v2").hexdigest()
    assert second.json()["size_bytes"] == 2
    stored = OfferingDocument.objects.get(pk=second.json()["id"])
    with stored.file.open("rb") as handle:
        assert handle.read() == b"v2"

    listed = api_client.get(f"/api/v1/offerings/{offering.pk}/documents", **headers)
    assert [(d["kind"], d["version"]) for d in listed.json()] == [
        ("form_c", 1),
        ("offering_memorandum", 2),
        ("offering_memorandum", 1),
    ]


def test_only_sponsor_members_upload(api_client):
    offering = live_offering()
    investor = upload(api_client, offering.pk, bearer(new_user()), kind="other", content=b"x")
    assert investor.status_code == 403
    reviewer = upload(api_client, offering.pk, bearer(staff()), kind="other", content=b"x")
    assert reviewer.status_code == 403
    assert not OfferingDocument.objects.exists()


def test_documents_of_a_hidden_offering_are_404(api_client):
    draft = new_offering()
    rival = bearer(member_of(approved_sponsor(name="Rival")))
    assert upload(api_client, draft.pk, rival, kind="other", content=b"x").status_code == 404
    assert api_client.get(f"/api/v1/offerings/{draft.pk}/documents").status_code == 404


def test_live_offering_documents_are_public(api_client):
    offering = live_offering()
    upload(
        api_client, offering.pk, bearer(member_of(offering.sponsor)), kind="form_c", content=b"c"
    )
    listed = api_client.get(f"/api/v1/offerings/{offering.pk}/documents")
    assert listed.status_code == 200
    assert [d["kind"] for d in listed.json()] == ["form_c"]


def test_bad_uploads_are_refused(api_client):
    offering = new_offering()
    headers = bearer(member_of(offering.sponsor))
    empty = upload(api_client, offering.pk, headers, kind="other", content=b"")
    assert empty.status_code == 400
    assert empty.json()["code"] == "file_empty"
    unknown_kind = upload(api_client, offering.pk, headers, kind="brochure", content=b"x")
    assert unknown_kind.status_code == 422
    no_file = api_client.post(
        f"/api/v1/offerings/{offering.pk}/documents", data={"kind": "other"}, **headers
    )
    assert no_file.status_code == 422
    assert not OfferingDocument.objects.exists()


def test_cancelled_offering_takes_no_more_documents(api_client):
    offering = new_offering()
    member = member_of(offering.sponsor)
    post_json(
        api_client,
        f"/api/v1/offerings/{offering.pk}/cancel",
        {"reason": "withdrawn"},
        **bearer(member),
    )
    response = upload(api_client, offering.pk, bearer(member), kind="other", content=b"x")
    assert response.status_code == 409
    assert response.json()["code"] == "offering_closed"
