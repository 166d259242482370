"""POST /v1/apiKeys/leaks/github: GitHub's secret scanning partner endpoint. Requests are
signed by GitHub (ECDSA P-256, SHA-256, over the raw body); here by keys the tests make,
published in the configured file as GitHub publishes its own."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import os
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from sqlalchemy import select

from keyplane.app import create_app
from keyplane.kit.db import create_engine, transaction
from keyplane.kit.keys import generate_api_key
from keyplane.models import KeyLeak
from keyplane.runtime import Runtime
from keyplane.settings import Settings
from tests.api_keys.helpers import make_api_key
from tests.conftest import make_settings
from tests.helpers import World
from tests.live import seed, server_process
from tests.users.helpers import login

GITHUB = "/v1/apiKeys/leaks/github"
KEY_ID = "f9525bf080f75b3506ca1ead061add62b8633a346606dc5fe544e29231c6ee0d"
URL = "https://github.com/octocat/Hello-World/blob/12345600b9c/config.py"


def _pem(private: ec.EllipticCurvePrivateKey) -> str:
    return (
        private.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )


def publish_keys(path: Path, keys: dict[str, ec.EllipticCurvePrivateKey]) -> None:
    document = {
        "public_keys": [
            {"key_identifier": identifier, "key": _pem(private), "is_current": True}
            for identifier, private in keys.items()
        ]
    }
    path.write_text(json.dumps(document))


@pytest.fixture
def github_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


@pytest.fixture
def keys_file(tmp_path: Path, github_key: ec.EllipticCurvePrivateKey) -> Path:
    path = tmp_path / "github-secret-scanning.json"
    publish_keys(path, {KEY_ID: github_key})
    return path


@pytest.fixture
def settings(database_url: str, tmp_path: Path, keys_file: Path) -> Settings:
    return make_settings(database_url, tmp_path, github_secret_scanning_keys_file=keys_file)


def signed(
    private: ec.EllipticCurvePrivateKey, matches: list[dict[str, Any]], key_id: str = KEY_ID
) -> tuple[bytes, dict[str, str]]:
    body = json.dumps(matches).encode()
    signature = base64.b64encode(private.sign(body, ec.ECDSA(hashes.SHA256()))).decode()
    return body, {
        "Content-Type": "application/json",
        "Github-Public-Key-Identifier": key_id,
        "Github-Public-Key-Signature": signature,
    }


def match(token: str) -> dict[str, str]:
    return {"token": token, "type": "keyplane_api_key", "url": URL, "source": "content"}


async def test_a_signed_report_labels_each_token_and_revokes_real_keys(
    client: httpx.AsyncClient,
    runtime: Runtime,
    world: World,
    github_key: ec.EllipticCurvePrivateKey,
) -> None:
    key = await make_api_key(client, world.alice, "ci")
    fake = generate_api_key()
    body, headers = signed(github_key, [match(key.value), match(fake)])
    response = await client.post(GITHUB, content=body, headers=headers)
    assert response.status_code == 200, response.text
    assert response.json() == [
        {
            "token_hash": hashlib.sha256(key.value.encode()).hexdigest(),
            "token_type": "keyplane_api_key",
            "label": "true_positive",
        },
        {
            "token_hash": hashlib.sha256(fake.encode()).hexdigest(),
            "token_type": "keyplane_api_key",
            "label": "false_positive",
        },
    ]
    assert key.value not in response.text
    assert fake not in response.text
    refused = await client.get("/v1/users/info", headers=key.headers)
    assert refused.json()["code"] == "ApiKeyRevoked"
    async with transaction(runtime.sessionmaker, writes=False) as session:
        (sighting,) = (await session.scalars(select(KeyLeak))).all()
    assert (sighting.reporter, sighting.url, sighting.source) == ("github", URL, "content")


async def test_a_request_github_did_not_sign_is_refused(
    client: httpx.AsyncClient, world: World, github_key: ec.EllipticCurvePrivateKey
) -> None:
    key = await make_api_key(client, world.alice, "ci")
    body, headers = signed(github_key, [match(key.value)])
    stranger = ec.generate_private_key(ec.SECP256R1())
    _, forged = signed(stranger, [match(key.value)])
    tampered = body.replace(b"content", b"commits")
    cases = [
        (body, forged),  # another key under GitHub's identifier
        (tampered, headers),  # the body changed after signing
        (body, {**headers, "Github-Public-Key-Identifier": "0" * 64}),  # unknown key
        (body, {**headers, "Github-Public-Key-Signature": "not base64!"}),
        (body, {"Content-Type": "application/json"}),  # no signature at all
    ]
    for content, sent in cases:
        response = await client.post(GITHUB, content=content, headers=sent)
        assert response.status_code == 401, response.text
        assert response.json()["code"] == "GitHubSignatureInvalid"
        assert key.value not in response.text
    assert (await client.get("/v1/users/info", headers=key.headers)).status_code == 200


async def test_new_keys_in_the_file_are_taken_without_a_restart(
    client: httpx.AsyncClient, world: World, keys_file: Path
) -> None:
    rotated = ec.generate_private_key(ec.SECP256R1())
    publish_keys(keys_file, {"next-key": rotated})
    os.utime(keys_file, ns=(time.time_ns(), time.time_ns() + 1_000_000_000))
    key = await make_api_key(client, world.alice, "ci")
    body, headers = signed(rotated, [match(key.value)], key_id="next-key")
    response = await client.post(GITHUB, content=body, headers=headers)
    assert response.status_code == 200, response.text
    assert response.json()[0]["label"] == "true_positive"


async def test_without_a_keys_file_the_endpoint_is_not_there(
    database_url: str, tmp_path: Path, github_key: ec.EllipticCurvePrivateKey
) -> None:
    application = create_app(make_settings(database_url, tmp_path))
    async with (
        application.router.lifespan_context(application),
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=application), base_url="http://keyplane.test"
        ) as client,
    ):
        body, headers = signed(github_key, [match(generate_api_key())])
        response = await client.post(GITHUB, content=body, headers=headers)
    assert response.status_code == 404
    assert response.json()["code"] == "ResourceNotFound"


async def test_a_malformed_signed_body_is_a_palette_400(
    client: httpx.AsyncClient, github_key: ec.EllipticCurvePrivateKey
) -> None:
    body = b'{"token": "not a list"}'
    signature = base64.b64encode(github_key.sign(body, ec.ECDSA(hashes.SHA256()))).decode()
    response = await client.post(
        GITHUB,
        content=body,
        headers={
            "Content-Type": "application/json",
            "Github-Public-Key-Identifier": KEY_ID,
            "Github-Public-Key-Signature": signature,
        },
    )
    assert response.status_code == 400, response.text
    assert set(response.json()) == {"code", "message", "details", "ref"}


async def test_reported_by_github_a_key_stops_working_on_every_instance(
    database_url: str,
    tmp_path: Path,
    keys_file: Path,
    github_key: ec.EllipticCurvePrivateKey,
) -> None:
    settings = make_settings(
        database_url,
        tmp_path,
        key_cache_max_age_seconds=60.0,
        github_secret_scanning_keys_file=keys_file,
    )
    engine = create_engine(settings.resolved_database_url)
    try:
        world = await seed(Runtime.build(settings, engine))
    finally:
        await engine.dispose()
    async with (
        server_process(settings) as url_a,
        server_process(settings) as url_b,
        httpx.AsyncClient(base_url=url_a) as a,
        httpx.AsyncClient(base_url=url_b) as b,
    ):
        await login(a, world.alice)
        key = await make_api_key(a, world.alice, "ci")
        for _ in range(3):
            assert (await b.get("/v1/users/info", headers=key.headers)).status_code == 200
        body, headers = signed(github_key, [match(key.value)])
        response = await a.post(GITHUB, content=body, headers=headers)
        assert response.status_code == 200, response.text
        started = time.monotonic()
        while (await b.get("/v1/users/info", headers=key.headers)).status_code != 401:
            assert time.monotonic() - started < 1.0
            await asyncio.sleep(0.01)
