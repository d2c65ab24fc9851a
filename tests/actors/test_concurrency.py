"""Many callers at once: no outcome lost, nothing hangs, reconfiguration in flight."""

import random
from collections import Counter

import msgspec
import pytest
import trio
import trio.testing

from actors import (
    CircuitBreaker,
    CircuitBreakerConfig,
    CircuitBreakerError,
    CircuitOpenError,
    Duration,
    OperationTimeoutError,
    Profile,
    Settings,
    open_circuit_breakers,
)

from .helpers import SETTINGS, Boom, boom, fail_times, hang, ok, slow

CHURN = Settings(
    failure_threshold=4,
    operation_timeout=Duration(500),
    reset_timeout=Duration(1_000),
    success_threshold=3,
)


async def random_caller(
    breaker: CircuitBreaker, rng: random.Random, calls: int, seen: Counter[str]
) -> None:
    """Make ``calls`` calls of random kinds; count what the caller saw."""
    for _ in range(calls):
        await trio.sleep(rng.choice((0, 0.01, 0.1, 0.3)))
        pick = rng.random()
        try:
            if pick < 0.55:
                await breaker.execute(slow, rng.choice((0, 0.05, 0.2)))
            elif pick < 0.8:
                await breaker.execute(boom)
            elif pick < 0.9:
                await breaker.execute(slow, 5.0)  # times out, unless noop
            else:
                with trio.move_on_after(0.1):  # cancelled from outside
                    await breaker.execute(hang)
                    raise AssertionError("not cancelled")  # pragma: no cover
                seen["cancelled"] += 1
                continue
        except Boom:
            seen["failed"] += 1
        except OperationTimeoutError:
            seen["timeouts"] += 1
        except CircuitOpenError:
            seen["rejected"] += 1
        else:
            seen["successful"] += 1


def assert_matches(breaker: CircuitBreaker, seen: Counter[str]) -> None:
    stats = breaker.stats()
    assert stats.successful_calls == seen["successful"]
    assert stats.failed_calls == seen["failed"] + seen["timeouts"]
    assert stats.timeouts == seen["timeouts"]
    assert stats.rejected_calls == seen["rejected"]
    assert stats.total_calls == stats.successful_calls + stats.failed_calls
    assert stats.in_flight == 0


@pytest.mark.parametrize("seed", [1, 2, 3])
async def test_many_tasks_on_one_breaker(autojump_clock: trio.testing.MockClock, seed: int) -> None:
    rng = random.Random(seed)
    seen: Counter[str] = Counter()
    with trio.fail_after(1000):
        async with open_circuit_breakers(CircuitBreakerConfig(global_=CHURN)) as manager:
            breaker = await manager.get_circuit_breaker("svc")
            async with trio.open_nursery() as nursery:
                for _ in range(100):
                    nursery.start_soon(
                        random_caller, breaker, random.Random(rng.random()), 20, seen
                    )
            await trio.testing.wait_all_tasks_blocked()
            assert_matches(breaker, seen)
            stats = breaker.stats()
            assert stats.state_changes > 3  # the circuit went round several times
            assert seen["rejected"] > 0
            assert seen["cancelled"] > 0


async def test_one_thousand_breakers(autojump_clock: trio.testing.MockClock) -> None:
    rng = random.Random(7)
    names = [f"svc-{i}" for i in range(1_000)]
    seen: dict[str, Counter[str]] = {name: Counter() for name in names}
    with trio.fail_after(1000):
        async with open_circuit_breakers(CircuitBreakerConfig(global_=CHURN)) as manager:
            handles = {name: await manager.get_circuit_breaker(name) for name in names}
            async with trio.open_nursery() as nursery:
                for name in names:
                    for _ in range(2):
                        nursery.start_soon(
                            random_caller, handles[name], random.Random(rng.random()), 5, seen[name]
                        )
            await trio.testing.wait_all_tasks_blocked()
            for name in names:
                assert_matches(handles[name], seen[name])
            assert len(manager.stats()) == 1_000
            states = Counter(str(stats.state) for stats in manager.stats().values())
            assert states["open"] > 0
            assert states["closed"] > 0


