"""The servers ``throughput.py --compare`` measures Keyplane against, each in its own venv.

- **bare Starlette** and **bare FastAPI**: one route, ``GET /v1/users/info``, that returns
  the JSON Keyplane's ``/v1/users/info`` returned for a seeded key, no authentication;
  served by uvicorn as ``keyplane serve`` serves Keyplane (one process, ``--loop auto`` and
  ``--http auto``, i.e. uvloop and httptools, which the venv has; no access log, no proxy
  headers, no ``server`` header). Starlette, uvicorn, uvloop, httptools (and FastAPI and
  pydantic for the second) at the versions ``constraints.txt`` pins for Keyplane.
- **the peer**: djangorestframework-api-key's ``HasAPIKey`` permission on a DRF
  ``APIView`` that returns the same JSON, in a minimal Django project generated into the
  workspace, over PostgreSQL, its ``APIKey`` table seeded with the library's own key
  generator and hasher, served by gunicorn (see ``peer_serving``).

Venvs live in ``build/bench-venvs/<name>-<hash of the pins and Python version>`` (``build/``
is ignored by git), so only the first run pays for building them (~1 min, network needed).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import shutil
import signal
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import httpx
from common import BENCH_DIR, HOST, Database, free_port, log, stop_process_group

VENV_ROOT = BENCH_DIR.parent / "build" / "bench-venvs"
CONSTRAINTS = BENCH_DIR.parent / "constraints.txt"

# The peer's pins: the newest releases for Python 3.11 on 2026-12-01.
PEER_PINS = (
    "Django==5.2.19",
    "djangorestframework==3.18.3",
    "djangorestframework-api-key==3.1.0",
    "psycopg[binary]==3.3.9",
    "gunicorn==27.0.1",
)
# gunicorn, one process: by default gthread, so that every wrk connection is kept alive
# (the sync worker closes the connection after each response); persistent database
# connections (CONN_MAX_AGE=None), DEBUG off, no access log, no middleware.
PEER_WORKER_CLASSES = ("gthread", "sync")
PEER_THREADS = 8
PEER_KEEP_ALIVE_SECONDS = 75


def peer_serving(worker_class: str, threads: int) -> str:
    """How the peer is served, in words for the report."""
    worker = (
        f"`--worker-class gthread --threads {threads} --keep-alive {PEER_KEEP_ALIVE_SECONDS}`"
        if worker_class == "gthread"
        else "`--worker-class sync` (no keep-alive)"
    )
    return (
        f"gunicorn, 1 worker process, {worker}, no access log; Django with DEBUG off, no "
        "middleware, persistent database connections (`CONN_MAX_AGE=None`), DRF with the "
        "JSON renderer only and no authentication classes"
    )


# Keyplane's own pins (constraints.txt) for what the bare apps need.
BARE_STARLETTE = ("starlette", "uvicorn", "uvloop", "httptools")
BARE_FASTAPI = ("fastapi", "starlette", "uvicorn", "uvloop", "httptools")


# --------------------------------------------------------------------------- processes


async def run_command(
    command: Sequence[str | Path], *, env: dict[str, str] | None = None, cwd: Path | None = None
) -> str:
    """Runs a command to completion (its process group killed if interrupted); its output,
    or RuntimeError with it."""
    process = await asyncio.create_subprocess_exec(
        *(str(part) for part in command),
        env=env,
        cwd=cwd,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        output, _ = await process.communicate()
    finally:
        if process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            await process.wait()
    text = output.decode(errors="replace")
    if process.returncode != 0:
        shown = " ".join(str(part) for part in command)
        raise RuntimeError(f"{shown} failed ({process.returncode}):\n{text[-4000:]}")
    return text


@dataclass(frozen=True, slots=True)
class ReadyCheck:
    """A request that must answer 200 before a server counts as started."""

    path: str
    headers: dict[str, str]


class ProcessServer:
    """A server command as a child process group, killed (group-wide) when the block ends."""

    def __init__(
        self,
        name: str,
        command: Sequence[str | Path],
        *,
        port: int,
        env: dict[str, str],
        cwd: Path,
        log_dir: Path,
        ready: ReadyCheck,
    ) -> None:
        self.name = name
        self.command = [str(part) for part in command]
        self.env = env
        self.cwd = cwd
        self.ready = ready
        self.port = port
        self.url = f"http://{HOST}:{port}"
        self.log_path = log_dir / f"{name}-{port}.log"
        self.process: asyncio.subprocess.Process | None = None

    async def __aenter__(self) -> ProcessServer:
        with self.log_path.open("wb") as log_file:
            self.process = await asyncio.create_subprocess_exec(
                *self.command,
                env=self.env,
                cwd=self.cwd,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=log_file,
                stderr=log_file,
                start_new_session=True,
            )
        try:
            await self._wait_until_ready()
        except BaseException:
            await self.stop()
            raise
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.stop()

    async def _wait_until_ready(self) -> None:
        assert self.process is not None
        deadline = time.monotonic() + 60
        last = "no answer"
        async with httpx.AsyncClient(base_url=self.url) as http:
            while True:
                if self.process.returncode is not None:
                    raise RuntimeError(
                        f"{self.name} exited with {self.process.returncode}:\n"
                        + self.log_path.read_text(errors="replace")[-4000:]
                    )
                with contextlib.suppress(httpx.TransportError):
                    answer = await http.get(self.ready.path, headers=self.ready.headers)
                    if answer.status_code == 200:
                        return
                    last = f"{answer.status_code} {answer.text[:500]}"
                if time.monotonic() > deadline:
                    raise RuntimeError(
                        f"{self.name} did not answer 200 within 60 s (last: {last}):\n"
                        + self.log_path.read_text(errors="replace")[-4000:]
                    )
                await asyncio.sleep(0.1)

    async def stop(self) -> None:
        if self.process is not None:
            await stop_process_group(self.process)


# --------------------------------------------------------------------------- venvs


def keyplane_pins(names: Sequence[str]) -> list[str]:
    """``name==version`` for each name, as constraints.txt pins it for Keyplane."""
    pinned: dict[str, str] = {}
    for line in CONSTRAINTS.read_text().splitlines():
        requirement = line.split("#", 1)[0].strip()
        if "==" in requirement:
            name, version = requirement.split("==", 1)
            pinned[_normalise(name)] = version.strip()
    missing = [name for name in names if _normalise(name) not in pinned]
    if missing:
        raise RuntimeError(f"constraints.txt pins no version of {', '.join(missing)}")
    return [f"{name}=={pinned[_normalise(name)]}" for name in names]


def _normalise(name: str) -> str:
    return name.lower().replace("_", "-").replace(".", "-")


@dataclass(frozen=True, slots=True)
class Venv:
    name: str
    path: Path
    requirements: tuple[str, ...]

    @property
    def python(self) -> Path:
        return self.path / "bin" / "python"

    @property
    def bin(self) -> Path:
        return self.path / "bin"


async def ensure_venv(name: str, requirements: Sequence[str], *, constrained: bool = False) -> Venv:
    """A venv with exactly these pinned requirements, built once and then reused.
    ``constrained``: their dependencies too at Keyplane's versions (constraints.txt)."""
    python = f"{sys.version_info.major}.{sys.version_info.minor}.{sys.version_info.micro}"
    identity = "\n".join([python, *requirements, f"constrained={constrained}"])
    if constrained:
        identity += "\n" + CONSTRAINTS.read_text()
    digest = hashlib.sha256(identity.encode()).hexdigest()[:12]
    path = VENV_ROOT / f"{name}-{digest}"
    venv = Venv(name, path, tuple(requirements))
    if (path / ".complete").exists():
        return venv
    started = time.perf_counter()
    log(f"building venv {path} ({', '.join(requirements)}); once only")
    VENV_ROOT.mkdir(parents=True, exist_ok=True)
    # Built in place; only ``.complete`` (written last) makes it count as built, so a
    # build that was interrupted is thrown away and started again next time.
    shutil.rmtree(path, ignore_errors=True)
    # Older builds of the same venv (other pins) are not used again.
    for old in VENV_ROOT.glob(f"{name}-*"):
        if old.name.removeprefix(f"{name}-").isalnum():
            shutil.rmtree(old, ignore_errors=True)
    try:
        await run_command([sys.executable, "-m", "venv", path])
        pip: list[str | Path] = [venv.python, "-m", "pip", "--disable-pip-version-check"]
        options = ["-c", str(CONSTRAINTS)] if constrained else []
        await run_command([*pip, "install", "--quiet", *options, *requirements])
        (path / ".complete").write_text(await run_command([*pip, "freeze"]))
    except BaseException:
        shutil.rmtree(path, ignore_errors=True)
        raise
    log(f"venv {path.name} built in {time.perf_counter() - started:.0f} s")
    return venv


