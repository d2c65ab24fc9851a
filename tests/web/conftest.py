"""Shared helpers: a real Hypercorn server on 127.0.0.1 port 0, and config files."""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio

from actors import CircuitBreakerManager, Config, load_config, open_circuit_breakers
from web import create_app, serve_app

CONFIG_TEXT = """\
# tripwire test config: this comment must survive every write.

[server]
bind = "127.0.0.1:8080"                 # loopback by default
api_token_env = "TRIPWIRE_TEST_TOKEN"   # env var holding the bearer token
persist_changes = true

[circuitbreaker.global]
implementation_type = "rssafe"          # rssafe | noop
failure_threshold = 3                   # consecutive failures that open
operation_timeout = "5s"
reset_timeout = "30s"
success_threshold = 2

[circuitbreaker.profiles.database]
failure_threshold = 2                   # the rest from global
reset_timeout = "60s"

[circuitbreaker.profiles.legacy]
implementation_type = "noop"
"""

RFC3339_UTC = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z")
TOKEN_ENV = "TRIPWIRE_TEST_TOKEN"
API = "/api/v1/circuit-breakers"


@pytest.fixture(autouse=True)
def _no_token(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(TOKEN_ENV, raising=False)


@pytest.fixture
def config_path(tmp_path: Path) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(CONFIG_TEXT, encoding="utf-8")
    return path


async def read_bytes(path: Path) -> bytes:
    return await trio.Path(path).read_bytes()


@dataclass
class Api:
    client: httpx.AsyncClient
    manager: CircuitBreakerManager
    url: str


@asynccontextmanager
async def running_api(config: Config, config_path: Path | None = None) -> AsyncIterator[Api]:
    """The engine and a real Hypercorn server on 127.0.0.1, port 0; stopped gracefully."""
    stop = trio.Event()
    async with open_circuit_breakers(config) as manager, trio.open_nursery() as nursery:
        app = create_app(manager, config_path=config_path, server=config.server)
        urls = await nursery.start(
            partial(serve_app, app, "127.0.0.1:0", shutdown_trigger=stop.wait)
        )
        async with httpx.AsyncClient(base_url=urls[0], timeout=10) as client:
            yield Api(client, manager, urls[0])
        stop.set()


@pytest.fixture
async def api(config_path: Path) -> AsyncIterator[Api]:
    async with running_api(load_config(config_path), config_path) as running:
        yield running


def check_envelope(body: Any, *, success: bool) -> None:
    """The envelope of CONTRACT §5, with an RFC 3339 UTC timestamp."""
    assert body["success"] is success
    assert RFC3339_UTC.fullmatch(body["timestamp"]), body["timestamp"]
    if success:
        assert set(body) == {"success", "data", "timestamp"}
    else:
        assert set(body) == {"success", "error", "details", "timestamp"}
        assert isinstance(body["error"], str)
        assert body["error"]
        assert isinstance(body["details"], list)


def ok(response: httpx.Response, status: int = 200) -> Any:
    """The ``data`` of a successful answer."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    check_envelope(body, success=True)
    return body["data"]


def error(response: httpx.Response, status: int) -> Any:
    """The whole body of an error answer."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    check_envelope(body, success=False)
    return body


# --- real processes ---------------------------------------------------------------------


class Process:
    """A child process whose stdout and stderr are collected as they come."""

    def __init__(self, process: trio.Process) -> None:
        self.process = process
        self.out = bytearray()
        self.err = bytearray()

    @property
    def stdout(self) -> str:
        return self.out.decode(errors="replace")

    @property
    def stderr(self) -> str:
        return self.err.decode(errors="replace")

    async def wait_for(self, pattern: str, *, stream: str = "stderr", timeout: float = 20) -> str:
        """The first match of ``pattern`` in the stream, waiting for it at most ``timeout`` s."""
        with trio.fail_after(timeout):
            while (match := re.search(pattern, getattr(self, stream))) is None:
                if self.process.returncode is not None:
                    raise AssertionError(f"exited {self.process.returncode}:\n{self.stderr}")
                await trio.sleep(0.05)
        return match[0] if match.lastindex is None else match[1]

    async def stop(self, signum: int, *, timeout: float = 15) -> int:
        """Send ``signum``; the exit status (within ``timeout`` s)."""
        self.process.send_signal(signum)
        with trio.fail_after(timeout):
            return await self.process.wait()


async def _pump(stream: trio.abc.ReceiveStream | None, into: bytearray) -> None:
    assert stream is not None
    async for chunk in stream:
        into.extend(chunk)


def child_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("TRIPWIRE_API_TOKEN", TOKEN_ENV)}
    env["PYTHONUNBUFFERED"] = "1"
    return env


@asynccontextmanager
async def running_process(args: list[str], cwd: Path) -> AsyncIterator[Process]:
    """Start ``args``; on leaving, kill it if it still runs."""
    process = await trio.lowlevel.open_process(
        args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=cwd, env=child_env()
    )
    child = Process(process)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(_pump, process.stdout, child.out)
        nursery.start_soon(_pump, process.stderr, child.err)
        try:
            yield child
        finally:
            if process.returncode is None:
                process.kill()
            with trio.move_on_after(10):
                await process.wait()
    for stream in (process.stdout, process.stderr):
        if stream is not None:
            await stream.aclose()
