"""The server's front door on the fake engine: Host, Origin/CORS, cross-site pages, keys, body size, bind."""

from __future__ import annotations

import json
import logging
import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fakes import FakeEngine
from server_fixtures import anyio_backend, client, make_app

from cove.config import Settings
from cove.errors import CoveError
from cove.library.local import Cove
from cove.server.guard import Policy
from cove.server.run import check_bind

__all__ = ["anyio_backend"]
pytestmark = pytest.mark.anyio

CHAT = {"model": "tiny", "messages": [{"role": "user", "content": "hi"}], "stream": False}
OAI_CHAT = {"model": "tiny", "messages": [{"role": "user", "content": "hi"}]}
KEY = "sk-test-0123456789abcdef"


def assert_ollama_error(response: httpx.Response, status: int) -> str:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"} and isinstance(body["error"], str) and body["error"]
    return str(body["error"])


def assert_openai_error(response: httpx.Response, status: int) -> str:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert isinstance(error["message"], str) and error["message"]
    return str(error["message"])


# -- Host: the DNS-rebinding defence -------------------------------------------------------------


# What a browser can send passes; a foreign name is refused 403 (DNS rebinding); anything no
# browser sends (userinfo, a path, spaces, a bad port, a broken bracket) is malformed: 400.
HOSTS = [
    ("localhost", 200),
    ("localhost:11435", 200),
    ("LOCALHOST:11435", 200),
    ("localhost.:11435", 200),
    ("app.localhost:8080", 200),
    ("127.0.0.1", 200),
    ("127.0.0.1:11435", 200),
    ("127.0.0.1:1", 200),
    ("127.0.0.1:65535", 200),
    ("[::1]", 200),
    ("[::1]:11435", 200),
    ("[0:0:0:0:0:0:0:1]:11435", 200),
    ("evil.example", 403),
    ("evil.example:11435", 403),
    ("localhost.evil.example", 403),
    ("127.0.0.1.nip.io", 403),
    ("192.168.1.20:11435", 403),
    ("[2001:db8::1]:11435", 403),
    ("evil.example@127.0.0.1", 400),
    ("evil.example@127.0.0.1:11435", 400),
    ("user:secret@localhost", 400),
    ("127.0.0.1@evil.example", 400),
    ("127.0.0.1/evil", 400),
    ("localhost:11435/path", 400),
    ("localhost?x=1", 400),
    ("localhost#x", 400),
    ("local host", 400),
    (" localhost", 400),
    ("localhost\t", 400),
    ("127.0.0.1:0", 400),
    ("127.0.0.1:65536", 400),
    ("127.0.0.1:99999", 400),
    ("127.0.0.1:", 400),
    ("127.0.0.1:80:80", 400),
    ("127.0.0.1:http", 400),
    ("127.0.0.1:+80", 400),
    ("127.1", 400),
    ("2130706433", 400),
    ("256.0.0.1", 400),
    ("[::1", 400),
    ("::1", 400),
    ("a]b", 400),
    ("[evil]", 400),
    ("[::1]x", 400),
    ("[fe80::1%25eth0]:11435", 400),
    ("-localhost", 400),
    ("local..host", 400),
    ("http://localhost", 400),
    ("l" + "o" * 300, 400),
    ("", 400),
]


@pytest.mark.parametrize(("host", "status"), HOSTS)
async def test_host_header(fake_cove: Cove, engine: FakeEngine, host: str, status: int) -> None:
    async with client(make_app(fake_cove)) as c:
        r = await c.post("/api/chat", json=CHAT, headers={"Host": host})
        if status == 200:
            assert r.status_code == 200, r.text
            assert r.json()["message"]["content"] == "You said: hi"
            return
        assert_ollama_error(r, status)
        assert_openai_error(
            await c.post("/v1/chat/completions", json=OAI_CHAT, headers={"Host": host}), status
        )
        assert_ollama_error(await c.get("/api/tags", headers={"Host": host}), status)
        assert_ollama_error(await c.get("/", headers={"Host": host}), status)  # the page too
    assert engine.requests == []


