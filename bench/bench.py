"""tripwire's benchmarks: ``make bench`` (``.venv/bin/python bench/bench.py``).

One process, one run. Every figure is measured several times, interleaved with its
baseline (the same repeat measures both, back to back), and shown as the median of the
repeats; the ratio is the median of the per-repeat ratios, so a noisy, shared machine
moves both sides together. Peers run each on their own event loop: ``asyncio.run`` for
aiobreaker and purgatory, plain loops for pybreaker and circuitbreaker.

``--quick`` runs fewer repeats (a smoke test); ``--profile`` runs the closed hot path,
the rejection and a swarm under pyinstrument and prints where the time goes.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import importlib.metadata
import platform
import statistics
import sys
import time
import tracemalloc
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, Final

import aiobreaker
import circuitbreaker
import purgatory
import pybreaker
import trio
import trio.testing

from actors import (
    CircuitBreaker,
    CircuitBreakerConfig,
    CircuitOpenError,
    open_circuit_breaker,
    open_circuit_breakers,
    parse_circuitbreaker,
)

TIMEOUT: Final = 5.0  # operation_timeout of every breaker here, and the floor's timeout
YIELD_EVERY: Final = 1024  # the sequential loops let other tasks (the actor) run this often


# --- the operations ---------------------------------------------------------------------


async def op() -> int:
    """An operation that succeeds at once (no checkpoint)."""
    return 1


async def op_yield() -> int:
    """An operation that succeeds after one scheduler pass, as any real I/O would."""
    await trio.lowlevel.checkpoint()
    return 1


async def aio_op() -> int:
    return 1


def sync_op() -> int:
    return 1


class Boom(Exception):
    pass


async def fail() -> int:
    raise Boom("down")


# --- measuring -------------------------------------------------------------------------


@dataclass
class Samples:
    """Seconds per call (or per whatever) of each contestant, one entry per repeat."""

    values: dict[str, list[float]] = field(default_factory=dict)

    def add(self, name: str, value: float) -> None:
        self.values.setdefault(name, []).append(value)

    def median(self, name: str) -> float:
        return statistics.median(self.values[name])

    def ratio(self, name: str, base: str) -> float:
        """Median of the per-repeat ratios name/base."""
        pairs = zip(self.values[name], self.values[base], strict=True)
        return statistics.median(a / b for a, b in pairs)


@dataclass
class Row:
    figure: str
    value: str
    baseline: str
    ratio: float | None
    goal: str
    met: bool | None


def progress(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


@contextmanager
def collected() -> Iterator[None]:
    """Start from a collected heap so a GC pass from earlier work does not land here."""
    gc.collect()
    yield


async def settle() -> None:
    """Wait until every task (the actors included) has nothing left to do."""
    await trio.testing.wait_all_tasks_blocked()


def us(seconds: float) -> str:
    return f"{seconds * 1e6:.2f} µs"


# --- per-call loops ------------------------------------------------------------------------
# Each returns seconds per call. The trio loops checkpoint every YIELD_EVERY calls (the
# floor too) and wait at the end until the actors have taken every reported outcome, so
# tripwire's deferred work is inside the measured time.


async def floor_loop(n: int, operation: Callable[[], Awaitable[int]]) -> float:
    with collected():
        start = time.perf_counter()
        for i in range(n):
            with trio.move_on_after(TIMEOUT):
                await operation()
            if i % YIELD_EVERY == 0:
                await trio.lowlevel.checkpoint()
        await settle()
        return (time.perf_counter() - start) / n


async def execute_loop(
    n: int, breaker: CircuitBreaker, operation: Callable[[], Awaitable[int]]
) -> float:
    execute = breaker.execute
    with collected():
        start = time.perf_counter()
        for i in range(n):
            await execute(operation)
            if i % YIELD_EVERY == 0:
                await trio.lowlevel.checkpoint()
        await settle()
        return (time.perf_counter() - start) / n


async def reject_loop(n: int, breaker: CircuitBreaker) -> float:
    execute = breaker.execute
    with collected():
        start = time.perf_counter()
        for i in range(n):
            try:
                await execute(op)
            except CircuitOpenError:
                pass
            if i % YIELD_EVERY == 0:
                await trio.lowlevel.checkpoint()
        await settle()
        return (time.perf_counter() - start) / n


def pybreaker_loop(n: int, cb: pybreaker.CircuitBreaker) -> float:
    call = cb.call
    with collected():
        start = time.perf_counter()
        for _ in range(n):
            call(sync_op)
        return (time.perf_counter() - start) / n


def pybreaker_reject_loop(n: int, cb: pybreaker.CircuitBreaker) -> float:
    call = cb.call
    with collected():
        start = time.perf_counter()
        for _ in range(n):
            try:
                call(sync_op)
            except pybreaker.CircuitBreakerError:
                pass
        return (time.perf_counter() - start) / n


def circuitbreaker_loop(n: int, cb: Any) -> float:
    call = cb.call
    with collected():
        start = time.perf_counter()
        for _ in range(n):
            call(sync_op)
        return (time.perf_counter() - start) / n


async def aiobreaker_loops(n: int) -> tuple[float, float]:
    """(closed call, rejection) of aiobreaker, on this asyncio loop."""
    cb = aiobreaker.CircuitBreaker(fail_max=5, timeout_duration=timedelta(seconds=30))
    call = cb.call_async
    with collected():
        start = time.perf_counter()
        for _ in range(n):
            await call(aio_op)
        closed = (time.perf_counter() - start) / n
    cb.open()
    with collected():
        start = time.perf_counter()
        for _ in range(n):
            try:
                await call(aio_op)
            except aiobreaker.CircuitBreakerError:
                pass
        rejected = (time.perf_counter() - start) / n
    return closed, rejected


async def purgatory_loop(n: int) -> float:
    factory = purgatory.AsyncCircuitBreakerFactory(default_threshold=5, default_ttl=30)
    await factory.initialize()
    breaker = await factory.get_breaker("bench")  # held: the fastest way to use it
    with collected():
        start = time.perf_counter()
        for _ in range(n):
            async with breaker:
                await aio_op()
        return (time.perf_counter() - start) / n


# --- items 1-4: per call -----------------------------------------------------------------


async def trio_round(n: int, samples: Samples) -> None:
    """One repeat of every per-call figure measured in trio."""
    global_ = {"operation_timeout": "5s", "failure_threshold": 1, "reset_timeout": "1h"}
    profiles = {"half_open": {"success_threshold": 1_000_000_000}}
    config = parse_circuitbreaker({"global": global_, "profiles": profiles})
    async with open_circuit_breakers(config) as manager:
        closed = await manager.get_circuit_breaker("closed")
        opened = await manager.get_circuit_breaker("opened")
        half = await manager.get_circuit_breaker("half_open")
        try:
            await opened.execute(fail)  # failure_threshold 1: now open for an hour
        except Boom:
            pass
        await manager.force("half_open", "half_open")
        await settle()
        samples.add("floor", await floor_loop(n, op))
        samples.add("execute", await execute_loop(n, closed, op))
        samples.add("floor_yield", await floor_loop(n, op_yield))
        samples.add("execute_yield", await execute_loop(n, closed, op_yield))
        samples.add("reject", await reject_loop(n, opened))
        samples.add("half_open", await execute_loop(n // 4, half, op))
        stats = manager.stats()
        assert stats["opened"].state == "open", stats["opened"]
        assert stats["half_open"].state == "half_open", stats["half_open"]
        assert stats["closed"].total_calls == 2 * n, stats["closed"]
        assert stats["half_open"].total_calls == n // 4, stats["half_open"]


def per_call(n: int, repeats: int) -> Samples:
    samples = Samples()
    for repeat in range(repeats):
        progress(f"  per call: repeat {repeat + 1}/{repeats}")
        trio.run(trio_round, n, samples)
        py_closed = pybreaker.CircuitBreaker(fail_max=5, reset_timeout=30)
        samples.add("pybreaker", pybreaker_loop(n, py_closed))
        py_open = pybreaker.CircuitBreaker(fail_max=5, reset_timeout=3600)
        py_open.open()
        samples.add("pybreaker_reject", pybreaker_reject_loop(n, py_open))
        aio_closed, aio_rejected = asyncio.run(aiobreaker_loops(n))
        samples.add("aiobreaker", aio_closed)
        samples.add("aiobreaker_reject", aio_rejected)
        samples.add("purgatory", asyncio.run(purgatory_loop(n)))
        cb = circuitbreaker.CircuitBreaker(failure_threshold=5, recovery_timeout=30, name="b")
        samples.add("circuitbreaker", circuitbreaker_loop(n, cb))
    return samples


def per_call_rows(s: Samples) -> list[Row]:
    def row(figure: str, name: str, base: str, label: str, goal: float | None = None) -> Row:
        ratio = s.ratio(name, base)
        return Row(
            figure,
            us(s.median(name)),
            f"{label} {us(s.median(base))}",
            ratio,
            "(info)" if goal is None else f"<= {goal}",
            None if goal is None else ratio <= goal,
        )

    floor = "move_on_after+await"
    peers = (
        ("pybreaker", "pybreaker call (sync, no timeout)"),
        ("aiobreaker", "aiobreaker call_async (no timeout)"),
        ("purgatory", "purgatory (no timeout)"),
        ("circuitbreaker", "circuitbreaker call (sync, no timeout)"),
    )
    return [
        row("1. closed call, op returns at once: execute", "execute", "floor", floor, 1.25),
        row("1b. closed call, op yields once: execute", "execute_yield", "floor_yield", floor),
        row("2. open, rejection: execute", "reject", "pybreaker_reject", "pybreaker", 1.0),
        row("2b. open, rejection: execute", "reject", "aiobreaker_reject", "aiobreaker"),
        *(row("3. closed call: execute", "execute", peer, label) for peer, label in peers),
        row("4. half-open trial (round trip)", "half_open", "floor", floor),
    ]


# --- item 5: swarms ------------------------------------------------------------------------

CALLS_PER_TASK: Final = 10


async def swarm_round(tasks: int, breakers: int, first: bool, samples: Samples) -> None:
    async def floor_task() -> None:
        for _ in range(CALLS_PER_TASK):
            with trio.move_on_after(TIMEOUT):
                await op_yield()

    async def breaker_task(breaker: CircuitBreaker) -> None:
        execute = breaker.execute
        for _ in range(CALLS_PER_TASK):
            await execute(op_yield)

    calls = tasks * CALLS_PER_TASK
    async with open_circuit_breakers() as manager:
        handles = [await manager.get_circuit_breaker(f"svc{i}") for i in range(breakers)]
        await settle()

        async def floor() -> None:
            with collected():
                start = time.perf_counter()
                async with trio.open_nursery() as nursery:
                    for _ in range(tasks):
                        nursery.start_soon(floor_task)
                await settle()
                samples.add(f"floor {tasks}x{breakers}", calls / (time.perf_counter() - start))

        async def swarm() -> None:
            with collected():
                start = time.perf_counter()
                async with trio.open_nursery() as nursery:
                    for i in range(tasks):
                        nursery.start_soon(breaker_task, handles[i % breakers])
                await settle()
                samples.add(f"swarm {tasks}x{breakers}", calls / (time.perf_counter() - start))

        # Alternate which goes first, so warming up (memory for the tasks) favours neither.
        for part in (floor, swarm) if first else (swarm, floor):
            await part()
        done = sum(stats.total_calls for stats in manager.stats().values())
        assert done == calls, (done, calls)


def swarms(repeats: int) -> Samples:
    samples = Samples()
    for repeat in range(repeats):
        for tasks in (1_000, 10_000):
            for breakers in (1, 100):
                progress(f"  swarm: {tasks} tasks, {breakers} breakers, repeat {repeat + 1}")
                trio.run(swarm_round, tasks, breakers, repeat % 2 == 0, samples)
    return samples


def swarm_rows(s: Samples) -> list[Row]:
    rows = []
    for tasks in (1_000, 10_000):
        for breakers in (1, 100):
            name, base = f"swarm {tasks}x{breakers}", f"floor {tasks}x{breakers}"
            goal = tasks == 10_000 and breakers == 1
            rows.append(
                Row(
                    f"5. swarm {tasks:,} tasks x 10 calls, {breakers} breaker(s)",
                    f"{s.median(name) / 1e3:.0f} k calls/s",
                    f"move_on_after+await {s.median(base) / 1e3:.0f} k calls/s",
                    s.ratio(name, base),
                    ">= 0.5" if goal else "(info)",
                    s.ratio(name, base) >= 0.5 if goal else None,
                )
            )
    return rows


# --- item 6: memory ------------------------------------------------------------------------

IDLE_BREAKERS: Final = 10_000


async def tripwire_memory() -> float:
    async with open_circuit_breakers() as manager:
        await settle()
        gc.collect()
        before = tracemalloc.get_traced_memory()[0]
        for i in range(IDLE_BREAKERS):
            handle = await manager.get_circuit_breaker(f"svc{i}")
            await handle.execute(op)  # used once, then idle
        await settle()
        gc.collect()
        after = tracemalloc.get_traced_memory()[0]
        assert all(s.total_calls == 1 for s in manager.stats().values())
        return (after - before) / IDLE_BREAKERS


def objects_memory(make: Callable[[int], object]) -> float:
    gc.collect()
    before = tracemalloc.get_traced_memory()[0]
    kept = [make(i) for i in range(IDLE_BREAKERS)]
    gc.collect()
    after = tracemalloc.get_traced_memory()[0]
    del kept
    return (after - before) / IDLE_BREAKERS


def memory_rows() -> list[Row]:
    progress(f"  memory: {IDLE_BREAKERS:,} breakers under tracemalloc")
    tracemalloc.start()
    try:
        ours = trio.run(tripwire_memory)
        py = objects_memory(lambda i: pybreaker.CircuitBreaker(name=f"svc{i}"))
        aio = objects_memory(lambda i: aiobreaker.CircuitBreaker(name=f"svc{i}"))
    finally:
        tracemalloc.stop()
    return [
        Row(
            f"6. bytes per idle breaker ({IDLE_BREAKERS:,})",
            f"{ours:,.0f} B",
            f"pybreaker object {py:,.0f} B",
            ours / py,
            "<= 8 KB",
            ours <= 8192,
        ),
        Row(
            f"6b. bytes per idle breaker ({IDLE_BREAKERS:,})",
            f"{ours:,.0f} B",
            f"aiobreaker object {aio:,.0f} B",
            ours / aio,
            "(info)",
            None,
        ),
    ]


# --- item 7: reconfiguration under load ---------------------------------------------------

LIVE_BREAKERS: Final = 1_000
LOAD_TASKS: Final = 2_000
RECONFIGURE_BUDGET: Final = 10.0  # seconds of loaded reconfiguration before repeats stop


def _config(threshold: int) -> CircuitBreakerConfig:
    return parse_circuitbreaker({"global": {"failure_threshold": threshold}})


async def reconfigure_round(samples: Samples, failures: list[str]) -> None:
    async with open_circuit_breakers(_config(3)) as manager:
        handles = [await manager.get_circuit_breaker(f"svc{i}") for i in range(LIVE_BREAKERS)]
        await settle()
        threshold = 3

        async def reconfigure(label: str) -> None:
            nonlocal threshold
            threshold = 7 - threshold  # 3 <-> 4: every breaker's settings change
            start = time.perf_counter()
            changed = await manager.update_config(_config(threshold))
            samples.add(label, time.perf_counter() - start)
            assert len(changed) == LIVE_BREAKERS, len(changed)

        await reconfigure("idle")
        await settle()
        succeeded = 0
        running = True

        async def load(handle: CircuitBreaker) -> None:
            nonlocal succeeded
            while running:
                try:
                    await handle.execute(op_yield)
                    succeeded += 1
                except Exception as exc:  # every failure is a finding
                    failures.append(f"{type(exc).__name__}: {exc}")

        async with trio.open_nursery() as nursery:
            for i in range(LOAD_TASKS):
                nursery.start_soon(load, handles[i % LIVE_BREAKERS])
            await trio.sleep(0.05)
            await reconfigure("loaded")
            await trio.sleep(0.05)
            running = False
        await settle()
        counted = sum(s.total_calls for s in manager.stats().values())
        if counted != succeeded:
            failures.append(f"outcomes lost: {succeeded} calls returned, {counted} counted")


def reconfigure_rows(repeats: int) -> list[Row]:
    samples = Samples()
    failures: list[str] = []
    for repeat in range(repeats):
        progress(f"  reconfiguration: {LIVE_BREAKERS:,} breakers, repeat {repeat + 1}")
        trio.run(reconfigure_round, samples, failures)
        if sum(samples.values["loaded"]) > RECONFIGURE_BUDGET:
            progress(f"  (over {RECONFIGURE_BUDGET:g} s: no more repeats)")
            break
    for failure in failures[:5]:
        progress(f"  FAILED CALL: {failure}")
    loaded = samples.median("loaded")
    repeats_done = len(samples.values["loaded"])
    return [
        Row(
            f"7. reconfigure {LIVE_BREAKERS:,} live breakers under load",
            f"{loaded * 1e3:.1f} ms ({repeats_done}x), {len(failures)} failed calls",
            f"same, idle {samples.median('idle') * 1e3:.1f} ms",
            samples.ratio("loaded", "idle"),
            "0 failed calls",
            not failures,
        )
    ]


# --- the report ------------------------------------------------------------------------


def versions() -> str:
    names = ("trio", "msgspec", "pybreaker", "aiobreaker", "purgatory", "circuitbreaker")
    found = ", ".join(f"{name} {importlib.metadata.version(name)}" for name in names)
    return f"CPython {platform.python_version()} on {platform.machine()}; {found}"


def table(rows: list[Row]) -> str:
    head = ("figure", "value", "baseline", "ratio", "goal", "met?")
    lines = [
        (
            r.figure,
            r.value,
            r.baseline,
            "" if r.ratio is None else f"{r.ratio:.2f}",
            r.goal,
            "" if r.met is None else ("yes" if r.met else "NO"),
        )
        for r in rows
    ]
    widths = [max(len(x) for x in column) for column in zip(head, *lines, strict=True)]

    def fmt(cells: tuple[str, ...]) -> str:
        return "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)) + " |"

    rule = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    return "\n".join([fmt(head), rule, *map(fmt, lines)])


# --- profiling ---------------------------------------------------------------------------


def profile() -> None:
    from pyinstrument import Profiler

    async def closed_and_rejected() -> None:
        settings = {"failure_threshold": 1, "reset_timeout": "1h"}
        async with open_circuit_breaker("closed", settings) as closed:
            await execute_loop(200_000, closed, op)
        async with open_circuit_breaker("opened", settings) as opened:
            try:
                await opened.execute(fail)
            except Boom:
                pass
            await reject_loop(200_000, opened)

    async def swarm() -> None:
        async with open_circuit_breakers() as manager:
            handle = await manager.get_circuit_breaker("svc")

            async def task() -> None:
                for _ in range(CALLS_PER_TASK):
                    await handle.execute(op_yield)

            async with trio.open_nursery() as nursery:
                for _ in range(10_000):
                    nursery.start_soon(task)

    for label, main in (("closed calls and rejections", closed_and_rejected), ("swarm", swarm)):
        profiler = Profiler(interval=0.0001)
        with profiler:
            trio.run(main)
        print(f"=== pyinstrument: {label} ===")
        print(profiler.output_text(unicode=True, color=False, show_all=False))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="fewer repeats (smoke test)")
    parser.add_argument("--profile", action="store_true", help="profile instead of measuring")
    args = parser.parse_args(argv)
    if args.profile:
        profile()
        return 0
    n, repeats, swarm_repeats = (5_000, 2, 1) if args.quick else (20_000, 7, 4)
    started = time.perf_counter()
    print(versions(), flush=True)
    progress("[1-4/7] per call: closed, rejection, peers, half-open trial")
    rows = per_call_rows(per_call(n, repeats))
    progress("[5/7] swarms")
    rows += swarm_rows(swarms(swarm_repeats))
    progress("[6/7] memory")
    rows += memory_rows()
    progress("[7/7] reconfiguration under load")
    rows += reconfigure_rows(swarm_repeats)
    print(table(rows))
    print(
        f"median of {repeats} repeats ({swarm_repeats} for swarms and reconfiguration); "
        f"ratio = median of per-repeat ratios; {time.perf_counter() - started:.0f} s in all",
        flush=True,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
