"""Configuration: the Structs that describe it and the one checker that builds them.

The TOML file and the REST API's JSON bodies go through the same checker
(:func:`parse_circuitbreaker`, :func:`parse_profile`), so both accept the same things and
reject them with the same messages. The checker reports *every* problem, each with its
dotted place, e.g. ``circuitbreaker.profiles.database.failure_threshold: expected an
integer >= 1, got 0``.
"""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Mapping
from typing import Annotated, Any, Final, Literal

import msgspec
import tomli
from msgspec import UNSET, Meta, UnsetType

from ._duration import Duration
from ._exceptions import ConfigError, Problem

__all__ = [
    "CircuitBreakerConfig",
    "Config",
    "Profile",
    "ServerConfig",
    "Settings",
    "config_to_builtins",
    "load_config",
    "parse_circuitbreaker",
    "parse_config",
    "parse_profile",
    "validate_service_name",
]

ImplementationType = Literal["rssafe", "noop"]
Threshold = Annotated[int, Meta(ge=1, description="an integer >= 1")]
Bind = Annotated[
    str,
    Meta(
        pattern=r"^(\[[0-9A-Fa-f:.]+\]|[^:\s\[\]]+):"
        r"(6553[0-5]|655[0-2]\d|65[0-4]\d\d|6[0-4]\d{3}|[1-5]\d{4}|\d{1,4})$",
        description="HOST:PORT with a port from 0 to 65535",
    ),
]
SERVICE_NAME: Final = re.compile(r"[A-Za-z0-9_.-]{1,64}")
_ALIASES: Final = {"simple": "rssafe"}


