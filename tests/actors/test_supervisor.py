"""Supervision: actor crashes, the restart budget, the failed pass-through state."""

from collections.abc import Callable
from typing import Any

import msgspec
import pytest
import trio
import trio.lowlevel
import trio.testing

from actors import (
    CircuitBreakerConfig,
    CircuitBreakerError,
    CircuitBreakerManager,
    CircuitOpenError,
    Duration,
    OperationTimeoutError,
    open_circuit_breakers,
)
from actors._policy import Breaker
from actors._supervisor import RESTART_LIMIT, RESTART_WINDOW

from .helpers import RESET, SETTINGS, TIMEOUT, Boom, boom, fail_times, hang, ok, slow

CONFIG = CircuitBreakerConfig(global_=SETTINGS)


class Injected(RuntimeError):
    pass


def crash_in(
    monkeypatch: pytest.MonkeyPatch, method: str, should_crash: Callable[[], bool]
) -> list[float]:
    """Make ``Breaker.<method>`` raise whenever ``should_crash()``; return crash times."""
    original = getattr(Breaker, method)
    crashes: list[float] = []

    def patched(self: Breaker, *args: Any) -> Any:
        if should_crash():
            crashes.append(trio.current_time())
            raise Injected(f"injected into {method}")
        return original(self, *args)

    monkeypatch.setattr(Breaker, method, patched)
    return crashes


def first_at_each_time() -> Callable[[], bool]:
    """Crash the first time at each trio time (a replay at the same time goes through)."""
    crashed_at: set[float] = set()

    def should() -> bool:
        now = trio.current_time()
        if now in crashed_at:
            return False
        crashed_at.add(now)
        return True

    return should


def once() -> Callable[[], bool]:
    done = False

    def should() -> bool:
        nonlocal done
        if done:
            return False
        done = True
        return True

    return should


