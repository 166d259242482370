"""``make run`` as the README tells a newcomer to use it: ``KEYPLANE_PORT=... make run``.

The Makefile's own ``install`` step is skipped (``make -o``): the test's virtualenv is the one
``make run`` would have made, given as ``VENV``.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.live import free_port

ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="needs make")


def _make(*args: str) -> list[str]:
    venv = sys.prefix
    return ["make", "-C", str(ROOT), "-o", f"{venv}/.installed-stamp", *args, f"VENV={venv}"]


def _environment(tmp_path: Path, **variables: str) -> dict[str, str]:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("KEYPLANE_")}
    environment.pop("MAKEFLAGS", None)
    environment.update(
        {
            "KEYPLANE_DATA_DIR": str(tmp_path / "data"),
            "KEYPLANE_PASSWORD_TIME_COST": "1",
            "KEYPLANE_PASSWORD_MEMORY_KIB": "8",
            **variables,
        }
    )
    return environment


@pytest.fixture
def make_run(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """``KEYPLANE_PORT=<a free port> make run``; yields the URL it should serve and its log."""
    port = free_port()
    environment = _environment(tmp_path, KEYPLANE_PORT=str(port))
    log = tmp_path / "make-run.log"
    with log.open("w") as output:
        process = subprocess.Popen(
            _make("run"),
            env=environment,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"make run did not serve on {url}:\n{log.read_text()}")
            time.sleep(0.2)
        yield url, log
    finally:
        # make, `keyplane serve` and its workers: the session started for them.
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def test_make_run_serves_and_prints_where_keyplane_port_says(
    make_run: tuple[str, Path],
) -> None:
    url, log = make_run
    printed = log.read_text()
    assert f"Console:       {url}/\n" in printed
    assert f"Keyplane API:  {url}/v1   (interactive docs: {url}/docs)\n" in printed
    # No other address is printed: no default of the Makefile's own.
    assert set(re.findall(r"http://[0-9.]+:\d+", printed)) == {url}

    found = re.search(r"Generated password \(shown once\): (\S+)", printed)
    assert found, printed
    with httpx.Client(base_url=url, timeout=10) as http:
        login = http.post(
            "/v1/auth/authenticate",
            json={"emailId": "admin@demo.keyplane.local", "org": "demo", "password": found[1]},
        )
        assert login.status_code == 200, login.text
        headers = {"Authorization": login.json()["Authorization"]}
        uid = http.get("/v1/users/info", headers=headers).json()["userUid"]
        admin = http.get(f"/v1/users/{uid}", headers=headers).json()
    # The demo admin has a name, so the console does not read "admin@... (admin@...)".
    assert (admin["spec"]["firstName"], admin["spec"]["lastName"]) == ("Demo", "Admin")


def test_make_run_refuses_host_and_port_of_its_own(tmp_path: Path) -> None:
    environment = _environment(tmp_path)
    result = subprocess.run(
        _make("-n", "run", "PORT=9000"),
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode != 0
    assert "KEYPLANE_PORT" in result.stderr
