"""``tripwire demo`` as a real process: breakers visibly change state within seconds."""

from __future__ import annotations

import signal
import sys
from pathlib import Path

import httpx
import trio

from .conftest import API, running_process


async def test_demo_breakers_change_state(tmp_path: Path) -> None:
    args = [sys.executable, "-m", "web", "demo", "--bind", "127.0.0.1:0"]
    async with running_process(args, tmp_path) as child:
        url = await child.wait_for(r"API: (http://127\.0\.0\.1:\d+)", stream="stdout")
        assert f"curl -s {url}{API}" in child.stdout
        async with httpx.AsyncClient(base_url=url, timeout=10) as client:
            with trio.fail_after(30):
                while True:
                    response = await client.get(API)
                    breakers = response.json()["data"]["circuit_breakers"]
                    changes = {name: s["state_changes"] for name, s in breakers.items()}
                    if max(changes.values(), default=0) >= 2:
                        break
                    await trio.sleep(0.5)
        assert set(breakers) == {"payments", "recommendations", "inventory"}
        assert await child.stop(signal.SIGINT) == 0
    assert "circuit 'inventory': closed -> open" in child.stderr or (
        "circuit 'recommendations': closed -> open" in child.stderr
    )
    assert "Traceback" not in child.stderr
