"""The app through Quart's test client: envelope, errors, auth, ordering of checks."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from quart.typing import TestClientProtocol as Client

from actors import CircuitBreakerManager, load_config, open_circuit_breakers, parse_config
from web import create_app

from .conftest import API, RFC3339_UTC, TOKEN_ENV


@pytest.fixture
async def manager(config_path: Path) -> AsyncIterator[CircuitBreakerManager]:
    async with open_circuit_breakers(load_config(config_path)) as manager:
        yield manager


@pytest.fixture
def client(manager: CircuitBreakerManager, config_path: Path) -> Client:
    app = create_app(manager, config_path=config_path, server=load_config(config_path).server)
    return app.test_client()


async def answer(response: Any, status: int) -> Any:
    assert response.status_code == status
    body = await response.get_json()
    assert RFC3339_UTC.fullmatch(body["timestamp"])
    return body


async def test_success_envelope(client: Client) -> None:
    body = await answer(await client.get("/health"), 200)
    assert body["success"] is True
    assert body["data"]["status"] == "ok"


async def test_error_envelopes(client: Client) -> None:
    for response, status in [
        (await client.get("/nope"), 404),
        (await client.post("/health"), 405),
        (await client.patch(f"{API}/config"), 405),
        (await client.options(f"{API}/config"), 405),
    ]:
        body = await answer(response, status)
        assert body["success"] is False
        assert body["details"] == []


async def test_put_config_with_test_client(
    client: Client, manager: CircuitBreakerManager, config_path: Path
) -> None:
    response = await client.put(
        f"{API}/config", json={"config": {"global": {"reset_timeout": "2m"}}}
    )
    body = await answer(response, 200)
    assert body["data"]["updated_count"] == 0  # no breaker in use
    assert str(manager.config.global_.reset_timeout) == "2m"
    assert load_config(config_path).circuitbreaker.profiles == {}


async def test_force_noop_with_test_client(client: Client) -> None:
    response = await client.post(f"{API}/services/legacy/force", json={"action": "half_open"})
    body = await answer(response, 409)
    assert body["error"] == (
        "circuit 'legacy' uses implementation_type noop; forcing it is refused"
    )


async def test_unexpected_error_is_500_in_the_envelope(
    client: Client, manager: CircuitBreakerManager, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken() -> list[str]:
        raise RuntimeError("boom")

    monkeypatch.setattr(manager, "services", broken)
    body = await answer(await client.get(f"{API}/services"), 500)
    assert body["error"] == "internal error: RuntimeError"


async def test_auth_comes_first_then_name(
    monkeypatch: pytest.MonkeyPatch, manager: CircuitBreakerManager
) -> None:
    monkeypatch.setenv(TOKEN_ENV, "tok")
    app = create_app(manager, server=parse_config({"server": {"api_token_env": TOKEN_ENV}}).server)
    client = app.test_client()
    url = f"{API}/services/{'n' * 65}/force"
    await answer(await client.post(url, data="{"), 401)
    headers = {"Authorization": "Bearer tok"}
    body = await answer(await client.post(url, data="{", headers=headers), 422)
    assert [d["path"] for d in body["details"]] == ["name"]


async def test_bearer_scheme_is_case_insensitive(
    monkeypatch: pytest.MonkeyPatch, manager: CircuitBreakerManager
) -> None:
    monkeypatch.setenv("TRIPWIRE_API_TOKEN", "tok-123")
    client = create_app(manager).test_client()
    url = f"{API}/services/database/force"
    attempts = [
        ("bearer tok-123", 200),
        ("Basic tok-123", 401),
        ("Bearer", 401),
        ("Bearer t\u00f6k", 401),  # not ASCII: refused, no crash
    ]
    for value, status in attempts:
        headers = {"Authorization": value}
        await answer(await client.post(url, json={"action": "open"}, headers=headers), status)


async def test_empty_token_variable_counts_as_unset(
    monkeypatch: pytest.MonkeyPatch, manager: CircuitBreakerManager
) -> None:
    monkeypatch.setenv("TRIPWIRE_API_TOKEN", "")
    client = create_app(manager).test_client()
    response = await client.post(f"{API}/services/database/force", json={"action": "open"})
    await answer(response, 200)
