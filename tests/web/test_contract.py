"""CONTRACT §5 against a real Hypercorn server on 127.0.0.1 (port 0), with httpx."""

from __future__ import annotations

import json
import os
from functools import partial
from pathlib import Path

import httpx
import pytest
import trio

from actors import config_to_builtins, load_config, parse_config
from web import MAX_BODY_BYTES, serve

from .conftest import API, CONFIG_TEXT, TOKEN_ENV, Api, error, ok, read_bytes, running_api

STATS_FIELDS = {
    "name",
    "implementation_type",
    "state",
    "forced",
    "total_calls",
    "successful_calls",
    "failed_calls",
    "timeouts",
    "rejected_calls",
    "consecutive_failures",
    "half_open_successes",
    "in_flight",
    "failure_rate",
    "state_changes",
    "last_state_change",
    "last_failure",
    "opened_at",
    "retry_after_seconds",
    "restarts",
    "settings",
}
SETTINGS_FIELDS = {
    "implementation_type",
    "failure_threshold",
    "operation_timeout",
    "reset_timeout",
    "success_threshold",
}
JSON = {"Content-Type": "application/json"}


async def fail() -> None:
    raise ConnectionError("down")


# --- reading ----------------------------------------------------------------------------


async def test_health(api: Api) -> None:
    data = ok(await api.client.get("/health"))
    assert data["status"] == "ok"


async def test_all_stats_lists_the_breakers_in_use(api: Api) -> None:
    assert ok(await api.client.get(API)) == {"circuit_breakers": {}}
    breaker = await api.manager.get_circuit_breaker("database")
    with pytest.raises(ConnectionError):
        await breaker.execute(fail)
    data = ok(await api.client.get(API))
    assert list(data["circuit_breakers"]) == ["database"]
    stats = data["circuit_breakers"]["database"]
    assert set(stats) >= STATS_FIELDS
    assert stats["state"] == "closed"
    assert stats["failed_calls"] == stats["total_calls"] == 1
    assert stats["retry_after_seconds"] is None
    assert stats["settings"] == {
        "implementation_type": "rssafe",
        "failure_threshold": 2,
        "operation_timeout": "5s",
        "reset_timeout": "1m",
        "success_threshold": 2,
    }


async def test_get_config(api: Api) -> None:
    data = ok(await api.client.get(f"{API}/config"))
    assert data == {
        "config": {
            "global": {
                "implementation_type": "rssafe",
                "failure_threshold": 3,
                "operation_timeout": "5s",
                "reset_timeout": "30s",
                "success_threshold": 2,
            },
            "profiles": {
                "database": {"failure_threshold": 2, "reset_timeout": "1m"},
                "legacy": {"implementation_type": "noop"},
            },
        }
    }


async def test_services_and_one_service(api: Api) -> None:
    assert ok(await api.client.get(f"{API}/services")) == {"services": [], "count": 0}
    await api.manager.get_circuit_breaker("search")
    await api.manager.get_circuit_breaker("cache")
    assert ok(await api.client.get(f"{API}/services")) == {
        "services": ["cache", "search"],
        "count": 2,
    }
    stats = ok(await api.client.get(f"{API}/services/search"))
    assert set(stats) >= STATS_FIELDS
    assert stats["name"] == "search"
    # Known through its profile, not in use yet: a fresh breaker, and still not in use.
    stats = ok(await api.client.get(f"{API}/services/database"))
    assert (stats["name"], stats["state"], stats["total_calls"]) == ("database", "closed", 0)
    assert ok(await api.client.get(f"{API}/services"))["count"] == 2


async def test_one_unknown_service_is_404(api: Api) -> None:
    body = error(await api.client.get(f"{API}/services/nobody"), 404)
    assert "nobody" in body["error"]


@pytest.mark.parametrize("name", ["a" * 65, "a b", "caf\u00e9", "x!", "a%2Fb", "a/b", "x/"])
async def test_bad_name_is_422_before_any_lookup(api: Api, name: str) -> None:
    for response in [
        await api.client.get(f"{API}/services/{name}"),
        await api.client.post(f"{API}/services/{name}/force", json={"action": "open"}),
        await api.client.put(f"{API}/services/{name}", json={"profile": {}}),
    ]:
        body = error(response, 422)
        assert [d["path"] for d in body["details"]] == ["name"]
    assert api.manager.services() == []
    assert name not in api.manager.config.profiles


