from __future__ import annotations

import pytest

from keyplane.kit.db import UnsupportedDatabase, normalise_database_url


@pytest.mark.parametrize(
    ("given", "driver"),
    [
        ("sqlite:///data/keyplane.db", "sqlite+aiosqlite"),
        ("sqlite+aiosqlite:///data/keyplane.db", "sqlite+aiosqlite"),
        ("postgresql://postgres@127.0.0.1:5432/test", "postgresql+asyncpg"),
        ("postgres://postgres@127.0.0.1/test", "postgresql+asyncpg"),
        ("postgresql+psycopg://postgres@127.0.0.1/test", "postgresql+asyncpg"),
    ],
)
def test_urls_people_write_get_the_async_driver(given: str, driver: str) -> None:
    assert normalise_database_url(given).drivername == driver


def test_libpq_sslmode_becomes_asyncpg_ssl() -> None:
    url = normalise_database_url("postgresql://u@db.example/keyplane?sslmode=require")
    assert url.query == {"ssl": "require"}


def test_unsupported_schemes_are_refused_with_guidance() -> None:
    with pytest.raises(UnsupportedDatabase, match=r"sqlite:///.*postgresql://"):
        normalise_database_url("mysql://root@localhost/keyplane")
