import re

import pytest

from actors import Duration


@pytest.mark.parametrize(
    ("text", "ms", "canonical"),
    [
        ("250ms", 250, "250ms"),
        ("5s", 5_000, "5s"),
        ("90s", 90_000, "1m30s"),
        ("1m30s", 90_000, "1m30s"),
        ("1.5s", 1_500, "1s500ms"),
        ("2h", 7_200_000, "2h"),
        ("1h1m1s1ms", 3_661_001, "1h1m1s1ms"),
        ("0.001s", 1, "1ms"),
    ],
)
def test_parse_and_canonical_form(text: str, ms: int, canonical: str) -> None:
    duration = Duration.parse(text)
    assert duration.ms == ms
    assert duration.seconds == ms / 1000
    assert str(duration) == canonical
    assert Duration.parse(str(duration)) == duration


@pytest.mark.parametrize(
    ("text", "rule"),
    [
        ("5", "a number needs a unit"),
        ("-5s", "must be positive"),
        ("0s", "greater than zero"),
        ("0ms", "greater than zero"),
        ("5d", "unknown unit 'd'"),
        ("1s2s", "unit 's' appears twice"),
        ("30s1m", "from the largest to the smallest"),
        ("0.5ms", "the smallest step is 1ms"),
        ("", "not a number followed by a unit"),
        ("5 s", "not a number followed by a unit"),
    ],
)
def test_rejected(text: str, rule: str) -> None:
    with pytest.raises(ValueError, match=re.escape(rule)):
        Duration.parse(text)
