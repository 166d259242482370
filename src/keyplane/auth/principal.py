"""The caller of an operation, as every service sees it."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from keyplane.models import Role


class AuthMethod(StrEnum):
    SESSION = "session"
    API_KEY = "apiKey"
    SYSTEM = "system"


@dataclass(frozen=True, slots=True)
class Principal:
    tenant_uid: str
    tenant_name: str
    user_uid: str
    email: str
    first_name: str
    last_name: str
    role: Role
    method: AuthMethod
    # The session or key uid the request authenticated with ("" for the system).
    credential_uid: str
    client_address: str = ""
    # An API key's restrictions that bound what it may give other keys (None: none).
    scopes: frozenset[str] | None = None
    allowed_cidrs: tuple[str, ...] | None = None

    @property
    def is_tenant_admin(self) -> bool:
        return self.role is Role.TENANT_ADMIN

    @property
    def display_name(self) -> str:
        return " ".join(part for part in (self.first_name, self.last_name) if part) or self.email
