"""What a role may do at all, decided from the principal alone, before any lookup.

This is the one place the ``verifier`` role is limited. Every service operation except
verifying keys calls ``require_account_access`` first, so a verifier's refusal never
depends on whether the uid it names exists: it cannot probe for keys or users.

| role         | may                                                                      |
|--------------|--------------------------------------------------------------------------|
| tenant admin | everything in its tenant                                                 |
| user         | its own keys; read itself                                                |
| verifier     | ``POST /v1/apiKeys/verify``, ``GET /v1/apiKeys/invalidations``,          |
|              | ``GET /v1/users/info``, and its own session (log in, refresh, log out);  |
|              | nothing else                                                             |

Finer rules (who owns what, admin-only operations) stay in the services that hold them.
"""

from __future__ import annotations

from keyplane.auth.principal import Principal
from keyplane.kit.errors import Forbidden
from keyplane.models import Role

VERIFIER_NOT_ALLOWED = "VerifierNotAllowed"


def require_account_access(principal: Principal) -> None:
    """Refuses a verifier: a service account that checks keys, never manages anything."""
    if principal.role is Role.VERIFIER:
        raise Forbidden(
            "A verifier may only verify API keys (POST /v1/apiKeys/verify) and read who it "
            "is (GET /v1/users/info).",
            code=VERIFIER_NOT_ALLOWED,
        )


def require_key_verifier(principal: Principal) -> None:
    """Verifying keys, and following their invalidations: tenant admins and verifiers."""
    if principal.role not in {Role.TENANT_ADMIN, Role.VERIFIER}:
        raise Forbidden(
            "Verifying keys needs a tenant admin's or a verifier's key.", code="Forbidden"
        )
