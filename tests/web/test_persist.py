"""Writing accepted changes back: comments, order and [server] kept; canonical values."""

from __future__ import annotations

import os
import re
import stat
from pathlib import Path
from typing import Any

import pytest
import tomli

from actors import load_config, parse_circuitbreaker, parse_config
from web import PersistError, render_config, write_config

from .conftest import CONFIG_TEXT


def test_unchanged_config_only_makes_values_canonical() -> None:
    config = parse_circuitbreaker(
        {
            "global": {"implementation_type": "simple"},
            "profiles": {
                "database": {"failure_threshold": 2, "reset_timeout": "1m"},
                "legacy": {"implementation_type": "noop"},
            },
        }
    )
    # "60s" in the file means "1m" and "simple" means "rssafe": written canonically,
    # the rest of the text as it was.
    expected = CONFIG_TEXT.replace('"60s"', '"1m"').replace('"simple"', '"rssafe"')
    assert render_config(CONFIG_TEXT, config) == expected
    assert render_config(expected, config) == expected


def test_changed_values_are_canonical_and_keep_their_comments() -> None:
    config = parse_circuitbreaker(
        {
            "global": {"failure_threshold": 4, "operation_timeout": "90s"},
            "profiles": {"database": {"failure_threshold": 2, "reset_timeout": "1.5s"}},
        }
    )
    text = render_config(CONFIG_TEXT, config)
    lines = text.splitlines()
    assert "failure_threshold = 4                   # consecutive failures that open" in lines
    assert 'operation_timeout = "1m30s"' in lines
    assert 'reset_timeout = "1s500ms"' in lines
    assert "failure_threshold = 2                   # the rest from global" in lines
    assert "legacy" not in text
    assert text.startswith(CONFIG_TEXT.split("[circuitbreaker.global]")[0])  # [server] as is


def test_profile_fields_left_out_are_removed() -> None:
    config = parse_circuitbreaker({"profiles": {"database": {"success_threshold": 3}}})
    text = render_config(CONFIG_TEXT, config)
    section = text.split("[circuitbreaker.profiles.database]")[1]
    assert section.strip() == "success_threshold = 3"


def test_a_file_without_circuitbreaker_gets_one() -> None:
    text = '# only a server\n[server]\nbind = "127.0.0.1:9000"\n'
    config = parse_circuitbreaker(
        {"global": {"reset_timeout": "10s"}, "profiles": {"db": {"failure_threshold": 1}}}
    )
    new = render_config(text, config)
    assert new.startswith(text)
    assert "[circuitbreaker.global]" in new
    assert "[circuitbreaker.profiles.db]" in new
    assert "failure_threshold = 3" not in new  # defaults not spelled out


def test_inline_tables_are_updated_in_place() -> None:
    text = "circuitbreaker = { global = { failure_threshold = 2 }, profiles = {} }\n"
    config = parse_circuitbreaker(
        {"global": {"failure_threshold": 5}, "profiles": {"db": {"reset_timeout": "2s"}}}
    )
    new = render_config(text, config)
    assert parse_circuitbreaker(__import__("tomli").loads(new)["circuitbreaker"]) == config


def test_an_unparsable_file_is_a_persist_error() -> None:
    with pytest.raises(PersistError, match=r"^cannot parse the current file: "):
        render_config("[server\n", parse_circuitbreaker({}))


