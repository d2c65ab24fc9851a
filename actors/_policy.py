"""The state machine of one breaker, as plain code over explicit ``now`` values.

No trio and no I/O here: the actor (``_actor.py``) feeds it messages and the time, and
publishes the immutable :class:`View` it produces. Everything a breaker knows is in the
view, so a new actor incarnation (after a reconfiguration or a crash) continues from it.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Callable
from typing import Final

import msgspec

from ._config import Settings

__all__ = ["Breaker", "Kind", "Mode", "Rejection", "State", "View", "initial_view"]

INF: Final = math.inf


class State(enum.StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"
    FAILED = "failed"


class Kind(enum.IntEnum):
    """What became of an admitted call."""

    SUCCESS = 0
    FAILURE = 1
    TIMEOUT = 2
    CANCELLED = 3  # cancelled from outside: neither success nor failure


class Mode(enum.IntEnum):
    """How a handle treats a call, read from the view without asking the actor."""

    CLOSED = 0  # admit at once, apply the timeout, report the outcome
    OPEN = 1  # reject until retry_at; from then on ask the actor
    ASK = 2  # half-open: the actor rations trial slots
    NOOP = 3  # admit, no timeout, report the outcome for statistics only
    PASS = 4  # failed: admit, no timeout, nothing reported
    SHUTDOWN = 5  # the engine has stopped


class Rejection(msgspec.Struct, frozen=True):
    retry_after: float | None
    reason: str


class View(msgspec.Struct, frozen=True, kw_only=True):
    """An immutable snapshot of one breaker, published by its actor after each batch."""

    settings: Settings
    mode: Mode = Mode.CLOSED
    state: State = State.CLOSED
    forced: str | None = None
    epoch: int = 0
    retry_at: float = INF  # trio time the open period ends (INF: not known)
    opened_at: float | None = None
    consecutive_failures: int = 0
    half_open_successes: int = 0
    trials: int = 0  # half-open trial calls in flight
    total_calls: int = 0
    successful_calls: int = 0
    failed_calls: int = 0
    timeouts: int = 0
    state_changes: int = 0
    last_state_change: float | None = None
    last_failure: float | None = None
    last_error: str | None = None
    error: str | None = None  # why the actor failed (state "failed")


def initial_view(settings: Settings) -> View:
    """The view of a breaker that has seen nothing yet."""
    return View(settings=settings, mode=_mode(settings, State.CLOSED))


def _mode(settings: Settings, state: State) -> Mode:
    if settings.implementation_type == "noop":
        return Mode.NOOP
    return {State.CLOSED: Mode.CLOSED, State.OPEN: Mode.OPEN}.get(state, Mode.ASK)


Listener = Callable[[State, State, str], None]


class Breaker:
    """The mutable state machine an actor owns. Build it from a view; publish with view()."""

    __slots__ = (
        "_listener",
        "consecutive_failures",
        "epoch",
        "failed_calls",
        "forced",
        "half_open_successes",
        "last_error",
        "last_failure",
        "last_state_change",
        "opened_at",
        "retry_at",
        "settings",
        "state",
        "state_changes",
        "successful_calls",
        "timeouts",
        "total_calls",
        "trials",
    )

    def __init__(
        self, view: View, settings: Settings, now: float, listener: Listener | None = None
    ) -> None:
        self._listener = listener
        self.settings = settings
        self.state: State = view.state
        self.forced: str | None = view.forced
        self.epoch: int = view.epoch
        self.retry_at: float = view.retry_at
        self.opened_at: float | None = view.opened_at
        self.consecutive_failures: int = view.consecutive_failures
        self.half_open_successes: int = view.half_open_successes
        self.trials: int = view.trials
        self.total_calls: int = view.total_calls
        self.successful_calls: int = view.successful_calls
        self.failed_calls: int = view.failed_calls
        self.timeouts: int = view.timeouts
        self.state_changes: int = view.state_changes
        self.last_state_change: float | None = view.last_state_change
        self.last_failure: float | None = view.last_failure
        self.last_error: str | None = view.last_error
        self._apply_settings(view.settings, now)

    # --- what the actor asks ------------------------------------------------------------

    @property
    def deadline(self) -> float:
        """The trio time at which the breaker changes state by itself (INF: none)."""
        return self.retry_at if self.state is State.OPEN else INF

    def view(self) -> View:
        return View(
            settings=self.settings,
            mode=_mode(self.settings, self.state),
            state=self.state,
            forced=self.forced,
            epoch=self.epoch,
            retry_at=self.retry_at if self.state is State.OPEN else INF,
            opened_at=self.opened_at,
            consecutive_failures=self.consecutive_failures,
            half_open_successes=self.half_open_successes,
            trials=self.trials,
            total_calls=self.total_calls,
            successful_calls=self.successful_calls,
            failed_calls=self.failed_calls,
            timeouts=self.timeouts,
            state_changes=self.state_changes,
            last_state_change=self.last_state_change,
            last_failure=self.last_failure,
            last_error=self.last_error,
        )

    def tick(self, now: float) -> None:
        """Make the transitions that are due by ``now`` (open -> half_open)."""
        if self.state is State.OPEN and now >= self.retry_at:
            self._to(State.HALF_OPEN, now, "reset_timeout passed")

    def admit(self, now: float) -> int | Rejection:
        """Admit a call (return the epoch it belongs to) or reject it."""
        self.tick(now)
        state = self.state
        if state is State.CLOSED:  # noop breakers are always closed
            return self.epoch
        if state is State.HALF_OPEN:
            if self.trials < self.settings.success_threshold:
                self.trials += 1
                return self.epoch
            return Rejection(None, "half-open with every trial slot taken")
        if self.forced:
            return Rejection(None, "forced open")
        return Rejection(self.retry_at - now, "open")

    def record(self, epoch: int, kind: Kind, error: str | None, now: float) -> None:
        """Take the outcome of a call admitted in ``epoch``."""
        current = epoch == self.epoch
        if current and self.state is State.HALF_OPEN:
            self.trials -= 1
        if kind is Kind.CANCELLED:
            return
        self.total_calls += 1
        if kind is Kind.SUCCESS:
            self.successful_calls += 1
        else:
            self.failed_calls += 1
            self.timeouts += kind is Kind.TIMEOUT
            self.last_failure = now
            self.last_error = error
        if not current or self.settings.implementation_type == "noop":
            return  # an earlier epoch's outcome: statistics only
        if kind is Kind.SUCCESS:
            self.consecutive_failures = 0
            if self.state is State.HALF_OPEN:
                self.half_open_successes += 1
                self._close_if_enough(now, "trial calls succeeded")
            return
        self.consecutive_failures += 1
        if self.state is State.HALF_OPEN:
            self._to(State.OPEN, now, f"a trial call failed: {error}")
        else:
            self._open_if_enough(now)

    def force(self, action: str, now: float) -> bool:
        """Apply an operator's force action; False when forcing is refused (noop)."""
        if self.settings.implementation_type == "noop":
            return False
        self.forced = "open" if action == "open" else None
        self._to(State(action), now, f"forced {action}")
        return True

    # --- inside ---------------------------------------------------------------------------

    def _apply_settings(self, old: Settings, now: float) -> None:
        """Bring the state in line with (possibly new) settings, keeping what is known."""
        new = self.settings
        if new.implementation_type != old.implementation_type:
            self.forced = None
            if self.state is not State.CLOSED:
                self._to(State.CLOSED, now, f"implementation_type is now {new.implementation_type}")
            else:
                self.epoch += 1
                self.consecutive_failures = 0  # the state machine starts afresh
            return
        if new.implementation_type == "noop":
            return
        if self.state is State.OPEN and not self.forced and self.opened_at is not None:
            self.retry_at = self.opened_at + new.reset_timeout.seconds
            self.tick(now)
        elif self.state is State.CLOSED:
            self._open_if_enough(now)
        elif self.state is State.HALF_OPEN:
            self._close_if_enough(now, "success_threshold reached")

    def _open_if_enough(self, now: float) -> None:
        if self.consecutive_failures >= self.settings.failure_threshold:
            reason = f"{self.consecutive_failures} consecutive failures"
            self._to(State.OPEN, now, f"{reason}, last: {self.last_error}")

    def _close_if_enough(self, now: float, reason: str) -> None:
        if self.half_open_successes >= self.settings.success_threshold:
            self._to(State.CLOSED, now, f"{self.half_open_successes} {reason}")

    def _to(self, state: State, now: float, reason: str) -> None:
        old = self.state
        self.state = state
        self.epoch += 1
        self.trials = 0
        self.half_open_successes = 0
        if state is State.OPEN:
            self.opened_at = now
            self.retry_at = INF if self.forced else now + self.settings.reset_timeout.seconds
        elif state is State.CLOSED:
            self.opened_at = None
            self.consecutive_failures = 0
        if old is not state:
            self.state_changes += 1
            self.last_state_change = now
        if self._listener is not None:
            self._listener(old, state, reason)
