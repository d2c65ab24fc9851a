"""The pure state machine, over explicit ``now`` values (no trio)."""

import math

import msgspec
import pytest

from actors import Duration, Settings
from actors._policy import Breaker, Kind, Mode, Rejection, State, View

SETTINGS = Settings(
    failure_threshold=3,
    operation_timeout=Duration(1_000),
    reset_timeout=Duration(30_000),
    success_threshold=2,
)


def new(settings: Settings = SETTINGS, now: float = 0.0) -> Breaker:
    return Breaker(View(settings=settings), settings, now)


def admitted(breaker: Breaker, now: float) -> int:
    answer = breaker.admit(now)
    assert isinstance(answer, int), answer
    return answer


def fail(breaker: Breaker, now: float, kind: Kind = Kind.FAILURE) -> None:
    breaker.record(admitted(breaker, now), kind, "boom", now)


def succeed(breaker: Breaker, now: float) -> None:
    breaker.record(admitted(breaker, now), Kind.SUCCESS, None, now)


def opened(now: float = 0.0, settings: Settings = SETTINGS) -> Breaker:
    breaker = new(settings, now)
    for _ in range(settings.failure_threshold):
        fail(breaker, now)
    assert breaker.state is State.OPEN
    return breaker


def half_open(opened_at: float = 0.0, settings: Settings = SETTINGS) -> Breaker:
    breaker = opened(opened_at, settings)
    breaker.tick(opened_at + settings.reset_timeout.seconds)
    assert breaker.state is State.HALF_OPEN
    return breaker


def reconfigure(breaker: Breaker, settings: Settings, now: float) -> Breaker:
    return Breaker(breaker.view(), settings, now)


def state_of(breaker: Breaker) -> State:
    """The state, read anew (mypy would keep the one an earlier assert narrowed to)."""
    return breaker.state


# --- closed ---------------------------------------------------------------------------


def test_starts_closed() -> None:
    view = new().view()
    assert (view.state, view.mode, view.forced, view.epoch) == (State.CLOSED, Mode.CLOSED, None, 0)
    assert view.retry_at == math.inf
    assert new().deadline == math.inf


@pytest.mark.parametrize("threshold", [1, 2, 3, 5])
def test_closed_opens_at_exactly_failure_threshold(threshold: int) -> None:
    settings = msgspec.structs.replace(SETTINGS, failure_threshold=threshold)
    breaker = new(settings)
    for n in range(1, threshold):
        fail(breaker, 1.0)
        assert (breaker.state, breaker.consecutive_failures) == (State.CLOSED, n)
    fail(breaker, 2.0)
    assert breaker.state is State.OPEN
    assert breaker.consecutive_failures == threshold
    assert breaker.opened_at == 2.0
    assert breaker.retry_at == 32.0
    assert breaker.deadline == 32.0
    assert (breaker.state_changes, breaker.last_state_change) == (1, 2.0)
    view = breaker.view()
    assert (view.mode, view.retry_at, view.opened_at) == (Mode.OPEN, 32.0, 2.0)


def test_success_resets_consecutive_failures() -> None:
    breaker = new()
    fail(breaker, 0.0)
    fail(breaker, 0.0)
    succeed(breaker, 0.0)
    assert breaker.consecutive_failures == 0
    fail(breaker, 0.0)
    fail(breaker, 0.0)
    assert breaker.state is State.CLOSED
    fail(breaker, 0.0)
    assert state_of(breaker) is State.OPEN


def test_counters() -> None:
    breaker = new()
    succeed(breaker, 0.0)
    fail(breaker, 1.0)
    fail(breaker, 2.0, Kind.TIMEOUT)
    view = breaker.view()
    assert (view.total_calls, view.successful_calls, view.failed_calls, view.timeouts) == (
        3,
        1,
        2,
        1,
    )
    assert (view.last_failure, view.last_error) == (2.0, "boom")


def test_timeouts_count_as_failures_and_open() -> None:
    breaker = new()
    for _ in range(3):
        fail(breaker, 5.0, Kind.TIMEOUT)
    assert breaker.state is State.OPEN
    assert (breaker.failed_calls, breaker.timeouts, breaker.total_calls) == (3, 3, 3)


