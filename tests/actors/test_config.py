import re
from pathlib import Path
from typing import Any

import pytest

from actors import (
    CircuitBreakerConfig,
    Config,
    ConfigError,
    Duration,
    Problem,
    Profile,
    ServerConfig,
    Settings,
    config_to_builtins,
    load_config,
    parse_circuitbreaker,
    parse_config,
    parse_profile,
    validate_service_name,
)

REPO_CONFIG = Path(__file__).resolve().parents[2] / "config.toml"
FIELDS = (
    "implementation_type",
    "failure_threshold",
    "operation_timeout",
    "reset_timeout",
    "success_threshold",
)
DURATION = re.escape('expected a duration such as "250ms", "5s" or "1m30s", got ')


def problems_of(raw: Any) -> list[tuple[str, str]]:
    with pytest.raises(ConfigError) as info:
        parse_circuitbreaker(raw)
    return [(p.path, p.message) for p in info.value.problems]


def only_problem(raw: Any) -> Problem:
    with pytest.raises(ConfigError) as info:
        parse_circuitbreaker(raw)
    assert len(info.value.problems) == 1, info.value.problems
    return info.value.problems[0]


def write(tmp_path: Path, text: str | bytes) -> Path:
    path = tmp_path / "config.toml"
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


# --- defaults -------------------------------------------------------------------------


def test_defaults_when_everything_is_missing() -> None:
    defaults = Settings(
        implementation_type="rssafe",
        failure_threshold=3,
        operation_timeout=Duration(5_000),
        reset_timeout=Duration(30_000),
        success_threshold=2,
    )
    assert Settings() == defaults
    assert parse_circuitbreaker({}) == CircuitBreakerConfig(global_=defaults, profiles={})
    config = parse_config({})
    assert config == Config()
    assert config.server == ServerConfig(
        bind="127.0.0.1:8080", api_token_env="TRIPWIRE_API_TOKEN", persist_changes=True
    )
    assert config.circuitbreaker.global_ == defaults
    assert config.circuitbreaker.settings_for("anything") == defaults


def test_defaults_for_each_missing_global_field() -> None:
    config = parse_circuitbreaker({"global": {"failure_threshold": 7}})
    assert config.global_ == Settings(failure_threshold=7)
    assert config.global_.operation_timeout == Duration(5_000)
    assert config.global_.reset_timeout == Duration(30_000)


def test_empty_file_gives_defaults(tmp_path: Path) -> None:
    assert load_config(write(tmp_path, "")) == Config()


# --- profiles -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "text", "value"),
    [
        ("implementation_type", "noop", "noop"),
        ("failure_threshold", 9, 9),
        ("operation_timeout", "250ms", Duration(250)),
        ("reset_timeout", "2m", Duration(120_000)),
        ("success_threshold", 4, 4),
    ],
)
def test_profile_overrides_one_field_rest_from_global(
    field: str, text: object, value: object
) -> None:
    base = {
        "implementation_type": "rssafe",
        "failure_threshold": 5,
        "operation_timeout": "1s",
        "reset_timeout": "10s",
        "success_threshold": 3,
    }
    config = parse_circuitbreaker({"global": base, "profiles": {"db": {field: text}}})
    settings = config.settings_for("db")
    assert getattr(settings, field) == value
    for other in FIELDS:
        if other != field:
            assert getattr(settings, other) == getattr(config.global_, other), other
    assert config.settings_for("other") == config.global_


def test_profile_with_every_field() -> None:
    raw = {
        "implementation_type": "noop",
        "failure_threshold": 1,
        "operation_timeout": "100ms",
        "reset_timeout": "1h",
        "success_threshold": 1,
    }
    config = parse_circuitbreaker({"profiles": {"db": raw}})
    assert config.settings_for("db") == Settings(
        implementation_type="noop",
        failure_threshold=1,
        operation_timeout=Duration(100),
        reset_timeout=Duration(3_600_000),
        success_threshold=1,
    )


def test_empty_profile_is_global() -> None:
    config = parse_circuitbreaker({"global": {"failure_threshold": 4}, "profiles": {"db": {}}})
    assert config.profiles == {"db": Profile()}
    assert config.settings_for("db") == config.global_


def test_parse_profile_keeps_only_given_fields() -> None:
    profile = parse_profile({"failure_threshold": 2, "reset_timeout": "10s"})
    assert profile == Profile(failure_threshold=2, reset_timeout=Duration(10_000))
    assert config_to_builtins(profile) == {"failure_threshold": 2, "reset_timeout": "10s"}
    assert parse_profile(profile) is profile


