"""The manager: registry, configuration in force, forcing, reconfiguration, shutdown."""

import re

import msgspec
import pytest
import trio
import trio.testing

from actors import (
    CircuitBreaker,
    CircuitBreakerConfig,
    CircuitBreakerError,
    CircuitBreakerManager,
    CircuitOpenError,
    Config,
    ConfigError,
    Duration,
    ForceRefusedError,
    Profile,
    Settings,
    UnknownServiceError,
    open_circuit_breaker,
    open_circuit_breakers,
)

from .helpers import RESET, SETTINGS, Boom, boom, fail_times, hang, ok

CONFIG = CircuitBreakerConfig(
    global_=SETTINGS,
    profiles={
        "db": Profile(failure_threshold=2),
        "cache": Profile(implementation_type="noop"),
    },
)


async def test_same_name_same_handle(autojump_clock: trio.testing.MockClock) -> None:
    with trio.fail_after(10):
        async with open_circuit_breakers(CONFIG) as manager:
            assert manager.services() == []
            first = await manager.get_circuit_breaker("api")
            assert await manager.get_circuit_breaker("api") is first
            other = await manager.get_circuit_breaker("db")
            assert other is not first
            assert manager.services() == ["api", "db"]
            await fail_times(first, 2)
            assert other.stats().total_calls == 0
            assert (await manager.get_circuit_breaker("api")).stats().failed_calls == 2


async def test_settings_come_from_the_config(autojump_clock: trio.testing.MockClock) -> None:
    with trio.fail_after(10):
        async with open_circuit_breakers(CONFIG) as manager:
            assert manager.config is CONFIG
            db = await manager.get_circuit_breaker("db")
            api = await manager.get_circuit_breaker("api")
            assert db.stats().settings == msgspec.structs.replace(SETTINGS, failure_threshold=2)
            assert api.stats().settings == SETTINGS
            await fail_times(db, 2)
            assert db.stats().state == "open"


@pytest.mark.parametrize("kind", ["none", "config", "circuitbreaker"])
async def test_open_circuit_breakers_accepts(
    autojump_clock: trio.testing.MockClock, kind: str
) -> None:
    expected = CircuitBreakerConfig() if kind == "none" else CONFIG
    with trio.fail_after(10):
        if kind == "none":
            context = open_circuit_breakers()
        elif kind == "config":
            context = open_circuit_breakers(Config(circuitbreaker=CONFIG))
        else:
            context = open_circuit_breakers(CONFIG)
        async with context as manager:
            assert isinstance(manager, CircuitBreakerManager)
            assert manager.config == expected


async def test_bad_service_name(autojump_clock: trio.testing.MockClock) -> None:
    with trio.fail_after(10):
        async with open_circuit_breakers() as manager:
            with pytest.raises(ValueError, match=r"^invalid service name \"a b\""):
                await manager.get_circuit_breaker("a b")
            assert manager.services() == []


async def test_manager_stats(autojump_clock: trio.testing.MockClock) -> None:
    with trio.fail_after(10):
        async with open_circuit_breakers(CONFIG) as manager:
            assert manager.stats() == {}
            zeta = await manager.get_circuit_breaker("zeta")
            alpha = await manager.get_circuit_breaker("alpha")
            await zeta.execute(ok)
            await fail_times(alpha, 1)
            await trio.testing.wait_all_tasks_blocked()
            stats = manager.stats()
            assert list(stats) == ["alpha", "zeta"]
            assert stats["zeta"].successful_calls == 1
            assert stats["alpha"].failed_calls == 1
            assert manager.service_stats("zeta") == zeta.stats()


async def test_unknown_service(autojump_clock: trio.testing.MockClock) -> None:
    with trio.fail_after(10):
        async with open_circuit_breakers(CONFIG) as manager:
            message = r"^unknown service 'nope': it is neither in use nor has a profile$"
            with pytest.raises(UnknownServiceError, match=message) as info:
                await manager.force("nope", "open")
            assert info.value.service == "nope"
            assert isinstance(info.value, CircuitBreakerError)
            assert isinstance(info.value, LookupError)
            with pytest.raises(UnknownServiceError, match=message):
                manager.service_stats("nope")
            assert manager.services() == []


