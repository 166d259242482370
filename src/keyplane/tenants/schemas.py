"""Palette's tenant resource limits (only the ``apiKey`` kind is enforced by Keyplane)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, StrictInt

from keyplane.kit.schemas import PaletteModel


class TenantResourceLimit(PaletteModel):
    kind: str
    label: str
    limit: int
    max_limit: int


class TenantResourceLimits(PaletteModel):
    resources: list[TenantResourceLimit]


class TenantResourceLimitEntity(PaletteModel):
    kind: Literal["apiKey"] = Field(description="Keyplane enforces the apiKey kind only.")
    # Strict: "5" or true is a client error, not a limit.
    limit: StrictInt = Field(ge=1, description="API keys allowed per user.")


class TenantResourceLimitsEntity(PaletteModel):
    resources: list[TenantResourceLimitEntity] = Field(min_length=1, max_length=1)