def test_parse_profile_errors_under_its_path() -> None:
    with pytest.raises(ConfigError) as info:
        parse_profile({"failure_threshold": 0}, "circuitbreaker.profiles.db")
    assert str(info.value) == (
        "circuitbreaker.profiles.db.failure_threshold: expected an integer >= 1, got 0"
    )


@pytest.mark.parametrize("where", ["global", "profile"])
def test_simple_is_an_alias_of_rssafe(where: str) -> None:
    raw: dict[str, Any] = {"implementation_type": "simple"}
    if where == "global":
        config = parse_circuitbreaker({"global": raw})
        assert config.global_.implementation_type == "rssafe"
    else:
        config = parse_circuitbreaker(
            {"global": {"implementation_type": "noop"}, "profiles": {"db": raw}}
        )
        assert config.settings_for("db").implementation_type == "rssafe"
        assert config_to_builtins(config)["profiles"] == {"db": {"implementation_type": "rssafe"}}


def test_unknown_implementation_type() -> None:
    problem = only_problem({"global": {"implementation_type": "fancy"}})
    assert problem.path == "circuitbreaker.global.implementation_type"
    assert re.fullmatch(r'expected one of "rssafe", "noop", got "fancy"', problem.message)


# --- durations and thresholds ---------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "ms"),
    [("250ms", 250), ("5s", 5_000), ("1m30s", 90_000), ("1.5s", 1_500), ("2h", 7_200_000)],
)
def test_durations_accepted(text: str, ms: int) -> None:
    config = parse_circuitbreaker({"global": {"operation_timeout": text, "reset_timeout": text}})
    assert config.global_.operation_timeout == Duration(ms)
    assert config.global_.reset_timeout == Duration(ms)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("5", DURATION + re.escape('"5": a number needs a unit (ms, s, m or h)')),
        (5, DURATION + "5"),
        (1.5, DURATION + re.escape("1.5")),
        ("-5s", DURATION + re.escape('"-5s": a duration must be positive')),
        ("0s", DURATION + re.escape('"0s": a duration must be greater than zero')),
        ("5d", DURATION + re.escape("\"5d\": unknown unit 'd' (use ms, s, m or h)")),
        ("1s2s", DURATION + re.escape("\"1s2s\": unit 's' appears twice")),
        ("30s1m", DURATION + re.escape('"30s1m": units must go from the largest to the smallest')),
        ("0.5ms", DURATION + re.escape('"0.5ms": the smallest step is 1ms')),
    ],
)
@pytest.mark.parametrize("field", ["operation_timeout", "reset_timeout"])
def test_durations_rejected(field: str, value: object, message: str) -> None:
    problem = only_problem({"profiles": {"db": {field: value}}})
    assert problem.path == f"circuitbreaker.profiles.db.{field}"
    assert re.match(message, problem.message), problem.message


@pytest.mark.parametrize(
    ("value", "shown"), [(0, "0"), (-1, "-1"), (1.5, "1.5"), (True, "true"), ("3", '"3"')]
)
@pytest.mark.parametrize("field", ["failure_threshold", "success_threshold"])
def test_thresholds_rejected(field: str, value: object, shown: str) -> None:
    problem = only_problem({"global": {field: value}})
    assert str(problem) == f"circuitbreaker.global.{field}: expected an integer >= 1, got {shown}"


def test_threshold_of_one_accepted() -> None:
    config = parse_circuitbreaker({"global": {"failure_threshold": 1, "success_threshold": 1}})
    assert (config.global_.failure_threshold, config.global_.success_threshold) == (1, 1)


def test_contract_example_message() -> None:
    with pytest.raises(
        ConfigError,
        match=r"^circuitbreaker\.profiles\.database\.failure_threshold: "
        r"expected an integer >= 1, got 0$",
    ):
        parse_circuitbreaker({"profiles": {"database": {"failure_threshold": 0}}})


