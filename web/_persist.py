"""Writing accepted changes back to the config file.

Only the ``[circuitbreaker]`` part of the document changes; comments, key order,
formatting and every other section (``[server]``) are kept (tomlkit edits the document in
place). Values are written in canonical form (``"1m30s"``), each keeping its comment. The
new text is checked to read back as exactly the config that will be put in force, then
written atomically: a temporary file in the same folder, fsync, ``os.replace``.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import MutableMapping
from pathlib import Path
from typing import Any

import tomlkit
import tomlkit.exceptions
import tomlkit.items

from actors import (
    CircuitBreakerConfig,
    ConfigError,
    Settings,
    config_to_builtins,
    parse_config,
)

__all__ = ["PersistError", "render_config", "write_config"]

_DEFAULTS: dict[str, Any] = config_to_builtins(Settings())
_MISSING = object()


class PersistError(Exception):
    """The config file could not be updated; the message says why."""


def _written_as(old: Any, new: object) -> bool:
    """Whether a value in the file is already written as the canonical ``new``."""
    if isinstance(old, tomlkit.items.Item):
        old = old.unwrap()
    return type(old) is type(new) and bool(old == new)


def _subtable(parent: MutableMapping[str, Any], key: str, *, super_table: bool) -> Any:
    """``parent[key]`` as a table, created when missing (inline if ``parent`` is inline)."""
    if key not in parent or not isinstance(parent[key], MutableMapping):
        if isinstance(parent, tomlkit.items.InlineTable):
            parent[key] = tomlkit.inline_table()
        else:
            parent[key] = tomlkit.table(is_super_table=super_table)
    return parent[key]


def _sync(
    table: MutableMapping[str, Any], wanted: dict[str, Any], defaults: dict[str, Any]
) -> None:
    """Make ``table`` say ``wanted``, touching as little as possible.

    A key missing from the file whose wanted value is its default (from ``defaults``)
    stays missing; every value written is in canonical form (``"60s"`` becomes ``"1m"``,
    ``"simple"`` becomes ``"rssafe"``), keeping its comment.
    """
    for key in list(table):
        if key not in wanted:
            del table[key]
    for key, value in wanted.items():
        if key in table:
            if not _written_as(table[key], value):
                table[key] = value
        elif defaults.get(key, _MISSING) != value:
            table[key] = value


def render_config(text: str, config: CircuitBreakerConfig) -> str:
    """The config file ``text`` with its ``[circuitbreaker]`` part saying ``config``."""
    try:
        document = tomlkit.parse(text)
    except tomlkit.exceptions.TOMLKitError as exc:
        raise PersistError(f"cannot parse the current file: {exc}") from None
    wanted = config_to_builtins(config)
    circuitbreaker = _subtable(document, "circuitbreaker", super_table=True)
    _sync(_subtable(circuitbreaker, "global", super_table=False), wanted["global"], _DEFAULTS)
    profiles = _subtable(circuitbreaker, "profiles", super_table=True)
    for name in list(profiles):
        if name not in wanted["profiles"]:
            del profiles[name]
    for name, fields in wanted["profiles"].items():
        _sync(_subtable(profiles, name, super_table=False), fields, {})
    new_text = tomlkit.dumps(document)
    _check_round_trip(new_text, config)
    return new_text


def _check_round_trip(text: str, config: CircuitBreakerConfig) -> None:
    try:
        written = parse_config(tomlkit.parse(text).unwrap()).circuitbreaker
    except (tomlkit.exceptions.TOMLKitError, ConfigError) as exc:
        raise PersistError(f"the updated file would not be valid: {exc}") from None
    if written != config:
        raise PersistError("the updated file would not read back as the new config")


def write_config(path: str | os.PathLike[str], config: CircuitBreakerConfig) -> None:
    """Rewrite the ``[circuitbreaker]`` part of the file at ``path`` atomically (blocking)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
        new_text = render_config(text, config)
        _atomic_write(path, new_text)
    except OSError as exc:
        raise PersistError(f"cannot write {str(path)!r}: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise PersistError(f"cannot read {str(path)!r}: not UTF-8 text: {exc.reason}") from None


def _atomic_write(path: Path, text: str) -> None:
    mode = path.stat().st_mode & 0o7777
    handle, temp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(handle, "w", encoding="utf-8", newline="") as file:
            file.write(text)
            file.flush()
            os.fsync(file.fileno())
        os.chmod(temp_name, mode)
        os.replace(temp_name, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temp_name)
        raise
    with contextlib.suppress(OSError):  # make the rename durable where the OS allows it
        folder = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(folder)
        finally:
            os.close(folder)