def test_write_config_is_atomic_and_keeps_the_mode(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text(CONFIG_TEXT)
    os.chmod(path, 0o640)
    inode = path.stat().st_ino
    config = parse_circuitbreaker({"global": {"success_threshold": 5}})
    write_config(path, config)
    assert load_config(path).circuitbreaker == config
    assert stat.S_IMODE(path.stat().st_mode) == 0o640
    assert path.stat().st_ino != inode  # replaced, not rewritten in place
    assert os.listdir(tmp_path) == ["config.toml"]


def test_write_config_to_a_missing_file_is_a_persist_error(tmp_path: Path) -> None:
    with pytest.raises(PersistError, match=r"^cannot write '.*gone\.toml': No such file"):
        write_config(tmp_path / "gone.toml", parse_circuitbreaker({}))


DOTTED_TEXT = """\
# dotted keys: a valid layout `tripwire check` accepts
[circuitbreaker]
global.failure_threshold = 4   # four in a row
profiles.database.failure_threshold = 2

# the server comes last
[server]
bind = "127.0.0.1:8080"
"""


def test_dotted_keys_are_rebuilt_as_standard_tables() -> None:
    config = parse_circuitbreaker(
        {
            "global": {"failure_threshold": 4},
            "profiles": {"database": {"failure_threshold": 2}, "search": {"failure_threshold": 7}},
        }
    )
    new = render_config(DOTTED_TEXT, config)
    assert parse_config(tomli.loads(new)).circuitbreaker == config
    assert new == (
        "# dotted keys: a valid layout `tripwire check` accepts\n"
        "\n"
        "[circuitbreaker.global]\n"
        "failure_threshold = 4\n"
        "\n"
        "[circuitbreaker.profiles.database]\n"
        "failure_threshold = 2\n"
        "\n"
        "[circuitbreaker.profiles.search]\n"
        "failure_threshold = 7\n"
        "\n"
        "# the server comes last\n"
        "[server]\n"
        'bind = "127.0.0.1:8080"\n'
    )
    assert render_config(new, config) == new


# Every layout of a valid file: dotted keys (under [circuitbreaker], at the root, inside
# [circuitbreaker.profiles]), inline tables, super tables, a split part, [server] last or
# in several forms, no [circuitbreaker] at all, an empty file.
LAYOUTS = {
    "dotted": DOTTED_TEXT,
    "dotted at the root": "circuitbreaker.global.failure_threshold = 4\n"
    'server.bind = "127.0.0.1:1"\n',
    "dotted profiles, root": "circuitbreaker.profiles.database.failure_threshold = 2\n[server]\n",
    "dotted profiles only": "[circuitbreaker]\nprofiles.database.reset_timeout = '60s'\n",
    "dotted global only": "[circuitbreaker]\nglobal.failure_threshold = 3\n",
    "dotted in profiles": "[circuitbreaker.profiles]\ndatabase.failure_threshold = 2\n[server]\n",
    "dotted and split": "[circuitbreaker]\nglobal.failure_threshold = 4\n[server]\n"
    "[circuitbreaker.profiles]\ndatabase.failure_threshold = 2\n",
    "split": "[circuitbreaker.global]\nfailure_threshold = 4\n[server]\n"
    "[circuitbreaker.profiles.database]\nfailure_threshold = 2\n",
    "super tables": "[circuitbreaker]\n[circuitbreaker.profiles]\n[circuitbreaker.profiles.x]\n"
    "failure_threshold = 1\n[server]\npersist_changes = true\n",
    "server last": "[circuitbreaker.global]\nfailure_threshold = 4\n\n[server]\nbind = 'x:1'\n",
    "inline everything": "circuitbreaker = { global = { failure_threshold = 2 }, "
    "profiles = { database = { failure_threshold = 2 } } }\n[server]\n",
    "inline profiles": "[circuitbreaker]\nprofiles = { database = { failure_threshold = 2 } }\n",
    "inline server": "server = { bind = '127.0.0.1:1' }\n",
    "no newline at the end": "[server]\nbind = '127.0.0.1:1'",
    "only a comment": "# nothing yet\n",
    "empty": "",
}
CONFIGS = [
    {
        "global": {"failure_threshold": 5},
        "profiles": {"database": {"failure_threshold": 2}, "search": {"failure_threshold": 7}},
    },
    {"profiles": {"search": {"failure_threshold": 7}}},
    {"global": {"reset_timeout": "90s"}},
    {"profiles": {"empty": {}}},
    {},
]


@pytest.mark.parametrize("text", LAYOUTS.values(), ids=LAYOUTS.keys())
@pytest.mark.parametrize("wanted", CONFIGS)
def test_every_valid_layout_persists(text: str, wanted: dict[str, Any]) -> None:
    before = parse_config(tomli.loads(text))  # a valid file
    config = parse_circuitbreaker(wanted)
    new = render_config(text, config)
    after = parse_config(tomli.loads(new))
    assert after.circuitbreaker == config
    assert after.server == before.server
    assert render_config(new, config) == new  # stable: a second write changes nothing
    for comment in re.findall(r"^#.*", text, re.MULTILINE):  # those on lines of their own
        assert comment in new


def test_a_file_that_cannot_say_the_config_is_a_persist_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import web._persist

    monkeypatch.setattr(web._persist, "_edit_in_place", lambda document, wanted: "x = 1\n")
    monkeypatch.setattr(web._persist, "_rebuild", lambda document, wanted, at_end: "x = 1\n")
    with pytest.raises(PersistError, match=r"^the updated file would not be valid: "):
        render_config(CONFIG_TEXT, parse_circuitbreaker({}))