async def test_a_name_with_a_slash_is_422_not_404(api: Api) -> None:
    body = error(await api.client.get(f"{API}/services/a%2Fb"), 422)
    [detail] = body["details"]
    assert detail["path"] == "name"
    assert "invalid service name" in detail["message"]
    assert "a/b" in detail["message"]


@pytest.mark.parametrize("name", ["x", "a%2Fb", "a/b"])
async def test_other_methods_on_force_are_405(api: Api, name: str) -> None:
    for method in ("GET", "PUT", "DELETE"):
        response = await api.client.request(method, f"{API}/services/{name}/force")
        error(response, 405)
        assert response.headers["allow"] == "POST"
    response = await api.client.post(f"{API}/services/{name}", json={"action": "open"})
    error(response, 405)
    assert set(response.headers["allow"].split(", ")) == {"GET", "HEAD", "PUT"}
    assert api.manager.services() == []


async def test_unknown_route_and_method_use_the_envelope(api: Api) -> None:
    body = error(await api.client.get("/api/v1/nothing"), 404)
    assert "/api/v1/nothing" in body["error"]
    response = await api.client.delete(f"{API}/config")
    error(response, 405)
    assert set(response.headers["allow"].split(", ")) >= {"GET", "PUT"}


# --- PUT config -------------------------------------------------------------------------


async def test_put_config_replaces_applies_and_persists(api: Api, config_path: Path) -> None:
    await api.manager.get_circuit_breaker("database")
    await api.manager.get_circuit_breaker("search")
    new = {
        "global": {"failure_threshold": 5, "reset_timeout": "90s"},
        "profiles": {"search": {"operation_timeout": "1.5s"}},
    }
    data = ok(await api.client.put(f"{API}/config", json={"config": new}))
    expected = {
        "global": {
            "implementation_type": "rssafe",
            "failure_threshold": 5,
            "operation_timeout": "5s",
            "reset_timeout": "1m30s",
            "success_threshold": 2,
        },
        "profiles": {"search": {"operation_timeout": "1s500ms"}},
    }
    assert data == {
        "config": expected,
        "updated_services": ["database", "search"],
        "updated_count": 2,
    }
    assert config_to_builtins(api.manager.config) == expected
    assert api.manager.stats()["search"].settings.operation_timeout.ms == 1500
    text = (await read_bytes(config_path)).decode()
    assert text.startswith("# tripwire test config: this comment must survive every write.")
    assert 'api_token_env = "TRIPWIRE_TEST_TOKEN"   # env var holding the bearer token' in text
    assert "failure_threshold = 5                   # consecutive failures that open" in text
    assert 'reset_timeout = "1m30s"' in text
    assert 'operation_timeout = "1s500ms"' in text
    assert "database" not in text
    assert config_to_builtins(load_config(config_path).circuitbreaker) == expected


async def test_put_config_reports_every_problem_and_changes_nothing(
    api: Api, config_path: Path
) -> None:
    before = await read_bytes(config_path)
    config_before = api.manager.config
    bad = {
        "config": {
            "global": {"failure_threshold": 0, "reset_timeout": "5", "colour": "red"},
            "profiles": {"database": {"success_threshold": "two"}, "bad name": {}},
        },
        "extra": True,
    }
    body = error(await api.client.put(f"{API}/config", json=bad), 422)
    assert sorted(d["path"] for d in body["details"]) == [
        "config.global.colour",
        "config.global.failure_threshold",
        "config.global.reset_timeout",
        "config.profiles.bad name",
        "config.profiles.database.success_threshold",
        "extra",
    ]
    messages = {d["path"]: d["message"] for d in body["details"]}
    assert messages["config.global.failure_threshold"] == "expected an integer >= 1, got 0"
    assert await read_bytes(config_path) == before
    assert api.manager.config is config_before