async def test_many_sequential_callers_see_exact_thresholds(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # Each breaker has one sequential caller; the others run alongside on other breakers.
    with trio.fail_after(1000):
        async with open_circuit_breakers(CircuitBreakerConfig(global_=SETTINGS)) as manager:

            async def sequential(name: str) -> None:
                breaker = await manager.get_circuit_breaker(name)
                await breaker.execute(ok)
                await fail_times(breaker, SETTINGS.failure_threshold)
                with pytest.raises(CircuitOpenError):
                    await breaker.execute(ok)

            async with trio.open_nursery() as nursery:
                for i in range(200):
                    nursery.start_soon(sequential, f"s{i}")
            await trio.testing.wait_all_tasks_blocked()
            assert {s.state for s in manager.stats().values()} == {"open"}


async def test_concurrent_failures_open_once(autojump_clock: trio.testing.MockClock) -> None:
    with trio.fail_after(100):
        async with open_circuit_breakers(CircuitBreakerConfig(global_=SETTINGS)) as manager:
            breaker = await manager.get_circuit_breaker("svc")

            async def failing() -> None:
                with pytest.raises(Boom):
                    await breaker.execute(boom)

            async with trio.open_nursery() as nursery:
                for _ in range(50):
                    nursery.start_soon(failing)
            stats = breaker.stats()
            assert (stats.state, stats.state_changes, stats.failed_calls) == ("open", 1, 50)
            assert stats.consecutive_failures == SETTINGS.failure_threshold


async def test_reconfiguration_while_calls_are_in_flight(
    autojump_clock: trio.testing.MockClock,
) -> None:
    settings = msgspec.structs.replace(SETTINGS, failure_threshold=100)
    results: Counter[str] = Counter()
    with trio.fail_after(100):
        async with open_circuit_breakers(CircuitBreakerConfig(global_=settings)) as manager:
            breaker = await manager.get_circuit_breaker("svc")

            async def call(index: int) -> None:
                async def operation() -> int:
                    if index % 4 == 0:
                        await trio.sleep(1.0)
                        raise Boom
                    await trio.sleep(1.5)
                    return index

                try:
                    assert await breaker.execute(operation) == index
                    results["ok"] += 1
                except Boom:
                    results["boom"] += 1

            async with trio.open_nursery() as nursery:
                for index in range(100):
                    nursery.start_soon(call, index)
                await trio.testing.wait_all_tasks_blocked()
                assert breaker.stats().in_flight == 100
                # admitted before the restart; 25 failures to come, threshold now 20
                changed = await manager.update_config({"global": {"failure_threshold": 20}})
                assert changed == ["svc"]
                assert breaker.stats().state == "closed"
                await trio.sleep(1.0)
                await trio.testing.wait_all_tasks_blocked()
                # the failures admitted before the restart drove the state machine after it
                stats = breaker.stats()
                assert (stats.state, stats.failed_calls, stats.in_flight) == ("open", 25, 75)
            await trio.testing.wait_all_tasks_blocked()
            assert results == {"ok": 75, "boom": 25}  # admitted calls finish normally
            stats = breaker.stats()
            assert (stats.successful_calls, stats.failed_calls, stats.restarts) == (75, 25, 1)
            assert (stats.state, stats.rejected_calls) == ("open", 0)


async def test_reconfiguration_storm(autojump_clock: trio.testing.MockClock) -> None:
    rng = random.Random(11)
    seen: Counter[str] = Counter()
    config = CircuitBreakerConfig(global_=CHURN, profiles={"svc": Profile()})
    with trio.fail_after(1000):
        async with open_circuit_breakers(config) as manager:
            breaker = await manager.get_circuit_breaker("svc")
            restarts = 0

            async def reconfigure() -> None:
                nonlocal restarts
                for step in range(60):
                    await trio.sleep(0.25)
                    profile = {
                        "failure_threshold": rng.randint(1, 5),
                        "success_threshold": rng.randint(1, 3),
                        "reset_timeout": rng.choice(("100ms", "1s", "2s")),
                        "implementation_type": "noop" if step % 10 == 9 else "rssafe",
                    }
                    if step % 13 == 0:
                        await manager.force("svc", rng.choice(("open", "closed", "half_open")))
                    old = breaker.stats().settings
                    new = await manager.update_profile("svc", profile)
                    restarts += new != old

            async with trio.open_nursery() as nursery:
                nursery.start_soon(reconfigure)
                for _ in range(50):
                    nursery.start_soon(
                        random_caller, breaker, random.Random(rng.random()), 30, seen
                    )
            await trio.testing.wait_all_tasks_blocked()
            assert_matches(breaker, seen)
            assert breaker.stats().restarts == restarts > 30


async def test_no_call_hangs_when_the_engine_stops(
    autojump_clock: trio.testing.MockClock,
) -> None:
    seen: Counter[str] = Counter()
    with trio.fail_after(100):
        async with (
            trio.open_nursery() as outer,
            open_circuit_breakers(CircuitBreakerConfig(global_=CHURN)) as manager,
        ):
            breakers = [await manager.get_circuit_breaker(f"s{i}") for i in range(20)]
            await manager.force("s0", "half_open")
            await manager.force("s1", "open")
            for breaker in breakers:
                for seed in range(5):
                    outer.start_soon(_until_stopped, breaker, random.Random(seed), seen)
            await trio.sleep(2.5)
        assert seen == {"circuit-breaker engine has stopped": 100}


async def _until_stopped(breaker: CircuitBreaker, rng: random.Random, seen: Counter[str]) -> None:
    while True:
        try:
            await random_caller(breaker, rng, 1, Counter())
        except CircuitBreakerError as exc:
            seen[str(exc).partition(": the ")[2]] += 1
            return


async def test_cancelled_trials_never_leak_slots(autojump_clock: trio.testing.MockClock) -> None:
    settings = msgspec.structs.replace(SETTINGS, success_threshold=3)
    with trio.fail_after(100):
        async with open_circuit_breakers(CircuitBreakerConfig(global_=settings)) as manager:
            breaker = await manager.get_circuit_breaker("svc")
            await manager.force("svc", "half_open")
            for round_ in range(20):
                async with trio.open_nursery() as nursery:
                    for _ in range(10):
                        nursery.start_soon(_swallow_rejection, breaker)
                    for _ in range(round_ % 4):
                        await trio.lowlevel.checkpoint()
                    nursery.cancel_scope.cancel()
                await trio.testing.wait_all_tasks_blocked()
                stats = breaker.stats()
                assert (stats.state, stats.in_flight, stats.total_calls) == ("half_open", 0, 0)
            for _ in range(3):
                assert await breaker.execute(ok) == "ok"
            await trio.testing.wait_all_tasks_blocked()
            assert breaker.stats().state == "closed"


async def _swallow_rejection(breaker: CircuitBreaker) -> None:
    try:
        await breaker.execute(hang)
    except CircuitOpenError:
        pass