@pytest.mark.parametrize("host", ["cove.lan", "my-pc.local", socket.gethostname()])
async def test_own_names_pass(fake_cove: Cove, host: str) -> None:
    """The machine's own name always, and any name the server is told is its own."""
    async with client(make_app(fake_cove, own_names={host.lower()})) as c:
        r = await c.post("/api/chat", json=CHAT, headers={"Host": f"{host.upper()}:11435"})
        assert r.status_code == 200, r.text
        r = await c.post("/api/chat", json=CHAT, headers={"Host": f"evil.example@{host}:11435"})
        assert_ollama_error(r, 400)


async def test_machine_name_passes_without_being_configured(fake_cove: Cove) -> None:
    async with client(make_app(fake_cove)) as c:
        r = await c.get("/api/tags", headers={"Host": f"{socket.gethostname()}:11435"})
    assert r.status_code == 200, r.text


async def test_public_bind_answers_any_host(fake_cove: Cove) -> None:
    auth = {"Authorization": f"Bearer {KEY}"}
    async with client(make_app(fake_cove, bind_host="0.0.0.0", api_keys=(KEY,))) as c:
        r = await c.get("/api/tags", headers={"Host": "cove.lan:11435", **auth})
        assert r.status_code == 200
        # Any name, but still only what a browser can send.
        r = await c.get("/api/tags", headers={"Host": "evil.example@cove.lan", **auth})
        assert_ollama_error(r, 400)


# -- Origin, CORS and the no-preflight CSRF case ---------------------------------------------------


@pytest.mark.parametrize(
    "origin", ["https://evil.example", "http://localhost.evil.example", "null", "http://[::1"]
)
async def test_cross_origin_writes_are_refused_without_side_effects(
    fake_cove: Cove, engine: FakeEngine, origin: str
) -> None:
    async with client(make_app(fake_cove)) as c:
        headers = {"Origin": origin}
        r = await c.request("DELETE", "/api/delete", json={"model": "tiny"}, headers=headers)
        assert_ollama_error(r, 403)
        assert "access-control-allow-origin" not in r.headers
        r = await c.post("/api/copy", json={"source": "tiny", "destination": "stolen"}, headers=headers)
        assert_ollama_error(r, 403)
        r = await c.post("/v1/chat/completions", json=OAI_CHAT, headers=headers)
        assert_openai_error(r, 403)
        r = await c.get("/api/tags", headers=headers)
        assert_ollama_error(r, 403)
    assert [m.name for m in fake_cove.models()] == ["tiny:latest"]
    assert engine.requests == []


# What a browser sends for a page on another site: `Origin` on every cross-origin request (a simple
# text/plain or form post skips the CORS preflight, but still carries it), `Sec-Fetch-Site` always.
CROSS_SITE: dict[str, dict[str, str]] = {
    "fetch no-cors text/plain": {
        "Origin": "https://evil.example",
        "Content-Type": "text/plain;charset=UTF-8",
        "Sec-Fetch-Site": "cross-site",
        "Sec-Fetch-Mode": "no-cors",
    },
    "form post": {
        "Origin": "https://evil.example",
        "Content-Type": "application/x-www-form-urlencoded",
        "Sec-Fetch-Site": "cross-site",
        "Sec-Fetch-Mode": "navigate",
    },
    "multipart form post": {
        "Origin": "https://evil.example",
        "Content-Type": "multipart/form-data; boundary=x",
    },
    "sandboxed frame": {"Origin": "null", "Content-Type": "text/plain"},
    "look-alike loopback name": {
        "Origin": "http://localhost.evil.example",
        "Content-Type": "application/json",
        "Sec-Fetch-Site": "cross-site",
    },
    "no content type": {"Origin": "https://evil.example", "Sec-Fetch-Site": "cross-site"},
    "cross-site without Origin": {"Sec-Fetch-Site": "cross-site", "Content-Type": "text/plain"},
    "same-site without Origin": {"Sec-Fetch-Site": "same-site", "Content-Type": "text/plain"},
    "same-site from an untrusted origin": {
        "Origin": "https://app.evil.example",
        "Sec-Fetch-Site": "same-site",
        "Content-Type": "text/plain",
    },
}


