"""Writing accepted changes back to the config file.

Only the ``[circuitbreaker]`` part of the document changes; comments, key order,
formatting and every other section (``[server]``) are kept. Values are written in
canonical form (``"1m30s"``).

The part is first edited in place (tomlkit), each value keeping its comment. Some
layouts cannot take new tables in place (dotted keys such as
``profiles.database.failure_threshold = 2`` under ``[circuitbreaker]``): then the whole
``[circuitbreaker]`` part is rebuilt as standard tables where it was (or, failing that, at
the end), keeping everything outside it. Either way the new text must read back (as
``load_config`` reads it) as exactly the config that will be put in force, or nothing is
written. It is written atomically: a temporary file in the same folder, fsync,
``os.replace``.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable, MutableMapping
from functools import partial
from pathlib import Path
from typing import Any

import tomli
import tomlkit
import tomlkit.exceptions
import tomlkit.items
from tomlkit.items import Comment, Whitespace

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
    """The config file ``text`` with its ``[circuitbreaker]`` part saying ``config``.

    Edited in place when that reads back right; else the part rebuilt as standard tables
    where it was, else at the end; else :class:`PersistError` (nothing to write).
    """
    _parse(text)  # an unparsable file is reported as such
    wanted = config_to_builtins(config)
    attempts: list[Callable[[tomlkit.TOMLDocument], str]] = [
        partial(_edit_in_place, wanted=wanted),
        partial(_rebuild, wanted=wanted, at_end=False),
        partial(_rebuild, wanted=wanted, at_end=True),
    ]
    problem = PersistError("the updated file would not read back as the new config")
    for attempt in attempts:
        try:
            return _checked(attempt(_parse(text)), config)
        except PersistError as exc:
            problem = exc
        except (tomlkit.exceptions.TOMLKitError, ValueError, TypeError, KeyError) as exc:
            # a layout tomlkit cannot change this way: try the next one
            problem = PersistError(f"cannot update the file: {type(exc).__name__}: {exc}")
    raise problem


def _parse(text: str) -> tomlkit.TOMLDocument:
    try:
        return tomlkit.parse(text)
    except tomlkit.exceptions.TOMLKitError as exc:
        raise PersistError(f"cannot parse the current file: {exc}") from None


def _edit_in_place(document: tomlkit.TOMLDocument, wanted: dict[str, Any]) -> str:
    """Edit ``document``'s ``[circuitbreaker]`` tables, touching as little as possible
    (no table is added that would stay empty)."""
    set_globally = any(_DEFAULTS.get(k, _MISSING) != v for k, v in wanted["global"].items())
    if "circuitbreaker" not in document and not set_globally and not wanted["profiles"]:
        return tomlkit.dumps(document)
    circuitbreaker = _subtable(document, "circuitbreaker", super_table=True)
    if "global" in circuitbreaker or set_globally:
        global_ = _subtable(circuitbreaker, "global", super_table=False)
        _sync(global_, wanted["global"], _DEFAULTS)
    if "profiles" not in circuitbreaker and not wanted["profiles"]:
        return tomlkit.dumps(document)
    profiles = _subtable(circuitbreaker, "profiles", super_table=True)
    for name in list(profiles):
        if name not in wanted["profiles"]:
            del profiles[name]
    for name, fields in wanted["profiles"].items():
        _sync(_subtable(profiles, name, super_table=False), fields, {})
    return tomlkit.dumps(document)


def _rebuild(document: tomlkit.TOMLDocument, wanted: dict[str, Any], *, at_end: bool) -> str:
    """``document`` with its ``[circuitbreaker]`` part, in whatever layout, replaced by
    standard tables: where the part starts, or ``at_end``.

    Everything else stays in order; the comments and blank lines that end the old part
    (those before the next section, as tomlkit sees them) stay where they were. Global
    fields written in the file stay written; the others only when not the default.
    """
    old = document.unwrap().get("circuitbreaker")
    old_global = old.get("global") if isinstance(old, dict) else None
    written = set(old_global) if isinstance(old_global, dict) else set()
    new = tomlkit.table(is_super_table=True)
    fields = {
        key: value
        for key, value in wanted["global"].items()
        if key in written or _DEFAULTS.get(key, _MISSING) != value
    }
    if fields or not wanted["profiles"]:
        new["global"] = _standard_table(fields)
    if wanted["profiles"]:
        profiles = tomlkit.table(is_super_table=True)
        for name, profile in wanted["profiles"].items():
            profiles[name] = _standard_table(profile)
        new["profiles"] = profiles

    rebuilt = tomlkit.document()
    rebuilt.parsing(True)  # the items kept are copied as they were, spacing included
    placed = gap = False
    for key, item in document.body:
        if gap and not isinstance(item, Whitespace):
            _blank_line(rebuilt)
        gap = False
        if key is None or key.key != "circuitbreaker":
            rebuilt.append(key, item)
            continue
        if not placed and not at_end:
            _blank_line(rebuilt)
            rebuilt.append("circuitbreaker", new)
            gap = True
        placed = True
        for trivia in _trailing_trivia(item):  # the comments before the next section
            if gap and not isinstance(trivia, Whitespace):
                _blank_line(rebuilt)
            gap = False
            rebuilt.append(None, trivia)
    if at_end or not placed:
        _blank_line(rebuilt)
        rebuilt.append("circuitbreaker", new)
    return tomlkit.dumps(rebuilt)


def _blank_line(document: tomlkit.TOMLDocument) -> None:
    """End ``document`` with a blank line, unless it is empty or already does."""
    text = tomlkit.dumps(document)
    while text and not text.endswith("\n\n"):
        document.append(None, tomlkit.nl())
        text += "\n"


def _standard_table(fields: dict[str, Any]) -> tomlkit.items.Table:
    table = tomlkit.table()
    for key, value in fields.items():
        table[key] = value
    return table


def _trailing_trivia(item: object) -> list[Comment | Whitespace]:
    """The comments and blank lines at the end of a (standard) table, sub-tables included."""
    if not isinstance(item, tomlkit.items.Table):
        return []
    body = item.value.body
    index = len(body)
    while index > 0 and isinstance(body[index - 1][1], Comment | Whitespace):
        index -= 1
    trailing = [trivia for _, trivia in body[index:] if isinstance(trivia, Comment | Whitespace)]
    if index > 0 and index == len(body):
        return _trailing_trivia(body[-1][1])
    return trailing


def _checked(text: str, config: CircuitBreakerConfig) -> str:
    """``text``, once it reads back (as ``load_config`` reads it) as ``config``."""
    try:
        written = parse_config(tomli.loads(text)).circuitbreaker
    except (tomli.TOMLDecodeError, ConfigError) as exc:
        raise PersistError(f"the updated file would not be valid: {exc}") from None
    if written != config:
        raise PersistError("the updated file would not read back as the new config")
    return text


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