async def test_known_service_not_in_use(autojump_clock: trio.testing.MockClock) -> None:
    with trio.fail_after(10):
        async with open_circuit_breakers(CONFIG) as manager:
            assert manager.is_known("db")
            assert not manager.is_known("api")
            fresh = manager.service_stats("db")
            assert (fresh.state, fresh.total_calls) == ("closed", 0)
            assert fresh.settings.failure_threshold == 2
            assert manager.services() == []  # looking does not create it
            stats = await manager.force("db", "open")
            assert (stats.name, stats.state, stats.forced) == ("db", "open", "open")
            assert manager.services() == ["db"]  # forcing does
            db = await manager.get_circuit_breaker("db")
            with pytest.raises(CircuitOpenError):
                await db.execute(ok)


async def test_force_a_noop_breaker_is_refused(autojump_clock: trio.testing.MockClock) -> None:
    with trio.fail_after(10):
        async with open_circuit_breakers(CONFIG) as manager:
            for action in ("open", "closed", "half_open"):
                with pytest.raises(
                    ForceRefusedError,
                    match=r"^circuit 'cache' uses implementation_type noop; forcing it is refused$",
                ) as info:
                    await manager.force("cache", action)
                assert isinstance(info.value, CircuitBreakerError)
                assert info.value.service == "cache"
            assert manager.services() == []  # refused before a breaker was created
            stats = manager.service_stats("cache")
            assert (stats.state, stats.forced, stats.state_changes) == ("closed", None, 0)


async def test_force_unknown_action(autojump_clock: trio.testing.MockClock) -> None:
    with trio.fail_after(10):
        async with open_circuit_breakers(CONFIG) as manager:
            with pytest.raises(ValueError, match=r"^unknown force action 'shut'"):
                await manager.force("db", "shut")


async def test_force_closed_releases_and_resets(autojump_clock: trio.testing.MockClock) -> None:
    with trio.fail_after(10):
        async with open_circuit_breakers(CONFIG) as manager:
            api = await manager.get_circuit_breaker("api")
            await fail_times(api, 3)
            await manager.force("api", "open")
            stats = await manager.force("api", "closed")
            assert (stats.state, stats.forced, stats.consecutive_failures) == ("closed", None, 0)
            assert stats.failed_calls == 3
            await fail_times(api, 2)
            assert await api.execute(ok) == "ok"


# --- reconfiguration ------------------------------------------------------------------


async def test_update_config_restarts_only_changed_breakers(
    autojump_clock: trio.testing.MockClock,
) -> None:
    with trio.fail_after(100):
        async with open_circuit_breakers(CONFIG) as manager:
            names = ["api", "db", "cache", "other"]
            handles = {name: await manager.get_circuit_breaker(name) for name in names}
            await fail_times(handles["api"], 2)
            await fail_times(handles["db"], 2)
            assert handles["db"].stats().state == "open"
            new = CircuitBreakerConfig(
                global_=msgspec.structs.replace(SETTINGS, reset_timeout=Duration(60_000)),
                profiles={
                    "db": Profile(failure_threshold=2, reset_timeout=Duration(30_000)),
                    "cache": Profile(implementation_type="noop", reset_timeout=Duration(30_000)),
                    "other": Profile(reset_timeout=Duration(30_000)),
                },
            )
            changed = await manager.update_config(new)
            assert changed == ["api"]  # db, cache and other keep their settings
            assert manager.config is new
            restarts = {name: handle.stats().restarts for name, handle in handles.items()}
            assert restarts == {"api": 1, "db": 0, "cache": 0, "other": 0}
            api = handles["api"].stats()
            assert (api.state, api.consecutive_failures, api.failed_calls) == ("closed", 2, 2)
            assert api.settings.reset_timeout == Duration(60_000)
            assert handles["db"].stats().state == "open"
            assert await manager.update_config(new) == []
            assert handles["api"].stats().restarts == 1


