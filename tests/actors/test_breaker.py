"""The actor-backed breaker through the public API, on trio's mock clock."""

import re

import msgspec
import pytest
import trio
import trio.lowlevel
import trio.testing

from actors import (
    CircuitBreaker,
    CircuitBreakerConfig,
    CircuitBreakerError,
    CircuitOpenError,
    Duration,
    OperationTimeoutError,
    Settings,
    State,
    Stats,
    open_circuit_breaker,
    open_circuit_breakers,
)

from .helpers import RESET, SETTINGS, TIMEOUT, Boom, boom, fail_times, hang, ok, slow


async def opened(breaker: CircuitBreaker) -> float:
    """Open ``breaker`` with failures; return the time it opened."""
    await fail_times(breaker, SETTINGS.failure_threshold)
    assert breaker.stats().state == "open"
    return trio.current_time()


async def to_half_open(breaker: CircuitBreaker) -> None:
    await opened(breaker)
    await trio.sleep(RESET)
    await trio.testing.wait_all_tasks_blocked()
    assert breaker.stats().state == "half_open"


def counts(stats: Stats) -> tuple[int, int, int, int, int]:
    return (
        stats.total_calls,
        stats.successful_calls,
        stats.failed_calls,
        stats.timeouts,
        stats.rejected_calls,
    )


# --- execute --------------------------------------------------------------------------


async def test_execute_returns_the_value(autojump_clock: trio.testing.MockClock) -> None:
    async def add(a: int, b: int) -> int:
        await trio.sleep(1)
        return a + b

    with trio.fail_after(10):
        async with open_circuit_breaker("svc", SETTINGS) as breaker:
            start = trio.current_time()
            assert await breaker.execute(add, 2, 3) == 5
            assert trio.current_time() - start == 1.0
            await trio.testing.wait_all_tasks_blocked()
            assert counts(breaker.stats()) == (1, 1, 0, 0, 0)


async def test_own_exception_reaches_the_caller_unchanged(
    autojump_clock: trio.testing.MockClock,
) -> None:
    error = Boom("the very one")

    async def raise_it() -> None:
        await trio.lowlevel.checkpoint()
        raise error

    with trio.fail_after(10):
        async with open_circuit_breaker("svc", SETTINGS) as breaker:
            with pytest.raises(Boom) as info:
                await breaker.execute(raise_it)
            assert info.value is error
            assert not isinstance(info.value, CircuitBreakerError)
            stats = breaker.stats()
            assert counts(stats) == (1, 0, 1, 0, 0)
            assert stats.consecutive_failures == 1
            assert stats.last_error == "Boom: the very one"


async def test_timeout_after_exactly_operation_timeout(
    autojump_clock: trio.testing.MockClock,
) -> None:
    cancelled = trio.Event()

    async def too_slow() -> None:
        try:
            await trio.sleep(TIMEOUT * 10)
        except trio.Cancelled:
            cancelled.set()
            raise

    with trio.fail_after(100):
        async with open_circuit_breaker("svc", SETTINGS) as breaker:
            start = trio.current_time()
            with pytest.raises(
                OperationTimeoutError,
                match=r"^operation on 'svc' ran past its timeout of 2 s and was cancelled$",
            ) as info:
                await breaker.execute(too_slow)
            assert trio.current_time() - start == TIMEOUT
            assert cancelled.is_set()
            assert (info.value.service, info.value.timeout) == ("svc", TIMEOUT)
            assert isinstance(info.value, CircuitBreakerError)
            stats = breaker.stats()
            assert counts(stats) == (1, 0, 1, 1, 0)
            assert stats.consecutive_failures == 1
            assert stats.last_error == "timed out after 2 s"


async def test_operation_just_under_the_timeout_succeeds(
    autojump_clock: trio.testing.MockClock,
) -> None:
    with trio.fail_after(100):
        async with open_circuit_breaker("svc", SETTINGS) as breaker:
            assert await breaker.execute(slow, TIMEOUT - 0.001) == "slow"
            await trio.testing.wait_all_tasks_blocked()
            assert counts(breaker.stats()) == (1, 1, 0, 0, 0)


