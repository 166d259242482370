"""Engines, sessions and the per-request transaction.

People write ``sqlite:///path/file.db`` or ``postgresql://user@host/db``; Keyplane picks
the async driver (aiosqlite, asyncpg) itself.
"""

from __future__ import annotations

import contextvars
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Annotated, Any, TypeVar

from fastapi import Depends, Request
from sqlalchemy import event
from sqlalchemy.engine import URL, ExceptionContext, make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import (
    AsyncConnection,
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

_SQLITE_DRIVERS = {"sqlite", "sqlite+pysqlite", "sqlite+aiosqlite"}
_POSTGRES_DRIVERS = {
    "postgres",
    "postgresql",
    "postgresql+psycopg",
    "postgresql+psycopg2",
    "postgresql+asyncpg",
}
_SQLITE_BUSY_TIMEOUT_MS = 10_000
# Without a bound of its own (migrations, which may run long statements), an engine still
# never waits forever for a connection.
_DEFAULT_CONNECT_SECONDS = 5.0
_DEFAULT_CHECKOUT_SECONDS = 30.0
# The server cancels a statement that is merely slow (a lock wait) after the bound and keeps
# the connection; the client's own timer, this much later, is for a server that no longer
# answers at all (a partition), and costs the connection.
_CLIENT_TIMEOUT_MARGIN_SECONDS = 1.0

# Whether the transaction about to begin will write. On SQLite a writing transaction
# starts with BEGIN IMMEDIATE: it takes the write lock up front, so that a "read, check,
# then write" rule (such as the per-user key limit) cannot interleave with another writer.
_writes: contextvars.ContextVar[bool] = contextvars.ContextVar("keyplane_writes", default=True)
# ``session.info`` key: zero-argument coroutine functions that ``transaction`` awaits after
# the session's transaction has committed (never after a rollback).
AFTER_COMMIT = "keyplane_after_commit"
# Set while a ``single_read`` connection is in use: SQLite then runs its one statement
# without BEGIN, as its own read transaction.
_no_begin: contextvars.ContextVar[bool] = contextvars.ContextVar("keyplane_no_begin", default=False)


T = TypeVar("T")


class UnsupportedDatabase(ValueError):
    pass


def normalise_database_url(raw: str) -> URL:
    url = make_url(raw)
    if url.drivername in _SQLITE_DRIVERS:
        return url.set(drivername="sqlite+aiosqlite")
    if url.drivername in _POSTGRES_DRIVERS:
        query: dict[str, Any] = dict(url.query)
        # libpq spells TLS as sslmode; asyncpg takes the same values as "ssl".
        if "sslmode" in query:
            query["ssl"] = query.pop("sslmode")
        return url.set(drivername="postgresql+asyncpg", query=query)
    raise UnsupportedDatabase(
        f"Unsupported database URL scheme {url.drivername!r}: use sqlite:///path/to/file.db "
        "or postgresql://user@host:5432/dbname"
    )


def is_sqlite(url: URL) -> bool:
    return url.get_backend_name() == "sqlite"


def timed_out(error: BaseException | None) -> bool:
    """Whether a timeout is anywhere in the chain: the driver raises it bare, or it is the
    cause of what surfaced (a statement refused because the timed-out one is cancelling)."""
    seen: set[int] = set()
    while error is not None and id(error) not in seen:
        if isinstance(error, TimeoutError):
            return True
        seen.add(id(error))
        error = error.__cause__ or error.__context__
    return False


def create_engine(
    raw_url: str,
    *,
    timeout_seconds: float | None = None,
    pre_ping: bool = True,
    pool_size: int = 10,
) -> AsyncEngine:
    """``timeout_seconds`` bounds every wait on the database: the pool checkout, the connect,
    and (PostgreSQL) each statement, the liveness ping and the rollback included.
    ``pre_ping=False`` (PostgreSQL): no liveness ping before each use of a pooled
    connection, for ``single_read``, which retries once on a connection found dead
    instead."""
    url = normalise_database_url(raw_url)
    checkout = timeout_seconds or _DEFAULT_CHECKOUT_SECONDS
    if not is_sqlite(url):
        connect_args: dict[str, Any] = {"timeout": timeout_seconds or _DEFAULT_CONNECT_SECONDS}
        if timeout_seconds is not None:
            connect_args["command_timeout"] = timeout_seconds + _CLIENT_TIMEOUT_MARGIN_SECONDS
            connect_args["server_settings"] = {
                "statement_timeout": str(max(1, round(timeout_seconds * 1000)))
            }
        engine = create_async_engine(
            url,
            pool_pre_ping=pre_ping,
            pool_size=pool_size,
            max_overflow=pool_size,
            pool_timeout=checkout,
            connect_args=connect_args,
            # Error messages (and so log lines) name the statement, never its values.
            hide_parameters=True,
        )
        _drop_timed_out_connections(engine)
        return engine

    if url.database and url.database != ":memory:":
        Path(url.database).parent.mkdir(parents=True, exist_ok=True)
    engine = create_async_engine(
        url,
        pool_timeout=checkout,
        connect_args={"timeout": _SQLITE_BUSY_TIMEOUT_MS / 1000},
        hide_parameters=True,
    )

    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Take transaction control away from the driver so that "begin" below decides.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={_SQLITE_BUSY_TIMEOUT_MS}")
        # WAL + NORMAL: a committed transaction survives a crash of the process (kill -9);
        # only a power loss may drop the last few.
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(connection: Any) -> None:
        if _no_begin.get():
            return
        connection.exec_driver_sql("BEGIN IMMEDIATE" if _writes.get() else "BEGIN")

    return engine


def _drop_timed_out_connections(engine: AsyncEngine) -> None:
    """A connection whose statement timed out is abandoned at once. Its socket may be dead
    (a partition): a graceful close or a rollback over it would wait once more, and while
    the driver cancels the statement the connection refuses all else anyway."""

    @event.listens_for(engine.sync_engine, "handle_error")
    def _on_error(context: ExceptionContext) -> None:
        if timed_out(context.original_exception):
            context.is_disconnect = True
            # One slow statement says nothing about the other pooled connections: each is
            # checked by its own ping when next used.
            context.invalidate_pool_on_disconnect = False

    @event.listens_for(engine.sync_engine.pool, "invalidate")
    def _on_invalidate(
        dbapi_connection: Any, _record: Any, exception: BaseException | None
    ) -> None:
        # Covers the liveness ping as well, whose timeout the pool handles without the
        # error hook above. asyncpg's terminate() drops the socket without a word.
        if timed_out(exception):
            dbapi_connection.driver_connection.terminate()


def create_sessionmaker(
    engine: AsyncEngine, info: dict[str, Any] | None = None
) -> async_sessionmaker[AsyncSession]:
    """``info`` is copied into every session (it carries the cache-invalidation deliverer)."""
    return async_sessionmaker(engine, expire_on_commit=False, autoflush=False, info=info or {})


@asynccontextmanager
async def transaction(
    sessionmaker: async_sessionmaker[AsyncSession], *, writes: bool = True
) -> AsyncIterator[AsyncSession]:
    """A session whose transaction commits when the block ends and rolls back on error.

    After the commit it runs the waits the transaction registered in ``AFTER_COMMIT``
    (a change to cached keys waits for every instance to confirm it), so that a request
    answers only once they are done."""
    token = _writes.set(writes)
    try:
        async with sessionmaker() as session:
            async with session.begin():
                yield session
            for wait in session.info.pop(AFTER_COMMIT, ()):
                await wait()
    finally:
        _writes.reset(token)


@asynccontextmanager
async def begin(engine: AsyncEngine, *, writes: bool) -> AsyncIterator[AsyncConnection]:
    """A connection in a transaction of its own, outside any session; commits at the end."""
    token = _writes.set(writes)
    try:
        async with engine.begin() as connection:
            yield connection
    finally:
        _writes.reset(token)


async def single_read(engine: AsyncEngine, read: Callable[[AsyncConnection], Awaitable[T]]) -> T:
    """``read`` on a pooled connection, for one read statement sent without BEGIN or COMMIT
    around it: one round trip instead of three on the hot path's cache miss (four with the
    pool's liveness ping, which ``Runtime.read_engine`` does without). A single statement
    reads one consistent snapshot anyway; anything that needs two statements to agree uses
    ``transaction``. A pooled connection that turns out dead (the database restarted, a
    proxy dropped it) is retried once on a new one, which is what the ping was for. Waits
    stay bounded by the engine's timeouts, and errors are SQLAlchemy's, so they reach the
    same 503s."""
    try:
        return await single_statement(engine, read)
    except DBAPIError as exc:
        if not exc.connection_invalidated:
            raise
    return await single_statement(engine, read)


async def single_statement(
    engine: AsyncEngine, run: Callable[[AsyncConnection], Awaitable[T]]
) -> T:
    """``run`` on a pooled connection for one statement, in autocommit: a read, or one
    atomic write of one row (spending a key's credits). Never retried: a write whose
    connection died may have been applied."""
    if is_sqlite(engine.url):
        # The engine's "begin" hook sends BEGIN itself (SQLite's driver is kept out of
        # transaction control): skip it, and the statement is its own read transaction.
        token = _no_begin.set(True)
        try:
            async with engine.connect() as connection:
                return await run(connection)
        finally:
            _no_begin.reset(token)
    async with engine.connect() as connection:
        # asyncpg in autocommit sends the statement alone; the pool restores the level.
        await connection.execution_options(isolation_level="AUTOCOMMIT")
        return await run(connection)


_READ_ONLY_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


async def get_session(request: Request) -> AsyncIterator[AsyncSession]:
    sessionmaker: async_sessionmaker[AsyncSession] = request.app.state.sessionmaker
    async with transaction(sessionmaker, writes=request.method not in _READ_ONLY_METHODS) as s:
        yield s


async def get_writing_session(request: Request) -> AsyncIterator[AsyncSession]:
    """For the few reads by method (GET) that write, such as renewing a session token."""
    sessionmaker: async_sessionmaker[AsyncSession] = request.app.state.sessionmaker
    async with transaction(sessionmaker, writes=True) as session:
        yield session


# scope="function": commit before the response is sent, so that a 2xx means "stored".
DbSession = Annotated[AsyncSession, Depends(get_session, scope="function")]
WritingDbSession = Annotated[AsyncSession, Depends(get_writing_session, scope="function")]