def test_cancelled_counts_nothing() -> None:
    breaker = new()
    fail(breaker, 0.0)
    fail(breaker, 0.0)
    breaker.record(admitted(breaker, 0.0), Kind.CANCELLED, None, 0.0)
    assert breaker.consecutive_failures == 2
    assert (breaker.total_calls, breaker.successful_calls, breaker.failed_calls) == (2, 0, 2)


# --- open -----------------------------------------------------------------------------


def test_open_rejects_with_retry_after() -> None:
    breaker = opened(10.0)
    assert breaker.admit(10.0) == Rejection(30.0, "open")
    assert breaker.admit(25.5) == Rejection(14.5, "open")
    assert breaker.state is State.OPEN


def test_open_becomes_half_open_at_reset_timeout() -> None:
    breaker = opened(10.0)
    breaker.tick(39.999)
    assert breaker.state is State.OPEN
    breaker.tick(40.0)
    assert state_of(breaker) is State.HALF_OPEN
    assert breaker.deadline == math.inf
    assert breaker.view().mode is Mode.ASK
    assert breaker.view().retry_at == math.inf
    assert (breaker.state_changes, breaker.last_state_change) == (2, 40.0)


def test_admit_past_deadline_makes_the_transition() -> None:
    breaker = opened(0.0)
    assert isinstance(breaker.admit(30.0), int)
    assert breaker.state is State.HALF_OPEN
    assert breaker.trials == 1


def test_outcome_from_before_opening_counts_only_in_statistics() -> None:
    breaker = new()
    slow = admitted(breaker, 0.0)
    for _ in range(3):
        fail(breaker, 1.0)
    assert breaker.retry_at == 31.0
    breaker.record(slow, Kind.FAILURE, "late", 20.0)
    assert breaker.state is State.OPEN
    assert breaker.retry_at == 31.0  # not extended
    assert breaker.opened_at == 1.0
    assert breaker.consecutive_failures == 3
    assert (breaker.failed_calls, breaker.total_calls, breaker.last_error) == (4, 4, "late")


# --- half-open ------------------------------------------------------------------------


@pytest.mark.parametrize("slots", [1, 2, 4])
def test_half_open_trial_slots_equal_success_threshold(slots: int) -> None:
    settings = msgspec.structs.replace(SETTINGS, success_threshold=slots)
    breaker = half_open(0.0, settings)
    epochs = [admitted(breaker, 30.0) for _ in range(slots)]
    assert len(set(epochs)) == 1
    assert breaker.trials == slots
    assert breaker.admit(30.0) == Rejection(None, "half-open with every trial slot taken")
    breaker.record(epochs[0], Kind.CANCELLED, None, 31.0)
    assert breaker.trials == slots - 1
    assert isinstance(breaker.admit(31.0), int)


def test_half_open_closes_at_success_threshold() -> None:
    breaker = half_open(0.0)
    first, second = admitted(breaker, 30.0), admitted(breaker, 30.0)
    breaker.record(first, Kind.SUCCESS, None, 31.0)
    assert (breaker.state, breaker.half_open_successes, breaker.trials) == (State.HALF_OPEN, 1, 1)
    breaker.record(second, Kind.SUCCESS, None, 32.0)
    assert breaker.state is State.CLOSED
    assert (breaker.half_open_successes, breaker.consecutive_failures, breaker.trials) == (0, 0, 0)
    assert breaker.opened_at is None
    assert breaker.last_state_change == 32.0


def test_half_open_success_frees_its_slot() -> None:
    breaker = half_open(0.0)
    first, _second = admitted(breaker, 30.0), admitted(breaker, 30.0)
    breaker.record(first, Kind.SUCCESS, None, 31.0)
    assert isinstance(breaker.admit(31.0), int)
    assert breaker.admit(31.0) == Rejection(None, "half-open with every trial slot taken")