@pytest.mark.parametrize("shape", list(CROSS_SITE))
async def test_cross_site_browser_requests_have_no_side_effect(
    fake_cove: Cove, engine: FakeEngine, shape: str
) -> None:
    headers = CROSS_SITE[shape]
    copy = json.dumps({"source": "tiny", "destination": "stolen"})
    async with client(make_app(fake_cove)) as c:
        r = await c.post("/api/copy", content=copy, headers=headers)
        assert_ollama_error(r, 403)
        assert "access-control-allow-origin" not in r.headers
        r = await c.request("DELETE", "/api/delete", content=json.dumps({"model": "tiny"}), headers=headers)
        assert_ollama_error(r, 403)
        r = await c.post("/api/chat", content=json.dumps(CHAT), headers=headers)
        assert_ollama_error(r, 403)
        r = await c.post("/v1/chat/completions", content=json.dumps(OAI_CHAT), headers=headers)
        assert_openai_error(r, 403)
        r = await c.get("/api/tags", headers=headers)
        assert_ollama_error(r, 403)
    assert [m.name for m in fake_cove.models()] == ["tiny:latest"]
    assert engine.requests == []


# What clients that are not browsers send: LiteLLM's Ollama providers no content type at all,
# `curl -d` (as in Ollama's docs) the form type. They work as they do with Ollama.
NON_BROWSER: dict[str, dict[str, str]] = {
    "no content type": {},
    "curl -d": {
        "User-Agent": "curl/8.5.0",
        "Accept": "*/*",
        "Content-Type": "application/x-www-form-urlencoded",
    },
    "text/plain": {"Content-Type": "text/plain"},
    "empty content type": {"Content-Type": ""},
    "json": {"Content-Type": "application/json"},
}


@pytest.mark.parametrize("shape", list(NON_BROWSER))
async def test_non_browser_clients_need_no_json_content_type(
    fake_cove: Cove, engine: FakeEngine, shape: str
) -> None:
    headers = NON_BROWSER[shape]
    async with client(make_app(fake_cove)) as c:
        request = c.build_request("POST", "/api/chat", content=json.dumps(CHAT), headers=headers)
        if shape == "no content type":
            assert "content-type" not in request.headers
        r = await c.send(request)
        assert r.status_code == 200, r.text
        assert r.json()["message"]["content"] == "You said: hi"
        r = await c.post("/v1/chat/completions", content=json.dumps(OAI_CHAT), headers=headers)
        assert r.status_code == 200, r.text
        copy = json.dumps({"source": "tiny", "destination": "kept"})
        r = await c.post("/api/copy", content=copy, headers=headers)
        assert r.status_code == 200, r.text
    assert fake_cove.store.has("kept")
    assert len(engine.requests) == 2


async def test_a_body_that_is_not_json_is_a_400_whatever_its_type(fake_cove: Cove) -> None:
    async with client(make_app(fake_cove)) as c:
        r = await c.post("/api/copy", content=b"source=tiny&destination=x", headers=NON_BROWSER["curl -d"])
    assert "invalid JSON" in assert_ollama_error(r, 400)
    assert not fake_cove.store.has("x")


@pytest.mark.parametrize(
    "headers",
    [
        {"Origin": "http://127.0.0.1:11435", "Sec-Fetch-Site": "same-origin"},  # cove's own page
        {"Sec-Fetch-Site": "same-origin"},
        {"Sec-Fetch-Site": "none"},  # typed into the address bar
        {"Origin": "http://localhost:3000", "Sec-Fetch-Site": "cross-site"},  # a dev server the user listed
        {"Origin": "http://localhost:3000", "Sec-Fetch-Site": "same-site"},
    ],
)
async def test_trusted_browser_requests_pass(fake_cove: Cove, headers: dict[str, str]) -> None:
    async with client(make_app(fake_cove, extra_origins=("http://localhost:3000",))) as c:
        r = await c.post("/api/chat", json=CHAT, headers={"Host": "127.0.0.1:11435", **headers})
    assert r.status_code == 200, r.text


async def test_a_link_from_another_site_may_open_the_page_only(fake_cove: Cove) -> None:
    followed = {"Sec-Fetch-Site": "cross-site", "Sec-Fetch-Mode": "navigate"}
    async with client(make_app(fake_cove)) as c:
        assert (await c.get("/", headers=followed)).status_code == 200
        assert_ollama_error(await c.get("/api/tags", headers=followed), 403)


async def test_json_with_charset_is_accepted(fake_cove: Cove) -> None:
    body = json.dumps({"source": "tiny", "destination": "kept"})
    async with client(make_app(fake_cove)) as c:
        r = await c.post(
            "/api/copy", content=body, headers={"Content-Type": "application/json; charset=utf-8"}
        )
    assert r.status_code == 200
    assert fake_cove.store.has("kept")


