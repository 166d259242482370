from __future__ import annotations

import stat
from pathlib import Path

import pytest
from pydantic import ValidationError

from keyplane.settings import SECRET_FILE_NAME, Settings


def test_production_requires_a_secret(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="KEYPLANE_SECRET_KEY is required"):
        Settings(env="production", data_dir=tmp_path)


@pytest.mark.parametrize("secret", ["changeme", "short", "x" * 31])
def test_placeholder_and_short_secrets_are_refused(tmp_path: Path, secret: str) -> None:
    with pytest.raises(ValidationError, match="at least 32"):
        Settings(env="production", data_dir=tmp_path, secret_key=secret)


def test_development_secret_is_generated_once_with_mode_0600(tmp_path: Path) -> None:
    settings = Settings(env="development", data_dir=tmp_path)
    first = settings.load_secret_key()
    path = tmp_path / SECRET_FILE_NAME
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert Settings(env="development", data_dir=tmp_path).load_secret_key() == first
    assert len(first) >= 32


def test_environment_variables_use_the_keyplane_prefix(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KEYPLANE_ENV", "development")
    monkeypatch.setenv("KEYPLANE_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("KEYPLANE_SESSION_TTL_SECONDS", "120")
    settings = Settings()
    assert settings.session_ttl_seconds == 120
    assert settings.resolved_database_url == f"sqlite:///{tmp_path.resolve()}/keyplane.db"


def test_default_lifetime_cannot_exceed_maximum(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="exceeds"):
        Settings(
            env="development",
            data_dir=tmp_path,
            api_key_default_lifetime_days=400,
            api_key_max_lifetime_days=365,
        )
