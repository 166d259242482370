"""How errors reach a client beyond the domain ones: HTTP-level refusals keep Palette's
body and say what HTTP requires of them."""

from __future__ import annotations

import httpx
from fastapi import FastAPI

from tests.helpers import World


async def test_a_405_lists_every_method_of_the_path(client: httpx.AsyncClient) -> None:
    # FastAPI makes one route per method; the answer must name the methods of all of them.
    response = await client.request("OPTIONS", "/v1/apiKeys/some-uid")
    assert response.status_code == 405
    assert response.headers["Allow"] == "DELETE, GET, PATCH, PUT"
    assert response.json()["code"] == "MethodNotAllowed"
    response = await client.request("DELETE", "/v1/apiKeys")
    assert response.headers["Allow"] == "GET, POST"
    # A literal path wins over the template it also matches (/v1/apiKeys/{uid}).
    response = await client.request("OPTIONS", "/v1/apiKeys/verify")
    assert response.headers["Allow"] == "POST"


async def test_every_operation_documents_the_errors_any_request_may_get(
    client: httpx.AsyncClient,
) -> None:
    document = (await client.get("/openapi.json")).json()
    for path, item in document["paths"].items():
        for method, operation in item.items():
            # 413: the body limit applies before routing, to every request.
            assert {"400", "401", "404", "413", "429", "503"} <= set(operation["responses"]), (
                method,
                path,
            )


async def test_every_method_a_path_lacks_answers_405(
    app: FastAPI, client: httpx.AsyncClient, world: World
) -> None:
    """Fixed paths that a parameterised one would swallow too: ``DELETE /v1/users/info``
    used to answer 404 UserNotFound, ``GET /v1/apiKeys/verify`` 404 ApiKeyNotFound."""
    document = app.openapi()["paths"]
    checked = 0
    for path, item in document.items():
        defined = {method.upper() for method in item}
        concrete = path.replace("{tenantUid}", world.admin.tenant_uid).replace("{uid}", "0" * 24)
        for method in {"GET", "POST", "PUT", "PATCH", "DELETE"} - defined:
            for headers in ({}, world.admin.headers):
                response = await client.request(method, concrete, headers=headers)
                cell = f"{method} {path}"
                assert response.status_code == 405, f"{cell}: {response.text}"
                assert response.json()["code"] == "MethodNotAllowed", cell
                assert set(response.headers["Allow"].split(", ")) - {"HEAD"} == defined, cell
                checked += 1
    assert checked > 40
