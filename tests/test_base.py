"""
GET /v2/ and what every response carries.
"""

import pytest_twisted

from tests.helpers import Client


@pytest_twisted.ensureDeferred
async def test_version_check(registry: Client) -> None:
    response = await registry.request("GET", "/v2/")
    assert response.code == 200
    assert response.header("Docker-Distribution-API-Version") == "registry/2.0"
    assert response.json() == {}


@pytest_twisted.ensureDeferred
async def test_version_check_without_slash(registry: Client) -> None:
    response = await registry.request("GET", "/v2")
    assert response.code == 200
    assert response.header("Docker-Distribution-API-Version") == "registry/2.0"


@pytest_twisted.ensureDeferred
async def test_head_version_check(registry: Client) -> None:
    response = await registry.request("HEAD", "/v2/")
    assert response.code == 200
    assert response.body == b""
