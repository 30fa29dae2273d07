"""Checks over the whole generated OpenAPI document, so new endpoints are covered as they
are added: every JSON request body forbids unknown fields, every error has the same shape."""

from typing import Any

import pytest

pytestmark = [pytest.mark.django_db, pytest.mark.embedded]


@pytest.fixture
def openapi(api_client) -> dict[str, Any]:
    response = api_client.get("/api/v1/openapi.json")
    assert response.status_code == 200
    return response.json()


def resolve(document: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[-1]
        schema = document["components"]["schemas"][name]
    return schema


def object_schemas(document: dict[str, Any], schema: dict[str, Any], seen: set[str]):
    """Every object schema reachable from `schema` (following refs, arrays, unions)."""
    if "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[-1]
        if name in seen:
            return
        seen.add(name)
    schema = resolve(document, schema)
    if schema.get("type") == "object" and "properties" in schema:
        yield schema
        for child in schema["properties"].values():
            yield from object_schemas(document, child, seen)
    for key in ("anyOf", "oneOf", "allOf"):
        for child in schema.get(key, []):
            yield from object_schemas(document, child, seen)
    if "items" in schema:
        yield from object_schemas(document, schema["items"], seen)


def request_bodies(document: dict[str, Any]):
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            content = operation.get("requestBody", {}).get("content", {})
            for media_type, body in content.items():
                yield f"{method.upper()} {path} ({media_type})", body["schema"]


def test_docs_and_openapi_are_served(api_client, openapi):
    assert openapi["info"]["title"] == "Brickbook API"
    assert "/api/v1/health" in openapi["paths"]
    assert api_client.get("/api/v1/docs").status_code == 200


def test_every_json_request_body_forbids_unknown_fields(openapi):
    checked = 0
    for operation, schema in request_bodies(openapi):
        for obj in object_schemas(openapi, schema, set()):
            if "multipart" in operation:
                continue
            assert obj.get("additionalProperties") is False, (
                f"{operation}: input schema {obj.get('title')} accepts unknown fields"
            )
            checked += 1
    assert checked >= 1


def test_every_operation_has_a_tag_and_declared_success(openapi):
    for path, operations in openapi["paths"].items():
        for method, operation in operations.items():
            assert operation.get("tags"), f"{method} {path} has no tag"
            assert any(code.startswith("2") for code in operation["responses"]), (
                f"{method} {path} declares no success response"
            )


def test_a_propertys_photo_is_shown_and_never_written_through_the_api(openapi):
    """The photo is uploaded, checked and re-encoded in the portal only (property_photo_set):
    the API shows where it is served and its text alternative, and no request body of any
    operation takes it."""
    shown = resolve(openapi, openapi["components"]["schemas"]["PropertyOut"])
    assert {"photo_url", "photo_alt_text"} <= set(shown["properties"])
    assert {"photo_url", "photo_alt_text"} <= set(shown["required"])
    for operation, schema in request_bodies(openapi):
        for obj in object_schemas(openapi, schema, set()):
            written = {"photo", "photo_url", "photo_alt_text"} & set(obj.get("properties", {}))
            assert not written, f"{operation} takes {written}"