async def test_crash_on_an_outcome_is_invisible_to_callers(
    autojump_clock: trio.testing.MockClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    with trio.fail_after(10):
        async with open_circuit_breakers(CONFIG) as manager:
            breaker = await manager.get_circuit_breaker("svc")
            await breaker.execute(ok)
            await trio.testing.wait_all_tasks_blocked()
            crashes = crash_in(monkeypatch, "record", once())
            with pytest.raises(Boom):
                await breaker.execute(boom)
            assert len(crashes) == 1
            stats = breaker.stats()
            assert (stats.restarts, stats.state, stats.error) == (1, "closed", None)
            assert (stats.total_calls, stats.failed_calls, stats.consecutive_failures) == (2, 1, 1)
            await fail_times(breaker, 2)  # exact threshold still holds
            with pytest.raises(CircuitOpenError):
                await breaker.execute(ok)


async def test_crash_on_admission_is_invisible_to_callers(
    autojump_clock: trio.testing.MockClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    with trio.fail_after(10):
        async with open_circuit_breakers(CONFIG) as manager:
            breaker = await manager.get_circuit_breaker("svc")
            await manager.force("svc", "half_open")
            crashes = crash_in(monkeypatch, "admit", once())
            assert await breaker.execute(ok, 1) == 1
            assert await breaker.execute(ok, 2) == 2
            await trio.testing.wait_all_tasks_blocked()
            assert len(crashes) == 1
            stats = breaker.stats()
            assert (stats.state, stats.restarts, stats.successful_calls) == ("closed", 1, 2)


async def test_crash_on_force_is_retried(
    autojump_clock: trio.testing.MockClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    with trio.fail_after(10):
        async with open_circuit_breakers(CONFIG) as manager:
            await manager.get_circuit_breaker("svc")
            crash_in(monkeypatch, "force", once())
            stats = await manager.force("svc", "open")
            assert (stats.state, stats.forced, stats.restarts) == ("open", "open", 1)


async def test_crash_while_applying_new_settings(
    autojump_clock: trio.testing.MockClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    with trio.fail_after(10):
        async with open_circuit_breakers(CONFIG) as manager:
            breaker = await manager.get_circuit_breaker("svc")
            await fail_times(breaker, 2)
            crashes = crash_in(monkeypatch, "_apply_settings", once())
            assert await manager.update_profile("svc", {"failure_threshold": 2})
            assert len(crashes) == 1
            stats = breaker.stats()
            assert stats.settings.failure_threshold == 2
            assert stats.state == "open"
            assert stats.restarts == 2  # the reconfiguration and the crash


async def test_crash_with_many_calls_in_flight_loses_nothing(
    autojump_clock: trio.testing.MockClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = msgspec.structs.replace(SETTINGS, failure_threshold=1_000)
    seen = {"ok": 0, "boom": 0}
    with trio.fail_after(100):
        async with open_circuit_breakers(CircuitBreakerConfig(global_=settings)) as manager:
            breaker = await manager.get_circuit_breaker("svc")
            calls = 0

            def now_and_then() -> bool:  # fewer than RESTART_LIMIT crashes in all
                nonlocal calls
                calls += 1
                return calls in (10, 80, 160)

            crashes = crash_in(monkeypatch, "record", now_and_then)

            async def caller(index: int) -> None:
                await trio.sleep(index % 7 * 0.1)
                if index % 3:
                    assert await breaker.execute(ok, index) == index
                    seen["ok"] += 1
                else:
                    with pytest.raises(Boom):
                        await breaker.execute(boom)
                    seen["boom"] += 1

            async with trio.open_nursery() as nursery:
                for index in range(300):
                    nursery.start_soon(caller, index)
            await trio.testing.wait_all_tasks_blocked()
            stats = breaker.stats()
            assert len(crashes) == stats.restarts == 3
            assert stats.state == "closed"
            assert (stats.successful_calls, stats.failed_calls) == (seen["ok"], seen["boom"])
            assert stats.total_calls == 300


async def crash_until_failed(
    manager: CircuitBreakerManager, monkeypatch: pytest.MonkeyPatch
) -> Any:
    breaker = await manager.get_circuit_breaker("svc")
    await breaker.execute(ok)
    await fail_times(breaker, 1)
    crashes = crash_in(monkeypatch, "record", lambda: True)
    with pytest.raises(Boom):  # the caller is unaffected by the crashes
        await breaker.execute(boom)
    assert len(crashes) == RESTART_LIMIT
    return breaker


async def test_restart_budget_exhausted_leaves_it_failed(
    autojump_clock: trio.testing.MockClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    with trio.fail_after(1000):
        async with open_circuit_breakers(CONFIG) as manager:
            breaker = await crash_until_failed(manager, monkeypatch)
            stats = breaker.stats()
            assert stats.state == "failed"
            assert stats.error == "Injected: injected into record"
            assert stats.restarts == RESTART_LIMIT - 1
            assert manager.stats()["svc"].state == "failed"
            # calls pass straight through: no timeout, no counting, no rejection
            before = (stats.total_calls, stats.failed_calls, stats.rejected_calls)
            start = trio.current_time()
            assert await breaker.execute(slow, TIMEOUT * 10) == "slow"
            assert trio.current_time() - start == TIMEOUT * 10
            await fail_times(breaker, 5)
            async with breaker.guard():
                await trio.lowlevel.checkpoint()
            assert await breaker.protect(ok)(7) == 7
            await trio.testing.wait_all_tasks_blocked()
            stats = breaker.stats()
            assert (stats.total_calls, stats.failed_calls, stats.rejected_calls) == before
            assert (stats.state, stats.in_flight, stats.retry_after_seconds) == ("failed", 0, None)


async def test_failed_breaker_comes_back_on_reconfiguration(
    autojump_clock: trio.testing.MockClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    with trio.fail_after(1000):
        async with open_circuit_breakers(CONFIG) as manager:
            breaker = await crash_until_failed(manager, monkeypatch)
            monkeypatch.undo()
            settings = await manager.update_profile("svc", {"failure_threshold": 4})
            stats = breaker.stats()
            assert (stats.state, stats.error, stats.settings) == ("closed", None, settings)
            assert stats.restarts == RESTART_LIMIT
            # the state from before the message that crashed it (one success, one failure),
            # then that message, kept while failed: its failure is not lost
            assert (stats.total_calls, stats.failed_calls, stats.consecutive_failures) == (3, 2, 2)
            await fail_times(breaker, 2)
            with pytest.raises(CircuitOpenError):
                await breaker.execute(ok)


@pytest.mark.parametrize("action", ["open", "closed", "half_open"])
async def test_failed_breaker_comes_back_on_force(
    autojump_clock: trio.testing.MockClock, monkeypatch: pytest.MonkeyPatch, action: str
) -> None:
    with trio.fail_after(1000):
        async with open_circuit_breakers(CONFIG) as manager:
            breaker = await crash_until_failed(manager, monkeypatch)
            monkeypatch.undo()
            stats = await manager.force("svc", action)
            assert (stats.state, stats.error) == (action, None)
            assert stats.restarts == RESTART_LIMIT
            if action == "open":
                with pytest.raises(CircuitOpenError):
                    await breaker.execute(ok)
            else:
                assert await breaker.execute(ok) == "ok"


async def test_still_crashing_after_recovery_fails_again(
    autojump_clock: trio.testing.MockClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    with trio.fail_after(1000):
        async with open_circuit_breakers(CONFIG) as manager:
            breaker = await crash_until_failed(manager, monkeypatch)
            # The patch is still in place: recovering replays the failure that was kept
            # while failed, which crashes it again; the force is refused, once, with why.
            refused = r"^circuit 'svc' failed \(Injected: injected into record\); force it again"
            with pytest.raises(CircuitBreakerError, match=refused):
                await manager.force("svc", "closed")
            assert breaker.stats().state == "failed"
            assert await breaker.execute(ok) == "ok"  # still passing calls through
            monkeypatch.undo()
            assert (await manager.force("svc", "closed")).state == "closed"


async def test_crashes_spread_over_time_keep_restarting(
    autojump_clock: trio.testing.MockClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = msgspec.structs.replace(SETTINGS, failure_threshold=1_000)
    gap = RESTART_WINDOW / (RESTART_LIMIT - 1)  # RESTART_LIMIT crashes would span the window
    with trio.fail_after(1000):
        async with open_circuit_breakers(CircuitBreakerConfig(global_=settings)) as manager:
            breaker = await manager.get_circuit_breaker("svc")
            crashes = crash_in(monkeypatch, "record", first_at_each_time())
            for _ in range(3 * RESTART_LIMIT):
                await fail_times(breaker, 1)
                await trio.sleep(gap)
            stats = breaker.stats()
            assert stats.state == "closed"
            assert stats.restarts == len(crashes) == 3 * RESTART_LIMIT
            assert stats.failed_calls == 3 * RESTART_LIMIT


async def test_crashes_within_the_window_exhaust_the_budget(
    autojump_clock: trio.testing.MockClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = msgspec.structs.replace(SETTINGS, failure_threshold=1_000)
    gap = RESTART_WINDOW / RESTART_LIMIT  # RESTART_LIMIT crashes fit in the window
    with trio.fail_after(1000):
        async with open_circuit_breakers(CircuitBreakerConfig(global_=settings)) as manager:
            breaker = await manager.get_circuit_breaker("svc")
            crash_in(monkeypatch, "record", first_at_each_time())
            for n in range(1, RESTART_LIMIT + 1):
                assert breaker.stats().state == "closed"
                await fail_times(breaker, 1)
                assert breaker.stats().restarts == n - (n == RESTART_LIMIT)
                await trio.sleep(gap)
            assert breaker.stats().state == "failed"


async def test_failed_breaker_with_a_timeout_setting_applies_none(
    autojump_clock: trio.testing.MockClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = msgspec.structs.replace(SETTINGS, operation_timeout=Duration(1))
    with trio.fail_after(1000):
        async with open_circuit_breakers(CircuitBreakerConfig(global_=settings)) as manager:
            breaker = await crash_until_failed(manager, monkeypatch)
            assert await breaker.execute(slow, 1.0) == "slow"


async def test_calls_waiting_on_a_crashing_actor_do_not_hang(
    autojump_clock: trio.testing.MockClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Timeouts, failures and half-open admissions all wait for the actor.
    with trio.fail_after(1000):
        async with open_circuit_breakers(CONFIG) as manager:
            breaker = await manager.get_circuit_breaker("svc")
            crash_in(monkeypatch, "record", lambda: True)
            crash_in(monkeypatch, "admit", lambda: True)
            async with trio.open_nursery() as nursery:
                for _ in range(10):
                    nursery.start_soon(_expect, OperationTimeoutError, breaker.execute, hang)
                    nursery.start_soon(_expect, Boom, breaker.execute, boom)
            assert breaker.stats().state == "failed"
            await trio.sleep(RESET)
            assert await breaker.execute(ok) == "ok"


async def _expect(error: type[BaseException], fn: Any, *args: Any) -> None:
    with pytest.raises(error):
        await fn(*args)


async def test_outcomes_of_calls_admitted_before_failing_are_kept(
    autojump_clock: trio.testing.MockClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Two half-open trials are in flight when admissions start crashing the actor; they
    # succeed while it is failed. Their outcomes count once it recovers, and their trial
    # slots are free again: the breaker is not stuck half-open.
    settings = msgspec.structs.replace(SETTINGS, success_threshold=2)
    release = trio.Event()

    async def trial() -> str:
        await release.wait()
        return "done"

    with trio.fail_after(1000):
        async with open_circuit_breakers(CircuitBreakerConfig(global_=settings)) as manager:
            breaker = await manager.get_circuit_breaker("svc")
            await fail_times(breaker, settings.failure_threshold)
            await trio.sleep(RESET)
            async with trio.open_nursery() as nursery:
                nursery.start_soon(breaker.execute, trial)
                nursery.start_soon(breaker.execute, trial)
                await trio.testing.wait_all_tasks_blocked()
                crash_in(monkeypatch, "admit", lambda: True)
                for _ in range(RESTART_LIMIT):
                    await breaker.execute(ok)  # each crashes the actor; the last one passes
                assert breaker.stats().state == "failed"
                release.set()
            await trio.testing.wait_all_tasks_blocked()
            monkeypatch.undo()
            await manager.update_profile("svc", {"reset_timeout": "2s"})
            stats = breaker.stats()
            assert (stats.state, stats.error) == ("closed", None)  # both trials counted
            assert stats.successful_calls == 2


async def test_force_after_a_crashed_reconfiguration_keeps_the_new_settings(
    autojump_clock: trio.testing.MockClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    original = Breaker._apply_settings

    def crash_on_seven(self: Breaker, old: Any, now: float) -> None:
        if self.settings.failure_threshold == 7:
            raise Injected("seven")
        original(self, old, now)

    with trio.fail_after(1000):
        async with open_circuit_breakers(CONFIG) as manager:
            breaker = await manager.get_circuit_breaker("svc")
            monkeypatch.setattr(Breaker, "_apply_settings", crash_on_seven)
            wanted = await manager.update_profile("svc", {"failure_threshold": 7})
            stats = breaker.stats()
            assert (stats.state, stats.settings) == ("failed", wanted)
            monkeypatch.undo()
            stats = await manager.force("svc", "closed")
            assert (stats.state, stats.settings) == ("closed", wanted)
            assert manager.config.settings_for("svc") == wanted
