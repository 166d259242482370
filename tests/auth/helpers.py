from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import select

from keyplane.app import create_app
from keyplane.kit.db import transaction
from keyplane.models import AuditEvent
from keyplane.runtime import Runtime
from tests.conftest import make_settings


@asynccontextmanager
async def instance(
    database_url: str, data_dir: Path, address: str = "198.51.100.9", **overrides: Any
) -> AsyncIterator[tuple[httpx.AsyncClient, Runtime]]:
    """One Keyplane with its own settings, reached from ``address``."""
    app = create_app(make_settings(database_url, data_dir, **overrides))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, client=(address, 1234))
        async with httpx.AsyncClient(transport=transport, base_url="http://kp.test") as client:
            yield client, app.state.runtime


async def audit_events(runtime: Runtime, action: str) -> list[AuditEvent]:
    async with transaction(runtime.sessionmaker, writes=False) as session:
        statement = select(AuditEvent).where(AuditEvent.action == action)
        return list((await session.execute(statement)).scalars())
