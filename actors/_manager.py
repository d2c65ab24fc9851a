"""The manager: the registry of services, the config in force, the facade for callers and
the web layer. :func:`open_circuit_breakers` owns the supervisor nursery."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any, Final

import msgspec
import trio

from ._actor import Cell
from ._breaker import CircuitBreaker
from ._config import (
    CircuitBreakerConfig,
    Config,
    Profile,
    Settings,
    parse_circuitbreaker,
    parse_profile,
    validate_service_name,
)
from ._exceptions import ForceRefusedError, UnknownServiceError, engine_stopped
from ._messages import Force, Reconfigure, Reply
from ._stats import Stats, fresh_stats, stats_of
from ._supervisor import supervise

__all__ = [
    "FORCE_ACTIONS",
    "CircuitBreakerManager",
    "open_circuit_breaker",
    "open_circuit_breakers",
]

FORCE_ACTIONS: Final = ("open", "closed", "half_open")


class CircuitBreakerManager:
    """Breakers by service name. Made by :func:`open_circuit_breakers`."""

    def __init__(self, nursery: trio.Nursery, config: CircuitBreakerConfig) -> None:
        self._nursery = nursery
        self._config = config
        self._cells: dict[str, Cell] = {}
        self._handles: dict[str, CircuitBreaker] = {}
        self._closed = False

    def _check_running(self, name: str = "") -> None:
        if self._closed:
            raise engine_stopped(name)

    @property
    def config(self) -> CircuitBreakerConfig:
        """The configuration in force."""
        return self._config

    def services(self) -> list[str]:
        """The services in use (a breaker has been created for them), sorted."""
        return sorted(self._cells)

    def is_known(self, name: str) -> bool:
        """In use, or has a profile."""
        return name in self._cells or name in self._config.profiles

    async def get_circuit_breaker(self, name: str) -> CircuitBreaker:
        """The handle of ``name``'s breaker, created on first use; always the same one."""
        await trio.lowlevel.checkpoint()
        return self._breaker(name)

    def _breaker(self, name: str) -> CircuitBreaker:
        handle = self._handles.get(name)
        if handle is None:
            self._check_running(name)
            validate_service_name(name)
            cell = Cell(name, self._config.settings_for(name))
            self._nursery.start_soon(supervise, cell, name=f"tripwire:{name}")
            self._cells[name] = cell
            handle = self._handles[name] = CircuitBreaker(cell)
        return handle

    def stats(self) -> dict[str, Stats]:
        """Statistics of every breaker in use, by name."""
        return {name: stats_of(self._cells[name]) for name in sorted(self._cells)}

    def service_stats(self, name: str) -> Stats:
        """Statistics of one breaker. A known service not in use yet shows a fresh breaker."""
        validate_service_name(name)
        cell = self._cells.get(name)
        if cell is not None:
            return stats_of(cell)
        if name in self._config.profiles:
            return fresh_stats(name, self._config.settings_for(name))
        raise UnknownServiceError(name)

    async def update_config(self, config: CircuitBreakerConfig | Mapping[str, Any]) -> list[str]:
        """Put ``config`` in force; restart the breakers whose settings changed (state kept).

        Returns the names of those breakers. ``config`` (a Struct or a mapping like the
        TOML ``[circuitbreaker]`` table) is checked whole first; on any problem
        :class:`ConfigError` and nothing changes.
        """
        self._check_running()
        config = parse_circuitbreaker(config)
        old, self._config = self._config, config
        replies: list[Reply] = []
        changed = []
        for name, cell in sorted(self._cells.items()):
            settings = config.settings_for(name)
            if settings != old.settings_for(name):
                changed.append(name)
                reply = Reply()
                replies.append(reply)
                cell.send.send_nowait(Reconfigure(settings, reply))
        for reply in replies:
            if not reply.answered:  # waiting on an answered reply still costs a scheduler pass
                await reply.wait()
            if isinstance(reply.value, Exception):
                raise reply.value  # the engine stopped before the change was applied
        await trio.lowlevel.checkpoint()
        return changed

    async def update_profile(self, name: str, profile: Profile | Mapping[str, Any]) -> Settings:
        """Replace ``name``'s profile (fields left out come from global); return the
        settings now in force for it."""
        validate_service_name(name)
        profile = parse_profile(profile, f"circuitbreaker.profiles.{name}")
        profiles = {**self._config.profiles, name: profile}
        await self.update_config(msgspec.structs.replace(self._config, profiles=profiles))
        return self._config.settings_for(name)

    async def force(self, name: str, action: str) -> Stats:
        """Force ``name``'s breaker ``"open"``, ``"closed"`` or ``"half_open"``."""
        if action not in FORCE_ACTIONS:
            raise ValueError(f"unknown force action {action!r}; expected one of {FORCE_ACTIONS}")
        self._check_running(name)
        validate_service_name(name)
        if not self.is_known(name):
            raise UnknownServiceError(name)
        if self._config.settings_for(name).implementation_type == "noop":
            raise ForceRefusedError(name)  # before a breaker is created for it
        cell = self._breaker(name)._cell
        reply = Reply()
        cell.send.send_nowait(Force(action, reply))
        error = await reply.wait()
        if isinstance(error, Exception):
            raise error
        return stats_of(cell)


def _circuitbreaker_config(
    config: Config | CircuitBreakerConfig | None,
) -> CircuitBreakerConfig:
    if config is None:
        return CircuitBreakerConfig()
    if isinstance(config, Config):
        config = config.circuitbreaker
    return parse_circuitbreaker(config)  # checks a config built in Python


@asynccontextmanager
async def open_circuit_breakers(
    config: Config | CircuitBreakerConfig | None = None,
) -> AsyncIterator[CircuitBreakerManager]:
    """Run the circuit-breaker engine: a supervisor nursery whose actors are started on
    first use. Leaving the block stops them: calls running then finish normally, later
    calls raise :class:`CircuitBreakerError`."""
    try:
        async with trio.open_nursery() as nursery:
            manager = CircuitBreakerManager(nursery, _circuitbreaker_config(config))
            try:
                yield manager
            finally:
                manager._closed = True
                nursery.cancel_scope.cancel()
    except BaseExceptionGroup as group:
        # The actors never raise (their supervisor catches everything), so a group holds
        # what the block raised: hand that on as it was, not wrapped by the nursery.
        if len(group.exceptions) != 1:
            raise
        exc = group.exceptions[0]
        cause, context, suppress = exc.__cause__, exc.__context__, exc.__suppress_context__
        try:
            raise exc
        finally:  # undo what raising it here wrote into it
            exc.__cause__, exc.__context__ = cause, context
            exc.__suppress_context__ = suppress
            del exc, group


@asynccontextmanager
async def open_circuit_breaker(
    name: str, settings: Settings | Mapping[str, Any] | None = None
) -> AsyncIterator[CircuitBreaker]:
    """One breaker without a manager of your own; ``settings`` as in ``[circuitbreaker.global]``."""
    if settings is None:
        settings = Settings()
    elif not isinstance(settings, Settings):
        settings = parse_circuitbreaker({"global": dict(settings)}).global_
    async with open_circuit_breakers(CircuitBreakerConfig(global_=settings)) as manager:
        yield await manager.get_circuit_breaker(name)