@pytest.mark.parametrize(
    ("body", "paths"),
    [
        ([1, 2], [""]),
        ({}, ["config"]),
        ({"config": 3}, ["config"]),
        ({"config": None}, ["config"]),
        ({"config": {"global": []}}, ["config.global"]),
    ],
)
async def test_put_config_shapes(api: Api, body: object, paths: list[str]) -> None:
    answer = error(await api.client.put(f"{API}/config", json=body), 422)
    assert [d["path"] for d in answer["details"]] == paths


# --- PUT a profile ----------------------------------------------------------------------


async def test_put_profile_replaces_it_and_persists(api: Api, config_path: Path) -> None:
    await api.manager.get_circuit_breaker("database")
    data = ok(
        await api.client.put(f"{API}/services/database", json={"profile": {"success_threshold": 4}})
    )
    assert data == {
        "service": "database",
        "profile": {"success_threshold": 4},
        "effective": {
            "implementation_type": "rssafe",
            "failure_threshold": 3,  # from global, not from the previous profile
            "operation_timeout": "5s",
            "reset_timeout": "30s",
            "success_threshold": 4,
        },
    }
    assert api.manager.stats()["database"].settings.success_threshold == 4
    assert load_config(config_path).circuitbreaker.profiles["database"].success_threshold == 4
    assert "[circuitbreaker.profiles.legacy]" in (await read_bytes(config_path)).decode()


async def test_put_profile_of_a_new_service_makes_it_known(api: Api) -> None:
    error(await api.client.get(f"{API}/services/search"), 404)
    data = ok(
        await api.client.put(f"{API}/services/search", json={"profile": {"reset_timeout": "2m"}})
    )
    assert data["effective"]["reset_timeout"] == "2m"
    stats = ok(await api.client.get(f"{API}/services/search"))
    assert stats["settings"]["reset_timeout"] == "2m"


@pytest.mark.parametrize(
    ("body", "paths"),
    [
        ({}, ["profile"]),
        ({"profile": None}, ["profile"]),
        ("x", [""]),
        ({"p": {}}, ["p", "profile"]),
    ],
)
async def test_put_profile_shapes(api: Api, body: object, paths: list[str]) -> None:
    answer = error(await api.client.put(f"{API}/services/db", json=body), 422)
    assert [d["path"] for d in answer["details"]] == paths
    assert "db" not in api.manager.config.profiles


async def test_put_profile_invalid_changes_nothing(api: Api, config_path: Path) -> None:
    before = await read_bytes(config_path)
    config_before = api.manager.config
    response = await api.client.put(
        f"{API}/services/database",
        json={"profile": {"reset_timeout": "-1s", "implementation_type": "fast", "x": 1}},
    )
    body = error(response, 422)
    assert sorted(d["path"] for d in body["details"]) == [
        "profile.implementation_type",
        "profile.reset_timeout",
        "profile.x",
    ]
    assert await read_bytes(config_path) == before
    assert api.manager.config is config_before


# --- force ------------------------------------------------------------------------------


async def test_force_open_then_closed(api: Api) -> None:
    data = ok(await api.client.post(f"{API}/services/database/force", json={"action": "open"}))
    assert data["service"] == "database"
    assert data["action"] == "open"
    assert (data["stats"]["state"], data["stats"]["forced"]) == ("open", "open")
    assert api.manager.services() == ["database"]  # forcing a known service creates it
    data = ok(await api.client.post(f"{API}/services/database/force", json={"action": "closed"}))
    assert (data["stats"]["state"], data["stats"]["forced"]) == ("closed", None)


async def test_force_unknown_service_is_404(api: Api) -> None:
    response = await api.client.post(f"{API}/services/nobody/force", json={"action": "open"})
    error(response, 404)
    assert api.manager.services() == []


async def test_force_noop_breaker_is_409(api: Api) -> None:
    response = await api.client.post(f"{API}/services/legacy/force", json={"action": "open"})
    body = error(response, 409)
    assert body["error"] == "circuit 'legacy' uses implementation_type noop; forcing it is refused"
    assert api.manager.services() == []  # refused: no breaker was created for it


async def test_force_noop_breaker_in_use_is_409(api: Api) -> None:
    breaker = await api.manager.get_circuit_breaker("legacy")
    response = await api.client.post(f"{API}/services/legacy/force", json={"action": "open"})
    error(response, 409)
    assert breaker.stats().state == "closed"
    assert breaker.stats().forced is None