async def test_update_config_keeps_state_and_counts(
    autojump_clock: trio.testing.MockClock,
) -> None:
    with trio.fail_after(100):
        async with open_circuit_breakers(CONFIG) as manager:
            api = await manager.get_circuit_breaker("api")
            await api.execute(ok)
            await fail_times(api, 3)
            opened_at = trio.current_time()
            await trio.sleep(5)
            new = CircuitBreakerConfig(
                global_=msgspec.structs.replace(SETTINGS, success_threshold=1)
            )
            assert await manager.update_config(new) == ["api"]
            stats = api.stats()
            assert (stats.state, stats.total_calls, stats.failed_calls) == ("open", 4, 3)
            assert stats.restarts == 1
            assert stats.retry_after_seconds == RESET - 5
            with pytest.raises(CircuitOpenError):
                await api.execute(ok)
            await trio.sleep_until(opened_at + RESET)
            await trio.testing.wait_all_tasks_blocked()
            assert api.stats().state == "half_open"
            await api.execute(ok)  # one success is enough now
            await trio.testing.wait_all_tasks_blocked()
            stats = api.stats()
            assert (stats.state, stats.total_calls, stats.successful_calls) == ("closed", 5, 2)
            assert stats.rejected_calls == 1


async def test_lowered_failure_threshold_opens_at_reconfiguration(
    autojump_clock: trio.testing.MockClock,
) -> None:
    with trio.fail_after(100):
        async with open_circuit_breakers(CONFIG) as manager:
            api = await manager.get_circuit_breaker("api")
            await fail_times(api, 2)
            await trio.sleep(3)
            await manager.update_profile("api", {"failure_threshold": 2})
            stats = api.stats()
            assert stats.state == "open"
            with pytest.raises(CircuitOpenError) as info:
                await api.execute(ok)
            assert info.value.retry_after == RESET


async def test_changed_reset_timeout_counts_from_the_opening(
    autojump_clock: trio.testing.MockClock,
) -> None:
    with trio.fail_after(100):
        async with open_circuit_breakers(CONFIG) as manager:
            api = await manager.get_circuit_breaker("api")
            await fail_times(api, 3)
            opened_at = trio.current_time()
            await trio.sleep(10)
            await manager.update_profile("api", {"reset_timeout": "15s"})
            assert api.stats().retry_after_seconds == 5
            await trio.sleep_until(opened_at + 15)
            await trio.testing.wait_all_tasks_blocked()
            assert api.stats().state == "half_open"
            await fail_times(api, 1)
            await manager.update_profile("api", {"reset_timeout": "1s"})
            await trio.testing.wait_all_tasks_blocked()
            assert api.stats().state == "open"  # 1 s after the re-opening: not yet
            await trio.sleep(1)
            await trio.testing.wait_all_tasks_blocked()
            assert api.stats().state == "half_open"
            await fail_times(api, 1)
            await trio.sleep(5)
            await manager.update_profile("api", {"reset_timeout": "2s"})
            assert api.stats().state == "half_open"  # already past: half-open at once


async def test_switch_to_noop_and_back(autojump_clock: trio.testing.MockClock) -> None:
    with trio.fail_after(100):
        async with open_circuit_breakers(CONFIG) as manager:
            api = await manager.get_circuit_breaker("api")
            await fail_times(api, 3)
            await manager.force("api", "open")
            settings = await manager.update_profile("api", {"implementation_type": "noop"})
            assert settings.implementation_type == "noop"
            stats = api.stats()
            assert (stats.state, stats.forced, stats.failed_calls) == ("closed", None, 3)
            await fail_times(api, 5)
            await manager.update_profile("api", {})
            stats = api.stats()
            assert (stats.state, stats.implementation_type, stats.failed_calls) == (
                "closed",
                "rssafe",
                8,
            )
            await fail_times(api, 2)
            assert await api.execute(ok) == "ok"  # it started closed, counting afresh