def frozen(venv: Venv, names: Sequence[str]) -> str:
    """The installed versions of ``names`` in a venv, from its pip freeze."""
    wanted = {_normalise(name) for name in names}
    lines = (venv.path / ".complete").read_text().splitlines()
    found = [line for line in lines if _normalise(line.split("==", 1)[0]) in wanted]
    return ", ".join(line.replace("==", " ") for line in found)


# --------------------------------------------------------------------------- bare routes


_BARE_STARLETTE_APP = '''\
"""Bare Starlette: the JSON of Keyplane's /v1/users/info, no authentication; and a POST
route that reads and parses a JSON body first (what verify's transport costs)."""
import json
import os
from pathlib import Path

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

PAYLOAD = json.loads(Path(os.environ["BENCH_PAYLOAD_FILE"]).read_text())


async def info(request: Request) -> JSONResponse:
    return JSONResponse(PAYLOAD)


async def verify(request: Request) -> JSONResponse:
    json.loads(await request.body())
    return JSONResponse(PAYLOAD)


app = Starlette(
    routes=[
        Route("/v1/users/info", info),
        Route("/v1/apiKeys/verify", verify, methods=["POST"]),
    ]
)
'''

_BARE_FASTAPI_APP = '''\
"""Bare FastAPI: one route, the JSON of Keyplane's /v1/users/info, no authentication."""
import json
import os
from pathlib import Path
from typing import Any

from fastapi import FastAPI

PAYLOAD = json.loads(Path(os.environ["BENCH_PAYLOAD_FILE"]).read_text())

app = FastAPI(openapi_url=None, docs_url=None, redoc_url=None)


@app.get("/v1/users/info")
async def info() -> dict[str, Any]:
    return PAYLOAD
'''

