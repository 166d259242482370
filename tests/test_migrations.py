from __future__ import annotations

import asyncio
import os
import secrets
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Connection

from keyplane.kit.db import create_engine
from keyplane.kit.migrations import alembic_config, head_revision
from keyplane.models import Base
from tests.conftest import POSTGRES_URL, _execute


@pytest.fixture(params=["sqlite", "postgresql"])
def fresh_database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty database, for migrating step by step."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'fresh.db'}"
        return
    request.getfixturevalue("postgres_url")  # skips, or fails under CI, without a server
    name = f"keyplane_migration_{os.getpid()}_{secrets.token_hex(4)}"
    asyncio.run(_execute(POSTGRES_URL, f'CREATE DATABASE "{name}"'))
    try:
        yield (
            sqlalchemy.make_url(POSTGRES_URL)
            .set(database=name)
            .render_as_string(hide_password=False)
        )
    finally:
        asyncio.run(_execute(POSTGRES_URL, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def _differences(connection: Connection) -> list[object]:
    context = MigrationContext.configure(connection, opts={"compare_type": True})
    return list(compare_metadata(context, Base.metadata))


def _revision(connection: Connection) -> str | None:
    return MigrationContext.configure(connection).get_current_revision()


async def test_migrated_schema_matches_the_models(database_url: str) -> None:
    engine = create_engine(database_url)
    try:
        async with engine.connect() as connection:
            assert await connection.run_sync(_revision) == head_revision()
            assert await connection.run_sync(_differences) == []
    finally:
        await engine.dispose()


_AT = datetime(2026, 1, 1, tzinfo=UTC)
_INSERT_TENANT = sqlalchemy.text(
    "INSERT INTO tenants (uid, name, name_key, created_at) VALUES ('t1', 'acme', 'acme', :at)"
)
_INSERT_USER = sqlalchemy.text(
    "INSERT INTO users (uid, tenant_uid, email, first_name, last_name, role, is_active, "
    "created_at, modified_at) VALUES ('u1', 't1', 'm@acme.example', :first, :last, 'user', "
    "true, :at, :at)"
)
_INSERT_EVENT = sqlalchemy.text(
    "INSERT INTO audit_events (uid, tenant_uid, occurred_at, actor_type, actor_user_uid, "
    "actor_email, actor_name, auth_method, action, action_type, resource_kind, resource_uid, "
    "resource_name, outcome, client_address, message) VALUES (:uid, 't1', :at, 'user', "
    ":actor, 'm@acme.example', :name, 'session', 'auth.login', 'login', 'user', '', '', "
    "'success', '', '')"
)


async def test_0004_fills_the_actor_names_of_earlier_events(fresh_database_url: str) -> None:
    """Events recorded before 0004 get their actor's names from the user when the user is
    still there, and from the joined name otherwise."""
    config = alembic_config(fresh_database_url)
    # Alembic's env.py runs its own event loop: off this one.
    await asyncio.to_thread(command.upgrade, config, "0003")
    engine = create_engine(fresh_database_url)
    try:
        async with engine.begin() as connection:
            await connection.execute(_INSERT_TENANT, {"at": _AT})
            await connection.execute(
                _INSERT_USER, {"first": "Mary Ann", "last": "van Dyke", "at": _AT}
            )
            await connection.execute(
                _INSERT_EVENT,
                [
                    {"uid": "e1", "actor": "u1", "name": "Mary Ann van Dyke", "at": _AT},
                    {"uid": "e2", "actor": "gone", "name": "Jo de la Cruz", "at": _AT},
                ],
            )
        await asyncio.to_thread(command.upgrade, config, "head")
        async with engine.connect() as connection:
            rows = (
                await connection.execute(
                    sqlalchemy.text(
                        "SELECT uid, actor_first_name, actor_last_name FROM audit_events "
                        "ORDER BY uid"
                    )
                )
            ).all()
        assert [tuple(row) for row in rows] == [
            ("e1", "Mary Ann", "van Dyke"),
            ("e2", "Jo", "de la Cruz"),
        ]
    finally:
        await engine.dispose()


_INSERT_KEY = sqlalchemy.text(
    "INSERT INTO api_keys (uid, tenant_uid, user_uid, created_by_uid, name, description, "
    "expires_at, is_active, key_hash, created_at, modified_at) VALUES ('k1', 't1', 'u1', 'u1', "
    "'old', '', :at, true, :hash, :at, :at)"
)


async def test_0005_leaves_the_hint_of_earlier_keys_empty(fresh_database_url: str) -> None:
    """Keys created before 0005 have only their hash: their hint stays NULL (shown as a
    dash), and the key itself is untouched."""
    config = alembic_config(fresh_database_url)
    await asyncio.to_thread(command.upgrade, config, "0004")
    engine = create_engine(fresh_database_url)
    try:
        async with engine.begin() as connection:
            await connection.execute(_INSERT_TENANT, {"at": _AT})
            await connection.execute(_INSERT_USER, {"first": "Mary", "last": "Major", "at": _AT})
            await connection.execute(_INSERT_KEY, {"at": _AT, "hash": "h" * 64})
        await asyncio.to_thread(command.upgrade, config, "head")
        async with engine.connect() as connection:
            rows = (
                await connection.execute(
                    sqlalchemy.text("SELECT uid, name, key_hash, key_hint FROM api_keys")
                )
            ).all()
        assert [tuple(row) for row in rows] == [("k1", "old", "h" * 64, None)]
        await asyncio.to_thread(command.downgrade, config, "0004")
        async with engine.connect() as connection:
            columns = (await connection.execute(sqlalchemy.text("SELECT * FROM api_keys"))).keys()
        assert "key_hint" not in columns
    finally:
        await engine.dispose()