class _Base(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    pass


class Settings(_Base, frozen=True):
    """The effective settings of one breaker (every field known)."""

    implementation_type: ImplementationType = "rssafe"
    failure_threshold: Threshold = 3
    operation_timeout: Duration = Duration(5_000)
    reset_timeout: Duration = Duration(30_000)
    success_threshold: Threshold = 2


class Profile(_Base, frozen=True, omit_defaults=True):
    """A service's overrides; a field left UNSET is taken from the global settings."""

    implementation_type: ImplementationType | UnsetType = UNSET
    failure_threshold: Threshold | UnsetType = UNSET
    operation_timeout: Duration | UnsetType = UNSET
    reset_timeout: Duration | UnsetType = UNSET
    success_threshold: Threshold | UnsetType = UNSET

    def over(self, base: Settings) -> Settings:
        """The settings in force for a service with this profile."""
        given = {f: v for f in self.__struct_fields__ if (v := getattr(self, f)) is not UNSET}
        return msgspec.structs.replace(base, **given)


class CircuitBreakerConfig(_Base, frozen=True):
    """The ``[circuitbreaker]`` table: global settings and per-service profiles."""

    global_: Settings = msgspec.field(default_factory=Settings, name="global")
    profiles: dict[str, Profile] = msgspec.field(default_factory=dict)

    def settings_for(self, service: str) -> Settings:
        profile = self.profiles.get(service)
        return self.global_ if profile is None else profile.over(self.global_)


class ServerConfig(_Base, frozen=True):
    """The ``[server]`` table, read by ``tripwire serve``."""

    bind: Bind = "127.0.0.1:8080"
    api_token_env: str = "TRIPWIRE_API_TOKEN"
    persist_changes: bool = True


class Config(_Base, frozen=True):
    """A whole config file."""

    server: ServerConfig = msgspec.field(default_factory=ServerConfig)
    circuitbreaker: CircuitBreakerConfig = msgspec.field(default_factory=CircuitBreakerConfig)


# --- the checker -----------------------------------------------------------------------


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _show(value: object) -> str:
    try:
        return msgspec.json.encode(value).decode()
    except (TypeError, msgspec.EncodeError):
        return repr(value)


def _describe(field_type: object) -> str:
    if field_type is Duration:
        return 'a duration such as "250ms", "5s" or "1m30s"'
    if field_type is bool:
        return "true or false"
    if field_type is str:
        return "a string"
    if getattr(field_type, "__origin__", None) is Literal:
        return "one of " + ", ".join(f'"{v}"' for v in field_type.__args__)  # type: ignore[attr-defined]
    for meta in getattr(field_type, "__metadata__", ()):
        if isinstance(meta, Meta) and meta.description:
            return meta.description
    return str(field_type)


def _convert_value(field_type: object, value: object) -> object:
    """Convert one scalar; raise ValueError with the message to show."""
    if field_type is Duration:
        if not isinstance(value, str):
            raise ValueError(f"expected {_describe(field_type)}, got {_show(value)}")
        try:
            return Duration.parse(value)
        except ValueError as exc:
            raise ValueError(
                f"expected {_describe(field_type)}, got {_show(value)}: {exc}"
            ) from None
    if isinstance(value, str) and value in _ALIASES and field_type == ImplementationType:
        value = _ALIASES[value]
    try:
        return msgspec.convert(value, field_type, strict=True)
    except msgspec.ValidationError:
        raise ValueError(f"expected {_describe(field_type)}, got {_show(value)}") from None


_FieldTypes = Mapping[str, object]
_SETTINGS_FIELDS: Final[_FieldTypes] = {
    f.encode_name: f.type for f in msgspec.structs.fields(Settings)
}
_SERVER_FIELDS: Final[_FieldTypes] = {
    f.encode_name: f.type for f in msgspec.structs.fields(ServerConfig)
}


def _table(raw: object, path: str, problems: list[Problem]) -> Mapping[str, Any] | None:
    if isinstance(raw, Mapping):
        return raw
    problems.append(Problem(path, f"expected a table of keys, got {_show(raw)}"))
    return None


def _unknown_keys(table: Mapping[str, Any], known: Any, path: str, problems: list[Problem]) -> None:
    for key in table:
        if key not in known:
            hint = difflib.get_close_matches(str(key), list(known), n=1)
            rule = f"did you mean {hint[0]!r}?" if hint else "expected one of " + ", ".join(known)
            problems.append(Problem(_join(path, str(key)), f"unknown key; {rule}"))


def _fields(raw: object, fields: _FieldTypes, path: str, problems: list[Problem]) -> dict[str, Any]:
    """Check a flat table against ``fields``; return the converted values it gives."""
    table = _table(raw, path, problems)
    if table is None:
        return {}
    _unknown_keys(table, fields, path, problems)
    out: dict[str, Any] = {}
    for key, field_type in fields.items():
        if key in table:
            try:
                out[key] = _convert_value(field_type, table[key])
            except ValueError as exc:
                problems.append(Problem(_join(path, key), str(exc)))
    return out


def validate_service_name(name: str) -> None:
    """Raise ``ValueError`` unless ``name`` matches ``[A-Za-z0-9_.-]{1,64}``."""
    if not isinstance(name, str) or not SERVICE_NAME.fullmatch(name):
        raise ValueError(f"invalid service name {_show(name)}: use 1 to 64 of A-Z a-z 0-9 _ . -")


def _profile(raw: object, path: str, problems: list[Problem]) -> Profile:
    return Profile(**_fields(raw, _SETTINGS_FIELDS, path, problems))


def _circuitbreaker(raw: object, path: str, problems: list[Problem]) -> CircuitBreakerConfig:
    table = _table(raw, path, problems)
    if table is None:
        return CircuitBreakerConfig()
    _unknown_keys(table, ("global", "profiles"), path, problems)
    global_ = Settings(
        **_fields(table.get("global", {}), _SETTINGS_FIELDS, _join(path, "global"), problems)
    )
    profiles: dict[str, Profile] = {}
    profiles_path = _join(path, "profiles")
    raw_profiles = _table(table.get("profiles", {}), profiles_path, problems) or {}
    for name, raw_profile in raw_profiles.items():
        where = _join(profiles_path, str(name))
        try:
            validate_service_name(name)
        except ValueError as exc:
            problems.append(Problem(where, str(exc)))
            continue
        profiles[name] = _profile(raw_profile, where, problems)
    return CircuitBreakerConfig(global_=global_, profiles=profiles)


def _raise_if(problems: list[Problem]) -> None:
    if problems:
        raise ConfigError(problems)


def parse_circuitbreaker(raw: object, path: str = "circuitbreaker") -> CircuitBreakerConfig:
    """Build a :class:`CircuitBreakerConfig` from plain data (a TOML table, a JSON object),
    or check one built in Python (msgspec does not check Structs made by calling them).

    Global fields left out take their defaults; profiles left out do not exist.
    Raises :class:`ConfigError` listing every problem, each under ``path``.
    """
    if isinstance(raw, CircuitBreakerConfig):
        parse_circuitbreaker(config_to_builtins(raw), path)
        return raw
    problems: list[Problem] = []
    config = _circuitbreaker(raw, path, problems)
    _raise_if(problems)
    return config


def parse_profile(raw: object, path: str = "profile") -> Profile:
    """Build a :class:`Profile` from plain data, or check one built in Python;
    :class:`ConfigError` on any problem."""
    if isinstance(raw, Profile):
        parse_profile(config_to_builtins(raw), path)
        return raw
    problems: list[Problem] = []
    profile = _profile(raw, path, problems)
    _raise_if(problems)
    return profile


def parse_config(raw: object) -> Config:
    """Build a whole :class:`Config` from a parsed TOML document (or check one)."""
    if isinstance(raw, Config):
        parse_config(config_to_builtins(raw))
        return raw
    problems: list[Problem] = []
    table = _table(raw, "", problems)
    if table is None:
        raise ConfigError(problems)
    _unknown_keys(table, ("server", "circuitbreaker"), "", problems)
    server = ServerConfig(**_fields(table.get("server", {}), _SERVER_FIELDS, "server", problems))
    circuitbreaker = _circuitbreaker(table.get("circuitbreaker", {}), "circuitbreaker", problems)
    _raise_if(problems)
    return Config(server=server, circuitbreaker=circuitbreaker)


def load_config(path: str | os.PathLike[str]) -> Config:
    """Read and check a TOML config file; raise :class:`ConfigError` naming every problem."""
    try:
        with open(path, "rb") as file:
            document = tomli.load(file)
    except OSError as exc:
        raise ConfigError([Problem(str(path), f"cannot read: {exc.strerror}")]) from None
    except UnicodeDecodeError as exc:
        raise ConfigError([Problem(str(path), f"not UTF-8 text: {exc.reason}")]) from None
    except tomli.TOMLDecodeError as exc:
        where = f"line {exc.lineno}, column {exc.colno}"
        raise ConfigError(
            [Problem(str(path), f"TOML syntax error at {where}: {exc.msg}")]
        ) from None
    return parse_config(document)


def config_to_builtins(config: CircuitBreakerConfig | Settings | Profile | Config) -> Any:
    """Plain data (JSON- and TOML-ready) with durations in canonical form."""
    return msgspec.to_builtins(config, enc_hook=str)
