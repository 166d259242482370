from __future__ import annotations

from fastapi import APIRouter, Request, Response

from keyplane.auth import service
from keyplane.auth.dependencies import CurrentPrincipal
from keyplane.auth.schemas import AuthLogin, UserToken
from keyplane.kit.client_address import client_address
from keyplane.kit.db import DbSession, WritingDbSession
from keyplane.runtime import RuntimeDep

router = APIRouter(prefix="/v1/auth", tags=["auth"])


@router.post("/authenticate", response_model=UserToken, operation_id="v1Authenticate")
async def authenticate(body: AuthLogin, request: Request, runtime: RuntimeDep) -> UserToken:
    """Log in with email, organization and password; returns a session token."""
    token = await service.login(
        runtime, body.email_id, body.org, body.password.get_secret_value(), client_address(request)
    )
    return UserToken(authorization=token)


@router.get("/refresh/{token}", response_model=UserToken, operation_id="v1AuthRefresh")
async def refresh(
    token: str, request: Request, session: WritingDbSession, runtime: RuntimeDep
) -> UserToken:
    """Exchange an unexpired session token for a new one; the old one stops working."""
    return UserToken(
        authorization=await service.renew_session_token(
            session, runtime, token, client_address(request)
        )
    )


@router.post("/logout", status_code=204, operation_id="v1AuthLogout")
async def logout(principal: CurrentPrincipal, session: DbSession) -> Response:
    """End the session whose token authenticates this request."""
    await service.logout(session, principal)
    return Response(status_code=204)
