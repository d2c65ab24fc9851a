"""What handles and the manager send to a breaker's actor, and how answers come back."""

from __future__ import annotations

from typing import Any

import msgspec
import trio

from ._config import Settings
from ._policy import Kind

__all__ = ["Admit", "Force", "Message", "Outcome", "Reconfigure", "Reply"]


class Reply:
    """A one-shot answer slot: the actor sets it once, the asker waits for it."""

    __slots__ = ("_event", "abandoned", "value")

    def __init__(self) -> None:
        self._event = trio.Event()
        self.value: Any = None
        self.abandoned = False  # the asker was cancelled before the answer came

    @property
    def answered(self) -> bool:
        return self._event.is_set()

    def set(self, value: Any = None) -> None:
        if not self._event.is_set():
            self.value = value
            self._event.set()

    async def wait(self) -> Any:
        await self._event.wait()
        return self.value


class _Message(msgspec.Struct, frozen=True, tag=True):
    pass


class Outcome(_Message, frozen=True):
    """An admitted call finished; ``reply`` is set when the caller waits for the actor."""

    epoch: int
    kind: Kind
    error: str | None = None
    reply: Reply | None = None


class Admit(_Message, frozen=True):
    """Ask for admission (half-open trial slots are the actor's to give)."""

    reply: Reply


class Force(_Message, frozen=True):
    action: str
    reply: Reply


class Reconfigure(_Message, frozen=True):
    """Restart the actor with new settings, keeping state."""

    settings: Settings
    reply: Reply


Message = Outcome | Admit | Force | Reconfigure