@pytest.mark.parametrize("origin", ["http://localhost:3000", "http://127.0.0.1:8080", "http://[::1]:5173"])
async def test_a_loopback_page_is_trusted_only_when_listed(fake_cove: Cove, origin: str) -> None:
    """Any local program can serve a page on a loopback port: being on this machine is not trust."""
    ask = {"Origin": origin, "Access-Control-Request-Method": "POST"}
    async with client(make_app(fake_cove)) as c:
        assert_ollama_error(await c.options("/api/copy", headers=ask), 403)
        r = await c.post(
            "/api/copy", json={"source": "tiny", "destination": "taken"}, headers={"Origin": origin}
        )
        assert_ollama_error(r, 403)
    assert not fake_cove.store.has("taken")


@pytest.mark.parametrize("origin", ["http://localhost:3000", "http://127.0.0.1:8080", "http://[::1]:5173"])
async def test_preflight_from_a_listed_origin(fake_cove: Cove, origin: str) -> None:
    headers = {
        "Origin": origin,
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "content-type",
    }
    async with client(make_app(fake_cove, api_keys=(KEY,), extra_origins=(origin,))) as c:
        r = await c.options("/api/chat", headers=headers)
        assert r.status_code == 204
        assert r.headers["access-control-allow-origin"] == origin
        assert "POST" in r.headers["access-control-allow-methods"]
        assert "content-type" in r.headers["access-control-allow-headers"].lower()
        assert "origin" in r.headers["vary"].lower()
        # The real request from that page then carries the same header back.
        r = await c.post("/api/chat", json=CHAT, headers={"Origin": origin, "Authorization": f"Bearer {KEY}"})
        assert r.status_code == 200
        assert r.headers["access-control-allow-origin"] == origin


async def test_preflight_from_foreign_origin_is_refused(fake_cove: Cove) -> None:
    headers = {"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"}
    async with client(make_app(fake_cove)) as c:
        r = await c.options("/api/copy", headers=headers)
    assert r.status_code == 403
    assert "access-control-allow-origin" not in r.headers


