"""Palette's API key shapes (``v1ApiKey``, ``v1ApiKeyEntity``, ``v1ApiKeyUpdate``, ...).

Responses add a few read-only fields Palette clients ignore: ``spec.user.emailId`` and
``status.isExpired`` / ``status.lastUsedTimestamp`` / ``status.keyHint``.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Literal

from pydantic import AwareDatetime, Field, StrictBool

from keyplane.kit.pagination import ListResponse
from keyplane.kit.schemas import ObjectMeta, PaletteModel, Rfc3339
from keyplane.kit.validation import Description, Name
from keyplane.models import ApiKey, User

if TYPE_CHECKING:
    from keyplane.api_keys.service import Verification

EXPIRY_DESCRIPTION = "RFC 3339 time with an offset, in the future; omitted means 30 days."


class ApiKeyAnnotations(PaletteModel):
    description: Description | None = None


class ApiKeyMetadataEntity(PaletteModel):
    name: Name
    annotations: ApiKeyAnnotations = Field(default_factory=ApiKeyAnnotations)


class ApiKeySpecEntity(PaletteModel):
    expiry: AwareDatetime | None = Field(default=None, description=EXPIRY_DESCRIPTION)
    user_uid: str | None = Field(
        default=None,
        max_length=64,
        description="Owner of the key; omitted (or the tenant's uid) means the caller.",
    )


class ApiKeyCreate(PaletteModel):
    """Palette's ``v1ApiKeyEntity``."""

    metadata: ApiKeyMetadataEntity
    spec: ApiKeySpecEntity = Field(default_factory=ApiKeySpecEntity)


class ApiKeyCreated(PaletteModel):
    """Palette's ``v1ApiKeyCreateResponse``: the only response that carries the value."""

    api_key: str
    uid: str


class ApiKeyMetadataUpdate(PaletteModel):
    name: Name | None = None
    annotations: ApiKeyAnnotations | None = None


class ApiKeySpecUpdate(PaletteModel):
    expiry: AwareDatetime | None = Field(default=None, description=EXPIRY_DESCRIPTION)


class ApiKeyUpdate(PaletteModel):
    """Palette's ``v1ApiKeyUpdate``; fields left out keep their value."""

    metadata: ApiKeyMetadataUpdate = Field(default_factory=ApiKeyMetadataUpdate)
    spec: ApiKeySpecUpdate = Field(default_factory=ApiKeySpecUpdate)


class ApiKeyActiveState(PaletteModel):
    """Palette's ``v1ApiKeyActiveState``: false revokes, true re-activates."""

    is_active: StrictBool


class ApiKeyUser(PaletteModel):
    uid: str
    first_name: str
    last_name: str
    email_id: str


class ApiKeySpec(PaletteModel):
    expiry: Rfc3339
    user: ApiKeyUser


class ApiKeyStatus(PaletteModel):
    is_active: bool
    is_expired: bool
    last_used_timestamp: Rfc3339 | None = None
    key_hint: str | None = Field(
        default=None,
        description="The key's last 4 characters (shown as kp_…abcd), to tell keys apart; "
        "null for keys created before Keyplane kept them.",
    )


class ApiKeyRead(PaletteModel):
    """Palette's ``v1ApiKey``."""

    metadata: ObjectMeta
    spec: ApiKeySpec
    status: ApiKeyStatus


class ApiKeyVerify(PaletteModel):
    key: str = Field(max_length=256, description="The key a caller presented to your service.")


class ApiKeyVerification(PaletteModel):
    """Whether a key is valid now, and whose it is (only for keys of the caller's tenant)."""

    valid: bool
    code: Literal["VALID", "REVOKED", "EXPIRED", "NOT_FOUND", "USER_INACTIVE", "MALFORMED"]
    key_uid: str | None = None
    user_uid: str | None = None
    tenant_uid: str | None = None
    expiry: Rfc3339 | None = None


def verification_json(result: Verification) -> bytes:
    """``verification_response`` as JSON, rendered once per key snapshot and answer: the
    verification plane sends it on every call of a tenant's services."""
    key = result.key
    if key is None:
        return _KEYLESS_ANSWERS[result.code.value]
    rendered = key.renderings.get(result.code.value)
    if rendered is None:
        answer = verification_response(result)
        rendered = answer.__pydantic_serializer__.to_json(answer, by_alias=True)
        key.renderings[result.code.value] = rendered
    return rendered


def verification_response(result: Verification) -> ApiKeyVerification:
    key = result.key
    return ApiKeyVerification(
        valid=result.valid,
        code=result.code.value,
        key_uid=key.key_uid if key else None,
        user_uid=key.user_uid if key else None,
        tenant_uid=key.tenant_uid if key else None,
        expiry=key.expires_at if key else None,
    )


_KEYLESS_ANSWERS = {
    code: ApiKeyVerification(valid=False, code=code).model_dump_json(by_alias=True).encode()
    for code in ("NOT_FOUND", "MALFORMED")
}


class ApiKeyList(ListResponse):
    """Palette's ``v1ApiKeys``."""

    items: list[ApiKeyRead]


def api_key_read(key: ApiKey, owner: User, now: datetime) -> ApiKeyRead:
    return ApiKeyRead(
        metadata=ObjectMeta(
            uid=key.uid,
            name=key.name,
            annotations={"description": key.description},
            creation_timestamp=key.created_at,
            last_modified_timestamp=key.modified_at,
        ),
        spec=ApiKeySpec(
            expiry=key.expires_at,
            user=ApiKeyUser(
                uid=owner.uid,
                first_name=owner.first_name,
                last_name=owner.last_name,
                email_id=owner.email,
            ),
        ),
        status=ApiKeyStatus(
            is_active=key.is_active,
            is_expired=key.is_expired(now),
            last_used_timestamp=key.last_used_at,
            key_hint=key.key_hint,
        ),
    )