INFO_PATH = "/v1/users/info"


def bare_server(
    kind: str, venv: Venv, workdir: Path, payload_file: Path, ready_headers: dict[str, str]
) -> ProcessServer:
    """``kind`` "starlette" or "fastapi": its app written into ``workdir``, served by the
    venv's uvicorn with the options ``keyplane serve`` gives uvicorn."""
    source = {"starlette": _BARE_STARLETTE_APP, "fastapi": _BARE_FASTAPI_APP}[kind]
    module = f"bare_{kind}_app"
    (workdir / f"{module}.py").write_text(source)
    port = free_port()
    env = _clean_environment()
    env["BENCH_PAYLOAD_FILE"] = str(payload_file)
    command: list[str | Path] = [
        venv.python,
        "-m",
        "uvicorn",
        f"{module}:app",
        "--app-dir",
        workdir,
        "--host",
        HOST,
        "--port",
        str(port),
        # What keyplane serve gives uvicorn.run (loop and http left at "auto").
        "--no-access-log",
        "--no-proxy-headers",
        "--no-server-header",
    ]
    return ProcessServer(
        f"bare-{kind}",
        command,
        port=port,
        env=env,
        cwd=workdir,
        log_dir=workdir,
        ready=ReadyCheck(INFO_PATH, ready_headers),
    )


def _clean_environment() -> dict[str, str]:
    """The caller's environment without its venv, Keyplane or Django settings."""
    drop = ("KEYPLANE_", "DJANGO_", "PYTHON", "VIRTUAL_ENV")
    return {k: v for k, v in os.environ.items() if not k.startswith(drop)}