@pytest.mark.parametrize("kind", [Kind.FAILURE, Kind.TIMEOUT])
def test_trial_failure_reopens_with_timer_restarted(kind: Kind) -> None:
    breaker = half_open(0.0)
    epoch = admitted(breaker, 30.0)
    other = admitted(breaker, 30.0)
    breaker.record(epoch, kind, "boom", 45.0)
    assert breaker.state is State.OPEN
    assert (breaker.opened_at, breaker.retry_at) == (45.0, 75.0)
    assert breaker.admit(45.0) == Rejection(30.0, "open")
    # the other trial's late success counts in statistics only
    breaker.record(other, Kind.SUCCESS, None, 46.0)
    assert breaker.state is State.OPEN
    assert breaker.half_open_successes == 0
    assert breaker.successful_calls == 1


def test_cancelled_trial_gives_slot_back_and_counts_nothing() -> None:
    breaker = half_open(0.0)
    before = breaker.view()
    epochs = [admitted(breaker, 30.0), admitted(breaker, 30.0)]
    breaker.record(epochs[0], Kind.CANCELLED, None, 31.0)
    after = breaker.view()
    assert after.trials == 1
    assert (after.total_calls, after.failed_calls, after.successful_calls) == (
        before.total_calls,
        before.failed_calls,
        before.successful_calls,
    )
    assert (after.state, after.half_open_successes) == (State.HALF_OPEN, 0)


def test_outcome_from_an_earlier_epoch_does_not_touch_trials() -> None:
    breaker = new()
    slow = admitted(breaker, 0.0)
    for _ in range(3):
        fail(breaker, 0.0)
    breaker.tick(30.0)
    trial = admitted(breaker, 30.0)
    breaker.record(slow, Kind.SUCCESS, None, 31.0)
    assert (breaker.state, breaker.trials, breaker.half_open_successes) == (State.HALF_OPEN, 1, 0)
    breaker.record(slow, Kind.CANCELLED, None, 31.0)
    assert breaker.trials == 1
    breaker.record(trial, Kind.SUCCESS, None, 31.0)
    assert breaker.half_open_successes == 1


def test_epoch_advances_on_every_transition() -> None:
    breaker = new()
    epochs = [breaker.epoch]
    for _ in range(3):
        fail(breaker, 0.0)
    epochs.append(breaker.epoch)
    breaker.tick(30.0)
    epochs.append(breaker.epoch)
    succeed(breaker, 30.0)
    succeed(breaker, 30.0)
    epochs.append(breaker.epoch)
    assert breaker.state is State.CLOSED
    assert epochs == sorted(set(epochs))


# --- noop -----------------------------------------------------------------------------

NOOP = msgspec.structs.replace(SETTINGS, implementation_type="noop")


def test_noop_admits_all_and_counts() -> None:
    breaker = new(NOOP)
    for _ in range(10):
        fail(breaker, 0.0)
    fail(breaker, 0.0, Kind.TIMEOUT)
    succeed(breaker, 0.0)
    view = breaker.view()
    assert (view.state, view.mode) == (State.CLOSED, Mode.NOOP)
    assert (view.total_calls, view.failed_calls, view.timeouts, view.successful_calls) == (
        12,
        11,
        1,
        1,
    )
    assert view.consecutive_failures == 0
    assert breaker.deadline == math.inf


@pytest.mark.parametrize("action", ["open", "closed", "half_open"])
def test_noop_refuses_force(action: str) -> None:
    breaker = new(NOOP)
    assert breaker.force(action, 1.0) is False
    assert (breaker.state, breaker.forced, breaker.state_changes) == (State.CLOSED, None, 0)


# --- forcing --------------------------------------------------------------------------


def test_force_open_holds_until_another_force() -> None:
    breaker = new()
    assert breaker.force("open", 5.0) is True
    assert (breaker.state, breaker.forced, breaker.opened_at) == (State.OPEN, "open", 5.0)
    assert breaker.deadline == math.inf
    breaker.tick(1e9)
    assert breaker.state is State.OPEN
    assert breaker.admit(1e9) == Rejection(None, "forced open")
    view = breaker.view()
    assert (view.mode, view.forced, view.retry_at) == (Mode.OPEN, "open", math.inf)


def test_force_closed_releases_hold_and_resets_consecutive_counters() -> None:
    breaker = opened(0.0)
    breaker.force("open", 1.0)
    breaker.force("closed", 2.0)
    assert (breaker.state, breaker.forced) == (State.CLOSED, None)
    assert breaker.consecutive_failures == 0
    assert (breaker.total_calls, breaker.failed_calls) == (3, 3)  # totals kept
    fail(breaker, 3.0)
    fail(breaker, 3.0)
    assert breaker.state is State.CLOSED
    fail(breaker, 3.0)
    assert state_of(breaker) is State.OPEN


