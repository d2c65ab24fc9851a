"""Durations as written in config files: ``"250ms"``, ``"5s"``, ``"1m30s"``, ``"1.5s"``."""

from __future__ import annotations

import re
from fractions import Fraction
from typing import Final

__all__ = ["Duration"]

# Units from the largest down, with their size in milliseconds.
_UNITS: Final = {"h": 3_600_000, "m": 60_000, "s": 1_000, "ms": 1}
_RANK: Final = {unit: rank for rank, unit in enumerate(_UNITS)}
_PART: Final = re.compile(r"(\d+(?:\.\d+)?)([a-zA-Zµ]+)")


class Duration:
    """A positive span of time, a whole number of milliseconds.

    ``str(d)`` is the canonical form: whole units from the largest down,
    ``Duration.parse("90s")`` shows as ``"1m30s"``, ``"1.5s"`` as ``"1s500ms"``.
    """

    __slots__ = ("ms", "seconds")
    ms: int
    seconds: float

    def __init__(self, ms: int) -> None:
        if isinstance(ms, bool) or not isinstance(ms, int) or ms <= 0:
            raise ValueError(f"a duration is a whole number of milliseconds > 0, got {ms!r}")
        object.__setattr__(self, "ms", ms)
        object.__setattr__(self, "seconds", ms / 1000)

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError("Duration is immutable")

    @classmethod
    def parse(cls, text: str) -> Duration:
        """Parse ``text``; raise ``ValueError`` saying which rule it breaks."""
        if not isinstance(text, str):
            raise ValueError("a duration is a string with a unit")
        parts = list(_PART.finditer(text))
        if not text or "".join(p.group(0) for p in parts) != text:
            if re.fullmatch(r"-?\d+(\.\d+)?", text.strip()):
                raise ValueError("a number needs a unit (ms, s, m or h)")
            if text.startswith("-"):
                raise ValueError("a duration must be positive")
            raise ValueError("not a number followed by a unit (ms, s, m or h)")
        total = Fraction(0)
        last_rank = -1
        for part in parts:
            number, unit = part.groups()
            if unit not in _UNITS:
                raise ValueError(f"unknown unit {unit!r} (use ms, s, m or h)")
            rank = _RANK[unit]
            if rank == last_rank:
                raise ValueError(f"unit {unit!r} appears twice")
            if rank < last_rank:
                raise ValueError("units must go from the largest to the smallest (h, m, s, ms)")
            last_rank = rank
            total += Fraction(number) * _UNITS[unit]
        if total == 0:
            raise ValueError("a duration must be greater than zero")
        if total.denominator != 1:
            raise ValueError("the smallest step is 1ms")
        return cls(int(total))

    def __str__(self) -> str:
        rest = self.ms
        out = []
        for unit, size in _UNITS.items():
            count, rest = divmod(rest, size)
            if count:
                out.append(f"{count}{unit}")
        return "".join(out)

    def __repr__(self) -> str:
        return f"Duration({str(self)!r})"

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Duration):
            return self.ms == other.ms
        return NotImplemented

    def __hash__(self) -> int:
        return hash(self.ms)
