from __future__ import annotations

from pydantic import Field, SecretStr

from keyplane.kit.schemas import PaletteModel


class AuthLogin(PaletteModel):
    """Palette's ``v1AuthLogin``."""

    email_id: str = Field(min_length=1, max_length=254)
    org: str | None = Field(
        default=None,
        max_length=64,
        description="Organization (tenant) name; may be omitted when the email is in one only.",
    )
    password: SecretStr = Field(min_length=1, max_length=256)


class UserToken(PaletteModel):
    """Palette's ``v1UserToken``."""

    authorization: str = Field(alias="Authorization")
    is_mfa: bool = False
