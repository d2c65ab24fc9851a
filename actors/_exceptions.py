"""The exceptions tripwire raises.

::

    Exception
    ├── CircuitBreakerError            .service names the breaker
    │   ├── CircuitOpenError           the call was not admitted; .retry_after
    │   ├── OperationTimeoutError      the call ran past operation_timeout; .timeout
    │   ├── ForceRefusedError          forcing a noop breaker
    │   └── UnknownServiceError        (also LookupError) force/stats of an unknown service
    └── ValueError
        └── ConfigError                invalid configuration; .problems lists every one

The operation's own exceptions reach the caller unchanged; tripwire never wraps them.
"""

from __future__ import annotations

from collections.abc import Iterable

import msgspec

__all__ = [
    "CircuitBreakerError",
    "CircuitOpenError",
    "ConfigError",
    "ForceRefusedError",
    "OperationTimeoutError",
    "Problem",
    "UnknownServiceError",
]


class CircuitBreakerError(Exception):
    """Base of the errors tripwire raises about a breaker; ``.service`` names it."""

    def __init__(self, service: str, message: str) -> None:
        super().__init__(message)
        self.service = service


class CircuitOpenError(CircuitBreakerError):
    """The breaker did not admit the call.

    ``retry_after`` is the number of seconds until the circuit admits calls again, or
    ``None`` when that is not known (forced open, or every half-open trial slot taken).
    """

    # Raised on the hot path of an open circuit: the message is only formatted when
    # someone looks at it. ``args`` is ``(service, retry_after)``, enough to pickle it.
    def __init__(self, service: str, retry_after: float | None, *, reason: str = "open") -> None:
        Exception.__init__(self, service, retry_after)
        self.service = service
        self.retry_after = retry_after
        self.reason = reason

    def __str__(self) -> str:
        retry_after = self.retry_after
        if retry_after is None:
            hint = "no retry time is known"
        else:  # to the millisecond, no trailing zeros: "retry in 12.5 s", "retry in 3600 s"
            hint = f"retry in {f'{retry_after:.3f}'.rstrip('0').rstrip('.')} s"
        return f"circuit {self.service!r} is {self.reason}; {hint}"


class OperationTimeoutError(CircuitBreakerError):
    """The operation ran past ``operation_timeout`` and was cancelled."""

    def __init__(self, service: str, timeout: float) -> None:
        super().__init__(
            service,
            f"operation on {service!r} ran past its timeout of {timeout:g} s and was cancelled",
        )
        self.timeout = timeout


def engine_stopped(service: str) -> CircuitBreakerError:
    """The error for anything asked of a breaker once its engine has stopped."""
    where = f"circuit {service!r}: " if service else ""
    return CircuitBreakerError(service, f"{where}the circuit-breaker engine has stopped")


class ForceRefusedError(CircuitBreakerError):
    """The breaker cannot be forced: it uses implementation_type noop."""

    def __init__(self, service: str) -> None:
        super().__init__(
            service,
            f"circuit {service!r} uses implementation_type noop; forcing it is refused",
        )


class UnknownServiceError(CircuitBreakerError, LookupError):
    """The service is neither in use nor configured."""

    def __init__(self, service: str) -> None:
        super().__init__(
            service, f"unknown service {service!r}: it is neither in use nor has a profile"
        )


class Problem(msgspec.Struct, frozen=True):
    """One thing wrong with a configuration: where (a dotted path) and what."""

    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}" if self.path else self.message


class ConfigError(ValueError):
    """A configuration broke one or more rules; ``problems`` lists each with its place."""

    def __init__(self, problems: Iterable[Problem]) -> None:
        self.problems = tuple(problems)
        super().__init__("\n".join(map(str, self.problems)))
