"""`/auth/token`: exchange credentials for a bearer token, and revoke it."""

from __future__ import annotations

from datetime import datetime

from django.http import HttpRequest
from ninja import Router, Schema, Status
from pydantic import EmailStr, Field

from common.auth import api_token_revoke, client_ip_of, login_with_password
from common.schemas import ErrorOut, StrictSchema, ValidationErrorOut

router = Router(tags=["auth"])


class TokenIn(StrictSchema):
    email: EmailStr
    password: str = Field(min_length=1, max_length=256)


class TokenOut(Schema):
    token: str
    token_type: str = "Bearer"
    expires_at: datetime


@router.post(
    "/token",
    auth=None,
    response={200: TokenOut, 401: ErrorOut, 422: ValidationErrorOut, 429: ErrorOut},
)
def token_create(request: HttpRequest, payload: TokenIn) -> TokenOut:
    issued = login_with_password(
        email=payload.email, password=payload.password, client_ip=client_ip_of(request)
    )
    return TokenOut(token=issued.token, expires_at=issued.expires_at)


@router.post("/token/revoke", response={204: None, 401: ErrorOut})
def token_revoke(request: HttpRequest) -> Status[None]:
    """Revoke the token this request was made with (log out)."""
    header = request.headers.get("Authorization", "")
    api_token_revoke(clear_token=header.partition(" ")[2].strip())
    return Status(204, None)
