"""What the hardening suites share: the API's own OpenAPI document, a WSGI app that serves
requests inside the test's transaction, a call that leaves no trace (a savepoint rolled back
after each request), the scan for fields no response may carry, and the database picture
(row counts and ledger chain heads) compared before and after a refused request."""

from __future__ import annotations

import functools
import json
import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from django.core.handlers.wsgi import WSGIHandler
from django.core.signals import request_finished, request_started
from django.db import close_old_connections, connection, transaction

from tests.hardening.world import TAX_ID_SECRET, World, table_row_counts

API_PREFIX = "/api/v1"

# Keys no response may ever carry, whoever asks: secrets, hashes, clear tax ids, raw KYC
# evidence files. (`tax_id_masked` is allowed: it only ever shows the last four characters.)
FORBIDDEN_KEYS = frozenset(
    {
        "password",
        "password_hash",
        "token_hash",
        "tax_id",
        "tax_id_encrypted",
        "ssn",
        "secret",
        "webhook_secret",
        "hmac_key",
        "seal_key",
        "kyc_document",
        "kyc_documents",
        "evidence_file",
        "date_of_birth",
    }
)


@functools.cache
def openapi_document() -> dict[str, Any]:
    """Built once per test process (it takes a while): callers must not change it."""
    from config.api import api

    # A JSON round trip: the document holds lazy strings and the like until rendered.
    return json.loads(json.dumps(api.get_openapi_schema(), default=str))


def operations(document: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    """(method, path, operation) for every operation of the document."""
    for path, by_method in document["paths"].items():
        for method, operation in by_method.items():
            yield method.upper(), path, operation


def path_parameters(path: str) -> list[str]:
    return [part[1:-1] for part in path.split("/") if part.startswith("{")]


class InTransactionApp(WSGIHandler):
    """Django's WSGI handler for requests served inside the test's transaction. Use it within
    `django_signals_quiet()`: like Django's test client, nothing may close the connection at
    the start or the end of a request (that would abort the test's transaction)."""


@contextmanager
def django_signals_quiet() -> Iterator[None]:
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    try:
        yield
    finally:
        request_started.connect(close_old_connections)
        request_finished.connect(close_old_connections)


@contextmanager
def django_request_log_quiet() -> Iterator[None]:
    """Thousands of refused requests would each log a warning line."""
    logger = logging.getLogger("django.request")
    level = logger.level
    logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        logger.setLevel(level)


@contextmanager
def rolled_back() -> Iterator[None]:
    """Whatever happens inside is undone, so every request meets the same world."""
    savepoint = transaction.savepoint()
    try:
        yield
    finally:
        transaction.savepoint_rollback(savepoint)


def secrets_in(body: bytes) -> list[str]:
    """Values no response may carry, whoever asks: the clear tax ids of the world."""
    return [TAX_ID_SECRET] if TAX_ID_SECRET.encode() in body else []


def forbidden_keys_in(data: Any, path: str = "$") -> list[str]:
    """Where in a decoded JSON body a forbidden key appears."""
    found: list[str] = []
    if isinstance(data, dict):
        for name, value in data.items():
            if str(name).lower() in FORBIDDEN_KEYS:
                found.append(f"{path}.{name}")
            found.extend(forbidden_keys_in(value, f"{path}.{name}"))
    elif isinstance(data, list):
        for index, value in enumerate(data):
            found.extend(forbidden_keys_in(value, f"{path}[{index}]"))
    return found


def other_side_markers(world: World) -> list[str]:
    """Strings that identify side B's investors: side A's callers must never see them."""
    markers: list[str] = []
    for investor in (world.b.investor, world.b.buyer):
        markers.extend([investor.user.email, investor.legal_name])
    return markers


def leaks(body: bytes, markers: list[str]) -> list[str]:
    text = body.decode("utf-8", errors="replace")
    return [marker for marker in markers if marker in text]


def chain_heads() -> list[tuple[Any, ...]]:
    """Per chain: its last entry and its last seal. Entries are sealed in batches, so an
    entry posted moves the first and a seal written moves the second."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT chain, MAX(id) FROM captable_entry GROUP BY chain "
            "UNION ALL SELECT 'seal:' || chain, MAX(sequence) FROM captable_chainseal "
            "GROUP BY chain ORDER BY 1"
        )
        return [tuple(row) for row in cursor.fetchall()]


def database_picture() -> dict[str, Any]:
    return {"rows": table_row_counts(), "ledger": chain_heads()}


def changed(before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    rows = {
        table: (before["rows"].get(table), count)
        for table, count in after["rows"].items()
        if before["rows"].get(table) != count
    }
    if before["ledger"] != after["ledger"]:
        rows["ledger chain head"] = (before["ledger"], after["ledger"])
    return rows


Caller = Callable[..., Any]
