"""``tripwire demo``: the engine and the API with three simulated services of different health.

Short settings (``reset_timeout = "3s"``) make the breakers move within seconds: the
``inventory`` service goes down for 6 s of every 20 s, so its breaker opens, tries
half-open, opens again, and closes once the service is back; ``recommendations`` fails
at random and sometimes runs past its timeout; ``payments`` is healthy.
"""

from __future__ import annotations

import random
import shlex
from collections.abc import Awaitable, Callable
from typing import Any, Final

import trio

from actors import (
    CircuitBreakerManager,
    CircuitOpenError,
    Config,
    OperationTimeoutError,
    ServerConfig,
    open_circuit_breakers,
    parse_circuitbreaker,
)

from ._app import PREFIX, create_app
from ._auth import token_from_env
from ._server import serve_app

__all__ = ["DEMO_BIND", "DEMO_CONFIG", "run_demo"]

DEMO_BIND: Final = "127.0.0.1:8080"
DEMO_CONFIG: Final = Config(
    server=ServerConfig(bind=DEMO_BIND, persist_changes=False),
    circuitbreaker=parse_circuitbreaker(
        {
            "global": {
                "failure_threshold": 3,
                "operation_timeout": "500ms",
                "reset_timeout": "3s",
                "success_threshold": 2,
            },
            "profiles": {"recommendations": {"failure_threshold": 2}},
        }
    ),
)
CALL_INTERVAL: Final = 0.25  # seconds between two calls of one simulated client


class ServiceDown(ConnectionError):
    """What a simulated service raises when it fails."""


class _Service:
    def __init__(self, name: str, health: str, call: Callable[[], Awaitable[str]]) -> None:
        self.name = name
        self.health = health
        self.call = call


def _services(rng: random.Random, start: float) -> list[_Service]:
    async def payments() -> str:
        await trio.sleep(rng.uniform(0.01, 0.05))
        return "paid"

    async def recommendations() -> str:
        roll = rng.random()
        if roll < 0.3:
            raise ServiceDown("recommendations: connection reset by peer")
        await trio.sleep(1.0 if roll < 0.4 else rng.uniform(0.01, 0.1))
        return "3 suggestions"

    async def inventory() -> str:
        if 2.0 <= (trio.current_time() - start) % 20.0 < 8.0:
            raise ServiceDown("inventory: 503 service unavailable")
        await trio.sleep(rng.uniform(0.01, 0.05))
        return "in stock"

    return [
        _Service("payments", "healthy", payments),
        _Service(
            "recommendations", "flaky: 30% errors, 10% too slow (timeout 500ms)", recommendations
        ),
        _Service("inventory", "down 6 s of every 20 s (from 2 s in), then back", inventory),
    ]


async def _client(manager: CircuitBreakerManager, service: _Service) -> None:
    breaker = await manager.get_circuit_breaker(service.name)
    while True:
        try:
            await breaker.execute(service.call)
        except (CircuitOpenError, OperationTimeoutError, ServiceDown):
            pass
        await trio.sleep(CALL_INTERVAL)


def _banner(url: str, services: list[_Service], token: str | None) -> str:
    auth = ' -H "Authorization: Bearer $TRIPWIRE_API_TOKEN"' if token else ""
    json = " -H 'Content-Type: application/json'"
    api = f"{url}{PREFIX}"
    force = shlex.quote('{"action": "open"}')
    profile = shlex.quote('{"profile": {"failure_threshold": 5, "reset_timeout": "10s"}}')
    lines = [
        "tripwire demo: simulated services calling through their breakers",
        *(f"  {s.name:<16} {s.health}" for s in services),
        "",
        f"API: {url}",
        "Try:",
        f"  curl -s {api}/services/inventory",
        f"  curl -s {api}",
        f"  curl -s {api}/config",
        f"  curl -s -X POST{auth}{json} -d {force} {api}/services/payments/force",
        f"  curl -s -X PUT{auth}{json} -d {profile} {api}/services/recommendations",
        "State changes are logged below, one line each. Ctrl+C to stop.",
    ]
    return "\n".join(lines)


async def run_demo(
    bind: str = DEMO_BIND,
    *,
    shutdown_trigger: Callable[[], Awaitable[Any]] | None = None,
    seed: int | None = None,
) -> None:
    """Run the demo until ``shutdown_trigger`` returns."""
    rng = random.Random(seed)
    async with open_circuit_breakers(DEMO_CONFIG) as manager:
        app = create_app(manager, server=DEMO_CONFIG.server)
        async with trio.open_nursery() as nursery:

            async def server(task_status: trio.TaskStatus[list[str]]) -> None:
                await serve_app(
                    app, bind, shutdown_trigger=shutdown_trigger, task_status=task_status
                )
                nursery.cancel_scope.cancel()  # the server stopped: so do the clients

            urls = await nursery.start(server)
            services = _services(rng, trio.current_time())
            print(_banner(urls[0], services, token_from_env(DEMO_CONFIG.server)), flush=True)
            for service in services:
                nursery.start_soon(_client, manager, service)
