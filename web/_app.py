"""The REST API: a Quart-Trio app whose routes only talk to a :class:`CircuitBreakerManager`.

Every answer uses one envelope::

    {"success": true, "data": {...}, "timestamp": "2025-01-01T12:00:00.000Z"}
    {"success": false, "error": "...", "details": [...], "timestamp": "..."}

Request bodies are decoded with msgspec and checked by the checker the config file
uses, so the file and the API accept and reject the same things with the same messages.
A request is checked in this order, and the first failure answers: token (401), service
name (422), content type (400), size (413), JSON syntax (400), content (422), then the
lookup (404) and the engine's verdict (409).
"""

from __future__ import annotations

import datetime as dt
import logging
import os
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, Final, TypeVar

import msgspec
import trio
from quart import Response, request
from quart_trio import QuartTrio
from werkzeug.exceptions import HTTPException, MethodNotAllowed, RequestEntityTooLarge
from werkzeug.routing import PathConverter

from actors import (
    FORCE_ACTIONS,
    CircuitBreakerConfig,
    CircuitBreakerError,
    CircuitBreakerManager,
    ConfigError,
    ForceRefusedError,
    Problem,
    ServerConfig,
    UnknownServiceError,
    config_to_builtins,
    parse_circuitbreaker,
    parse_profile,
    validate_service_name,
)

from ._auth import bearer_token_matches, token_from_env
from ._persist import PersistError, write_config

__all__ = ["MAX_BODY_BYTES", "create_app"]

MAX_BODY_BYTES: Final = 64 * 1024
PREFIX: Final = "/api/v1/circuit-breakers"
T = TypeVar("T")

log = logging.getLogger("tripwire.api")


class ApiError(Exception):
    """An answer other than success: the status, the message, and every problem."""

    def __init__(self, status: int, message: str, details: Iterable[Problem] = ()) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.details = list(details)


def timestamp() -> str:
    """Now, in RFC 3339 UTC with milliseconds: ``2025-01-01T12:00:00.000Z``."""
    now = dt.datetime.now(dt.UTC)
    return now.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _json(body: dict[str, Any], status: int, headers: dict[str, str] | None = None) -> Response:
    return Response(
        msgspec.json.encode(body, enc_hook=str),
        status=status,
        headers=headers,
        content_type="application/json",
    )


def success(data: Any, status: int = 200) -> Response:
    return _json({"success": True, "data": data, "timestamp": timestamp()}, status)


def failure(
    status: int,
    message: str,
    details: Iterable[Problem] = (),
    headers: dict[str, str] | None = None,
) -> Response:
    body = {
        "success": False,
        "error": message,
        "details": [{"path": p.path, "message": p.message} for p in details],
        "timestamp": timestamp(),
    }
    return _json(body, status, headers)


def _invalid(problems: Iterable[Problem]) -> ApiError:
    problems = list(problems)
    count = "1 problem" if len(problems) == 1 else f"{len(problems)} problems"
    return ApiError(422, f"validation failed ({count}); nothing was changed", problems)


class ServiceNameConverter(PathConverter):
    """The ``<service:name>`` of a URL: everything after ``/services/``, slashes included
    (``a%2Fb`` arrives as ``a/b``), so that a name outside the rule reaches
    :func:`_check_name` (422) instead of matching no route (404). A path ending in
    ``/force`` is left to the force route (``<path:name>/force``), so other methods there
    stay a 405."""

    regex = r"(?!.*/force$)[^/].*?"


def _check_name(name: str) -> None:
    try:
        validate_service_name(name)
    except ValueError as exc:
        raise _invalid([Problem("name", str(exc))]) from None


async def _read_json() -> Any:
    """The request's JSON body; 400 for a wrong content type or bad JSON, 413 if too big."""
    if request.mimetype != "application/json":
        given = request.content_type or "none"
        raise ApiError(400, f"expected Content-Type: application/json, got {given}")
    body = await request.get_data(cache=True, as_text=False, parse_form_data=False)
    try:
        return msgspec.json.decode(body)
    except msgspec.DecodeError as exc:
        raise ApiError(400, f"the body is not valid JSON: {exc}") from None


_ABSENT: Final = object()
_JSON_TYPES: Final[dict[type, str]] = {
    list: "an array",
    str: "a string",
    int: "a number",
    float: "a number",
    bool: "true or false",
}


def _member(body: Any, key: str, example: str) -> tuple[Any, list[Problem]]:
    """``body[key]`` (``_ABSENT`` if missing), and the problems of a body that is not
    ``{key: ...}``."""
    if not isinstance(body, dict):
        got = _JSON_TYPES.get(type(body), "null")
        raise _invalid([Problem("", f"expected a JSON object like {example}, got {got}")])
    problems = [Problem(str(k), f"unknown key; expected only {key!r}") for k in body if k != key]
    if key not in body:
        problems.append(Problem(key, f"required, as in {example}"))
    return body.get(key, _ABSENT), problems


async def _checked_member(key: str, example: str, parse: Callable[[Any, str], T]) -> T:
    """The body's ``key`` member checked by the config checker (``parse``), reporting
    problems in the body's shape and in the member's content together (422)."""
    raw, problems = _member(await _read_json(), key, example)
    value = None
    if raw is not _ABSENT:
        try:
            value = parse(raw, key)
        except ConfigError as exc:
            problems.extend(exc.problems)
    if problems or value is None:
        raise _invalid(problems)
    return value


