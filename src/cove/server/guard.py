"""The front door: Host, browser origin, API key and body size, checked before any route.

Cross-site protection rests on what browsers send (`Origin`, `Sec-Fetch-Site`), not on the content
type: non-browser clients (curl, LiteLLM) send any content type or none, as they may with Ollama.
"""

from __future__ import annotations

import hmac
import ipaddress
import json
import re
import socket
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass, field
from typing import Any

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

# Sec-Fetch-Site values that mean "another site's page sent this"; "same-origin" and "none" (typed
# into the address bar, or a bookmark) are the user's own.
FOREIGN_FETCH = {"cross-site", "same-site"}
LOOPBACK_NAMES = {"localhost", "localhost.localdomain", "ip6-localhost"}
# Uploads of model files may be large and are not JSON; they are still checked for Origin and key.
BINARY_PATHS = ("/api/blobs/",)
# What a browser puts in Host: a DNS name (labels of letters, digits, `-` and `_`, the last one
# not all digits unless the whole is a dotted IPv4 address), or `[IPv6]`, then an optional port.
# No userinfo (`evil.example@127.0.0.1`), path, query, space or zone id: a browser sends none.
_LABEL = r"[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?"
_NAME = rf"(?P<name>{_LABEL}(?:\.{_LABEL})*\.?)"
_HOST_HEADER = re.compile(rf"(?:{_NAME}|\[(?P<ip6>[0-9a-f:.]+)\])(?::(?P<port>[0-9]{{1,5}}))?")
_MAX_HOST = 255


def is_loopback(host: str) -> bool:
    name = host.strip("[]").lower()
    if name in LOOPBACK_NAMES or name.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


@dataclass
class Policy:
    """Who may talk to this server; built once from the settings at start-up."""

    bind_host: str
    api_keys: tuple[str, ...] = ()
    extra_origins: tuple[str, ...] = ()
    max_body: int = 16 << 20
    own_names: set[str] = field(default_factory=set)

    def __post_init__(self) -> None:
        self.own_names |= {socket.gethostname().lower(), self.bind_host.strip("[]").lower()}

    def host_problem(self, host_header: str) -> tuple[int, str] | None:
        """Why the Host is refused (400 malformed, 403 foreign), or None when it may pass.

        Loopback listeners answer only to loopback names: the defence against DNS rebinding.
        """
        loopback = is_loopback(self.bind_host)
        if not host_header:
            # HTTP/1.0 clients may leave it out; a page in a browser never does.
            return (400, "a Host header is required") if loopback else None
        host = browser_host(host_header)
        if host is None:
            return 400, f"malformed Host header {host_header[:100]!r}: expected a name or address and a port"
        if loopback and not (is_loopback(host) or host in self.own_names):
            return 403, "this server answers only to its own host names"
        return None

    def origin_allowed(self, origin: str) -> bool:
        """Another page's origin is trusted only when the user listed it (COVE_ORIGINS). Being on
        this machine is not enough: any local program can serve a page on a loopback port, and a
        browser tab showing `http://localhost:3000` or `http://evil.localhost` may be anyone's."""
        return origin in self.extra_origins or ("*" in self.extra_origins and not self.api_keys)

    def key_ok(self, headers: dict[str, str]) -> bool:
        if not self.api_keys:
            return True
        given = headers.get("authorization", "")
        given = given[7:] if given.lower().startswith("bearer ") else headers.get("x-api-key", "")
        # Compare against every key so timing reveals neither which key nor how much matched.
        matches = [hmac.compare_digest(given.encode(), key.encode()) for key in self.api_keys]
        return any(matches)


def browser_host(value: str) -> str | None:
    """The lower-cased host name of a Host header a browser could send; None for anything else."""
    match = _HOST_HEADER.fullmatch(value.lower()) if len(value) <= _MAX_HOST else None
    if match is None:
        return None
    port = match["port"]
    if port is not None and not 0 < int(port) < 65536:
        return None
    if match["ip6"] is not None:
        try:
            return str(ipaddress.IPv6Address(match["ip6"]))
        except ValueError:
            return None
    name = str(match["name"]).rstrip(".")
    if name.rsplit(".", 1)[-1].isdigit():
        # Only a dotted IPv4 address may end in a number; "127.1" and "2130706433" are not names.
        try:
            return str(ipaddress.IPv4Address(name))
        except ValueError:
            return None
    return name


OPENAI_CODES = {
    401: "invalid_api_key",
    404: "model_not_found",
    429: "rate_limit_exceeded",
    503: "server_busy",
}


def error_body(path: str, status: int, message: str) -> bytes:
    """Each API's own error shape: OpenAI's nested object under /v1, Ollama's string elsewhere."""
    if path.startswith("/v1"):
        kind = "invalid_request_error" if status < 500 else "server_error"
        # OpenAI's `code` is a string its SDKs match on, or null; never the HTTP status.
        code = OPENAI_CODES.get(status)
        return json.dumps({"error": {"message": message, "type": kind, "param": None, "code": code}}).encode()
    return json.dumps({"error": message}).encode()