async def test_timeouts_open_the_circuit(autojump_clock: trio.testing.MockClock) -> None:
    with trio.fail_after(100):
        async with open_circuit_breaker("svc", SETTINGS) as breaker:
            for _ in range(SETTINGS.failure_threshold):
                with pytest.raises(OperationTimeoutError):
                    await breaker.execute(hang)
            stats = breaker.stats()
            assert stats.state == "open"
            assert counts(stats) == (3, 0, 3, 3, 0)


# --- open -----------------------------------------------------------------------------


async def test_sequential_caller_sees_exact_threshold(
    autojump_clock: trio.testing.MockClock,
) -> None:
    calls = 0

    async def counted() -> None:
        nonlocal calls
        calls += 1
        await boom()

    with trio.fail_after(10):
        async with open_circuit_breaker("svc", SETTINGS) as breaker:
            for n in range(1, SETTINGS.failure_threshold + 1):
                assert breaker.stats().state == "closed"
                with pytest.raises(Boom):
                    await breaker.execute(counted)
                assert breaker.stats().consecutive_failures == n
            with pytest.raises(CircuitOpenError):
                await breaker.execute(counted)
            assert calls == SETTINGS.failure_threshold


async def test_success_in_between_resets_the_count(
    autojump_clock: trio.testing.MockClock,
) -> None:
    with trio.fail_after(10):
        async with open_circuit_breaker("svc", SETTINGS) as breaker:
            await fail_times(breaker, 2)
            await breaker.execute(ok)
            await fail_times(breaker, 2)
            assert await breaker.execute(ok) == "ok"
            await fail_times(breaker, 3)
            with pytest.raises(CircuitOpenError):
                await breaker.execute(ok)


async def test_rejection_carries_exact_retry_after(
    autojump_clock: trio.testing.MockClock,
) -> None:
    with trio.fail_after(100):
        async with open_circuit_breaker("svc", SETTINGS) as breaker:
            opened_at = await opened(breaker)
            await trio.sleep(12.5)
            with pytest.raises(
                CircuitOpenError, match=r"^circuit 'svc' is open; retry in 17\.5 s$"
            ) as info:
                await breaker.execute(ok)
            assert info.value.retry_after == opened_at + RESET - trio.current_time() == 17.5
            assert info.value.service == "svc"
            assert isinstance(info.value, CircuitBreakerError)
            stats = breaker.stats()
            assert stats.retry_after_seconds == 17.5
            assert counts(stats) == (3, 0, 3, 0, 1)


async def test_each_rejection_is_a_new_exception(
    autojump_clock: trio.testing.MockClock,
) -> None:
    with trio.fail_after(10):
        async with open_circuit_breaker("svc", SETTINGS) as breaker:
            await opened(breaker)
            seen = []
            for _ in range(3):
                with pytest.raises(CircuitOpenError) as info:
                    await breaker.execute(ok)
                seen.append(info.value)
            assert len({id(e) for e in seen}) == 3
            assert breaker.stats().rejected_calls == 3


async def test_open_to_half_open_on_time_without_any_call(
    autojump_clock: trio.testing.MockClock,
) -> None:
    with trio.fail_after(100):
        async with open_circuit_breaker("svc", SETTINGS) as breaker:
            opened_at = await opened(breaker)
            await trio.sleep_until(opened_at + RESET - 0.001)
            await trio.testing.wait_all_tasks_blocked()
            stats = breaker.stats()
            assert stats.state == "open"
            assert stats.retry_after_seconds == 0.001
            await trio.sleep_until(opened_at + RESET)
            await trio.testing.wait_all_tasks_blocked()
            stats = breaker.stats()
            assert stats.state == "half_open"
            assert stats.retry_after_seconds is None
            assert stats.state_changes == 2
            assert stats.rejected_calls == 0