# --------------------------------------------------------------------------- the peer


_PEER_SETTINGS = '''\
"""Django settings of the peer: production-like, everything the one view does not use off."""
import os

SECRET_KEY = os.environ["PEER_SECRET_KEY"]
DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1"]
INSTALLED_APPS = ["rest_framework", "rest_framework_api_key"]
MIDDLEWARE = []
ROOT_URLCONF = "peer_urls"
WSGI_APPLICATION = "peer_wsgi.application"
USE_TZ = True
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": os.environ["PEER_DB_NAME"],
        "USER": os.environ["PEER_DB_USER"],
        "PASSWORD": os.environ.get("PEER_DB_PASSWORD", ""),
        "HOST": os.environ["PEER_DB_HOST"],
        "PORT": os.environ["PEER_DB_PORT"],
        # Persistent connections: one per thread, kept for the whole run.
        "CONN_MAX_AGE": None,
    }
}
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework_api_key.permissions.HasAPIKey"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["rest_framework.parsers.JSONParser"],
    "UNAUTHENTICATED_USER": None,
}
'''

_PEER_URLS = '''\
"""The peer's one view: HasAPIKey, then the JSON of Keyplane's /v1/users/info."""
import json
import os
from pathlib import Path

from django.urls import path
from rest_framework.response import Response
from rest_framework.views import APIView
from rest_framework_api_key.permissions import HasAPIKey

PAYLOAD = json.loads(Path(os.environ["BENCH_PAYLOAD_FILE"]).read_text())


class UserInfo(APIView):
    permission_classes = [HasAPIKey]

    def get(self, request):
        return Response(PAYLOAD)


urlpatterns = [path("v1/users/info", UserInfo.as_view())]
'''

_PEER_WSGI = """\
import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "peer_settings")

from django.core.wsgi import get_wsgi_application  # noqa: E402

application = get_wsgi_application()
"""

_PEER_SEED = '''\
"""Seeds the peer's APIKey table the way the library stores keys, in bulk.

    python peer_seed.py KEYS SAMPLE OUT_FILE

Each key comes from the library's own KeyGenerator (prefix.secret from Django's
get_random_string, hashed with its Sha512ApiKeyHasher), exactly what
APIKey.objects.create_key stores, but written with bulk_create in batches instead of one
INSERT per key. SAMPLE key values, chosen at random, go to OUT_FILE (mode 0600).
"""
import os
import random
import sys
from datetime import timedelta

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "peer_settings")
import django  # noqa: E402

django.setup()

from django.db import connection  # noqa: E402
from django.utils import timezone  # noqa: E402
from rest_framework_api_key.crypto import concatenate  # noqa: E402
from rest_framework_api_key.models import APIKey  # noqa: E402

keys, sample, out = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
generator = APIKey.objects.key_generator
chosen = set(random.sample(range(keys), min(sample, keys)))
expiry = timezone.now() + timedelta(days=365)
prefixes = set()
kept = []
batch = []
index = 0
while index < keys:
    key, prefix, hashed_key = generator.generate()
    if prefix in prefixes:  # prefix is unique: draw again (1 in ~10^5 at 100,000 keys)
        continue
    prefixes.add(prefix)
    batch.append(
        APIKey(
            id=concatenate(prefix, hashed_key),
            prefix=prefix,
            hashed_key=hashed_key,
            name=f"key-{index}",
            expiry_date=expiry,
        )
    )
    if index in chosen:
        kept.append(key)
    index += 1
    if len(batch) >= 5000:
        APIKey.objects.bulk_create(batch)
        batch = []
APIKey.objects.bulk_create(batch)
random.shuffle(kept)
assert APIKey.objects.is_valid(kept[0])
with connection.cursor() as cursor:
    cursor.execute("VACUUM ANALYZE")
fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
with os.fdopen(fd, "w") as handle:
    handle.writelines(value + "\\n" for value in kept)
print(APIKey.objects.count())
'''


