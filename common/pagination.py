"""Pagination for every list endpoint: django-ninja's limit/offset, with the offset bounded in
the schema. An offset no database can hold was a 500 (PostgreSQL: bigint out of range;
SQLite: "datatype mismatch", reported as an IntegrityError the API cannot tell from a real
one); now it is refused by validation like any other bad query parameter, on both."""

from __future__ import annotations

from ninja import Field
from ninja.pagination import LimitOffsetPagination

# Far beyond any list's length, and with room for offset + limit below 2**63 (the largest
# OFFSET/LIMIT either database accepts).
MAX_OFFSET = 2**62


class BoundedLimitOffsetPagination(LimitOffsetPagination):
    class Input(LimitOffsetPagination.Input):
        offset: int = Field(0, ge=0, le=MAX_OFFSET)