async def test_half_open_trials_close_the_circuit(
    autojump_clock: trio.testing.MockClock,
) -> None:
    with trio.fail_after(100):
        async with open_circuit_breaker("svc", SETTINGS) as breaker:
            await to_half_open(breaker)
            assert await breaker.execute(ok, 1) == 1
            await trio.testing.wait_all_tasks_blocked()
            stats = breaker.stats()
            assert (stats.state, stats.half_open_successes) == ("half_open", 1)
            assert await breaker.execute(ok, 2) == 2
            await trio.testing.wait_all_tasks_blocked()
            stats = breaker.stats()
            assert (stats.state, stats.half_open_successes, stats.consecutive_failures) == (
                "closed",
                0,
                0,
            )
            assert stats.opened_at is None


async def test_half_open_failure_reopens_with_timer_restarted(
    autojump_clock: trio.testing.MockClock,
) -> None:
    with trio.fail_after(200):
        async with open_circuit_breaker("svc", SETTINGS) as breaker:
            await to_half_open(breaker)
            await trio.sleep(5)
            with pytest.raises(Boom):
                await breaker.execute(boom)
            reopened = trio.current_time()
            assert breaker.stats().state == "open"
            with pytest.raises(CircuitOpenError) as info:
                await breaker.execute(ok)
            assert info.value.retry_after == RESET
            await trio.sleep_until(reopened + RESET)
            await trio.testing.wait_all_tasks_blocked()
            assert breaker.stats().state == "half_open"


async def test_half_open_with_every_slot_taken_rejects_without_retry_after(
    autojump_clock: trio.testing.MockClock,
) -> None:
    with trio.fail_after(100):
        async with open_circuit_breaker("svc", SETTINGS) as breaker:
            await to_half_open(breaker)
            async with trio.open_nursery() as nursery:
                for _ in range(SETTINGS.success_threshold):
                    nursery.start_soon(_slow_call, breaker)
                await trio.testing.wait_all_tasks_blocked()
                assert breaker.stats().in_flight == SETTINGS.success_threshold
                with pytest.raises(
                    CircuitOpenError,
                    match=r"^circuit 'svc' is half-open with every trial slot taken; "
                    r"no retry time is known$",
                ) as info:
                    await breaker.execute(ok)
                assert info.value.retry_after is None
            await trio.testing.wait_all_tasks_blocked()
            stats = breaker.stats()
            assert stats.state == "closed"
            assert stats.rejected_calls == 1
            assert stats.in_flight == 0


