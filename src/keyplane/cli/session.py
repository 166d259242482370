"""The session ``keyplane login`` stores for later commands: the server's URL and a session
token, in ``session.json`` in the user's configuration directory, readable by the user
alone (mode 0600, in a 0700 directory).

The directory is ``$KEYPLANE_CONFIG_DIR`` when set, else ``$XDG_CONFIG_HOME/keyplane``, else
``~/.config/keyplane``. The password is never stored; the token it bought expires on the
server (it is renewed while in use) and ``keyplane logout`` ends it.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

FILE_NAME = "session.json"


class SessionFileError(Exception):
    """The stored session cannot be read."""


@dataclass(frozen=True)
class StoredSession:
    url: str
    token: str = field(repr=False)
    # Wall-clock seconds (time.time()) when the token was obtained or last renewed.
    obtained_at: float
    email: str = ""
    org: str = ""

    def renewed(self, token: str) -> StoredSession:
        return StoredSession(self.url, token, time.time(), self.email, self.org)


def config_dir() -> Path:
    override = os.environ.get("KEYPLANE_CONFIG_DIR")
    if override:
        return Path(override)
    xdg = os.environ.get("XDG_CONFIG_HOME")
    base = Path(xdg) if xdg and Path(xdg).is_absolute() else Path.home() / ".config"
    return base / "keyplane"


def session_path() -> Path:
    return config_dir() / FILE_NAME


def load() -> StoredSession | None:
    path = session_path()
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise SessionFileError(f"Cannot read the stored session {path}: {exc.strerror}.") from exc
    try:
        data = json.loads(text)
        return StoredSession(
            url=str(data["url"]),
            token=str(data["token"]),
            obtained_at=float(data.get("obtained_at", 0.0)),
            email=str(data.get("email", "")),
            org=str(data.get("org", "")),
        )
    except (ValueError, KeyError, TypeError) as exc:
        raise SessionFileError(
            f"The stored session {path} is damaged: log in again with `keyplane login`."
        ) from exc


def save(stored: StoredSession) -> Path:
    """Write the session atomically; the file is created with mode 0600 from the start, so
    the token is never readable by anyone else, not even for a moment."""
    directory = config_dir()
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    path = directory / FILE_NAME
    temporary = directory / f".{FILE_NAME}.{os.getpid()}.tmp"
    data = {
        "url": stored.url,
        "token": stored.token,
        "obtained_at": stored.obtained_at,
        "email": stored.email,
        "org": stored.org,
    }
    temporary.unlink(missing_ok=True)
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(descriptor, "w", encoding="utf-8") as file:
            json.dump(data, file, indent=2)
            file.write("\n")
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    return path


def delete() -> bool:
    """Remove the stored session; False when there was none."""
    try:
        session_path().unlink()
    except FileNotFoundError:
        return False
    return True
