"""The control API's OpenAPI document: the committed copy is current, and it says what the
API does (HTTP Basic, one error shape)."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest

from popgate import __version__
from popgate.host._api import create_app
from popgate.host.openapi import inert_context, openapi_document, openapi_text

COMMITTED = Path(__file__).resolve().parents[2] / "docs" / "openapi.json"
REGENERATE = "python -m popgate.host.openapi > docs/openapi.json"


@pytest.fixture(scope="module")
def document() -> dict[str, Any]:
    return openapi_document()


def operations(document: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (method.upper(), path, operation)
        for path, item in document["paths"].items()
        for method, operation in item.items()
    ]


def test_the_committed_copy_is_what_the_code_generates() -> None:
    assert COMMITTED.read_text(encoding="utf-8") == openapi_text(), f"run: {REGENERATE}"


def test_the_module_prints_the_document() -> None:
    printed = subprocess.run(
        [sys.executable, "-m", "popgate.host.openapi"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    assert printed.stdout == openapi_text()


def test_the_document_names_the_package_and_http_basic(document: dict[str, Any]) -> None:
    assert document["info"]["title"] == "popgate service host"
    assert document["info"]["version"] == __version__
    assert "Unix socket" in document["info"]["description"]
    scheme = document["components"]["securitySchemes"]["directoryAccount"]
    assert (scheme["type"], scheme["scheme"]) == ("http", "basic")
    assert document["security"] == [{"directoryAccount": []}]
    # The admin center's pages and the document itself are no operations of the API; /metrics
    # is, at the path Prometheus scrapes by default.
    assert all(path.startswith("/api/v1/") or path == "/metrics" for path in document["paths"])
    assert "/metrics" in document["paths"]
    assert "/api/v1/openapi.json" not in document["paths"]


def test_every_refusal_has_the_one_error_shape(document: dict[str, Any]) -> None:
    schemas = document["components"]["schemas"]
    assert schemas["ErrorResponse"]["required"] == ["error"]
    assert set(schemas["ErrorDetail"]["properties"]) == {"code", "message"}
    # FastAPI's own 422 body is not what the API answers, so it is documented nowhere.
    assert "HTTPValidationError" not in schemas
    error = {"$ref": "#/components/schemas/ErrorResponse"}
    for method, path, operation in operations(document):
        refusals = {status for status in operation["responses"] if status >= "400"}
        assert {"401", "429"} <= refusals, (method, path)
        for status in refusals:
            content = operation["responses"][status]["content"]["application/json"]
            assert content["schema"] == error, (method, path, status)
        assert "WWW-Authenticate" in operation["responses"]["401"]["headers"]


def test_the_services_endpoints_document_their_refusals(document: dict[str, Any]) -> None:
    responses = {(method, path): set(op["responses"]) for method, path, op in operations(document)}
    assert responses["GET", "/api/v1/whoami"] == {"200", "401", "429"}
    # 404 and 503 with ?server=: no such server, or it does not answer.
    assert responses["GET", "/api/v1/services"] == {"200", "401", "403", "404", "422", "429", "503"}
    assert responses["POST", "/api/v1/services/{name}/start"] == {
        "202", "401", "403", "404", "409", "422", "429", "503",
    }  # fmt: skip
    started = document["paths"]["/api/v1/services/{name}/start"]["post"]["responses"]["202"]
    assert started["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/ServiceStatus"
    }
    assert responses["PUT", "/api/v1/services/{name}/recovery"] == {
        "200", "401", "403", "404", "422", "429", "503",
    }  # fmt: skip


def test_the_app_serves_the_document_without_a_login(document: dict[str, Any]) -> None:
    async def ask() -> dict[str, httpx.Response]:
        transport = httpx.ASGITransport(app=create_app(inert_context()))
        async with httpx.AsyncClient(transport=transport, base_url="http://host") as client:
            return {
                "served": await client.get("/api/v1/openapi.json"),
                "fastapi's address": await client.get("/openapi.json"),
                "unknown path": await client.get("/api/v1/no-such-thing"),
                # The framework's own answer to a body that is not UTF-8 is a 400.
                "unreadable body": await client.put(
                    "/api/v1/services/MSExchangePOP3/startup-type",
                    content=b'{"startup_type": "\xff"}',
                    headers={"content-type": "application/json"},
                ),
            }

    answers = asyncio.run(ask())
    for name in ("served", "fastapi's address"):
        assert answers[name].status_code == 200, name
        assert answers[name].json() == json.loads(json.dumps(document)), name
    # Refusals of the framework itself come in the API's error shape too.
    assert answers["unknown path"].status_code == 404
    assert answers["unknown path"].json() == {"error": {"code": 1168, "message": "Not Found."}}
    assert answers["unreadable body"].status_code == 422
    assert answers["unreadable body"].json()["error"]["code"] == 87