def test_force_half_open_starts_trials_now() -> None:
    breaker = new()
    breaker.force("open", 0.0)
    breaker.force("half_open", 7.0)
    assert (breaker.state, breaker.forced, breaker.last_state_change) == (
        State.HALF_OPEN,
        None,
        7.0,
    )
    succeed(breaker, 7.0)
    succeed(breaker, 7.0)
    assert breaker.state is State.CLOSED


def test_force_half_open_from_closed_failure_reopens_with_timer() -> None:
    breaker = new()
    breaker.force("half_open", 1.0)
    fail(breaker, 2.0)
    assert (breaker.state, breaker.retry_at, breaker.forced) == (State.OPEN, 32.0, None)


def test_force_counts_state_changes() -> None:
    breaker = new()
    breaker.force("closed", 1.0)
    assert breaker.state_changes == 0
    epoch = breaker.epoch
    breaker.force("open", 2.0)
    breaker.force("open", 3.0)
    assert breaker.state_changes == 1
    assert breaker.epoch == epoch + 2
    assert breaker.opened_at == 3.0


def test_force_invalidates_in_flight_trials() -> None:
    breaker = half_open(0.0)
    trial = admitted(breaker, 30.0)
    breaker.force("half_open", 31.0)
    assert breaker.trials == 0
    breaker.record(trial, Kind.FAILURE, "late", 32.0)
    assert breaker.state is State.HALF_OPEN


# --- reconfiguration ------------------------------------------------------------------


def test_view_round_trip_keeps_everything() -> None:
    breaker = half_open(0.0)
    admitted(breaker, 30.0)
    view = breaker.view()
    assert reconfigure(breaker, SETTINGS, 31.0).view() == view


def test_lowered_failure_threshold_opens() -> None:
    breaker = new()
    fail(breaker, 0.0)
    fail(breaker, 0.0)
    lowered = reconfigure(breaker, msgspec.structs.replace(SETTINGS, failure_threshold=2), 5.0)
    assert lowered.state is State.OPEN
    assert (lowered.opened_at, lowered.retry_at) == (5.0, 35.0)


def test_lowered_failure_threshold_above_count_stays_closed() -> None:
    breaker = new()
    fail(breaker, 0.0)
    lowered = reconfigure(breaker, msgspec.structs.replace(SETTINGS, failure_threshold=2), 5.0)
    assert (lowered.state, lowered.consecutive_failures) == (State.CLOSED, 1)
    fail(lowered, 6.0)
    assert lowered.state is State.OPEN


def test_raised_failure_threshold_keeps_counting() -> None:
    breaker = new()
    fail(breaker, 0.0)
    fail(breaker, 0.0)
    raised = reconfigure(breaker, msgspec.structs.replace(SETTINGS, failure_threshold=4), 1.0)
    fail(raised, 1.0)
    assert (raised.state, raised.consecutive_failures) == (State.CLOSED, 3)
    fail(raised, 1.0)
    assert raised.state is State.OPEN


def test_lowered_success_threshold_closes() -> None:
    settings = msgspec.structs.replace(SETTINGS, success_threshold=3)
    breaker = half_open(0.0, settings)
    succeed(breaker, 30.0)
    succeed(breaker, 30.0)
    assert breaker.half_open_successes == 2
    lowered = reconfigure(breaker, msgspec.structs.replace(settings, success_threshold=2), 31.0)
    assert lowered.state is State.CLOSED
    assert lowered.last_state_change == 31.0


def test_epoch_kept_when_reconfigured_without_transition() -> None:
    breaker = new()
    epoch = admitted(breaker, 0.0)
    changed = reconfigure(breaker, msgspec.structs.replace(SETTINGS, failure_threshold=1), 1.0)
    assert changed.epoch == epoch
    changed.record(epoch, Kind.FAILURE, "after restart", 2.0)
    assert changed.state is State.OPEN


