"""The handle callers hold: :class:`CircuitBreaker`.

A handle addresses a service's cell (mailbox + published view), never an actor
incarnation, so it stays valid across reconfigurations and restarts. It runs the
operation in the caller's task. What it may decide alone, from the view:

- closed: admit at once; report a success without waiting (counted in the cell when it
  cannot change the state, else ``send_nowait``); report a failure and wait for the
  actor's acknowledgement, so that a caller calling one call after another sees exact
  thresholds;
- open, before the reset deadline: reject at once;
- half-open, or open past its deadline: ask the actor, which alone rations trial slots.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Awaitable, Callable
from types import CoroutineType, TracebackType
from typing import Any, Final, ParamSpec, TypeVar, TypeVarTuple, Unpack

import trio

from ._actor import Cell
from ._exceptions import CircuitOpenError, OperationTimeoutError, engine_stopped
from ._messages import Admit, Outcome, Reply
from ._policy import Kind, Mode, Rejection, View
from ._stats import Stats, stats_of
from ._supervisor import PASS_THROUGH, SHUT_DOWN

__all__ = ["CircuitBreaker"]

T = TypeVar("T")
P = ParamSpec("P")
Ts = TypeVarTuple("Ts")

_SUCCESS = Kind.SUCCESS
_CLOSED = Mode.CLOSED
_OPEN = Mode.OPEN
_NO_REPORT = -1  # the epoch of a call nobody counts (failed breaker)


def _describe(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


async def _report_and_wait(cell: Cell, epoch: int, kind: Kind, error: str) -> None:
    """Report a failure and wait until the actor has taken it into account."""
    reply = Reply()
    cell.quiet = False  # successes must now queue up behind this failure (_succeeded)
    try:
        cell.send.send_nowait(Outcome(epoch, kind, error, reply))
    except trio.BrokenResourceError:
        return  # the engine has stopped; nobody counts any more
    await reply.wait()


def _report(cell: Cell, epoch: int, kind: Kind) -> None:
    try:
        cell.send.send_nowait(Outcome(epoch, kind))
    except trio.BrokenResourceError:
        pass


def _succeeded(cell: Cell, epoch: int) -> None:
    """Report the success of a call admitted in closed ``epoch``.

    A success only resets the consecutive failures of its epoch. When the latest view is
    closed and there is nothing to reset (no failure counted, none on its way to the
    actor) or the epoch has already ended, the success changes statistics only: count it
    in the cell, where the view shows it at once and the actor folds it in, without a
    message or a wake-up. Otherwise send it, so it takes effect in order with the
    failures before it.
    """
    view = cell.published
    if (
        view.mode is _CLOSED
        and cell.quiet
        and (view.consecutive_failures == 0 or view.epoch != epoch)
    ):
        cell.successes += 1
        return
    try:
        cell.send.send_nowait(Outcome(epoch, _SUCCESS))
    except trio.BrokenResourceError:
        pass


def _call(fn: Callable[[Unpack[Ts]], Awaitable[T]], args: tuple[*Ts]) -> Awaitable[T]:
    """``fn(*args)``, which must give something to await.

    Nothing of an async function runs until it is awaited, so an exception here (wrong
    arguments, a sync function) is a mistake in the call, not an outcome of the service:
    it propagates without being counted.
    """
    awaitable = fn(*args)
    if type(awaitable) is CoroutineType or inspect.isawaitable(awaitable):
        return awaitable
    raise TypeError(
        f"{fn!r} returned {type(awaitable).__name__}, not an awaitable: pass an async "
        "function and its arguments, as in execute(fn, *args)"
    )


_YIELD_EVERY: Final = 64


async def _rejection_point(cell: Cell) -> None:
    """Where a rejection decided from the view checks for cancellation, and lets other
    tasks run every ``_YIELD_EVERY`` rejections of the breaker.

    A full schedule point costs more than the whole rejection (docs/benchmarks.md), so
    most rejections only check for cancellation; yielding now and then keeps a loop that
    retries without sleeping from freezing the rest of the program until ``retry_at``.
    """
    if cell.rejected % _YIELD_EVERY:
        await trio.lowlevel.checkpoint_if_cancelled()
    else:
        await trio.lowlevel.checkpoint()


class CircuitBreaker:
    """A handle on one service's breaker. Get it from ``manager.get_circuit_breaker``."""

    __slots__ = ("_cell", "name")

    def __init__(self, cell: Cell) -> None:
        self._cell = cell
        self.name = cell.name

    def __repr__(self) -> str:
        return f"<CircuitBreaker {self.name!r} {self._cell.view.state.value}>"

    async def execute(self, fn: Callable[[Unpack[Ts]], Awaitable[T]], *args: *Ts) -> T:
        """Run ``await fn(*args)`` through the breaker and return its result.

        Raises the operation's own exception unchanged, :class:`OperationTimeoutError`
        when it ran past ``operation_timeout``, or :class:`CircuitOpenError` when the
        breaker did not admit the call.
        """
        cell = self._cell
        view = cell.published
        mode = view.mode
        if mode is not _CLOSED:
            if mode is _OPEN:
                # Open, before its deadline: reject here, without an object or a round trip.
                now = trio.current_time()
                if now < view.retry_at:
                    await _rejection_point(cell)
                    raise _rejected(cell, view, now)
            async with _Guard(cell) as guard:
                try:
                    awaitable = _call(fn, args)
                except BaseException:
                    guard.void()
                    raise
                return await awaitable
        # The hot path: closed, decided from the view with no round trip.
        epoch = view.epoch
        timeout = view.settings.operation_timeout.seconds
        awaitable = _call(fn, args)
        cell.in_flight += 1
        try:
            with trio.CancelScope(deadline=trio.current_time() + timeout) as scope:
                result = await awaitable
        except Exception as exc:
            await _report_and_wait(cell, epoch, Kind.FAILURE, _describe(exc))
            raise
        finally:
            cell.in_flight -= 1
        if scope.cancelled_caught:
            await _report_and_wait(cell, epoch, Kind.TIMEOUT, f"timed out after {timeout:g} s")
            raise OperationTimeoutError(self.name, timeout)
        _succeeded(cell, epoch)
        return result

    def guard(self) -> _Guard:
        """``async with breaker.guard(): ...`` runs a block under the same rules as
        :meth:`execute`: admission, ``operation_timeout``, and its outcome reported."""
        return _Guard(self._cell)

    def protect(self, fn: Callable[P, Awaitable[T]]) -> Callable[P, Awaitable[T]]:
        """Decorate an async function so every call goes through this breaker."""

        @functools.wraps(fn)
        async def protected(*args: P.args, **kwargs: P.kwargs) -> T:
            if kwargs:
                return await self.execute(functools.partial(fn, *args, **kwargs))
            return await self.execute(fn, *args)

        return protected

    def stats(self) -> Stats:
        """A snapshot of the breaker's statistics, from the view its actor published."""
        return stats_of(self._cell)