async def test_update_profile_replaces_the_profile(
    autojump_clock: trio.testing.MockClock,
) -> None:
    config = CircuitBreakerConfig(
        global_=SETTINGS,
        profiles={"db": Profile(failure_threshold=1, reset_timeout=Duration(60_000))},
    )
    with trio.fail_after(100):
        async with open_circuit_breakers(config) as manager:
            db = await manager.get_circuit_breaker("db")
            settings = await manager.update_profile("db", {"success_threshold": 4})
            assert settings == msgspec.structs.replace(SETTINGS, success_threshold=4)
            assert manager.config.profiles["db"] == Profile(success_threshold=4)
            assert db.stats().settings == settings
            profile = Profile(operation_timeout=Duration(100))
            settings = await manager.update_profile("new", profile)
            assert manager.config.profiles["new"] is profile
            assert settings.operation_timeout == Duration(100)
            assert manager.services() == ["db"]


async def test_invalid_update_changes_nothing(autojump_clock: trio.testing.MockClock) -> None:
    with trio.fail_after(100):
        async with open_circuit_breakers(CONFIG) as manager:
            api = await manager.get_circuit_breaker("api")
            with pytest.raises(ConfigError) as info:
                await manager.update_config(
                    {
                        "global": {"failure_threshold": 1},
                        "profiles": {"db": {"reset_timeout": "0s"}},
                    }
                )
            assert [p.path for p in info.value.problems] == [
                "circuitbreaker.profiles.db.reset_timeout"
            ]
            with pytest.raises(
                ConfigError,
                match=r"^circuitbreaker\.profiles\.api\.failure_threshold: "
                r"expected an integer >= 1, got 0$",
            ):
                await manager.update_profile("api", {"failure_threshold": 0})
            with pytest.raises(ValueError, match="invalid service name"):
                await manager.update_profile("a/b", {})
            assert manager.config is CONFIG
            assert api.stats().restarts == 0


async def test_update_config_from_mapping(autojump_clock: trio.testing.MockClock) -> None:
    with trio.fail_after(100):
        async with open_circuit_breakers(CONFIG) as manager:
            api = await manager.get_circuit_breaker("api")
            changed = await manager.update_config({"global": {"failure_threshold": 1}})
            assert changed == ["api"]
            assert manager.config == CircuitBreakerConfig(global_=Settings(failure_threshold=1))
            await fail_times(api, 1)
            assert api.stats().state == "open"


async def test_handles_survive_reconfiguration(autojump_clock: trio.testing.MockClock) -> None:
    with trio.fail_after(100):
        async with open_circuit_breakers(CONFIG) as manager:
            api = await manager.get_circuit_breaker("api")
            for threshold in range(1, 6):
                await manager.update_profile("api", {"failure_threshold": threshold + 1})
                assert await manager.get_circuit_breaker("api") is api
                assert await api.execute(ok, threshold) == threshold
            await trio.testing.wait_all_tasks_blocked()
            stats = api.stats()
            assert (stats.restarts, stats.successful_calls) == (5, 5)
            assert stats.settings.failure_threshold == 6


# --- shutdown -------------------------------------------------------------------------


async def test_calls_after_leaving_raise(autojump_clock: trio.testing.MockClock) -> None:
    with trio.fail_after(100):
        async with open_circuit_breakers(CONFIG) as manager:
            api = await manager.get_circuit_breaker("api")
            db = await manager.get_circuit_breaker("db")
            await fail_times(db, 2)
            half = await manager.get_circuit_breaker("half")
            await manager.force("half", "half_open")
        stopped = r"^circuit '\w+': the circuit-breaker engine has stopped$"
        for handle in (api, db, half):
            with pytest.raises(CircuitBreakerError, match=stopped):
                await handle.execute(ok)
            with pytest.raises(CircuitBreakerError, match=stopped):
                async with handle.guard():
                    raise AssertionError("not admitted")  # pragma: no cover
        assert api.stats().state == "closed"
        assert db.stats().retry_after_seconds is None