@pytest.mark.parametrize("body", [{"action": "explode"}, {"action": None}, {}, {"act": "open"}])
async def test_force_bad_action_is_422(api: Api, body: object) -> None:
    answer = error(await api.client.post(f"{API}/services/database/force", json=body), 422)
    assert "action" in [d["path"] for d in answer["details"]]
    assert api.manager.services() == []


# --- malformed requests -----------------------------------------------------------------


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", None])
async def test_wrong_content_type_is_400(api: Api, content_type: str | None) -> None:
    headers = {} if content_type is None else {"Content-Type": content_type}
    body = json.dumps({"action": "open"})
    response = await api.client.post(
        f"{API}/services/database/force", content=body, headers=headers
    )
    assert "Content-Type" in error(response, 400)["error"]


async def test_content_type_parameters_are_allowed(api: Api) -> None:
    response = await api.client.post(
        f"{API}/services/database/force",
        content=b'{"action": "open"}',
        headers={"Content-Type": "application/json; charset=utf-8"},
    )
    ok(response)


@pytest.mark.parametrize("content", [b"{", b"", b"{'a': 1}", b"\xff\xfe", b"[1,]"])
async def test_malformed_json_is_400(api: Api, content: bytes, config_path: Path) -> None:
    before = await read_bytes(config_path)
    response = await api.client.put(f"{API}/config", content=content, headers=JSON)
    assert "not valid JSON" in error(response, 400)["error"]
    assert await read_bytes(config_path) == before


async def test_body_over_64_kib_is_413(api: Api, config_path: Path) -> None:
    def body_of(size: int) -> bytes:
        content = b'{"config":"' + b"x" * (size - len(b'{"config":""}')) + b'"}'
        assert len(content) == size
        return content

    before = await read_bytes(config_path)
    response = await api.client.put(
        f"{API}/config", content=body_of(MAX_BODY_BYTES + 1), headers=JSON
    )
    assert "65536" in error(response, 413)["error"]
    assert await read_bytes(config_path) == before
    # Exactly at the limit it is read (and refused for what it says).
    response = await api.client.put(f"{API}/config", content=body_of(MAX_BODY_BYTES), headers=JSON)
    error(response, 422)


# --- auth -------------------------------------------------------------------------------


async def test_token_guards_put_and_post(
    monkeypatch: pytest.MonkeyPatch, config_path: Path
) -> None:
    monkeypatch.setenv(TOKEN_ENV, "s3cret")
    before = await read_bytes(config_path)
    async with running_api(load_config(config_path), config_path) as api:
        force = f"{API}/services/database/force"
        for headers in [{}, {"Authorization": "Bearer wrong"}, {"Authorization": "s3cret"}]:
            response = await api.client.post(force, json={"action": "open"}, headers=headers)
            assert error(response, 401)
            assert response.headers["www-authenticate"] == "Bearer"
            response = await api.client.put(f"{API}/config", json={"config": {}}, headers=headers)
            error(response, 401)
        # Checked before the body is looked at: bad JSON, too big, wrong type, bad name.
        bad_requests = [
            (f"{API}/config", b"{", JSON),
            (f"{API}/config", b" " * (MAX_BODY_BYTES + 10), JSON),
            (f"{API}/config", b"{}", {"Content-Type": "text/plain"}),
            (f"{API}/services/bad name", b"{}", JSON),
        ]
        for url, content, headers in bad_requests:
            error(await api.client.put(url, content=content, headers=headers), 401)
        assert api.manager.services() == []
        assert await read_bytes(config_path) == before
        # Reading needs no token.
        ok(await api.client.get(f"{API}/config"))
        ok(await api.client.get("/health"))
        # The right token passes.
        good = {"Authorization": "Bearer s3cret"}
        ok(await api.client.post(force, json={"action": "open"}, headers=good))
        ok(await api.client.put(f"{API}/config", json={"config": {}}, headers=good))


async def test_no_token_means_put_and_post_are_open(api: Api) -> None:
    ok(await api.client.post(f"{API}/services/database/force", json={"action": "open"}))


# --- persistence ------------------------------------------------------------------------


