"""The two scopes the API key pages are served in (My API Keys and Tenant Settings >
API Keys), which one a request is in, and the owners a tenant admin may choose from."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from fastapi import Request

from keyplane.auth import policy
from keyplane.auth.principal import Principal
from keyplane.kit.db import DbSession
from keyplane.kit.errors import Forbidden
from keyplane.models import User
from keyplane.users import service as users


@dataclass(frozen=True)
class Scope:
    name: str
    base_url: str
    heading: str

    def check(self, principal: Principal) -> None:
        # A verifier has no keys to manage: even the empty "new key" form is refused.
        policy.require_account_access(principal)
        if self.name == "tenant" and not principal.is_tenant_admin:
            raise Forbidden("Only tenant admins can open Tenant Settings.")

    def context(self, **values: Any) -> dict[str, Any]:
        section = "api-keys" if self.name == "tenant" else None
        return {"scope": self.name, "base_url": self.base_url, "section": section, **values}


USER = Scope("user", "/my/api-keys", "My API Keys")
TENANT = Scope("tenant", "/tenant/settings/api-keys", "API Keys")
SCOPES = {"my/api-keys": USER, "tenant/settings/api-keys": TENANT}


def scope_of(request: Request) -> Scope:
    path = request.url.path.strip("/")
    for prefix, scope in SCOPES.items():
        if path.startswith(prefix):
            return scope
    raise KeyError(path)


async def active_users(session: DbSession, principal: Principal) -> list[User]:
    found, _total = await users.list_users(session, principal, 0, None)
    return [user for user in found if user.is_active]