class _Guard:
    """Admission, timeout and outcome around a block; the general (not hot) path."""

    __slots__ = ("_cell", "_closed", "_entered", "_epoch", "_scope", "_timeout", "_void")

    def __init__(self, cell: Cell) -> None:
        self._cell = cell
        self._scope: trio.CancelScope | None = None
        self._void = False
        self._entered = False

    async def _admit(self) -> None:
        if self._entered:
            raise RuntimeError("a guard is entered once: use breaker.guard() for each block")
        self._entered = True
        cell = self._cell
        view = cell.published
        mode = view.mode
        self._closed = mode is Mode.CLOSED
        if mode is Mode.OPEN and (now := trio.current_time()) < view.retry_at:
            await _rejection_point(cell)
            raise _rejected(cell, view, now)
        await trio.lowlevel.checkpoint_if_cancelled()
        if mode is Mode.OPEN or mode is Mode.ASK:
            epoch = await _ask(cell)
            if epoch is PASS_THROUGH:
                mode = Mode.PASS
        elif mode is Mode.SHUTDOWN:
            raise engine_stopped(cell.name)
        else:
            epoch = view.epoch
        if mode is Mode.PASS:
            self._epoch = _NO_REPORT
        else:
            self._epoch = epoch
        cell.in_flight += 1
        if mode is not Mode.NOOP and mode is not Mode.PASS:
            self._timeout = cell.published.settings.operation_timeout.seconds
            self._scope = trio.CancelScope(deadline=trio.current_time() + self._timeout)
            self._scope.__enter__()

    async def __aenter__(self) -> _Guard:
        await self._admit()
        return self

    def void(self) -> None:
        """Count the block as not run (it never started an operation)."""
        self._void = True

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool:
        cell = self._cell
        cell.in_flight -= 1
        scope = self._scope
        if scope is not None:
            try:
                scope.__exit__(exc_type, exc, tb)
            except BaseException as leftover:  # what the scope did not catch, re-raised
                await self._outcome(leftover)
                raise
            if scope.cancelled_caught:
                timeout = self._timeout
                await _report_and_wait(
                    cell, self._epoch, Kind.TIMEOUT, f"timed out after {timeout:g} s"
                )
                raise OperationTimeoutError(cell.name, timeout)
        await self._outcome(exc)
        return False

    async def _outcome(self, exc: BaseException | None) -> None:
        cell = self._cell
        epoch = self._epoch
        if epoch == _NO_REPORT:
            return
        if self._void:
            _report(cell, epoch, Kind.CANCELLED)  # counts nothing, gives back a trial slot
        elif exc is None:
            if self._closed:
                _succeeded(cell, epoch)
            else:
                _report(cell, epoch, Kind.SUCCESS)
        elif isinstance(exc, Exception):
            await _report_and_wait(cell, epoch, Kind.FAILURE, _describe(exc))
        else:
            _report(cell, epoch, Kind.CANCELLED)  # gives back a half-open trial slot


def _rejected(cell: Cell, view: View, now: float) -> CircuitOpenError:
    """Count a rejection decided from an open view; a new exception every time."""
    cell.rejected += 1
    if view.forced:
        return CircuitOpenError(cell.name, None, reason="forced open")
    return CircuitOpenError(cell.name, view.retry_at - now)


async def _ask(cell: Cell) -> Any:
    """Ask the actor for admission: an epoch, PASS_THROUGH, or raise."""
    reply = Reply()
    try:
        cell.send.send_nowait(Admit(reply))
    except trio.BrokenResourceError:
        raise engine_stopped(cell.name) from None
    try:
        answer = await reply.wait()
    except BaseException:
        if not reply.answered:
            reply.abandoned = True
        elif type(reply.value) is int:
            _report(cell, reply.value, Kind.CANCELLED)  # give the trial slot back
        raise
    if type(answer) is int or answer is PASS_THROUGH:
        return answer
    if isinstance(answer, Rejection):
        cell.rejected += 1  # counted here: a caller cancelled before its answer counts nothing
        raise CircuitOpenError(cell.name, answer.retry_after, reason=answer.reason)
    assert answer is SHUT_DOWN, answer
    raise engine_stopped(cell.name)