async def test_call_past_deadline_before_actor_wakes_is_admitted(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # A caller at exactly the reset deadline asks the actor instead of rejecting.
    with trio.fail_after(100):
        async with open_circuit_breaker("svc", SETTINGS) as breaker:
            opened_at = await opened(breaker)
            await trio.sleep_until(opened_at + RESET)
            assert await breaker.execute(ok) == "ok"


# --- cancellation from outside --------------------------------------------------------


async def test_outside_cancellation_counts_nothing(
    autojump_clock: trio.testing.MockClock,
) -> None:
    with trio.fail_after(100):
        async with open_circuit_breaker("svc", SETTINGS) as breaker:
            await fail_times(breaker, 2)
            with trio.move_on_after(1.5) as scope:
                await breaker.execute(hang)
            assert scope.cancelled_caught
            with trio.move_on_after(1.5):
                async with breaker.guard():
                    await trio.sleep_forever()
            await trio.testing.wait_all_tasks_blocked()
            stats = breaker.stats()
            assert counts(stats) == (2, 0, 2, 0, 0)
            assert (stats.state, stats.consecutive_failures, stats.in_flight) == ("closed", 2, 0)


async def test_outside_cancellation_gives_back_the_half_open_slot(
    autojump_clock: trio.testing.MockClock,
) -> None:
    settings = msgspec.structs.replace(SETTINGS, success_threshold=1)
    with trio.fail_after(100):
        async with open_circuit_breaker("svc", settings) as breaker:
            await to_half_open(breaker)
            before = counts(breaker.stats())
            with trio.move_on_after(1) as scope:
                await breaker.execute(hang)
            assert scope.cancelled_caught
            await trio.testing.wait_all_tasks_blocked()
            stats = breaker.stats()
            assert counts(stats) == before
            assert (stats.state, stats.in_flight) == ("half_open", 0)
            assert await breaker.execute(ok) == "ok"  # the slot is free again
            await trio.testing.wait_all_tasks_blocked()
            assert breaker.stats().state == "closed"


@pytest.mark.parametrize("checkpoints", range(6))
async def test_cancelled_around_admission_gives_the_slot_back(
    autojump_clock: trio.testing.MockClock, checkpoints: int
) -> None:
    # Cancel the caller after a varying number of scheduler passes: before it asks,
    # while it waits for the actor's answer, after the answer, or during the operation.
    settings = msgspec.structs.replace(SETTINGS, success_threshold=1)
    with trio.fail_after(100):
        async with open_circuit_breaker("svc", settings) as breaker:
            await to_half_open(breaker)
            before = counts(breaker.stats())
            scope = trio.CancelScope()

            async def caller() -> None:
                with scope:
                    await breaker.execute(hang)

            async with trio.open_nursery() as nursery:
                nursery.start_soon(caller)
                for _ in range(checkpoints):
                    await trio.lowlevel.checkpoint()
                scope.cancel()
            await trio.testing.wait_all_tasks_blocked()
            stats = breaker.stats()
            assert counts(stats) == before
            assert (stats.state, stats.in_flight) == ("half_open", 0)
            assert await breaker.execute(ok) == "ok"
            await trio.testing.wait_all_tasks_blocked()
            assert breaker.stats().state == "closed"


# --- forcing --------------------------------------------------------------------------


async def test_forced_open_rejects_without_retry_after(
    autojump_clock: trio.testing.MockClock,
) -> None:
    with trio.fail_after(1000):
        async with open_circuit_breakers(CircuitBreakerConfig(global_=SETTINGS)) as manager:
            breaker = await manager.get_circuit_breaker("svc")
            stats = await manager.force("svc", "open")
            assert (stats.state, stats.forced, stats.retry_after_seconds) == ("open", "open", None)
            await trio.sleep(RESET * 10)
            await trio.testing.wait_all_tasks_blocked()
            assert breaker.stats().state == "open"
            with pytest.raises(
                CircuitOpenError,
                match=r"^circuit 'svc' is forced open; no retry time is known$",
            ) as info:
                await breaker.execute(ok)
            assert info.value.retry_after is None
            assert breaker.stats().rejected_calls == 1
            await manager.force("svc", "closed")
            assert await breaker.execute(ok) == "ok"


async def test_force_half_open_starts_trials(autojump_clock: trio.testing.MockClock) -> None:
    with trio.fail_after(100):
        async with open_circuit_breakers(CircuitBreakerConfig(global_=SETTINGS)) as manager:
            breaker = await manager.get_circuit_breaker("svc")
            stats = await manager.force("svc", "half_open")
            assert (stats.state, stats.forced) == ("half_open", None)
            with pytest.raises(Boom):
                await breaker.execute(boom)
            with pytest.raises(CircuitOpenError) as info:
                await breaker.execute(ok)
            assert info.value.retry_after == RESET


# --- guard and protect ----------------------------------------------------------------


async def test_guard_follows_the_same_rules(autojump_clock: trio.testing.MockClock) -> None:
    with trio.fail_after(100):
        async with open_circuit_breaker("svc", SETTINGS) as breaker:
            async with breaker.guard():
                await trio.sleep(1)
            error = Boom("in a block")
            with pytest.raises(Boom) as info:
                async with breaker.guard():
                    raise error
            assert info.value is error
            start = trio.current_time()
            with pytest.raises(OperationTimeoutError):
                async with breaker.guard():
                    await trio.sleep_forever()
            assert trio.current_time() - start == TIMEOUT
            with pytest.raises(Boom):
                async with breaker.guard():
                    raise Boom
            opened_at = trio.current_time()
            assert breaker.stats().state == "open"
            await trio.sleep(10)
            with pytest.raises(CircuitOpenError) as rejected:
                async with breaker.guard():
                    raise AssertionError("not admitted")  # pragma: no cover
            assert rejected.value.retry_after == opened_at + RESET - trio.current_time()
            await trio.sleep_until(opened_at + RESET)
            await trio.testing.wait_all_tasks_blocked()
            assert breaker.stats().state == "half_open"
            for _ in range(SETTINGS.success_threshold):
                async with breaker.guard():
                    await trio.lowlevel.checkpoint()
            await trio.testing.wait_all_tasks_blocked()
            stats = breaker.stats()
            assert stats.state == "closed"
            assert counts(stats) == (6, 3, 3, 1, 1)


async def test_protect_follows_the_same_rules(autojump_clock: trio.testing.MockClock) -> None:
    with trio.fail_after(100):
        async with open_circuit_breaker("svc", SETTINGS) as breaker:

            @breaker.protect
            async def fetch(key: str, *, fail: bool = False) -> str:
                """Fetch a key."""
                await trio.sleep(0.5)
                if fail:
                    raise Boom(key)
                return key.upper()

            assert fetch.__name__ == "fetch"
            assert fetch.__doc__ == "Fetch a key."
            assert await fetch("a") == "A"
            for _ in range(SETTINGS.failure_threshold):
                with pytest.raises(Boom, match=r"^b$"):
                    await fetch("b", fail=True)
            with pytest.raises(CircuitOpenError) as info:
                await fetch("c")
            assert info.value.retry_after == RESET
            stats = breaker.stats()
            assert counts(stats) == (4, 1, 3, 0, 1)


async def test_protect_applies_the_timeout(autojump_clock: trio.testing.MockClock) -> None:
    with trio.fail_after(100):
        async with open_circuit_breaker("svc", SETTINGS) as breaker:
            protected_hang = breaker.protect(hang)
            start = trio.current_time()
            with pytest.raises(OperationTimeoutError):
                await protected_hang()
            assert trio.current_time() - start == TIMEOUT


# --- stats ----------------------------------------------------------------------------


async def test_stats_fields(autojump_clock: trio.testing.MockClock) -> None:
    with trio.fail_after(100):
        async with open_circuit_breaker("svc", SETTINGS) as breaker:
            fresh = breaker.stats()
            assert fresh == Stats(
                name="svc",
                implementation_type="rssafe",
                state=State.CLOSED,
                forced=None,
                total_calls=0,
                successful_calls=0,
                failed_calls=0,
                timeouts=0,
                rejected_calls=0,
                consecutive_failures=0,
                half_open_successes=0,
                in_flight=0,
                failure_rate=0.0,
                state_changes=0,
                last_state_change=None,
                last_failure=None,
                last_error=None,
                opened_at=None,
                retry_after_seconds=None,
                restarts=0,
                error=None,
                settings=SETTINGS,
            )
            assert isinstance(fresh.state, str)
            await breaker.execute(ok)
            with pytest.raises(OperationTimeoutError):
                await breaker.execute(hang)
            await fail_times(breaker, 2)
            with pytest.raises(CircuitOpenError):
                await breaker.execute(ok)
            stats = breaker.stats()
            assert stats.state == "open"
            assert counts(stats) == (4, 1, 3, 1, 1)
            assert stats.total_calls == stats.successful_calls + stats.failed_calls
            assert stats.failure_rate == 0.75
            assert stats.consecutive_failures == 3
            assert stats.state_changes == 1
            assert stats.retry_after_seconds == RESET
            assert stats.last_error == "Boom: boom"
            assert stats.opened_at is not None
            assert stats.opened_at == stats.last_state_change == stats.last_failure
            assert stats.opened_at.tzinfo is not None
            assert stats.restarts == 0
            encoded = msgspec.json.decode(msgspec.json.encode(stats, enc_hook=str))
            assert encoded["state"] == "open"
            assert encoded["settings"]["reset_timeout"] == "30s"


async def test_in_flight_counts_running_calls(autojump_clock: trio.testing.MockClock) -> None:
    with trio.fail_after(100):
        async with open_circuit_breaker("svc", SETTINGS) as breaker:
            async with trio.open_nursery() as nursery:
                for _ in range(3):
                    nursery.start_soon(_slow_call, breaker)
                async with breaker.guard():
                    await trio.testing.wait_all_tasks_blocked()
                    assert breaker.stats().in_flight == 4
            assert breaker.stats().in_flight == 0


# --- noop -----------------------------------------------------------------------------


async def test_noop_admits_everything_without_timeout(
    autojump_clock: trio.testing.MockClock,
) -> None:
    settings = msgspec.structs.replace(SETTINGS, implementation_type="noop")
    with trio.fail_after(1000):
        async with open_circuit_breaker("svc", settings) as breaker:
            await fail_times(breaker, 10)
            start = trio.current_time()
            assert await breaker.execute(slow, TIMEOUT * 50) == "slow"
            assert trio.current_time() - start == TIMEOUT * 50
            async with breaker.guard():
                await trio.sleep(TIMEOUT * 2)
            await trio.testing.wait_all_tasks_blocked()
            stats = breaker.stats()
            assert (stats.state, stats.implementation_type, stats.forced) == (
                "closed",
                "noop",
                None,
            )
            assert counts(stats) == (12, 2, 10, 0, 0)
            assert stats.consecutive_failures == 0


async def test_noop_first_call_gets_no_timeout(autojump_clock: trio.testing.MockClock) -> None:
    # The very first call, before the actor has run once, follows noop rules too.
    settings = msgspec.structs.replace(SETTINGS, implementation_type="noop")
    with trio.fail_after(1000):
        async with open_circuit_breaker("svc", settings) as breaker:
            assert await breaker.execute(slow, TIMEOUT * 2) == "slow"
            assert trio.current_time() == TIMEOUT * 2


async def test_standalone_breaker_with_mapping_settings(
    autojump_clock: trio.testing.MockClock,
) -> None:
    with trio.fail_after(100):
        async with open_circuit_breaker(
            "api", {"failure_threshold": 1, "reset_timeout": "1.5s"}
        ) as breaker:
            assert breaker.name == "api"
            assert breaker.stats().settings == Settings(
                failure_threshold=1, reset_timeout=Duration(1_500)
            )
            await fail_times(breaker, 1)
            with pytest.raises(CircuitOpenError) as info:
                await breaker.execute(ok)
            assert info.value.retry_after == 1.5
            assert re.fullmatch(r"<CircuitBreaker 'api' open>", repr(breaker))


async def test_standalone_breaker_default_settings(
    autojump_clock: trio.testing.MockClock,
) -> None:
    with trio.fail_after(100):
        async with open_circuit_breaker("api") as breaker:
            assert breaker.stats().settings == Settings()


async def _slow_call(breaker: CircuitBreaker) -> None:
    assert await breaker.execute(slow, 1.0) == "slow"


# --- successes counted by the handle (no message when they cannot change the state) --


async def test_stats_exact_right_after_sequential_successes(
    autojump_clock: trio.testing.MockClock,
) -> None:
    with trio.fail_after(10):
        async with open_circuit_breaker("db", SETTINGS) as breaker:
            for n in range(5):
                assert await breaker.execute(ok, n) == n
                stats = breaker.stats()  # no wait for the actor
                assert (stats.total_calls, stats.successful_calls) == (n + 1, n + 1)


async def test_success_behind_a_failure_in_flight_resets_the_streak(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # A failure is on its way to the actor when a success of the same epoch finishes.
    # The published view still shows no failures, yet the success must not be counted
    # on the side: it must reach the actor after the failure and reset the streak.
    # Trio runs the woken success and the actor in either order, so try many times.
    async def instant() -> str:
        return "ok"

    async def round_() -> None:
        async with open_circuit_breaker("db", SETTINGS) as breaker:
            release = trio.Event()

            async def succeed_after_release() -> None:
                await release.wait()
                await breaker.execute(instant)

            async def failing() -> None:
                release.set()
                raise Boom("in flight")

            async with trio.open_nursery() as nursery:
                nursery.start_soon(succeed_after_release)
                await trio.testing.wait_all_tasks_blocked()
                with pytest.raises(Boom):
                    await breaker.execute(failing)
            await trio.testing.wait_all_tasks_blocked()
            stats = breaker.stats()
            assert (stats.successful_calls, stats.failed_calls) == (1, 1)
            assert stats.consecutive_failures == 0

    for _ in range(40):
        with trio.fail_after(10):
            await round_()


async def test_handle_counted_successes_survive_reconfiguration(
    autojump_clock: trio.testing.MockClock,
) -> None:
    with trio.fail_after(10):
        async with open_circuit_breakers(CircuitBreakerConfig(global_=SETTINGS)) as manager:
            breaker = await manager.get_circuit_breaker("db")
            for _ in range(4):
                await breaker.execute(ok)
            await manager.update_profile("db", {"failure_threshold": 7})
            for _ in range(3):
                await breaker.execute(ok)
            await trio.testing.wait_all_tasks_blocked()
            stats = breaker.stats()
            assert (stats.successful_calls, stats.restarts) == (7, 1)
            assert stats.settings.failure_threshold == 7


async def test_timestamps_are_stable_between_reads(
    autojump_clock: trio.testing.MockClock,
) -> None:
    with trio.fail_after(10):
        async with open_circuit_breaker("db", SETTINGS) as breaker:
            await fail_times(breaker, SETTINGS.failure_threshold)
            first = breaker.stats()
            assert first.last_state_change is not None
            for _ in range(100):
                later = breaker.stats()
                assert later.last_state_change == first.last_state_change
                assert later.opened_at == first.opened_at == first.last_state_change


def test_circuit_open_error_pickles_and_prints() -> None:
    import pickle

    error = CircuitOpenError("db", 12.5)
    again = pickle.loads(pickle.dumps(error))
    assert (again.service, again.retry_after) == ("db", 12.5)
    assert str(again) == str(error) == "circuit 'db' is open; retry in 12.5 s"
    forced = CircuitOpenError("db", None, reason="forced open")
    assert str(forced) == "circuit 'db' is forced open; no retry time is known"


# --- review findings ------------------------------------------------------------------


async def test_group_left_over_by_the_timeout_still_reports_and_frees_the_slot(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # The operation's nursery turns the guard's timeout into Cancelled + ValueError; the
    # timeout scope catches its Cancelled and re-raises the rest as a group. That is a
    # failure of the trial: it must be counted and must not keep the trial slot.
    async def messy() -> None:
        async def child() -> None:
            try:
                await trio.sleep_forever()
            finally:
                raise ValueError("cleanup failed")

        async with trio.open_nursery() as nursery:
            nursery.start_soon(child)
            await trio.sleep_forever()

    async def guarded(breaker: CircuitBreaker) -> None:
        async with breaker.guard():
            await messy()

    settings = msgspec.structs.replace(SETTINGS, success_threshold=1)
    with trio.fail_after(1000):
        async with open_circuit_breaker("db", settings) as breaker:
            for use_guard in (True, False):
                await fail_times(breaker, SETTINGS.failure_threshold)
                await trio.sleep(RESET)
                with pytest.raises(ExceptionGroup) as info:
                    await (guarded(breaker) if use_guard else breaker.execute(messy))
                assert info.group_contains(ValueError, match=r"^cleanup failed$")
                await trio.testing.wait_all_tasks_blocked()
                stats = breaker.stats()
                assert (stats.state, stats.in_flight) == ("open", 0)  # the trial failed
                await trio.sleep(RESET)
                assert await breaker.execute(ok) == "ok"  # a trial slot is free again
                await trio.testing.wait_all_tasks_blocked()
                assert breaker.stats().state == "closed"


async def test_callers_cancelled_while_asking_count_no_rejection(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # Callers ask the actor for a trial slot (all taken) and are cancelled from outside a
    # pass or two later: some before the answer, some after it came but before they saw
    # it. Only the rejections callers actually received may be counted.
    settings = msgspec.structs.replace(SETTINGS, success_threshold=1)
    seen = 0

    async def caller(scopes: list[trio.CancelScope]) -> None:
        nonlocal seen
        with trio.CancelScope() as scope:
            scopes.append(scope)
            try:
                await breaker.execute(ok)
            except CircuitOpenError:
                seen += 1

    with trio.fail_after(100):
        async with open_circuit_breaker("db", settings) as breaker:
            await fail_times(breaker, SETTINGS.failure_threshold)
            await trio.sleep(RESET)
            async with trio.open_nursery() as holder:
                holder.start_soon(breaker.execute, hang)  # holds the only trial slot
                await trio.testing.wait_all_tasks_blocked()
                rejected_before = breaker.stats().rejected_calls
                for passes in range(1, 4):
                    for _ in range(20):
                        scopes: list[trio.CancelScope] = []
                        async with trio.open_nursery() as nursery:
                            for _ in range(5):
                                nursery.start_soon(caller, scopes)
                            for _ in range(passes):
                                await trio.lowlevel.cancel_shielded_checkpoint()
                            for scope in scopes:
                                scope.cancel()
                await trio.testing.wait_all_tasks_blocked()
                assert 0 < seen < 300
                assert breaker.stats().rejected_calls - rejected_before == seen
                holder.cancel_scope.cancel()


async def test_a_sync_function_is_a_mistake_not_a_failure(
    autojump_clock: trio.testing.MockClock,
) -> None:
    calls: list[int] = []

    def sync(n: int) -> int:
        calls.append(n)
        return n

    settings = msgspec.structs.replace(SETTINGS, success_threshold=1)
    message = r"returned int, not an awaitable: pass an async function"
    with trio.fail_after(100):
        async with open_circuit_breaker("db", settings) as breaker:
            for n in range(5):
                with pytest.raises(TypeError, match=message):
                    await breaker.execute(sync, n)  # type: ignore[arg-type]
            stats = breaker.stats()
            assert (stats.state, stats.total_calls, stats.in_flight) == ("closed", 0, 0)
            await fail_times(breaker, SETTINGS.failure_threshold)
            await trio.sleep(RESET)
            with pytest.raises(TypeError, match=message):  # in half-open: slot given back
                await breaker.execute(sync, 9)  # type: ignore[arg-type]
            assert await breaker.execute(ok) == "ok"
            await trio.testing.wait_all_tasks_blocked()
            assert breaker.stats().state == "closed"
            assert calls == [0, 1, 2, 3, 4, 9]


def test_retry_after_is_shown_in_plain_seconds() -> None:
    assert str(CircuitOpenError("db", 3600.0)).endswith("retry in 3600 s")
    assert str(CircuitOpenError("db", 0.25)).endswith("retry in 0.25 s")
    assert str(CircuitOpenError("db", 29.9996)).endswith("retry in 30 s")


async def test_a_retry_loop_on_an_open_circuit_lets_other_tasks_run(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # Rejections decided from the view are cheap and mostly not schedule points, but a
    # loop that retries without sleeping must not freeze the other tasks until retry_at.
    heartbeats = 0

    async def heartbeat() -> None:
        nonlocal heartbeats
        for _ in range(10_000):
            heartbeats += 1
            await trio.lowlevel.checkpoint()

    with trio.fail_after(100):
        async with open_circuit_breaker("db", SETTINGS) as breaker:
            await fail_times(breaker, SETTINGS.failure_threshold)
            async with trio.open_nursery() as nursery:
                nursery.start_soon(heartbeat)  # runs only when this task yields
                for _ in range(1_000):
                    with pytest.raises(CircuitOpenError):
                        await breaker.execute(ok)
                assert heartbeats >= 1_000 // 64 - 1
                nursery.cancel_scope.cancel()


async def test_a_guard_is_entered_once(autojump_clock: trio.testing.MockClock) -> None:
    with trio.fail_after(100):
        async with open_circuit_breaker("db", SETTINGS) as breaker:
            guard = breaker.guard()
            async with guard:
                pass
            with pytest.raises(RuntimeError, match=r"^a guard is entered once"):
                async with guard:
                    raise AssertionError("not reached")  # pragma: no cover
            assert breaker.stats().total_calls == 1
