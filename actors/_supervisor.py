"""Supervision of one service: restarts on reconfiguration and on crash, a restart budget.

The supervisor nursery (owned by the manager) runs one :func:`supervise` task per service.
That task runs actor incarnations one after the other, so two never touch the same state:
a Reconfigure message ends an incarnation and the next one starts from the published view
with the new settings; a crash restarts from the view published before the batch that
crashed, and that batch is delivered again, so no message is lost. A service whose actor
crashes ``RESTART_LIMIT`` times within ``RESTART_WINDOW`` seconds is left *failed*: calls
pass straight through, until an operator reconfigures or forces it.
"""

from __future__ import annotations

import logging
from collections import deque
from typing import Final

import msgspec
import trio

from ._actor import Cell, Restart, run_actor
from ._exceptions import CircuitBreakerError, engine_stopped
from ._messages import Admit, Force, Message, Outcome, Reconfigure
from ._policy import Mode, State

__all__ = ["PASS_THROUGH", "RESTART_LIMIT", "RESTART_WINDOW", "SHUT_DOWN", "supervise"]

log = logging.getLogger("tripwire")

RESTART_LIMIT: Final = 5
RESTART_WINDOW: Final = 10.0


class _Answer:
    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return self.name


PASS_THROUGH: Final = _Answer("PASS_THROUGH")  # admission answer of a failed breaker
SHUT_DOWN: Final = _Answer("SHUT_DOWN")  # admission answer once the engine has stopped


async def supervise(cell: Cell) -> None:
    """Run the service's actor until cancelled, restarting it as needed."""
    start = Restart(cell.view.settings, None, [])
    crashes: deque[float] = deque()
    try:
        while True:
            try:
                start = await run_actor(cell, start)
            except Exception as exc:
                now = trio.current_time()
                crashes.append(now)
                while crashes[0] <= now - RESTART_WINDOW:
                    crashes.popleft()
                pending = start.reply if start.reply and not start.reply.answered else None
                settings = start.settings if pending else cell.view.settings
                start = Restart(settings, pending, cell.batch)
                if len(crashes) >= RESTART_LIMIT:
                    log.error(
                        "circuit %r: actor crashed %d times within %g s; state failed, "
                        "calls pass through until it is reconfigured or forced",
                        cell.name,
                        len(crashes),
                        RESTART_WINDOW,
                        exc_info=exc,
                    )
                    start = await _run_failed(cell, exc, start)
                    crashes.clear()
                else:
                    log.error("circuit %r: actor crashed; restarting", cell.name, exc_info=exc)
            cell.restarts += 1
    finally:
        _shut_down(cell)


def _drain(cell: Cell, batch: list[Message]) -> list[Message]:
    while True:
        try:
            batch.append(cell.receive.receive_nowait())
        except (trio.WouldBlock, trio.EndOfChannel):
            return batch


async def _run_failed(cell: Cell, exc: Exception, start: Restart) -> Restart:
    """Let calls pass through until a new Reconfigure or Force message comes.

    Outcomes of calls admitted before the failure are answered at once and kept for the
    next incarnation, so none is lost and no half-open trial slot stays taken. Messages
    that were already waiting when it failed do not restart it (they may be what keeps
    crashing it): a Force among them is refused, a Reconfigure is taken as the settings to
    restart with. A Force restarts with the settings in force, those of a reconfiguration
    that crashed included.
    """
    good = cell.view
    settings = start.settings
    error = f"{type(exc).__name__}: {exc}"

    def publish_failed() -> None:
        failed = msgspec.structs.replace(
            good, settings=settings, mode=Mode.PASS, state=State.FAILED, error=error
        )
        cell.publish(failed)

    publish_failed()
    cell.batch = []
    if start.reply is not None:
        start.reply.set(cell.view)
    kept: list[Message] = []

    def answered(message: Message) -> bool:
        """Answer an outcome (kept) or an admission (passed through)."""
        match message:
            case Outcome(reply=reply):
                if reply is not None:
                    reply.set()
                kept.append(message)
                return True
            case Admit(reply=reply):
                reply.set(PASS_THROUGH)
                return True
        return False

    for message in start.backlog:
        match message:
            case _ if answered(message):
                pass
            case Reconfigure(settings=new, reply=reply):
                settings = new
                publish_failed()
                reply.set(cell.view)
            case Force(reply=reply):
                refusal = f"circuit {cell.name!r} failed ({error}); force it again to retry"
                reply.set(CircuitBreakerError(cell.name, refusal))
    while True:
        batch = _drain(cell, [await cell.receive.receive()])
        for index, message in enumerate(batch):
            match message:
                case _ if answered(message):
                    pass
                case Reconfigure(settings=new, reply=reply):
                    cell.publish(good)
                    return Restart(new, reply, kept + batch[index + 1 :])
                case Force():
                    cell.publish(good)
                    return Restart(settings, None, kept + batch[index:])


def _shut_down(cell: Cell) -> None:
    """The engine is stopping: answer whoever waits, refuse what comes later."""
    cell.publish(msgspec.structs.replace(cell.view, mode=Mode.SHUTDOWN))
    for message in _drain(cell, cell.batch):
        match message:
            case Outcome(reply=reply):
                if reply is not None:
                    reply.set()
            case Admit(reply=reply):
                reply.set(SHUT_DOWN)
            case Force(reply=reply) | Reconfigure(reply=reply):
                reply.set(engine_stopped(cell.name))
    cell.batch = []
    cell.receive.close()
