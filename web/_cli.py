"""The ``tripwire`` command: ``serve``, ``check``, ``demo``."""

from __future__ import annotations

import argparse
import importlib.metadata
import logging
import os
import sys
from collections.abc import Awaitable, Callable, Sequence
from functools import partial
from pathlib import Path
from typing import Final

import trio

from actors import Config, ConfigError, config_to_builtins, load_config

from ._auth import token_from_env
from ._demo import DEMO_BIND, DEMO_CONFIG, run_demo
from ._server import (
    StartupError,
    check_bind,
    find_exception,
    is_loopback,
    parse_bind,
    run_until_signalled,
    serve,
)

__all__ = ["build_parser", "main"]

DEFAULT_CONFIG: Final = "config.toml"
EXIT_USAGE: Final = 2  # bad config, bad arguments, cannot start

log = logging.getLogger("tripwire")


def _version() -> str:
    try:
        return importlib.metadata.version("tripwire")
    except importlib.metadata.PackageNotFoundError:
        from actors import __version__

        return __version__


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tripwire",
        description="Circuit breakers for trio programs: serve the REST API, check a "
        "config file, or watch a demo.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    serve_cmd = commands.add_parser(
        "serve",
        help="run the engine and the REST API",
        description="Run the circuit-breaker engine and its REST API until SIGINT or "
        "SIGTERM (graceful shutdown, exit status 0).",
    )
    serve_cmd.add_argument(
        "--config",
        metavar="PATH",
        help=f"the config file (default: ./{DEFAULT_CONFIG}; built-in defaults if there is "
        "none); accepted API changes are written back to it",
    )
    serve_cmd.add_argument(
        "--bind", metavar="HOST:PORT", help="where to listen (default: server.bind, 127.0.0.1:8080)"
    )
    serve_cmd.add_argument(
        "--insecure",
        action="store_true",
        help="allow a non-loopback bind with no API token set (PUT/POST open to anyone)",
    )

    check_cmd = commands.add_parser(
        "check",
        help="validate a config file",
        description="Validate a config file: exit 0 with a summary, or 2 with every problem.",
    )
    check_cmd.add_argument("path", metavar="PATH", help="the config file to check")

    demo_cmd = commands.add_parser(
        "demo",
        help="watch breakers open and recover with simulated services",
        description="Run the engine and the API with simulated services of different "
        "health, so breakers open, go half-open and close within seconds. If the default "
        "port is taken, a free port is used instead (not so with --bind).",
    )
    demo_cmd.add_argument(
        "--bind", metavar="HOST:PORT", help=f"where to listen (default: {DEMO_BIND})"
    )
    return parser


def _error(message: str) -> int:
    print(f"tripwire: error: {message}", file=sys.stderr)
    return EXIT_USAGE


def _config_errors(path: str, exc: ConfigError) -> int:
    for problem in exc.problems:
        where = problem.message if problem.path == path else str(problem)
        print(f"tripwire: error: {path}: {where}", file=sys.stderr)
    return EXIT_USAGE


def _setup_logging(
    fmt: str = "%(asctime)s %(levelname)s %(name)s: %(message)s",
    datefmt: str = "%Y-%m-%d %H:%M:%S",
) -> None:
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format=fmt, datefmt=datefmt)
    logging.getLogger("hypercorn.error").setLevel(logging.WARNING)  # we log where we listen


def _check_bind(
    bind: str, token: str | None, *, insecure: bool, env: str, offer_insecure: bool = False
) -> str | None:
    """The reason not to start on ``bind``, or None.

    A malformed ``bind`` is refused saying only what is wrong with it; a non-loopback one
    with no token is refused naming the fixes, ``--insecure`` among them when
    ``offer_insecure`` (the command has that option).
    """
    try:
        host, _ = parse_bind(bind)
    except ValueError as exc:
        return f"bind: {exc}"
    if token is None and not is_loopback(host):
        if insecure:
            log.warning("serving on %s with no API token: PUT and POST are open to anyone", bind)
            return None
        return (
            f"refusing to serve on non-loopback address {bind} with no API token: set the "
            f"environment variable {env} or bind to 127.0.0.1"
            + (" (or pass --insecure to allow it)" if offer_insecure else "")
        )
    return None


def _run(async_fn: Callable[..., Awaitable[object]]) -> int:
    try:
        trio.run(partial(run_until_signalled, async_fn))
    except BaseException as exc:
        startup = find_exception(exc, StartupError)
        if startup is None:
            raise
        return _error(str(startup))
    return 0


def _serve(args: argparse.Namespace) -> int:
    path: str | None = args.config
    if path is None and not Path(DEFAULT_CONFIG).exists():
        config = Config()
    else:
        path = path or DEFAULT_CONFIG
        try:
            config = load_config(path)
        except ConfigError as exc:
            return _config_errors(path, exc)
    _setup_logging()
    if path is None:
        log.info("no ./%s: using built-in defaults; API changes are kept in memory", DEFAULT_CONFIG)
    elif not config.server.persist_changes:
        log.info("persist_changes = false: API changes are kept in memory only")
    bind = args.bind or config.server.bind
    token = token_from_env(config.server)
    env = config.server.api_token_env
    reason = _check_bind(bind, token, insecure=args.insecure, env=env, offer_insecure=True)
    if reason is not None:
        return _error(reason)
    log.info(
        "config %s; PUT/POST %s",
        path or "built-in",
        f"need the token in ${env}" if token else f"are open (${env} is not set)",
    )
    return _run(partial(serve, config, config_path=path, bind=bind))


def _check(args: argparse.Namespace) -> int:
    path: str = args.path
    try:
        config = load_config(path)
    except ConfigError as exc:
        return _config_errors(path, exc)
    cb = config_to_builtins(config.circuitbreaker)
    settings = ", ".join(f"{key} {value}" for key, value in cb["global"].items())
    profiles = sorted(cb["profiles"])
    print(f"{path}: OK")
    print(f"  server: bind {config.server.bind}, persist_changes {config.server.persist_changes}")
    print(f"  global: {settings}")
    print(f"  profiles ({len(profiles)}): {', '.join(profiles) or 'none'}")
    return 0


def _demo(args: argparse.Namespace) -> int:
    _setup_logging("%(asctime)s %(message)s", "%H:%M:%S")
    bind: str = args.bind or DEMO_BIND
    server = DEMO_CONFIG.server
    reason = _check_bind(bind, token_from_env(server), insecure=False, env=server.api_token_env)
    if reason is not None:
        return _error(reason)
    if args.bind is None:
        try:
            check_bind(bind)
        except StartupError as exc:
            log.warning("%s; the demo uses a free port instead", exc)
            bind = f"{parse_bind(bind)[0]}:0"
    return _run(partial(run_demo, bind))


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``tripwire`` command; return its exit status."""
    args = build_parser().parse_args(argv)
    command = {"serve": _serve, "check": _check, "demo": _demo}[args.command]
    try:
        return command(args)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # stdout closed early, as in `tripwire check x | head -1`
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