class Guard:
    """ASGI middleware enforcing the Policy; rejections carry the API's own error shape."""

    def __init__(self, app: ASGIApp, policy: Policy) -> None:
        self.app = app
        self.policy = policy

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        problem = self._check(scope, headers)
        if problem:
            status, message, extra = problem
            return await _reply(send, scope["path"], status, message, extra)
        origin = headers.get("origin")
        if scope["method"] == "OPTIONS" and origin:
            return await _preflight(send, origin, headers)
        if scope["path"].startswith(BINARY_PATHS):
            return await self.app(scope, receive, _with_cors(send, origin))
        await self.app(scope, _limited(receive, self.policy.max_body), _with_cors(send, origin))

    def _check(
        self, scope: Scope, headers: dict[str, str]
    ) -> tuple[int, str, list[tuple[bytes, bytes]]] | None:
        policy = self.policy
        host_problem = policy.host_problem(headers.get("host", ""))
        if host_problem:
            return *host_problem, []
        page = scope["method"] in ("GET", "HEAD") and _is_page(scope["path"])
        refused = self._foreign_page(headers, page)
        if refused:
            return 403, refused, []
        if scope["method"] == "OPTIONS" or page:
            return None  # the page and its assets hold no data; it asks for the key itself
        if not policy.key_ok(headers):
            return 401, "missing or wrong API key", [(b"www-authenticate", b"Bearer")]
        length = headers.get("content-length", "")
        binary = scope["path"].startswith(BINARY_PATHS)
        if length.isdigit() and int(length) > policy.max_body and not binary:
            return 413, f"request body over {policy.max_body} bytes", []
        return None

    def _foreign_page(self, headers: dict[str, str], page: bool) -> str | None:
        """Why a request sent by another site's page is refused, or None when it is not one.

        Browsers add `Origin` to every cross-origin request (simple text/plain and form posts
        included, which skip the CORS preflight) and `Sec-Fetch-Site` to every request, and a
        page cannot forge either. Clients that are not browsers send neither, and pass.
        """
        origin = headers.get("origin")
        if origin is not None and _same_origin(origin, headers.get("host", "")):
            return None
        if origin is not None and not self.policy.origin_allowed(origin):
            return f"origin {origin[:100]!r} is not allowed; add it to COVE_ORIGINS"
        # A link followed from another site may open the page; nothing else it may reach.
        if origin is None and headers.get("sec-fetch-site", "").lower() in FOREIGN_FETCH and not page:
            return "requests from another site's page need an allowed Origin (COVE_ORIGINS)"
        return None


def _same_origin(origin: str, host: str) -> bool:
    """The page served by this server calling its own API. The Host was already checked, so a
    rebinding name cannot pass as the server's own origin on a loopback listener."""
    scheme, _, rest = origin.partition("://")
    return scheme.lower() in ("http", "https") and bool(host) and rest.lower() == host.lower()


def _is_page(path: str) -> bool:
    return path == "/" or path.startswith("/static/")


class BodyTooLarge(Exception):
    pass


def _limited(receive: Receive, limit: int) -> Receive:
    """Count streamed body bytes too: Content-Length can be absent (chunked) or wrong."""
    seen = 0

    async def wrapped() -> Message:
        nonlocal seen
        message = await receive()
        if message["type"] == "http.request":
            seen += len(message.get("body", b""))
            if seen > limit:
                raise BodyTooLarge(f"request body over {limit} bytes")
        return message

    return wrapped


def _with_cors(send: Send, origin: str | None) -> Send:
    if not origin:
        return send

    async def wrapped(message: Message) -> None:
        if message["type"] == "http.response.start":
            headers = list(message.get("headers", []))
            headers += [
                (b"access-control-allow-origin", origin.encode("latin-1")),
                (b"vary", b"Origin"),
            ]
            message["headers"] = headers
        await send(message)

    return wrapped


async def _preflight(send: Send, origin: str, headers: dict[str, str]) -> None:
    asked = headers.get("access-control-request-headers", "")
    allow = [
        (b"access-control-allow-origin", origin.encode("latin-1")),
        (b"access-control-allow-methods", b"GET, POST, DELETE, HEAD, OPTIONS"),
        (
            b"access-control-allow-headers",
            asked.encode("latin-1") or b"content-type, authorization",
        ),
        (b"access-control-max-age", b"600"),
        (b"vary", b"Origin"),
    ]
    await send({"type": "http.response.start", "status": 204, "headers": allow})
    await send({"type": "http.response.body", "body": b""})


async def _reply(send: Send, path: str, status: int, message: str, extra: list[tuple[bytes, bytes]]) -> None:
    body = error_body(path, status, message)
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers + extra})
    await send({"type": "http.response.body", "body": body})
