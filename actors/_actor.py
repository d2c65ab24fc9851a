"""A breaker's actor: the only writer of its state.

Each service has a :class:`Cell`, owned by the supervisor: the mailbox (a memory channel),
the latest published :class:`~actors._policy.View`, and what the handles count themselves
(calls in flight, rejections, successes that cannot change the state). An actor *incarnation*
(:func:`run_actor`) takes messages from the cell's mailbox in batches, applies them to a
:class:`~actors._policy.Breaker`, publishes the new view, and sleeps until the next message
or its next deadline. Because the mailbox and the view belong to the cell, a new
incarnation continues exactly where the previous one stopped.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable

import msgspec
import trio

from ._config import Settings
from ._exceptions import ForceRefusedError
from ._messages import Admit, Force, Message, Outcome, Reconfigure, Reply
from ._policy import Breaker, State, View, initial_view

__all__ = ["Cell", "Restart", "run_actor", "wall_clock_offset"]

log = logging.getLogger("tripwire")


class Cell:
    """Everything about one service that outlives an actor incarnation.

    Successes that cannot change the state (see ``_breaker._succeeded``) are not sent to
    the actor: the handle adds them to ``successes``, and ``view`` shows the published
    view with them counted. The actor folds them into its breaker when it publishes
    (:meth:`publish` takes them as counted). ``quiet`` is False while a failure report
    may be on its way to the actor: successes must then queue up behind it.
    """

    __slots__ = (
        "batch",
        "clock_offset",
        "in_flight",
        "name",
        "published",
        "quiet",
        "receive",
        "rejected",
        "restarts",
        "send",
        "successes",
    )

    def __init__(self, name: str, settings: Settings) -> None:
        send, receive = trio.open_memory_channel[Message](math.inf)
        self.name = name
        self.send = send
        self.receive = receive
        self.published = initial_view(settings)  # as the actor published it
        self.clock_offset = wall_clock_offset()  # shows trio times as UTC, stably
        self.successes = 0  # successes counted by handles since it was published
        self.quiet = True  # no failure reported since the actor last emptied its mailbox
        self.batch: list[Message] = []  # what the running incarnation is working on
        self.in_flight = 0  # admitted calls not finished, kept by the handles
        self.rejected = 0  # rejections, counted by the handles that raise them
        self.restarts = 0  # incarnations after the first, kept by the supervisor

    @property
    def view(self) -> View:
        """The latest state: the published view and the successes counted since."""
        view, successes = self.published, self.successes
        if not successes:
            return view
        return msgspec.structs.replace(
            view,
            total_calls=view.total_calls + successes,
            successful_calls=view.successful_calls + successes,
        )

    def publish(self, view: View) -> None:
        """Make ``view`` the published one. It must count every success the handles
        counted so far (``view`` read just before, or the actor's own after folding)."""
        self.published = view
        self.successes = 0


def _publish(cell: Cell, breaker: Breaker) -> None:
    """Publish the breaker's view, with the successes the handles counted meanwhile."""
    successes = cell.successes
    if successes:
        breaker.total_calls += successes
        breaker.successful_calls += successes
    cell.publish(breaker.view())


def wall_clock_offset() -> float:
    """What to add to a trio time to get a Unix time."""
    return time.time() - trio.current_time()


class Restart:
    """Why an incarnation returned: new settings, the reply to give once they are in
    force, and the messages it had not handled yet."""

    __slots__ = ("backlog", "reply", "settings")

    def __init__(self, settings: Settings, reply: Reply | None, backlog: list[Message]) -> None:
        self.settings = settings
        self.reply = reply
        self.backlog = backlog


def _listener(name: str) -> Callable[[State, State, str], None]:
    def changed(old: State, new: State, reason: str) -> None:
        if old is new:
            log.info("circuit %r: %s again (%s)", name, new.value, reason)
        else:
            log.info("circuit %r: %s -> %s (%s)", name, old.value, new.value, reason)

    return changed


async def run_actor(cell: Cell, start: Restart) -> Restart:
    """Run one incarnation until a Reconfigure message asks for a restart.

    An exception escaping from here is a crash: ``cell.view`` is still the state from
    before the batch that crashed, and ``cell.batch`` holds that batch.
    """
    cell.batch = start.backlog
    now = trio.current_time()
    breaker = Breaker(cell.view, start.settings, now, _listener(cell.name))
    cell.publish(breaker.view())
    if start.reply is not None:
        start.reply.set(cell.view)
    receive = cell.receive
    batch = start.backlog
    while True:
        if not batch:
            deadline = breaker.deadline
            if deadline == math.inf:
                batch = [await receive.receive()]
            else:
                with trio.move_on_at(deadline):
                    batch = [await receive.receive()]
            while True:
                try:
                    batch.append(receive.receive_nowait())
                except trio.WouldBlock:
                    break
        cell.batch = batch
        now = trio.current_time()
        breaker.tick(now)
        for index, message in enumerate(batch):
            match message:
                case Outcome(epoch=epoch, kind=kind, error=error, reply=reply):
                    breaker.record(epoch, kind, error, now)
                    if reply is not None:
                        reply.set()
                case Admit(reply=reply):
                    if reply.abandoned:
                        continue
                    reply.set(breaker.admit(now))
                case Force(action=action, reply=reply):
                    ok = breaker.force(action, now)
                    reply.set(None if ok else ForceRefusedError(cell.name))
                case Reconfigure(settings=settings, reply=reply):
                    _publish(cell, breaker)
                    cell.batch = []
                    return Restart(settings, reply, batch[index + 1 :])
        _publish(cell, breaker)
        cell.quiet = True  # every failure reported so far has been taken into account
        cell.batch = batch = []