@dataclass
class Peer:
    """The generated Django project, migrated and seeded, ready to serve."""

    venv: Venv
    project: Path
    env: dict[str, str]
    sample: list[str]  # key values for load, in random order
    seed_seconds: float

    def server(
        self, log_dir: Path, *, worker_class: str = "gthread", threads: int = PEER_THREADS
    ) -> ProcessServer:
        if worker_class not in PEER_WORKER_CLASSES:
            raise ValueError(f"worker class {worker_class!r}: one of {PEER_WORKER_CLASSES}")
        port = free_port()
        command: list[str | Path] = [
            self.venv.bin / "gunicorn",
            "peer_wsgi:application",
            "--bind",
            f"{HOST}:{port}",
            "--workers",
            "1",
            "--worker-class",
            worker_class,
            "--threads",
            str(threads if worker_class == "gthread" else 1),
            "--keep-alive",
            str(PEER_KEEP_ALIVE_SECONDS),
            "--worker-tmp-dir",
            "/dev/shm",  # noqa: S108 (gunicorn's heartbeat file, as its docs advise)
            "--chdir",
            self.project,
            # No --access-logfile: gunicorn writes no access log by default.
        ]
        return ProcessServer(
            "peer-gunicorn",
            command,
            port=port,
            env=self.env,
            cwd=self.project,
            log_dir=log_dir,
            ready=ReadyCheck(INFO_PATH, peer_headers(self.sample[0])),
        )


def peer_headers(key: str) -> dict[str, str]:
    """The library's header: ``Authorization: Api-Key <key>`` (KeyParser's default)."""
    return {"Authorization": f"Api-Key {key}"}


async def check_peer(url: str, key: str) -> None:
    """The peer accepts a seeded key and refuses a wrong one."""
    async with httpx.AsyncClient(base_url=url) as http:
        accepted = await http.get(INFO_PATH, headers=peer_headers(key))
        wrong = key[:-1] + ("y" if key.endswith("x") else "x")
        refused = await http.get(INFO_PATH, headers=peer_headers(wrong))
    if accepted.status_code != 200 or refused.status_code not in (401, 403):
        raise RuntimeError(f"peer answered {accepted.status_code}, wrong key {refused.status_code}")


async def prepare_peer(
    venv: Venv, db: Database, workdir: Path, payload_file: Path, *, keys: int, sample: int
) -> Peer:
    """Writes the Django project into ``workdir``, migrates ``db`` and seeds ``keys`` keys."""
    project = workdir / "peer"
    project.mkdir()
    for name, source in (
        ("peer_settings.py", _PEER_SETTINGS),
        ("peer_urls.py", _PEER_URLS),
        ("peer_wsgi.py", _PEER_WSGI),
        ("peer_seed.py", _PEER_SEED),
    ):
        (project / name).write_text(source)
    parts = urlsplit(db.url)
    env = _clean_environment()
    env.update(
        DJANGO_SETTINGS_MODULE="peer_settings",
        PYTHONPATH=str(project),
        PEER_SECRET_KEY=hashlib.sha256(os.urandom(32)).hexdigest(),
        PEER_DB_NAME=parts.path.lstrip("/"),
        PEER_DB_USER=parts.username or "postgres",
        PEER_DB_PASSWORD=parts.password or "",
        PEER_DB_HOST=parts.hostname or HOST,
        PEER_DB_PORT=str(parts.port or 5432),
        BENCH_PAYLOAD_FILE=str(payload_file),
    )
    await run_command([venv.python, "-m", "django", "migrate", "--no-input"], env=env, cwd=project)
    out = workdir / "peer-seeded-keys.txt"
    started = time.perf_counter()
    count = await run_command(
        [venv.python, "peer_seed.py", str(keys), str(sample), out], env=env, cwd=project
    )
    seconds = time.perf_counter() - started
    if int(count.strip().splitlines()[-1]) != keys:
        raise RuntimeError(f"peer seeding wrote {count.strip()} keys, not {keys}")
    values = [line for line in out.read_text().splitlines() if line]
    return Peer(venv, project, env, values, seconds)


def write_payload(workdir: Path, payload: object) -> Path:
    path = workdir / "users-info.json"
    path.write_text(json.dumps(payload))
    return path
