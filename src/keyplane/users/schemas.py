"""Palette's user shapes (``v1User``, ``v1UserEntity``, ``v1UserPatch``, ``v1UserInfo``)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, SecretStr, StrictBool

from keyplane.kit.pagination import ListResponse
from keyplane.kit.schemas import ObjectMeta, PaletteModel, Rfc3339
from keyplane.kit.validation import EmailAddress, PersonName
from keyplane.models import User

ROLE_DESCRIPTION = (
    "One role: 'tenant-admin' (also accepted: 'Tenant Admin'), 'user' (also accepted: "
    "'Tenant User') or 'verifier' (a service account that may verify the tenant's keys)."
)


class UserSpec(PaletteModel):
    email_id: str
    first_name: str
    last_name: str
    roles: list[str]


class UserStatus(PaletteModel):
    activation_link: str = ""
    is_active: bool
    is_password_resetting: bool = False
    last_sign_in: Rfc3339 | None = None


class UserRead(PaletteModel):
    """Palette's ``v1User``."""

    metadata: ObjectMeta
    spec: UserSpec
    status: UserStatus


class UserList(ListResponse):
    """Palette's ``v1Users``."""

    items: list[UserRead]


class UserSpecEntity(PaletteModel):
    email_id: EmailAddress = Field(max_length=254)
    first_name: PersonName = ""
    last_name: PersonName = ""
    roles: list[str] = Field(default_factory=list, max_length=4, description=ROLE_DESCRIPTION)
    password: SecretStr | None = Field(
        default=None,
        description="Keyplane extension: the initial password (12 to 256 characters). "
        "Without one the user cannot log in, but can still be given API keys.",
    )


class UserCreate(PaletteModel):
    """Palette's ``v1UserEntity``."""

    metadata: dict[str, Any] | None = None
    spec: UserSpecEntity


class UserUpdateSpec(PaletteModel):
    email_id: EmailAddress | None = Field(default=None, max_length=254)
    first_name: PersonName | None = None
    last_name: PersonName | None = None
    roles: list[str] | None = Field(default=None, max_length=4, description=ROLE_DESCRIPTION)


class UserUpdate(PaletteModel):
    """Palette's ``v1UserUpdateEntity``."""

    metadata: dict[str, Any] | None = None
    spec: UserUpdateSpec


class UserPatchOperation(PaletteModel):
    """One operation of Palette's ``v1UserPatch`` (JSON Patch)."""

    op: Literal["add", "replace"]
    path: Literal[
        "/spec/firstName",
        "/spec/lastName",
        "/spec/emailId",
        "/spec/roles",
        "/spec/password",
        "/status/isActive",
    ]
    value: Any = None


class UserInfo(PaletteModel):
    """Palette's ``v1UserInfo``."""

    org_name: str
    tenant_uid: str
    user_uid: str


class UserChanges(PaletteModel):
    """Everything an edit (PUT or PATCH) may change; ``None`` leaves a field alone."""

    email_id: EmailAddress | None = Field(default=None, max_length=254)
    first_name: PersonName | None = None
    last_name: PersonName | None = None
    roles: list[str] | None = Field(default=None, max_length=4)
    password: SecretStr | None = None
    is_active: StrictBool | None = None


def user_read(user: User) -> UserRead:
    return UserRead(
        metadata=ObjectMeta(
            uid=user.uid,
            name=user.full_name,
            creation_timestamp=user.created_at,
            last_modified_timestamp=user.modified_at,
        ),
        spec=UserSpec(
            email_id=user.email,
            first_name=user.first_name,
            last_name=user.last_name,
            roles=[user.role],
        ),
        status=UserStatus(is_active=user.is_active, last_sign_in=user.last_sign_in_at),
    )
