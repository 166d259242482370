"""The FastAPI dependency that authenticates every protected request."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request, Security
from fastapi.security import APIKeyHeader

from keyplane.auth import service
from keyplane.auth.principal import Principal
from keyplane.kit.client_address import client_address
from keyplane.kit.db import transaction
from keyplane.kit.errors import Unauthorized, ValidationFailed
from keyplane.kit.metrics import observe_authentication
from keyplane.runtime import Runtime, RuntimeDep

api_key_header = APIKeyHeader(
    name="ApiKey",
    scheme_name="ApiKey",
    description="An API key, created under My API Keys or with POST /v1/apiKeys.",
    auto_error=False,
)
authorization_header = APIKeyHeader(
    name="Authorization",
    scheme_name="Authorization",
    description="A session token from POST /v1/auth/authenticate (a Bearer prefix is allowed).",
    auto_error=False,
)


_CREDENTIAL_HEADERS = (b"apikey", b"authorization")


def _refuse_ambiguous_credentials(request: Request) -> None:
    """One credential per request, or none is used: with two, a gateway in front may have
    checked a different one than Keyplane would use. Decided on the raw headers, before
    any lookup."""
    found = [
        name
        for name, value in request.scope["headers"]
        if name in _CREDENTIAL_HEADERS and value.strip()
    ]
    if len(found) > 1:
        names = sorted({"ApiKey" if name == b"apikey" else "Authorization" for name in found})
        raise ValidationFailed(
            f"The request carries {len(found)} credentials ({' and '.join(names)} headers); "
            "send exactly one ApiKey or one Authorization header.",
            code="AmbiguousCredentials",
        )


async def get_principal(
    request: Request,
    runtime: RuntimeDep,
    api_key: Annotated[str | None, Security(api_key_header)],
    authorization: Annotated[str | None, Security(authorization_header)],
) -> Principal:
    # The route's operation id: what a key's scopes are about (auth.scopes).
    route = request.scope.get("route")
    operation_id = getattr(route, "operation_id", None)
    return await authenticate_request(request, runtime, api_key, authorization, operation_id)


def request_credentials(request: Request) -> tuple[str | None, str | None]:
    """The ApiKey and Authorization values exactly as the dependency above receives them
    (the first header of each name; None when absent or empty), for the verification
    plane, which answers without FastAPI's dependency solving: one pass over the raw
    headers instead of a header mapping and two lookups."""
    api_key: str | None = None
    authorization: str | None = None
    seen_key = seen_authorization = False
    for name, value in request.scope["headers"]:
        if name == b"apikey" and not seen_key:
            seen_key = True
            api_key = value.decode("latin-1") or None
        elif name == b"authorization" and not seen_authorization:
            seen_authorization = True
            authorization = value.decode("latin-1") or None
    return api_key, authorization


async def authenticate_request(
    request: Request,
    runtime: Runtime,
    api_key: str | None,
    authorization: str | None,
    operation_id: str | None,
) -> Principal:
    """The credential of a request, turned into its Principal: the one rule for every door
    (FastAPI's dependency, the verification plane)."""
    # No request session here: a key found in the cache is checked without one, and the
    # few reads a miss needs run in short transactions of their own.
    _refuse_ambiguous_credentials(request)
    address = client_address(request)
    if api_key is None and not authorization:
        raise Unauthorized(
            "Authentication required: send an ApiKey header, or an Authorization header with "
            "a token from POST /v1/auth/authenticate.",
            code="AuthenticationRequired",
        )
    try:
        if api_key is not None:
            return await service.authenticate_api_key(
                runtime, api_key.strip(), address, operation_id
            )
        assert authorization is not None
        scheme, _, rest = authorization.strip().partition(" ")
        token = rest.strip() if scheme.lower() == "bearer" else authorization.strip()
        async with transaction(runtime.sessionmaker, writes=False) as session:
            return await service.authenticate_session_token(session, runtime, token, address)
    except Unauthorized as exc:
        # Valid credentials never reach this point, so they are never slowed down.
        kind = "API key" if api_key is not None else "session token"
        await service.refuse_if_over_limit(None, runtime, address, kind, exc)
        raise
    finally:
        observe_authentication(request, "apiKey" if api_key is not None else "session")


CurrentPrincipal = Annotated[Principal, Depends(get_principal)]
