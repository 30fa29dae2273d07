"""The API's one JSON encoding (orjson), for every body it sends: the renderer's, the
responses an `Idempotency-Key` stores and replays, and the bodies built by hand on hot paths.
One encoding so that the same value reads the same everywhere: a datetime in UTC ends in "Z"
(as pydantic writes it), whether a response was rendered from a schema, stored for a replay
or built directly; a Decimal is its exact string, never a float."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import orjson
from pydantic import BaseModel


def api_json(value: Any) -> bytes:
    return orjson.dumps(value, default=_default, option=orjson.OPT_UTC_Z)


def _default(value: Any) -> Any:
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    raise TypeError(f"cannot serialize {type(value).__name__} to JSON")