async def test_changes_survive_a_restart(config_path: Path) -> None:
    async with running_api(load_config(config_path), config_path) as api:
        await api.client.put(
            f"{API}/config",
            json={"config": {"global": {"reset_timeout": "45s"}, "profiles": {"a": {}}}},
        )
        await api.client.put(f"{API}/services/b", json={"profile": {"failure_threshold": 9}})
        expected = ok(await api.client.get(f"{API}/config"))

    # A second server from the written file, through web.serve.
    stop = trio.Event()
    async with trio.open_nursery() as nursery:
        urls = await nursery.start(
            partial(
                serve,
                load_config(config_path),
                config_path=config_path,
                bind="127.0.0.1:0",
                shutdown_trigger=stop.wait,
            )
        )
        async with httpx.AsyncClient(base_url=urls[0], timeout=10) as client:
            assert ok(await client.get(f"{API}/config")) == expected
        stop.set()
    assert expected["config"]["global"]["reset_timeout"] == "45s"
    assert expected["config"]["profiles"] == {"a": {}, "b": {"failure_threshold": 9}}


async def test_a_file_with_dotted_keys_is_persisted(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    await trio.Path(path).write_text(
        "[circuitbreaker]\n"
        "global.failure_threshold = 4\n"
        "profiles.database.failure_threshold = 2\n"
        "\n[server]\npersist_changes = true\n"
    )
    async with running_api(load_config(path), path) as api:
        response = await api.client.put(
            f"{API}/services/search", json={"profile": {"failure_threshold": 7}}
        )
        ok(response)
        expected = config_to_builtins(api.manager.config)
    written = load_config(path)
    assert config_to_builtins(written.circuitbreaker) == expected
    assert expected["global"]["failure_threshold"] == 4
    assert expected["profiles"] == {
        "database": {"failure_threshold": 2},
        "search": {"failure_threshold": 7},
    }
    assert written.server.persist_changes


async def test_persist_changes_false_keeps_changes_in_memory(config_path: Path) -> None:
    text = CONFIG_TEXT.replace("persist_changes = true", "persist_changes = false")
    await trio.Path(config_path).write_text(text)
    before = await read_bytes(config_path)
    async with running_api(load_config(config_path), config_path) as api:
        ok(await api.client.put(f"{API}/services/x", json={"profile": {"failure_threshold": 7}}))
        assert api.manager.config.profiles["x"].failure_threshold == 7
    assert await read_bytes(config_path) == before


async def test_no_config_file_means_nothing_written(tmp_path: Path) -> None:
    async with running_api(parse_config({})) as api:
        ok(await api.client.put(f"{API}/config", json={"config": {"global": {}}}))
    assert list(await trio.Path(tmp_path).iterdir()) == []


async def test_write_failure_is_500_and_applies_nothing(tmp_path: Path) -> None:
    folder = trio.Path(tmp_path / "conf")
    await folder.mkdir()
    path = folder / "config.toml"
    await path.write_text(CONFIG_TEXT)
    async with running_api(load_config(path), Path(path)) as api:
        await api.manager.get_circuit_breaker("database")
        config_before = api.manager.config
        await path.unlink()
        await folder.rmdir()  # the file and its folder are gone: nothing can be written
        response = await api.client.put(
            f"{API}/services/database", json={"profile": {"failure_threshold": 9}}
        )
        body = error(response, 500)
        assert "could not save the config file" in body["error"]
        assert "nothing was changed" in body["error"]
        assert api.manager.config is config_before
        assert api.manager.stats()["database"].settings.failure_threshold == 2


async def test_failed_rename_is_500_and_leaves_the_file(
    api: Api, config_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse(src: str, dst: str) -> None:
        raise OSError(30, "Read-only file system")

    monkeypatch.setattr(os, "replace", refuse)
    before = await read_bytes(config_path)
    config_before = api.manager.config
    response = await api.client.put(f"{API}/config", json={"config": {}})
    assert "Read-only file system" in error(response, 500)["error"]
    assert api.manager.config is config_before
    assert await read_bytes(config_path) == before
    names = [p.name for p in await trio.Path(config_path.parent).iterdir()]
    assert names == ["config.toml"]  # the temporary file was removed
