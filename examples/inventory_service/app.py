"""A tenant's own service that accepts Keyplane keys (see examples/README.md).

No `from __future__ import annotations` here: FastAPI reads the `Depends(auth.require)`
annotations at run time, and `auth` is local to `create_app`.
"""

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated

from fastapi import Depends, FastAPI

from keyplane.client import KeyVerification
from keyplane.client.asgi import KeyplaneAuth, Refused


def create_app(auth: KeyplaneAuth) -> FastAPI:
    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        yield
        await auth.aclose()

    service = FastAPI(title="Inventory (example)", lifespan=lifespan)
    # Refused keys get Keyplane's own error body and codes, as Keyplane's API answers them.
    service.add_exception_handler(Refused, auth.error_response)

    @service.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @service.get("/items")
    async def items(
        caller: Annotated[KeyVerification, Depends(auth.require)],
    ) -> dict[str, object]:
        return {"items": ["bolts", "nuts"], "requestedBy": caller.user_uid}

    return service


def _from_environment() -> FastAPI:
    return create_app(
        KeyplaneAuth(
            url=os.environ.get("KEYPLANE_URL"),
            verifier_key=os.environ["KEYPLANE_VERIFIER_KEY"],
            cache_seconds=float(os.environ.get("KEYPLANE_CACHE_SECONDS", "1")),
            # Keep verified keys for cache_seconds, dropped as Keyplane's feed says they change.
            invalidation_feed=os.environ.get("KEYPLANE_INVALIDATION_FEED", "0") == "1",
        )
    )


def __getattr__(name: str) -> FastAPI:
    # `uvicorn examples.inventory_service.app:app` builds the app on first use, from the
    # environment; importing the module does nothing.
    if name == "app":
        return _from_environment()
    raise AttributeError(name)
