"""Serving the API beside the engine: Hypercorn's trio worker, graceful shutdown on signals."""

from __future__ import annotations

import ipaddress
import logging
import os
import re
import signal
import socket
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any, Final, TypeVar

import hypercorn.config
import hypercorn.trio
import trio
from quart_trio import QuartTrio

from actors import Config, open_circuit_breakers

from ._app import create_app

__all__ = [
    "GRACEFUL_TIMEOUT",
    "SHUTDOWN_GRACE",
    "StartupError",
    "check_bind",
    "find_exception",
    "is_loopback",
    "parse_bind",
    "run_until_signalled",
    "serve",
    "serve_app",
]

GRACEFUL_TIMEOUT: Final = 3.0  # requests in progress at shutdown get this long to finish
SHUTDOWN_GRACE: Final = 10.0  # after a signal, everything is stopped within this long

log = logging.getLogger("tripwire")
E = TypeVar("E", bound=BaseException)
_BIND: Final = re.compile(r"(\[[0-9A-Fa-f:.]+\]|[^:\s\[\]]+):(\d{1,5})")


class StartupError(Exception):
    """The server could not start; the message says why, for a person to read."""


def parse_bind(text: str) -> tuple[str, int]:
    """``"127.0.0.1:8080"`` → ``("127.0.0.1", 8080)``; ``"[::1]:0"`` → ``("::1", 0)``."""
    match = _BIND.fullmatch(text)
    if match is None:
        raise ValueError(f"expected HOST:PORT such as 127.0.0.1:8080, got {text!r}")
    if int(match[2]) > 65535:
        raise ValueError(f"port {int(match[2])} out of range (0 to 65535) in {text!r}")
    return match[1].strip("[]"), int(match[2])


def is_loopback(host: str) -> bool:
    """Whether ``host`` is a loopback address (``localhost``, ``127.0.0.0/8``, ``::1``)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_bind(bind: str) -> None:
    """Raise :class:`StartupError` unless ``bind`` can be listened on now.

    Bound the way Hypercorn binds (SO_REUSEADDR) and closed again at once: it turns the
    common failures (port taken, unknown host) into a clear message before Hypercorn
    tries (Hypercorn leaves its socket unclosed when binding fails).
    """
    host, port = parse_bind(bind)
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        with socket.socket(family, socket.SOCK_STREAM) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((host, port))
    except OSError as exc:
        raise StartupError(f"cannot listen on {bind}: {exc.strerror or exc}") from None


def find_exception(exc: BaseException, kind: type[E]) -> E | None:
    """The first ``kind`` in ``exc``, looking inside exception groups."""
    if isinstance(exc, kind):
        return exc
    if isinstance(exc, BaseExceptionGroup):
        for inner in exc.exceptions:
            found = find_exception(inner, kind)
            if found is not None:
                return found
    return None


def _hypercorn_config(bind: str) -> hypercorn.config.Config:
    config = hypercorn.config.Config()
    config.bind = [bind]
    config.accesslog = None
    config.errorlog = logging.getLogger("hypercorn.error")
    config.graceful_timeout = GRACEFUL_TIMEOUT
    return config


async def serve_app(
    app: QuartTrio,
    bind: str,
    *,
    shutdown_trigger: Callable[[], Awaitable[Any]] | None = None,
    task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve ``app`` on ``bind`` (``HOST:PORT``; port 0 picks a free one) until
    ``shutdown_trigger`` returns, then shut down gracefully.

    ``task_status.started`` gets the bound URLs, e.g. ``["http://127.0.0.1:43117"]``.
    Raises :class:`StartupError` when the address cannot be listened on.
    """
    check_bind(bind)
    serving = partial(
        hypercorn.trio.serve, app, _hypercorn_config(bind), shutdown_trigger=shutdown_trigger
    )
    started = False
    try:
        async with trio.open_nursery() as nursery:
            urls: list[str] = await nursery.start(serving)
            started = True
            log.info("API listening on %s", ", ".join(urls))
            task_status.started(urls)
    except (OSError, BaseExceptionGroup) as exc:
        error = None if started else find_exception(exc, OSError)
        if error is None:
            raise
        reason = error.strerror or str(error)
        raise StartupError(f"cannot listen on {bind}: {reason}") from None


async def serve(
    config: Config,
    *,
    config_path: str | os.PathLike[str] | None = None,
    bind: str | None = None,
    shutdown_trigger: Callable[[], Awaitable[Any]] | None = None,
    task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Run the engine and the API beside it until ``shutdown_trigger`` returns.

    ``bind`` overrides ``config.server.bind``; ``config_path`` is where accepted changes
    are written (``None``: nowhere). ``task_status.started`` gets the bound URLs.
    """
    async with open_circuit_breakers(config) as manager:
        app = create_app(manager, config_path=config_path, server=config.server)
        await serve_app(
            app,
            bind or config.server.bind,
            shutdown_trigger=shutdown_trigger,
            task_status=task_status,
        )


async def run_until_signalled(
    async_fn: Callable[..., Awaitable[Any]], *args: Any, **kwargs: Any
) -> None:
    """Run ``async_fn(*args, **kwargs, shutdown_trigger=...)`` until SIGINT or SIGTERM.

    The first signal fires the shutdown trigger (graceful: requests in progress finish);
    whatever is still running :data:`SHUTDOWN_GRACE` seconds later, or at a second
    signal, is cancelled.
    """
    stop = trio.Event()
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with trio.open_nursery() as nursery:
            with trio.CancelScope() as running:

                async def watch() -> None:
                    async for signum in signals:
                        name = signal.Signals(signum).name
                        if stop.is_set():
                            log.warning("%s again: stopping now", name)
                            running.cancel()
                            return
                        log.info("%s received: shutting down (at most %g s)", name, SHUTDOWN_GRACE)
                        stop.set()
                        running.deadline = trio.current_time() + SHUTDOWN_GRACE

                nursery.start_soon(watch)
                await async_fn(*args, **kwargs, shutdown_trigger=stop.wait)
            nursery.cancel_scope.cancel()
    if running.cancelled_caught:
        log.warning("shutdown did not finish in time; the rest was cancelled")
    else:
        log.info("stopped")
