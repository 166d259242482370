from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from keyplane.settings import Settings
from tests.cli.helpers import Cli, clean_env
from tests.live import LiveServer, running_server


@pytest.fixture
def cli(tmp_path: Path) -> Cli:
    return Cli(env=clean_env(tmp_path), config_dir=tmp_path / "config")


@pytest.fixture
async def live(settings: Settings) -> AsyncIterator[LiveServer]:
    """A real server on loopback, on SQLite and on PostgreSQL."""
    async with running_server(settings) as server:
        yield server
