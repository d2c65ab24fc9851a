"""The real actor-backed breaker against a small reference model (hypothesis).

The rules of :class:`BreakerComparison` step the reference model (plain Python, written
from CONTRACT.md §2 and §4, independent of ``actors/_policy.py``) and write down each step
with the state the model expects after it. At the end of an example, one ``trio.run`` on a
mock clock replays the steps on a real breaker run by a manager, and after every step
compares its statistics with the model's.

Time is explicit: calls whose operation never ends time out at their deadline, and the
model processes everything due (timeouts, open -> half_open) in time order, with the
state change due at an instant taken before the outcomes reported at that instant.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import hypothesis.strategies as st
import trio
import trio.testing
from hypothesis import HealthCheck, settings
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from actors import (
    CircuitBreaker,
    CircuitBreakerConfig,
    CircuitBreakerError,
    CircuitBreakerManager,
    CircuitOpenError,
    Duration,
    OperationTimeoutError,
    Settings,
    open_circuit_breakers,
)

NAME = "svc"
SETTINGS = [
    Settings(
        failure_threshold=1,
        operation_timeout=Duration(500),
        reset_timeout=Duration(1_000),
        success_threshold=1,
    ),
    Settings(
        failure_threshold=2,
        operation_timeout=Duration(2_000),
        reset_timeout=Duration(4_000),
        success_threshold=2,
    ),
    Settings(
        failure_threshold=3,
        operation_timeout=Duration(500),
        reset_timeout=Duration(10_000),
        success_threshold=3,
    ),
    Settings(
        implementation_type="noop",
        failure_threshold=2,
        operation_timeout=Duration(500),
        reset_timeout=Duration(1_000),
        success_threshold=1,
    ),
]
MAX_HELD = 3


class Boom(Exception):
    pass


# --- the reference model --------------------------------------------------------------


@dataclass
class Call:
    """A call the model admitted and that has not finished."""

    number: int
    period: int  # the model's state period at admission
    deadline: float | None  # None: no timeout applies (noop)


@dataclass
class Model:
    settings: Settings
    now: float = 0.0
    state: str = "closed"
    forced: bool = False
    period: int = 0
    opened_at: float | None = None
    retry_at: float | None = None  # None while forced open or not open
    consecutive_failures: int = 0
    half_open_successes: int = 0
    trials: int = 0
    total: int = 0
    successful: int = 0
    failed: int = 0
    timeouts: int = 0
    rejected: int = 0
    state_changes: int = 0
    restarts: int = 0
    calls: dict[int, Call] = field(default_factory=dict)

    @property
    def noop(self) -> bool:
        return self.settings.implementation_type == "noop"

    # transitions

    def _enter(self, state: str) -> None:
        if state != self.state:
            self.state_changes += 1
        self.state = state
        self.period += 1
        self.trials = 0
        self.half_open_successes = 0
        if state == "open":
            self.opened_at = self.now
            self.retry_at = None if self.forced else self.now + self.settings.reset_timeout.seconds
        else:
            self.retry_at = None
        if state == "closed":
            self.opened_at = None
            self.consecutive_failures = 0

    def _tick(self) -> None:
        if self.state == "open" and self.retry_at is not None and self.now >= self.retry_at:
            self._enter("half_open")

    def advance_to(self, target: float) -> None:
        """Let time pass, handling what falls due in order."""
        while True:
            due = [c.deadline for c in self.calls.values() if c.deadline is not None]
            if self.state == "open" and self.retry_at is not None:
                due.append(self.retry_at)
            when = min(due, default=math.inf)
            if when > target:
                break
            self.now = when
            self._tick()
            for call in sorted(self.calls.values(), key=lambda c: c.number):
                if call.deadline == when:
                    self.finish(call.number, "timeout")
        self.now = target
        self._tick()

    # calls

    def admit(self, number: int) -> tuple[str, float | None] | None:
        """Admit call ``number`` (None) or say how it is rejected."""
        deadline = self.now + self.settings.operation_timeout.seconds
        if self.noop:
            deadline_or_none = None
        elif self.state == "closed":
            deadline_or_none = deadline
        elif self.state == "half_open" and self.trials < self.settings.success_threshold:
            self.trials += 1
            deadline_or_none = deadline
        else:
            self.rejected += 1
            if self.state == "open" and self.retry_at is not None:
                return ("rejected", self.retry_at - self.now)
            return ("rejected", None)
        self.calls[number] = Call(number, self.period, deadline_or_none)
        return None

    def finish(self, number: int, outcome: str) -> None:
        """An admitted call ended: "ok", "fail", "timeout" or "cancelled"."""
        call = self.calls.pop(number)
        current = call.period == self.period
        if current and self.state == "half_open":
            self.trials -= 1
        if outcome == "cancelled":
            return
        self.total += 1
        if outcome == "ok":
            self.successful += 1
        else:
            self.failed += 1
            self.timeouts += outcome == "timeout"
        if not current or self.noop:
            return
        if outcome == "ok":
            self.consecutive_failures = 0
            if self.state == "half_open":
                self.half_open_successes += 1
                if self.half_open_successes >= self.settings.success_threshold:
                    self._enter("closed")
            return
        self.consecutive_failures += 1
        if self.state == "half_open" or (
            self.state == "closed" and self.consecutive_failures >= self.settings.failure_threshold
        ):
            self._enter("open")

    # operator actions

    def force(self, action: str) -> bool:
        if self.noop:
            return False
        self.forced = action == "open"
        self._enter(action)
        return True

    def reconfigure(self, new: Settings) -> bool:
        old, self.settings = self.settings, new
        if new == old:
            return False
        self.restarts += 1
        if new.implementation_type != old.implementation_type:
            self.forced = False
            self.consecutive_failures = 0
            self._enter("closed")
        elif self.noop:
            pass
        elif self.state == "open" and not self.forced:
            assert self.opened_at is not None
            self.retry_at = self.opened_at + new.reset_timeout.seconds
            self._tick()
        elif self.state == "closed":
            if self.consecutive_failures >= new.failure_threshold:
                self._enter("open")
        elif self.state == "half_open" and self.half_open_successes >= new.success_threshold:
            self._enter("closed")
        return True

    def expected(self) -> dict[str, Any]:
        retry_after = None
        if self.state == "open" and self.retry_at is not None:
            retry_after = max(0.0, round(self.retry_at - self.now, 3))
        return {
            "time": self.now,
            "state": self.state,
            "forced": "open" if self.forced else None,
            "implementation_type": self.settings.implementation_type,
            "settings": self.settings,
            "consecutive_failures": self.consecutive_failures,
            "half_open_successes": self.half_open_successes,
            "total_calls": self.total,
            "successful_calls": self.successful,
            "failed_calls": self.failed,
            "timeouts": self.timeouts,
            "rejected_calls": self.rejected,
            "in_flight": len(self.calls),
            "state_changes": self.state_changes,
            "retry_after_seconds": retry_after,
            "restarts": self.restarts,
        }


# --- the steps and their replay on the real breaker -----------------------------------


@dataclass
class Step:
    action: str  # hold, release, call, timeout_call, advance, force, reconfigure
    arg: Any = None
    number: int = -1
    answer: Any = None  # what the caller or operator must see
    expected: dict[str, Any] = field(default_factory=dict)


class Held:
    """A call the driver runs in the background; its operation waits for an outcome."""

    def __init__(self) -> None:
        self.go = trio.Event()
        self.done = trio.Event()
        self.fail = False
        self.scope = trio.CancelScope()
        self.result: Any = None

    async def operation(self) -> str:
        await self.go.wait()
        if self.fail:
            raise Boom
        return "ok"

    async def run(self, breaker: CircuitBreaker) -> None:
        try:
            with self.scope:
                try:
                    self.result = await breaker.execute(self.operation)
                except Boom:
                    self.result = "fail"
                except OperationTimeoutError:
                    self.result = "timeout"
                except CircuitOpenError as exc:
                    self.result = ("rejected", exc.retry_after)
            if self.scope.cancelled_caught:
                self.result = "cancelled"
        finally:
            self.done.set()


class Driver:
    def __init__(self, manager: CircuitBreakerManager, breaker: CircuitBreaker, nursery: Any):
        self.manager = manager
        self.breaker = breaker
        self.nursery = nursery
        self.held: dict[int, Held] = {}

    async def hold(self, number: int) -> Any:
        held = self.held[number] = Held()
        self.nursery.start_soon(held.run, self.breaker)
        await trio.testing.wait_all_tasks_blocked()
        return held.result if held.done.is_set() else None

    async def release(self, number: int, outcome: str) -> Any:
        held = self.held.pop(number)
        assert not held.done.is_set(), f"call {number} ended early: {held.result}"
        if outcome == "cancelled":
            held.scope.cancel()
        else:
            held.fail = outcome == "fail"
            held.go.set()
        await held.done.wait()
        return held.result

    async def run(self, step: Step) -> Any:
        match step.action:
            case "hold":
                return await self.hold(step.number)
            case "release":
                return await self.release(step.number, step.arg)
            case "call":
                rejected = await self.hold(step.number)
                return rejected or await self.release(step.number, step.arg)
            case "timeout_call":
                rejected = await self.hold(step.number)
                if rejected:
                    return rejected
                held = self.held.pop(step.number)
                await held.done.wait()
                return held.result
            case "advance":
                await trio.sleep(step.arg)
                return None
            case "force":
                try:
                    await self.manager.force(NAME, step.arg)
                except CircuitBreakerError as exc:
                    return "refused" if str(exc).endswith("forcing it is refused") else exc
                return "done"
            case "reconfigure":
                changed = await self.manager.update_config(CircuitBreakerConfig(global_=step.arg))
                return changed == [NAME]
        raise AssertionError(step.action)  # pragma: no cover

    def observed(self) -> dict[str, Any]:
        stats = self.breaker.stats()
        seen = {key: getattr(stats, key, None) for key in Model(SETTINGS[0]).expected()}
        seen["time"] = trio.current_time()
        seen["state"] = str(stats.state)
        return seen


async def replay(initial: Settings, steps: list[Step]) -> None:
    with trio.fail_after(1e6):
        async with (
            open_circuit_breakers(CircuitBreakerConfig(global_=initial)) as manager,
            trio.open_nursery() as nursery,
        ):
            driver = Driver(manager, await manager.get_circuit_breaker(NAME), nursery)
            for index, step in enumerate(steps):
                answer = await driver.run(step)
                await trio.testing.wait_all_tasks_blocked()
                where = f"after step {index} {step.action}({step.arg!r})"
                assert answer == step.answer, f"{where}: answered {answer!r}, not {step.answer!r}"
                observed = driver.observed()
                assert observed == step.expected, f"{where}:\n{observed}\n!=\n{step.expected}"
            nursery.cancel_scope.cancel()


class BreakerComparison(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.model = Model(SETTINGS[0])
        self.initial = SETTINGS[0]
        self.steps: list[Step] = []
        self.numbers = 0

    def _record(self, step: Step) -> None:
        step.expected = self.model.expected()
        self.steps.append(step)

    def _next_number(self) -> int:
        self.numbers += 1
        return self.numbers

    @initialize(initial=st.sampled_from(SETTINGS))
    def start(self, initial: Settings) -> None:
        self.initial = initial
        self.model = Model(initial)

    @precondition(lambda self: len(self.model.calls) < MAX_HELD)
    @rule()
    def hold(self) -> None:
        number = self._next_number()
        self._record(Step("hold", None, number, self.model.admit(number)))

    @precondition(lambda self: bool(self.model.calls))
    @rule(data=st.data(), outcome=st.sampled_from(["ok", "fail", "cancelled"]))
    def release(self, data: st.DataObject, outcome: str) -> None:
        number = data.draw(st.sampled_from(sorted(self.model.calls)))
        self.model.finish(number, outcome)
        self._record(Step("release", outcome, number, outcome))

    @rule(outcome=st.sampled_from(["ok", "fail", "cancelled"]))
    def call(self, outcome: str) -> None:
        number = self._next_number()
        rejected = self.model.admit(number)
        if rejected is None:
            self.model.finish(number, outcome)
        self._record(Step("call", outcome, number, rejected or outcome))

    @precondition(lambda self: not self.model.noop)
    @rule()
    def timeout_call(self) -> None:
        number = self._next_number()
        rejected = self.model.admit(number)
        if rejected is None:
            deadline = self.model.calls[number].deadline
            assert deadline is not None
            self.model.advance_to(deadline)
        self._record(Step("timeout_call", None, number, rejected or "timeout"))

    @rule(dt=st.sampled_from([0.25, 0.5, 1.0, 3.0, 10.0]))
    def advance(self, dt: float) -> None:
        self.model.advance_to(self.model.now + dt)
        self._record(Step("advance", dt))

    @rule(action=st.sampled_from(["open", "closed", "half_open"]))
    def force(self, action: str) -> None:
        answer = "done" if self.model.force(action) else "refused"
        self._record(Step("force", action, answer=answer))

    @rule(new=st.sampled_from(SETTINGS))
    def reconfigure(self, new: Settings) -> None:
        self._record(Step("reconfigure", new, answer=self.model.reconfigure(new)))

    @invariant()
    def counts_add_up(self) -> None:
        model = self.model
        assert model.total == model.successful + model.failed
        assert model.trials >= 0  # may exceed a success_threshold lowered meanwhile
        assert model.trials <= len(model.calls)

    def teardown(self) -> None:
        if self.steps:
            trio.run(
                replay, self.initial, self.steps, clock=trio.testing.MockClock(autojump_threshold=0)
            )


BreakerComparison.TestCase.settings = settings(
    max_examples=150,
    stateful_step_count=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestBreakerComparison = BreakerComparison.TestCase