async def test_calls_running_at_exit_finish(autojump_clock: trio.testing.MockClock) -> None:
    # Calls from tasks that outlive the engine finish normally and report nothing.
    results: list[str] = []

    async def call(breaker: CircuitBreaker, fail: bool) -> None:
        async def operation() -> str:
            await trio.sleep(1.0)
            if fail:
                raise Boom(breaker.name)
            return breaker.name

        try:
            results.append(await breaker.execute(operation))
        except Boom as exc:
            results.append(f"boom {exc}")

    with trio.fail_after(100):
        async with trio.open_nursery() as outer, open_circuit_breakers(CONFIG) as manager:
            api = await manager.get_circuit_breaker("api")
            db = await manager.get_circuit_breaker("db")
            half = await manager.get_circuit_breaker("half")
            await manager.force("half", "half_open")
            outer.start_soon(call, api, False)
            outer.start_soon(call, db, True)
            outer.start_soon(call, half, True)
            await trio.testing.wait_all_tasks_blocked()
            assert half.stats().in_flight == 1
        assert sorted(results) == ["api", "boom db", "boom half"]
        assert trio.current_time() == 1.0
        assert (api.stats().total_calls, db.stats().total_calls) == (0, 0)


async def test_standalone_breaker_stops_with_its_block(
    autojump_clock: trio.testing.MockClock,
) -> None:
    with trio.fail_after(100):
        async with open_circuit_breaker("solo", SETTINGS) as breaker:
            assert await breaker.execute(ok) == "ok"
            with pytest.raises(Boom):
                await breaker.execute(boom)
        with pytest.raises(CircuitBreakerError, match="engine has stopped"):
            await breaker.execute(hang)
        assert re.fullmatch(r"<CircuitBreaker 'solo' closed>", repr(breaker))


async def test_manager_after_leaving_raises(autojump_clock: trio.testing.MockClock) -> None:
    with trio.fail_after(100):
        async with open_circuit_breakers(CONFIG) as manager:
            await manager.get_circuit_breaker("api")
        stopped = "the circuit-breaker engine has stopped$"
        with pytest.raises(CircuitBreakerError, match=f"^circuit 'new': {stopped}"):
            await manager.get_circuit_breaker("new")
        with pytest.raises(CircuitBreakerError, match=f"^circuit 'api': {stopped}"):
            await manager.force("api", "open")
        config = manager.config
        with pytest.raises(CircuitBreakerError, match=f"^{stopped}"):
            await manager.update_config(CircuitBreakerConfig())
        assert manager.config is config


async def test_an_error_in_the_block_arrives_unwrapped(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async def body() -> None:
        async with open_circuit_breakers(CONFIG) as manager:
            await manager.get_circuit_breaker("api")
            raise Boom("from the block")

    with trio.fail_after(100), pytest.raises(Boom, match=r"^from the block$"):
        await body()


async def test_configs_built_in_python_are_checked_too(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # msgspec does not check a Struct made by calling it; the engine must.
    bad_settings = Settings(implementation_type="bogus", failure_threshold=0)  # type: ignore[arg-type]
    threshold = r"circuitbreaker\.global\.failure_threshold: expected an integer >= 1, got 0"
    with trio.fail_after(100):
        with pytest.raises(ConfigError, match=threshold):
            async with open_circuit_breaker("svc", Settings(failure_threshold=0)):
                raise AssertionError("not reached")  # pragma: no cover
        with pytest.raises(ConfigError, match=r'implementation_type: expected one of "rssafe"'):
            async with open_circuit_breakers(CircuitBreakerConfig(global_=bad_settings)):
                raise AssertionError("not reached")  # pragma: no cover
        async with open_circuit_breakers(CONFIG) as manager:
            api = await manager.get_circuit_breaker("api")
            with pytest.raises(ConfigError, match=threshold) as info:
                await manager.update_config(CircuitBreakerConfig(global_=bad_settings))
            assert len(info.value.problems) == 2
            with pytest.raises(
                ConfigError,
                match=r"^circuitbreaker\.profiles\.api\.failure_threshold: expected an integer",
            ):
                await manager.update_profile("api", Profile(failure_threshold=-3))
            assert manager.config is CONFIG
            assert api.stats().restarts == 0


async def test_an_error_from_the_block_keeps_its_chain(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async def body() -> None:
        async with open_circuit_breakers(CONFIG):
            table: dict[str, int] = {}
            try:
                table["k"]
            except KeyError as exc:
                raise Boom("wrapped") from exc

    with trio.fail_after(100), pytest.raises(Boom) as info:
        await body()
    assert isinstance(info.value.__cause__, KeyError)
    assert info.value.__context__ is info.value.__cause__
    assert info.value.__suppress_context__  # as `raise ... from` left it
