"""Serving: bind parsing, loopback detection, a taken port."""

from __future__ import annotations

import socket

import pytest
import trio

from actors import open_circuit_breakers
from web import StartupError, create_app, serve_app
from web._server import find_exception, is_loopback, parse_bind


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("127.0.0.1:8080", ("127.0.0.1", 8080)),
        ("[::1]:0", ("::1", 0)),
        ("localhost:65535", ("localhost", 65535)),
    ],
)
def test_parse_bind(text: str, expected: tuple[str, int]) -> None:
    assert parse_bind(text) == expected


@pytest.mark.parametrize("text", ["8080", "host:", ":80", "a b:1", "::1:80", "localhost"])
def test_parse_bind_rejects(text: str) -> None:
    with pytest.raises(ValueError, match=r"^expected HOST:PORT such as 127\.0\.0\.1:8080, got "):
        parse_bind(text)


@pytest.mark.parametrize("text", ["h:65536", "127.0.0.1:99999"])
def test_parse_bind_rejects_a_port_out_of_range(text: str) -> None:
    with pytest.raises(ValueError, match=r"^port \d+ out of range \(0 to 65535\) in "):
        parse_bind(text)


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.1.2.3", True),
        ("::1", True),
        ("localhost", True),
        ("0.0.0.0", False),
        ("::", False),
        ("192.168.1.10", False),
        ("example.com", False),
    ],
)
def test_is_loopback(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


def test_find_exception_looks_inside_groups() -> None:
    inner = OSError("x")
    group = BaseExceptionGroup("g", [ValueError(), ExceptionGroup("h", [inner])])
    assert find_exception(group, OSError) is inner
    assert find_exception(group, KeyError) is None


async def test_a_taken_port_is_a_startup_error() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        async with open_circuit_breakers() as manager:
            app = create_app(manager)
            with trio.fail_after(10), pytest.raises(StartupError) as caught:
                await serve_app(app, f"127.0.0.1:{port}")
    assert str(caught.value) == f"cannot listen on 127.0.0.1:{port}: Address already in use"
