"""Statistics of one breaker: an immutable snapshot built from the view its actor published."""

from __future__ import annotations

import datetime as dt

import msgspec
import trio

from ._actor import Cell, wall_clock_offset
from ._config import Settings
from ._policy import Mode, State, View, initial_view

__all__ = ["Stats", "fresh_stats", "stats_of"]


class Stats(msgspec.Struct, frozen=True, kw_only=True):
    """What a breaker has seen. Times are UTC; counts start at the breaker's creation."""

    name: str
    implementation_type: str
    state: State
    forced: str | None
    total_calls: int  # admitted calls that finished: successful_calls + failed_calls
    successful_calls: int
    failed_calls: int  # includes timeouts
    timeouts: int
    rejected_calls: int
    consecutive_failures: int
    half_open_successes: int
    in_flight: int
    failure_rate: float  # failed_calls / total_calls (0.0 before any call)
    state_changes: int
    last_state_change: dt.datetime | None
    last_failure: dt.datetime | None
    last_error: str | None
    opened_at: dt.datetime | None
    retry_after_seconds: float | None  # null unless open and counting down
    restarts: int
    error: str | None  # why the actor failed, in state "failed"
    settings: Settings


def stats_of(cell: Cell) -> Stats:
    """The statistics of a breaker in use."""
    return _stats(
        cell.name, cell.view, cell.clock_offset, cell.in_flight, cell.rejected, cell.restarts
    )


def fresh_stats(name: str, settings: Settings) -> Stats:
    """The statistics a breaker with ``settings`` would show before its first call."""
    return _stats(name, initial_view(settings), wall_clock_offset(), 0, 0, 0)


def _stats(
    name: str, view: View, offset: float, in_flight: int, rejected: int, restarts: int
) -> Stats:
    now = trio.current_time()

    def when(t: float | None) -> dt.datetime | None:
        return None if t is None else dt.datetime.fromtimestamp(t + offset, dt.UTC)

    retry_after = None
    if view.state is State.OPEN and view.forced is None and view.mode is not Mode.SHUTDOWN:
        retry_after = max(0.0, round(view.retry_at - now, 3))
    total = view.total_calls
    return Stats(
        name=name,
        implementation_type=view.settings.implementation_type,
        state=view.state,
        forced=view.forced,
        total_calls=total,
        successful_calls=view.successful_calls,
        failed_calls=view.failed_calls,
        timeouts=view.timeouts,
        rejected_calls=rejected,
        consecutive_failures=view.consecutive_failures,
        half_open_successes=view.half_open_successes,
        in_flight=in_flight,
        failure_rate=view.failed_calls / total if total else 0.0,
        state_changes=view.state_changes,
        last_state_change=when(view.last_state_change),
        last_failure=when(view.last_failure),
        last_error=view.last_error,
        opened_at=when(view.opened_at),
        retry_after_seconds=retry_after,
        restarts=restarts,
        error=view.error,
        settings=view.settings,
    )
