"""The ``tripwire`` command as a real process (``.venv/bin/tripwire`` and ``python -m web``)."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
import trio

from web._cli import _check_bind

from .conftest import API, CONFIG_TEXT, child_env, read_bytes, running_process

BIN = Path(sys.executable).parent
TRIPWIRE = [str(BIN / "tripwire")] if (BIN / "tripwire").exists() else [sys.executable, "-m", "web"]
PYTHON_M_WEB = [sys.executable, "-m", "web"]
LISTENING = r"API listening on (http://127\.0\.0\.1:\d+)"


def run(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*TRIPWIRE, *args], cwd=cwd, env=child_env(), capture_output=True, text=True, timeout=30
    )


def test_version(tmp_path: Path) -> None:
    result = run(["--version"], tmp_path)
    assert (result.returncode, result.stdout) == (0, "tripwire 0.1.0\n")


@pytest.mark.parametrize("command", [[], ["serve"], ["check"], ["demo"]])
def test_help(tmp_path: Path, command: list[str]) -> None:
    result = run([*command, "--help"], tmp_path)
    assert result.returncode == 0
    assert result.stdout.startswith(f"usage: tripwire {' '.join(command)}".rstrip())


def test_check_a_good_file(tmp_path: Path, config_path: Path) -> None:
    result = run(["check", str(config_path)], tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        f"{config_path}: OK",
        "  server: bind 127.0.0.1:8080, persist_changes True",
        "  global: implementation_type rssafe, failure_threshold 3, operation_timeout 5s, "
        "reset_timeout 30s, success_threshold 2",
        "  profiles (2): database, legacy",
    ]


def test_check_a_bad_file_names_every_problem(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(
        '[circuitbreaker.global]\nfailure_threshold = 0\nreset_timeout = "5"\n'
        "[circuitbreaker.profiles.db]\nfailure_treshold = 2\n"
    )
    result = run(["check", str(path)], tmp_path)
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.splitlines() == [
        f"tripwire: error: {path}: circuitbreaker.global.failure_threshold: "
        "expected an integer >= 1, got 0",
        f"tripwire: error: {path}: circuitbreaker.global.reset_timeout: "
        'expected a duration such as "250ms", "5s" or "1m30s", got "5": '
        "a number needs a unit (ms, s, m or h)",
        f"tripwire: error: {path}: circuitbreaker.profiles.db.failure_treshold: "
        "unknown key; did you mean 'failure_threshold'?",
    ]


def test_check_a_syntax_error_names_line_and_column(tmp_path: Path) -> None:
    path = tmp_path / "broken.toml"
    path.write_text("[server]\nbind = \n")
    result = run(["check", str(path)], tmp_path)
    assert result.returncode == 2
    assert result.stderr.startswith(f"tripwire: error: {path}: TOML syntax error at line 2, col")
    assert "Traceback" not in result.stderr


def test_serve_a_bad_file_exits_2_without_traceback(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text("[server]\npersist_changes = 1\n")
    result = run(["serve", "--config", str(path), "--bind", "127.0.0.1:0"], tmp_path)
    assert result.returncode == 2
    assert result.stderr == (
        f"tripwire: error: {path}: server.persist_changes: expected true or false, got 1\n"
    )


def test_serve_a_missing_file_given_explicitly_exits_2(tmp_path: Path) -> None:
    result = run(["serve", "--config", "missing.toml"], tmp_path)
    assert result.returncode == 2
    assert "missing.toml: cannot read: No such file or directory" in result.stderr


def test_serve_refuses_a_public_bind_without_token(tmp_path: Path) -> None:
    result = run(["serve", "--bind", "0.0.0.0:0"], tmp_path)
    assert result.returncode == 2
    assert "refusing to serve on non-loopback address 0.0.0.0:0" in result.stderr
    assert "TRIPWIRE_API_TOKEN" in result.stderr
    assert "--insecure" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("bind", "message"),
    [
        ("127.0.0.1:99999", "bind: port 99999 out of range (0 to 65535) in '127.0.0.1:99999'"),
        ("localhost", "bind: expected HOST:PORT such as 127.0.0.1:8080, got 'localhost'"),
    ],
)
def test_serve_a_malformed_bind_says_only_what_is_wrong(
    tmp_path: Path, bind: str, message: str
) -> None:
    result = run(["serve", "--bind", bind], tmp_path)
    assert result.returncode == 2
    assert result.stderr.splitlines()[-1] == f"tripwire: error: {message}"
    assert "--insecure" not in result.stderr


def test_serve_on_a_taken_port_exits_2(tmp_path: Path) -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run(["serve", "--bind", f"127.0.0.1:{port}"], tmp_path)
    assert result.returncode == 2
    assert f"cannot listen on 127.0.0.1:{port}: Address already in use" in result.stderr
    assert "Traceback" not in result.stderr


async def test_python_m_web_serves_and_sigint_stops_it(tmp_path: Path) -> None:
    # ./config.toml is the default; `python -m web` is `tripwire serve`.
    path = trio.Path(tmp_path / "config.toml")
    await path.write_text(CONFIG_TEXT)
    args = [*PYTHON_M_WEB, "--bind", "127.0.0.1:0"]
    async with running_process(args, tmp_path) as child:
        url = await child.wait_for(LISTENING)
        async with httpx.AsyncClient(base_url=url, timeout=10) as client:
            assert (await client.get("/health")).status_code == 200
            response = await client.put(
                f"{API}/services/search", json={"profile": {"reset_timeout": "120s"}}
            )
            assert response.status_code == 200
        assert await child.stop(signal.SIGINT) == 0
    assert "SIGINT received: shutting down" in child.stderr
    assert "Traceback" not in child.stderr
    text = (await read_bytes(Path(path))).decode()
    assert '[circuitbreaker.profiles.search]\nreset_timeout = "2m"\n' in text


async def test_serve_without_a_config_file_and_sigterm(tmp_path: Path) -> None:
    args = [*TRIPWIRE, "serve", "--bind", "127.0.0.1:0"]
    async with running_process(args, tmp_path) as child:
        url = await child.wait_for(LISTENING)
        async with httpx.AsyncClient(base_url=url, timeout=10) as client:
            response = await client.put(f"{API}/config", json={"config": {}})
            assert response.status_code == 200
        assert await child.stop(signal.SIGTERM) == 0
    assert "using built-in defaults" in child.stderr
    assert list(await trio.Path(tmp_path).iterdir()) == []  # nothing written


@pytest.mark.parametrize(
    ("bind", "token", "insecure", "refused"),
    [
        ("127.0.0.1:8080", None, False, False),
        ("[::1]:8080", None, False, False),
        ("0.0.0.0:8080", "tok", False, False),
        ("0.0.0.0:8080", None, True, False),
        ("0.0.0.0:8080", None, False, True),
        ("example.com:80", None, False, True),
    ],
)
def test_when_a_bind_is_refused(
    bind: str, token: str | None, insecure: bool, refused: bool
) -> None:
    reason = _check_bind(bind, token, insecure=insecure, env="TOKEN")
    assert (reason is not None) is refused


def test_a_malformed_bind_is_refused() -> None:
    assert _check_bind("8080", None, insecure=False, env="T") == (
        "bind: expected HOST:PORT such as 127.0.0.1:8080, got '8080'"
    )


def test_only_the_public_bind_refusal_offers_insecure() -> None:
    refusal = _check_bind("0.0.0.0:80", None, insecure=False, env="T", offer_insecure=True)
    assert refusal is not None
    assert refusal.endswith(" (or pass --insecure to allow it)")
    refusal = _check_bind("0.0.0.0:80", None, insecure=False, env="T")  # demo: no such option
    assert refusal is not None
    assert "--insecure" not in refusal
    malformed = _check_bind("localhost", None, insecure=False, env="T", offer_insecure=True)
    assert malformed == "bind: expected HOST:PORT such as 127.0.0.1:8080, got 'localhost'"


@pytest.mark.parametrize("flag", ["--help", "-h"])
def test_python_m_web_help_is_serve_help(tmp_path: Path, flag: str) -> None:
    result = subprocess.run(
        [*PYTHON_M_WEB, flag], cwd=tmp_path, env=child_env(), capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage: tripwire serve [-h] [--config PATH]")
    assert "--insecure" in result.stdout


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        ([], ["serve"]),
        (["--help"], ["serve", "--help"]),
        (["-h"], ["serve", "-h"]),
        (["--bind", "127.0.0.1:0", "--help"], ["serve", "--bind", "127.0.0.1:0", "--help"]),
        (["--config", "check"], ["serve", "--config", "check"]),  # a file named "check"
        (["--version"], ["--version"]),
        (["check", "c.toml"], ["check", "c.toml"]),
        (["demo", "--help"], ["demo", "--help"]),
        (["serve", "--help"], ["serve", "--help"]),
    ],
)
def test_python_m_web_arguments(argv: list[str], expected: list[str]) -> None:
    from web.__main__ import _argv

    assert _argv(argv) == expected