# --- unknown keys and bad names -------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "path", "message"),
    [
        (
            {"global": {"failure_treshold": 2}},
            "circuitbreaker.global.failure_treshold",
            "unknown key; did you mean 'failure_threshold'?",
        ),
        (
            {"profiles": {"db": {"reset_timout": "1s"}}},
            "circuitbreaker.profiles.db.reset_timout",
            "unknown key; did you mean 'reset_timeout'?",
        ),
        ({"globl": {}}, "circuitbreaker.globl", "unknown key; did you mean 'global'?"),
        (
            {"global": {"zzz": 1}},
            "circuitbreaker.global.zzz",
            "unknown key; expected one of implementation_type, failure_threshold, "
            "operation_timeout, reset_timeout, success_threshold",
        ),
    ],
)
def test_unknown_keys(raw: Any, path: str, message: str) -> None:
    problem = only_problem(raw)
    assert problem.path == path
    assert re.fullmatch(re.escape(message), problem.message)


def test_unknown_top_level_and_server_keys() -> None:
    with pytest.raises(ConfigError) as info:
        parse_config({"circuit": {}, "server": {"bnd": "x"}})
    assert [str(p) for p in info.value.problems] == [
        "circuit: unknown key; did you mean 'circuitbreaker'?",
        "server.bnd: unknown key; did you mean 'bind'?",
    ]


@pytest.mark.parametrize("name", ["bad name", "", "x" * 65, "db/1", "ü"])
def test_bad_service_name_in_profiles(name: str) -> None:
    problem = only_problem({"profiles": {name: {"failure_threshold": 0}}})
    assert problem.path == f"circuitbreaker.profiles.{name}"
    assert re.fullmatch(
        r"invalid service name \".*\": use 1 to 64 of A-Z a-z 0-9 _ \. -", problem.message
    )


@pytest.mark.parametrize("name", ["db", "a" * 64, "Up-stream_api.v2", "0"])
def test_good_service_names(name: str) -> None:
    validate_service_name(name)
    assert parse_circuitbreaker({"profiles": {name: {}}}).profiles == {name: Profile()}


@pytest.mark.parametrize(
    ("raw", "path"),
    [
        ([], "circuitbreaker"),
        ({"global": 3}, "circuitbreaker.global"),
        ({"profiles": "db"}, "circuitbreaker.profiles"),
        ({"profiles": {"db": 3}}, "circuitbreaker.profiles.db"),
    ],
)
def test_tables_must_be_tables(raw: Any, path: str) -> None:
    problem = only_problem(raw)
    assert problem.path == path
    assert re.fullmatch(r"expected a table of keys, got .+", problem.message)


def test_every_problem_reported_at_once() -> None:
    raw = {
        "globl": {},
        "global": {"failure_threshold": 0, "operation_timeout": "5", "success_threshold": True},
        "profiles": {
            "bad name": {},
            "db": {"reset_timeout": "-1s", "failure_threshold": "3", "typo": 1},
        },
    }
    problems = problems_of(raw)
    assert sorted(problems) == sorted(
        [
            ("circuitbreaker.globl", "unknown key; did you mean 'global'?"),
            ("circuitbreaker.global.failure_threshold", "expected an integer >= 1, got 0"),
            (
                "circuitbreaker.global.operation_timeout",
                'expected a duration such as "250ms", "5s" or "1m30s", got "5": '
                "a number needs a unit (ms, s, m or h)",
            ),
            ("circuitbreaker.global.success_threshold", "expected an integer >= 1, got true"),
            (
                "circuitbreaker.profiles.bad name",
                'invalid service name "bad name": use 1 to 64 of A-Z a-z 0-9 _ . -',
            ),
            (
                "circuitbreaker.profiles.db.reset_timeout",
                'expected a duration such as "250ms", "5s" or "1m30s", got "-1s": '
                "a duration must be positive",
            ),
            ("circuitbreaker.profiles.db.failure_threshold", 'expected an integer >= 1, got "3"'),
            (
                "circuitbreaker.profiles.db.typo",
                "unknown key; expected one of implementation_type, failure_threshold, "
                "operation_timeout, reset_timeout, success_threshold",
            ),
        ]
    )


def test_config_error_message_lists_every_problem() -> None:
    with pytest.raises(ConfigError) as info:
        parse_circuitbreaker({"global": {"failure_threshold": 0, "success_threshold": 0}})
    assert isinstance(info.value, ValueError)
    assert str(info.value).splitlines() == [
        "circuitbreaker.global.failure_threshold: expected an integer >= 1, got 0",
        "circuitbreaker.global.success_threshold: expected an integer >= 1, got 0",
    ]


def test_server_section_checked() -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(
            {"server": {"bind": "localhost", "persist_changes": "yes", "api_token_env": 1}}
        )
    assert sorted(map(str, info.value.problems)) == [
        "server.api_token_env: expected a string, got 1",
        'server.bind: expected HOST:PORT with a port from 0 to 65535, got "localhost"',
        'server.persist_changes: expected true or false, got "yes"',
    ]


