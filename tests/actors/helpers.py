"""Operations and settings the engine tests share."""

from typing import Any

import trio
import trio.lowlevel

from actors import CircuitBreaker, Duration, Settings

# failure_threshold 3, operation_timeout 2 s, reset_timeout 30 s, success_threshold 2
SETTINGS = Settings(
    failure_threshold=3,
    operation_timeout=Duration(2_000),
    reset_timeout=Duration(30_000),
    success_threshold=2,
)
TIMEOUT = SETTINGS.operation_timeout.seconds
RESET = SETTINGS.reset_timeout.seconds


class Boom(Exception):
    pass


async def ok(value: Any = "ok") -> Any:
    await trio.lowlevel.checkpoint()
    return value


async def boom() -> None:
    await trio.lowlevel.checkpoint()
    raise Boom("boom")


async def slow(seconds: float, value: Any = "slow") -> Any:
    await trio.sleep(seconds)
    return value


async def hang() -> None:
    await trio.sleep_forever()


async def fail_times(breaker: CircuitBreaker, count: int) -> None:
    for _ in range(count):
        try:
            await breaker.execute(boom)
        except Boom:
            pass
        else:  # pragma: no cover - boom always raises
            raise AssertionError("boom did not raise")
