"""Alembic environment: async engines, batch mode for SQLite's limited ALTER TABLE."""

from __future__ import annotations

import asyncio
from typing import Any, Literal

from alembic import context
from sqlalchemy import Connection

from keyplane.kit.db import create_engine
from keyplane.models import Base
from keyplane.models.base import UTCDateTime

config = context.config
target_metadata = Base.metadata


def _render_item(type_: str, obj: Any, autogen_context: Any) -> str | Literal[False]:
    # Migrations name plain SQLAlchemy types, never Keyplane's own decorators.
    if type_ == "type" and isinstance(obj, UTCDateTime):
        return "sa.DateTime(timezone=True)"
    return False


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
        render_item=_render_item,
    )
    with context.begin_transaction():
        context.run_migrations()


async def _run_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    engine = create_engine(config.attributes["database_url"])
    try:
        async with engine.connect() as async_connection:
            await async_connection.run_sync(_run)
            await async_connection.commit()
    finally:
        await engine.dispose()


if context.is_offline_mode():
    raise SystemExit("Keyplane migrations run online only: use `keyplane db upgrade`.")
asyncio.run(_run_online())
