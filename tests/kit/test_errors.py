"""How errors reach a client beyond the domain ones: HTTP-level refusals keep Palette's
body and say what HTTP requires of them."""

from __future__ import annotations

import httpx


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