@pytest.mark.parametrize(
    ("reset", "now", "state", "retry_at"),
    [
        ("60s", 20.0, State.OPEN, 70.0),  # counts from the original opening at 10
        ("15s", 20.0, State.OPEN, 25.0),
        ("10s", 20.0, State.HALF_OPEN, math.inf),  # exactly due
        ("5s", 20.0, State.HALF_OPEN, math.inf),  # already past
    ],
)
def test_changed_reset_timeout_counts_from_original_opening(
    reset: str, now: float, state: State, retry_at: float
) -> None:
    breaker = opened(10.0)
    settings = msgspec.structs.replace(SETTINGS, reset_timeout=Duration.parse(reset))
    changed = reconfigure(breaker, settings, now)
    assert changed.state is state
    assert changed.deadline == retry_at
    assert changed.view().retry_at == retry_at
    if state is State.OPEN:
        assert changed.admit(now) == Rejection(retry_at - now, "open")


def test_changed_reset_timeout_keeps_forced_hold() -> None:
    breaker = new()
    breaker.force("open", 0.0)
    changed = reconfigure(
        breaker, msgspec.structs.replace(SETTINGS, reset_timeout=Duration(1)), 100.0
    )
    assert (changed.state, changed.forced, changed.deadline) == (State.OPEN, "open", math.inf)


@pytest.mark.parametrize("forced", [False, True])
def test_switching_to_noop_closes_and_releases_hold(forced: bool) -> None:
    breaker = opened(0.0)
    if forced:
        breaker.force("open", 1.0)
    view = breaker.view()
    noop = reconfigure(breaker, NOOP, 2.0)
    assert (noop.state, noop.forced) == (State.CLOSED, None)
    assert noop.view().mode is Mode.NOOP
    assert (noop.total_calls, noop.failed_calls) == (view.total_calls, view.failed_calls)
    assert isinstance(noop.admit(2.0), int)
    assert noop.epoch > view.epoch


def test_switching_to_noop_from_half_open_admits_everything() -> None:
    breaker = half_open(0.0)
    admitted(breaker, 30.0)
    admitted(breaker, 30.0)
    noop = reconfigure(breaker, NOOP, 31.0)
    assert all(isinstance(noop.admit(31.0), int) for _ in range(5))


def test_switching_to_noop_drops_the_state_machine() -> None:
    breaker = new()
    fail(breaker, 0.0)
    fail(breaker, 0.0)
    noop = reconfigure(breaker, NOOP, 1.0)
    assert noop.consecutive_failures == 0
    back = reconfigure(noop, SETTINGS, 2.0)
    fail(back, 3.0)
    fail(back, 3.0)
    assert back.state is State.CLOSED


def test_back_to_rssafe_starts_closed() -> None:
    noop = new(NOOP)
    for _ in range(5):
        fail(noop, 0.0)
    breaker = reconfigure(noop, SETTINGS, 1.0)
    assert (breaker.state, breaker.consecutive_failures) == (State.CLOSED, 0)
    assert breaker.view().mode is Mode.CLOSED
    for _ in range(2):
        fail(breaker, 2.0)
    assert breaker.state is State.CLOSED
    fail(breaker, 2.0)
    assert state_of(breaker) is State.OPEN
    assert breaker.failed_calls == 8


def test_outcome_admitted_under_noop_does_not_drive_rssafe() -> None:
    noop = new(NOOP)
    epoch = admitted(noop, 0.0)
    settings = msgspec.structs.replace(SETTINGS, failure_threshold=1)
    breaker = reconfigure(noop, settings, 1.0)
    breaker.record(epoch, Kind.FAILURE, "noop-era", 2.0)
    assert breaker.state is State.CLOSED
    assert breaker.failed_calls == 1


def test_listener_hears_every_transition() -> None:
    heard: list[tuple[State, State]] = []
    breaker = Breaker(View(settings=SETTINGS), SETTINGS, 0.0, lambda a, b, _: heard.append((a, b)))
    for _ in range(3):
        fail(breaker, 0.0)
    breaker.tick(30.0)
    succeed(breaker, 30.0)
    succeed(breaker, 30.0)
    assert heard == [
        (State.CLOSED, State.OPEN),
        (State.OPEN, State.HALF_OPEN),
        (State.HALF_OPEN, State.CLOSED),
    ]
