from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from keyplane.settings import Settings
from tests.live import LiveServer, running_server


@pytest.fixture
async def server(settings: Settings) -> AsyncIterator[LiveServer]:
    """A real server on loopback, on SQLite and on PostgreSQL (``database_url`` params)."""
    async with running_server(settings) as live:
        yield live