async def test_cove_origins_adds_an_origin(
    fake_cove: Cove, engine: FakeEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COVE_ORIGINS", "https://app.example, https://other.example")
    settings = Settings.from_env()
    policy = {"extra_origins": settings.origins}
    async with client(make_app(fake_cove, **policy)) as c:
        ok = {"Origin": "https://app.example"}
        r = await c.options("/v1/chat/completions", headers={**ok, "Access-Control-Request-Method": "POST"})
        assert r.status_code == 204
        assert r.headers["access-control-allow-origin"] == "https://app.example"
        r = await c.post("/v1/chat/completions", json=OAI_CHAT, headers=ok)
        assert r.status_code == 200
        assert r.headers["access-control-allow-origin"] == "https://app.example"
        r = await c.post(
            "/v1/chat/completions", json=OAI_CHAT, headers={"Origin": "https://app.example.evil"}
        )
        assert_openai_error(r, 403)
    assert len(engine.requests) == 1


async def test_wildcard_origin_echoes_the_origin_never_star(fake_cove: Cove) -> None:
    async with client(make_app(fake_cove, extra_origins=("*",))) as c:
        r = await c.options(
            "/api/chat", headers={"Origin": "https://site.example", "Access-Control-Request-Method": "POST"}
        )
    assert r.status_code == 204
    assert r.headers["access-control-allow-origin"] == "https://site.example"


async def test_wildcard_origin_is_ignored_when_keys_are_set(fake_cove: Cove) -> None:
    async with client(make_app(fake_cove, extra_origins=("*",), api_keys=(KEY,))) as c:
        r = await c.get(
            "/api/tags", headers={"Origin": "https://site.example", "Authorization": f"Bearer {KEY}"}
        )
    assert_ollama_error(r, 403)


# -- API keys ------------------------------------------------------------------------------------


@pytest.mark.parametrize("auth", [None, "Bearer wrong", f"Bearer {KEY}x", f"Basic {KEY}", KEY, "Bearer "])
async def test_missing_or_wrong_key(fake_cove: Cove, engine: FakeEngine, auth: str | None) -> None:
    headers = {"Authorization": auth} if auth is not None else {}
    async with client(make_app(fake_cove, api_keys=(KEY,))) as c:
        r = await c.post("/api/chat", json=CHAT, headers=headers)
        message = assert_ollama_error(r, 401)
        assert r.headers["www-authenticate"] == "Bearer"
        r2 = await c.post("/v1/chat/completions", json=OAI_CHAT, headers=headers)
        message2 = assert_openai_error(r2, 401)
        r3 = await c.get("/v1/models", headers=headers)
        assert_openai_error(r3, 401)
        r4 = await c.get("/metrics", headers=headers)
        assert r4.status_code == 401
    for text in (r.text, r2.text, message, message2):
        assert KEY not in text
    assert engine.requests == []


async def test_right_key_works(fake_cove: Cove) -> None:
    keys = ("other-key", KEY)
    async with client(make_app(fake_cove, api_keys=keys)) as c:
        r = await c.post("/api/chat", json=CHAT, headers={"Authorization": f"Bearer {KEY}"})
        assert r.status_code == 200
        assert r.json()["message"]["content"] == "You said: hi"
        r = await c.post("/v1/chat/completions", json=OAI_CHAT, headers={"authorization": f"bearer {KEY}"})
        assert r.status_code == 200
        r = await c.get("/v1/models", headers={"x-api-key": "other-key"})
        assert r.status_code == 200
        assert [m["id"] for m in r.json()["data"]] == ["tiny:latest"]


# -- body size -----------------------------------------------------------------------------------


def big_chat(size: int) -> dict[str, Any]:
    return {"model": "tiny", "messages": [{"role": "user", "content": "x" * size}], "stream": False}


async def test_body_over_the_limit_with_content_length(fake_cove: Cove, engine: FakeEngine) -> None:
    async with client(make_app(fake_cove, max_body=1024)) as c:
        r = await c.post("/api/chat", json=big_chat(2000))
        assert_ollama_error(r, 413)
        r = await c.post("/v1/chat/completions", json={**OAI_CHAT, "messages": big_chat(2000)["messages"]})
        assert_openai_error(r, 413)
        r = await c.post("/api/chat", json=big_chat(500))
        assert r.status_code == 200
    assert len(engine.requests) == 1


async def test_chunked_body_over_the_limit(fake_cove: Cove, engine: FakeEngine) -> None:
    """No Content-Length to check up front: the guard counts the bytes as they stream in."""
    payload = json.dumps(big_chat(5000)).encode()

    async def chunks() -> AsyncIterator[bytes]:
        for start in range(0, len(payload), 100):
            yield payload[start : start + 100]

    async with client(make_app(fake_cove, max_body=1024)) as c:
        request = c.build_request(
            "POST", "/api/chat", content=chunks(), headers={"Content-Type": "application/json"}
        )
        assert "content-length" not in request.headers
        assert request.headers["transfer-encoding"] == "chunked"
        r = await c.send(request)
        assert_ollama_error(r, 413)
        request = c.build_request(
            "POST", "/v1/chat/completions", content=chunks(), headers={"Content-Type": "application/json"}
        )
        r = await c.send(request)
        assert_openai_error(r, 413)
    assert engine.requests == []


# -- binding -------------------------------------------------------------------------------------


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.168.1.20", "cove.lan"])
def test_public_bind_without_key_is_refused(host: str) -> None:
    with pytest.raises(CoveError, match="API key"):
        check_bind(host, (), insecure=False)


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "::1", "127.0.0.2"])
def test_loopback_bind_needs_no_key(host: str, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="cove.server"):
        check_bind(host, (), insecure=False)
    assert caplog.records == []


def test_public_bind_with_key_passes(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="cove.server"):
        check_bind("0.0.0.0", (KEY,), insecure=False)
    assert caplog.records == []


def test_public_bind_insecure_passes_loudly(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="cove.server"):
        check_bind("0.0.0.0", (), insecure=True)
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "NO API key" in warnings[0].getMessage()


def test_settings_keys_reach_the_policy(monkeypatch: pytest.MonkeyPatch, cove_home: Path) -> None:
    monkeypatch.setenv("COVE_API_KEYS", f"{KEY}, second")
    settings = Settings.from_env()
    assert settings.api_keys == (KEY, "second")
    policy = Policy(bind_host=settings.host, api_keys=settings.api_keys)
    assert policy.key_ok({"authorization": "Bearer second"})
    assert not policy.key_ok({"authorization": "Bearer third"})