@pytest.mark.parametrize("bind", ["0.0.0.0:80", "[::1]:8080", "example.org:65535"])
def test_server_bind_accepted(bind: str) -> None:
    assert parse_config({"server": {"bind": bind}}).server.bind == bind


# --- files ----------------------------------------------------------------------------


def test_load_the_repository_config() -> None:
    config = load_config(REPO_CONFIG)
    assert config.server == ServerConfig()
    assert config.circuitbreaker.global_ == Settings()
    assert config.circuitbreaker.profiles == {
        "database": Profile(failure_threshold=2, reset_timeout=Duration(60_000))
    }
    assert config.circuitbreaker.settings_for("database") == Settings(
        failure_threshold=2, reset_timeout=Duration(60_000)
    )


def test_load_config_from_file(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        [server]
        bind = "0.0.0.0:9000"
        persist_changes = false

        [circuitbreaker.global]
        implementation_type = "simple"
        operation_timeout = "1.5s"

        [circuitbreaker.profiles."db.main"]
        success_threshold = 5
        """,
    )
    config = load_config(str(path))
    assert config.server == ServerConfig(bind="0.0.0.0:9000", persist_changes=False)
    assert config.circuitbreaker.global_ == Settings(operation_timeout=Duration(1_500))
    assert config.circuitbreaker.settings_for("db.main").success_threshold == 5


def test_toml_syntax_error_names_line_and_column(tmp_path: Path) -> None:
    path = write(tmp_path, "[circuitbreaker.global]\nfailure_threshold = 3\nreset_timeout = \n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    (problem,) = info.value.problems
    assert problem.path == str(path)
    assert re.fullmatch(r"TOML syntax error at line 3, column 17: .+", problem.message)


def test_errors_in_a_file_name_their_place(tmp_path: Path) -> None:
    path = write(tmp_path, "[circuitbreaker.profiles.database]\nfailure_threshold = 0\n")
    with pytest.raises(
        ConfigError,
        match=r"^circuitbreaker\.profiles\.database\.failure_threshold: "
        r"expected an integer >= 1, got 0$",
    ):
        load_config(path)


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "absent.toml"
    with pytest.raises(
        ConfigError, match=rf"^{re.escape(str(path))}: cannot read: No such file or directory$"
    ):
        load_config(path)


def test_directory_is_unreadable(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=rf"^{re.escape(str(tmp_path))}: cannot read: .+$"):
        load_config(tmp_path)


def test_not_utf8(tmp_path: Path) -> None:
    path = write(tmp_path, b'[server]\nbind = "\xff"\n')
    with pytest.raises(ConfigError, match=rf"^{re.escape(str(path))}: not UTF-8 text: .+$"):
        load_config(path)


def test_config_to_builtins_canonical_durations() -> None:
    config = parse_circuitbreaker(
        {
            "global": {"operation_timeout": "90s", "reset_timeout": "1.5s"},
            "profiles": {"db": {"reset_timeout": "3600000ms"}, "api": {"failure_threshold": 1}},
        }
    )
    assert config_to_builtins(config) == {
        "global": {
            "implementation_type": "rssafe",
            "failure_threshold": 3,
            "operation_timeout": "1m30s",
            "reset_timeout": "1s500ms",
            "success_threshold": 2,
        },
        "profiles": {"db": {"reset_timeout": "1h"}, "api": {"failure_threshold": 1}},
    }
    assert parse_circuitbreaker(config_to_builtins(config)) == config


def test_config_to_builtins_whole_config() -> None:
    out = config_to_builtins(Config())
    assert out["server"] == {
        "bind": "127.0.0.1:8080",
        "api_token_env": "TRIPWIRE_API_TOKEN",
        "persist_changes": True,
    }
    assert out["circuitbreaker"]["global"]["reset_timeout"] == "30s"
    assert out["circuitbreaker"]["profiles"] == {}


@pytest.mark.parametrize("bind", ["127.0.0.1:65536", "[::1]:99999", "host:123456"])
def test_server_bind_port_out_of_range(bind: str) -> None:
    message = f'server.bind: expected HOST:PORT with a port from 0 to 65535, got "{bind}"'
    with pytest.raises(ConfigError, match=f"^{re.escape(message)}$"):
        parse_config({"server": {"bind": bind}})