def create_app(
    manager: CircuitBreakerManager,
    *,
    config_path: str | os.PathLike[str] | None = None,
    server: ServerConfig | None = None,
) -> QuartTrio:
    """The API app for ``manager``.

    ``config_path`` is the file accepted PUTs are written back to (when
    ``server.persist_changes``); with none, changes stay in memory. The token is read
    now from the environment variable ``server.api_token_env``.
    """
    server = server or ServerConfig()
    token = token_from_env(server)
    persist_to = None
    if config_path is not None and server.persist_changes:
        persist_to = Path(config_path).absolute()
    changes = trio.Lock()  # one change at a time: the file and memory stay in the same order

    app = QuartTrio(__name__)
    app.config["MAX_CONTENT_LENGTH"] = MAX_BODY_BYTES
    app.config["PROVIDE_AUTOMATIC_OPTIONS"] = False  # OPTIONS is a 405 in the envelope too
    app.url_map.converters["service"] = ServiceNameConverter

    @app.before_request
    async def authorize() -> Response | None:
        if token is None or request.method not in ("PUT", "POST"):
            return None
        if bearer_token_matches(request.headers.get("Authorization"), token):
            return None
        return failure(
            401,
            "missing or wrong API token: send Authorization: Bearer <token>",
            headers={"WWW-Authenticate": "Bearer"},
        )

    @app.errorhandler(ApiError)
    async def api_error(exc: ApiError) -> Response:
        return failure(exc.status, exc.message, exc.details)

    @app.errorhandler(HTTPException)
    async def http_error(exc: HTTPException) -> Response:
        status = exc.code or 500
        headers = {}
        if isinstance(exc, MethodNotAllowed) and exc.valid_methods:
            headers["Allow"] = ", ".join(sorted(exc.valid_methods))
        if isinstance(exc, RequestEntityTooLarge):
            message = f"request body too large: the limit is {MAX_BODY_BYTES} bytes"
        elif status == 404:
            message = f"no such endpoint: {request.method} {request.path}"
        elif status == 405:
            message = f"method {request.method} not allowed on {request.path}"
        else:
            message = exc.description or exc.name
        return failure(status, message, headers=headers)

    @app.errorhandler(Exception)
    async def internal_error(exc: Exception) -> Response:
        log.exception("internal error answering %s %s", request.method, request.path)
        return failure(500, f"internal error: {type(exc).__name__}")

    async def persist(config: CircuitBreakerConfig) -> None:
        if persist_to is None:
            return
        try:
            await trio.to_thread.run_sync(write_config, persist_to, config)
        except PersistError as exc:
            log.error("could not save the config file; change refused: %s", exc)
            raise ApiError(
                500, f"could not save the config file: {exc}; nothing was changed"
            ) from None

    @app.get("/health")
    async def health() -> Response:
        return success({"status": "ok", "services": len(manager.services())})

    @app.get(PREFIX)
    async def all_stats() -> Response:
        return success({"circuit_breakers": manager.stats()})

    @app.get(f"{PREFIX}/config")
    async def get_config() -> Response:
        return success({"config": config_to_builtins(manager.config)})

    @app.put(f"{PREFIX}/config")
    async def put_config() -> Response:
        config = await _checked_member(
            "config", '{"config": {"global": {...}}}', parse_circuitbreaker
        )
        async with changes:
            await persist(config)
            updated = await manager.update_config(config)
        log.info(
            "config replaced through the API; breakers restarted: %s", ", ".join(updated) or "none"
        )
        return success(
            {
                "config": config_to_builtins(manager.config),
                "updated_services": updated,
                "updated_count": len(updated),
            }
        )

    @app.get(f"{PREFIX}/services")
    async def list_services() -> Response:
        names = manager.services()
        return success({"services": names, "count": len(names)})

    @app.get(f"{PREFIX}/services/<service:name>")
    async def one_service(name: str) -> Response:
        _check_name(name)
        try:
            stats = manager.service_stats(name)
        except UnknownServiceError as exc:
            raise ApiError(404, str(exc)) from None
        return success(stats)

    @app.put(f"{PREFIX}/services/<service:name>")
    async def put_profile(name: str) -> Response:
        _check_name(name)
        profile = await _checked_member(
            "profile", '{"profile": {"failure_threshold": 5}}', parse_profile
        )
        async with changes:
            current = manager.config
            await persist(
                msgspec.structs.replace(current, profiles={**current.profiles, name: profile})
            )
            effective = await manager.update_profile(name, profile)
        log.info("profile of %r replaced through the API", name)
        return success(
            {
                "service": name,
                "profile": config_to_builtins(profile),
                "effective": config_to_builtins(effective),
            }
        )

    @app.post(f"{PREFIX}/services/<path:name>/force")
    async def force(name: str) -> Response:
        _check_name(name)
        action, problems = _member(await _read_json(), "action", '{"action": "open"}')
        if all(p.path != "action" for p in problems) and action not in FORCE_ACTIONS:
            allowed = ", ".join(f'"{a}"' for a in FORCE_ACTIONS)
            shown = msgspec.json.encode(action).decode()
            problems.append(Problem("action", f"expected one of {allowed}, got {shown}"))
        if problems:
            raise _invalid(problems)
        try:
            stats = await manager.force(name, action)
        except UnknownServiceError as exc:
            raise ApiError(404, str(exc)) from None
        except ForceRefusedError as exc:
            raise ApiError(409, str(exc)) from None
        except CircuitBreakerError as exc:  # the engine has stopped
            raise ApiError(503, str(exc)) from None
        log.info("circuit %r forced %s through the API", name, action)
        return success({"service": name, "action": action, "stats": stats})

    return app
