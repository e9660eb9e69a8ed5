"""The egress gate: every outbound connection cove makes asks here first, and is recorded.

Stable API (other modules call only these):

- ``allow(feature, host, port) -> Permit``: may `feature` reach host:port? Records the attempt in
  the ledger either way; raises `EgressRefused` (a CoveError, HTTP 403) when the policy says no.
  Use the permit as a context manager around the connection (``with allow(...) as permit:``) so
  the audit-hook backstop (`cove.net.audit`) lets that connection through, and add the bytes
  moved with ``permit.count(sent=..., received=...)``; leaving the block writes them down.
- ``client(feature, **httpx_kwargs) -> httpx.Client`` (and ``async_client``): an httpx client whose
  transport asks the gate before every request, redirects included (each hop is a request), and
  counts the bytes each way. One ledger row per host:port the client reaches, finished when the
  client closes. Tool and MCP features go through safe-url's address-checking transport.
  A row's bytes are written as each response is closed, so a long-lived client's row is current.
- ``install(settings)`` / ``current()``: the process's gate (the CLI and `cove serve` install one
  at start so `--offline` holds everywhere); ``current()`` builds one from the environment if none
  is installed; ``for_settings(settings)`` is the gate for a Settings a caller was handed.

Features: "pull", "tool:NAME", "mcp:NAME", "engine:remote" (see `cove.net.policy.decide`).
"""

from __future__ import annotations

import contextvars
import threading
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import urlsplit

import httpx

from ..config import Settings
from ..errors import CoveError
from .ledger import Ledger
from .policy import (
    PULL,
    REMOTE_ENGINE,
    Decision,
    NamedHost,
    Policy,
    ToolRule,
    decide,
    is_loopback_host,
    normal_host,
)

_TRANSPORT_OPTIONS = ("verify", "cert", "http1", "http2", "limits", "trust_env", "retries")
#: safe_transport's own options (tool and MCP features only): see cove.net.safe_transport.
_SAFE_OPTIONS = ("resolver", "allow_private", "trusted_hosts")


class EgressRefused(CoveError):
    """An outbound connection the policy does not allow; the message says how to allow it."""

    status = 403


@dataclass(eq=False)  # compared by identity: two permits for one host are still two
class Permit:
    """One allowed feature→host:port, and the bytes it has moved; a context manager."""

    feature: str
    host: str
    port: int | None
    reason: str
    loopback: bool
    row: int | None = None
    ledger: Ledger | None = None
    sent: int = 0
    received: int = 0
    address: str | None = None
    closed: bool = False
    _token: Any = field(default=None, repr=False)

    def count(self, sent: int = 0, received: int = 0) -> None:
        self.sent += sent
        self.received += received

    def __enter__(self) -> Permit:
        self._token = _activate(self)
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        _deactivate(self, self._token)
        self.close()

    @contextmanager
    def in_force(self) -> Iterator[Permit]:
        """While inside, in this context, the audit hook lets this permit's connections pass."""
        token = _activate(self)
        try:
            yield self
        finally:
            _deactivate(self, token)

    def flush(self) -> None:
        """Write the bytes so far (a long-lived client's row is current before it closes)."""
        if not self.closed and self.ledger is not None and self.row is not None:
            self.ledger.finish(self.row, self.sent, self.received, self.address, ended=False)

    def close(self) -> None:
        """Write the bytes moved to the ledger (once)."""
        if self.closed:
            return
        self.closed = True
        if self.ledger is not None and self.row is not None:
            self.ledger.finish(self.row, self.sent, self.received, self.address)


# -- what the audit hook reads: permits in force, by context and by host --------------------

_scope: contextvars.ContextVar[tuple[Permit, ...]] = contextvars.ContextVar("cove_egress_permits", default=())
#: host → the permits active for it, in any context or thread.
_active_hosts: dict[str, list[Permit]] = {}
_registry_lock = threading.Lock()


def _activate(permit: Permit) -> contextvars.Token[tuple[Permit, ...]]:
    with _registry_lock:
        _active_hosts.setdefault(normal_host(permit.host), []).append(permit)
    return _scope.set((*_scope.get(), permit))


def _deactivate(permit: Permit, token: contextvars.Token[tuple[Permit, ...]]) -> None:
    _scope.reset(token)
    with _registry_lock:
        key = normal_host(permit.host)
        active = _active_hosts.get(key, [])
        if permit in active:
            active.remove(permit)
        if not active:
            _active_hosts.pop(key, None)


def permits_in_force() -> tuple[Permit, ...]:
    """The permits active in the calling context (innermost last)."""
    return _scope.get()


def host_in_force(host: str) -> Permit | None:
    """A permit active for this host anywhere (name resolution may run in a worker thread)."""
    with _registry_lock:
        active = _active_hosts.get(normal_host(host))
        return active[-1] if active else None


# -- the gate -------------------------------------------------------------------------------


class Gate:
    """The policy of one settings snapshot and the ledger of its COVE_HOME."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.ledger = Ledger(settings.home)

    @property
    def home(self) -> Path:
        return self.settings.home

    def policy(self) -> Policy:
        """Read fresh each time: `cove tools enable` may change the rules while a server runs."""
        return Policy(
            offline=self.settings.offline,
            tools=tool_rules(self.settings.home),
            named=named_hosts(self.settings),
            remote_host=self.settings.host,
            remote_port=self.settings.port,
        )

    def decide(self, feature: str, host: str, port: int | None) -> Decision:
        """The policy's answer; an unreadable rules file refuses, and says so."""
        try:
            return decide(self.policy(), feature, host, port)
        except CoveError as exc:
            return Decision(False, str(exc))

    def allow(self, feature: str, host: str, port: int | None, *, record: bool = True) -> Permit:
        """A Permit for feature→host:port, recorded in the ledger; EgressRefused (recorded) if not."""
        loopback = is_loopback_host(host)
        decision = self.decide(feature, host, port)
        row = None
        if record:
            verdict = "allowed" if decision.allowed else "refused"
            row = self.ledger.record(feature, host, port, verdict, decision.reason, loopback=loopback)
        if not decision.allowed:
            where = f"{host}:{port}" if port else host
            raise EgressRefused(f"cove did not connect to {where} for {feature}: {decision.reason}")
        return Permit(feature, host, port, decision.reason, loopback, row, self.ledger if record else None)

    def refused(
        self, feature: str, host: str, port: int | None, reason: str, address: str | None = None
    ) -> None:
        """Record a refusal decided elsewhere (the audit hook, an address check)."""
        self.ledger.record(
            feature, host, port, "refused", reason, loopback=is_loopback_host(host), address=address
        )

    def close(self) -> None:
        self.ledger.close()


def tool_rules(home: Path) -> dict[str, ToolRule]:
    """The tools' switches and allow-lists, from the tools' own file (COVE_HOME/tools.json)."""
    from ..tools import policy as tools_policy

    stored = tools_policy.load(home)
    return {name: ToolRule(state.enabled, tuple(state.allow)) for name, state in stored.tools.items()}


def named_hosts(settings: Settings) -> tuple[NamedHost, ...]:
    """Hosts a setting names for one tool, so they need no `--allow`: the user named them."""
    host = urlsplit(settings.searxng_url).hostname if settings.searxng_url else None
    return (NamedHost("tool:web_search", host, "COVE_SEARXNG_URL"),) if host else ()


_installed: Gate | None = None


def install(settings: Settings) -> Gate:
    """Make this the process's gate (CLI and `cove serve` start-up); returns it."""
    global _installed
    old, _installed = _installed, Gate(settings)
    if old is not None:
        old.close()
    return _installed


def uninstall() -> None:
    """Forget the installed gate and those made for settings (tests: the environment is read again)."""
    global _installed
    old, _installed = _installed, None
    if old is not None:
        old.close()
    with _made_lock:
        made = list(_made.values())
        _made.clear()
    for each in made:
        each.close()


def installed() -> Gate | None:
    return _installed


def current() -> Gate:
    """The installed gate, or the one for the environment's settings (a library user, a test)."""
    return _installed if _installed is not None else for_settings(Settings.from_env())


def for_settings(settings: Settings) -> Gate:
    """The gate for these settings, never laxer than the installed one.

    For code handed a Settings (the library's `Cove(settings).pull`, an MCP call), so an offline
    Settings is offline even when no CLI or server installed a gate, and a process started with
    `--offline` stays offline for a Settings read from the environment. The installed gate serves
    when it governs the same COVE_HOME and is as offline; otherwise a gate of these settings
    (kept, so its ledger is opened once).
    """
    installed = _installed
    offline = settings.offline or (installed is not None and installed.settings.offline)
    if (
        installed is not None
        and installed.settings.home == settings.home
        and installed.settings.offline == offline
    ):
        return installed
    wanted = settings.replace(offline=offline) if offline != settings.offline else settings
    with _made_lock:
        made = _made.get(wanted)
        if made is None:
            if len(_made) >= _MADE_MAX:
                _made.pop(next(iter(_made))).close()
            made = _made[wanted] = Gate(wanted)
        return made


_made: dict[Settings, Gate] = {}
_made_lock = threading.Lock()
_MADE_MAX = 8


def allow(feature: str, host: str, port: int | None) -> Permit:
    """`Gate.allow` on the process's gate; see the module docstring."""
    return current().allow(feature, host, port)


# -- httpx clients whose every request asks the gate ----------------------------------------


class _Hosts:
    """The permits one client holds, one per host:port, finished when the client closes."""

    def __init__(self, gate: Gate, feature: str) -> None:
        self.gate = gate
        self.feature = feature
        self._permits: dict[tuple[str, int | None], Permit] = {}
        self._lock = threading.Lock()

    def permit(self, url: httpx.URL) -> Permit:
        port = url.port or (443 if url.scheme == "https" else 80)
        key = (normal_host(url.host), port)
        with self._lock:
            found = self._permits.get(key)
            # Every request is checked (a rule may change while a client lives); the first to a
            # host:port is recorded, later ones add their bytes to its row. A refusal raises
            # here, before any connection, and is recorded.
            if found is None or not self.gate.decide(self.feature, url.host, port).allowed:
                found = self._permits[key] = self.gate.allow(self.feature, url.host, port)
            return found

    def begin(self, request: httpx.Request) -> Permit:
        """The request's permit (EgressRefused, recorded, if the policy says no), its bytes counted."""
        permit = self.permit(request.url)
        permit.count(sent=_request_size(request))
        return permit

    def close(self) -> None:
        with self._lock:
            permits, self._permits = list(self._permits.values()), {}
        for permit in permits:
            permit.close()


def _counted(
    response: httpx.Response, permit: Permit, body: httpx.SyncByteStream | httpx.AsyncByteStream
) -> httpx.Response:
    """The response with its head counted and its body counted as it is read."""
    permit.count(received=_head_size(response))
    response.stream = body
    return response


def _request_size(request: httpx.Request) -> int:
    head = len(request.method) + len(request.url.raw_path) + 12
    head += sum(len(k) + len(v) + 4 for k, v in request.headers.raw)
    length = request.headers.get("content-length")
    return head + (int(length) if length and length.isdigit() else 0)


def _head_size(response: httpx.Response) -> int:
    return 17 + sum(len(k) + len(v) + 4 for k, v in response.headers.raw)


class _CountedStream(httpx.SyncByteStream):
    def __init__(self, inner: httpx.SyncByteStream, permit: Permit) -> None:
        self._inner, self._permit = inner, permit

    def __iter__(self) -> Iterator[bytes]:
        for chunk in self._inner:
            self._permit.count(received=len(chunk))
            yield chunk

    def close(self) -> None:
        try:
            self._inner.close()
        finally:
            self._permit.flush()


class _AsyncCountedStream(httpx.AsyncByteStream):
    def __init__(self, inner: httpx.AsyncByteStream, permit: Permit) -> None:
        self._inner, self._permit = inner, permit

    async def __aiter__(self) -> AsyncIterator[bytes]:
        async for chunk in self._inner:
            self._permit.count(received=len(chunk))
            yield chunk

    async def aclose(self) -> None:
        try:
            await self._inner.aclose()
        finally:
            self._permit.flush()


class GatedTransport(httpx.BaseTransport):
    """Asks the gate before each request (each redirect hop is one) and counts its bytes."""

    def __init__(self, gate: Gate, feature: str, inner: httpx.BaseTransport) -> None:
        self._hosts = _Hosts(gate, feature)
        self._inner = inner

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        permit = self._hosts.begin(request)
        with permit.in_force():  # the connect happens inside the inner transport, in this thread
            response = self._inner.handle_request(request)
        assert isinstance(response.stream, httpx.SyncByteStream)
        return _counted(response, permit, _CountedStream(response.stream, permit))

    def close(self) -> None:
        try:
            self._inner.close()
        finally:
            self._hosts.close()


class AsyncGatedTransport(httpx.AsyncBaseTransport):
    """The async twin of GatedTransport (the permit is in force in the request's task)."""

    def __init__(self, gate: Gate, feature: str, inner: httpx.AsyncBaseTransport) -> None:
        self._hosts = _Hosts(gate, feature)
        self._inner = inner

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        permit = self._hosts.begin(request)
        with permit.in_force():  # in this task's context, where asyncio calls connect
            response = await self._inner.handle_async_request(request)
        assert isinstance(response.stream, httpx.AsyncByteStream)
        return _counted(response, permit, _AsyncCountedStream(response.stream, permit))

    async def aclose(self) -> None:
        try:
            await self._inner.aclose()
        finally:
            self._hosts.close()


def _split(feature: str, kwargs: dict[str, Any]) -> dict[str, Any]:
    """Take the options that belong to the transport out of httpx.Client's keyword arguments."""
    if "transport" in kwargs:
        raise TypeError("gate.client builds its own transport; pass transport options instead")
    names = _TRANSPORT_OPTIONS + (_SAFE_OPTIONS if _checks_addresses(feature) else ())
    return {key: kwargs.pop(key) for key in names if key in kwargs}


def _checks_addresses(feature: str) -> bool:
    """Tools and MCP servers reach hosts that text (a model, a page) chose: check their addresses.

    Everything but a pull and the named remote server counts as such (an unknown feature is
    refused by the policy anyway).
    """
    return feature not in (PULL, REMOTE_ENGINE)


def _inner_transport(feature: str, options: dict[str, Any]) -> httpx.BaseTransport:
    # Tool and MCP features connect through safe-url's transport (cove.net.safe_transport): it
    # resolves once, checks every address and pins the connection to the checked one.
    if _checks_addresses(feature):
        from .safe_transport import SafeTransport

        return SafeTransport(**options)
    return httpx.HTTPTransport(**options)


def _inner_async_transport(feature: str, options: dict[str, Any]) -> httpx.AsyncBaseTransport:
    if _checks_addresses(feature):
        from .safe_transport import AsyncSafeTransport

        return AsyncSafeTransport(**options)
    return httpx.AsyncHTTPTransport(**options)


def client(feature: str, *, gate: Gate | None = None, **httpx_kwargs: Any) -> httpx.Client:
    """An httpx.Client for `feature` whose every request (and redirect hop) asks the gate first."""
    options = _split(feature, httpx_kwargs)
    transport = GatedTransport(gate or current(), feature, _inner_transport(feature, options))
    return httpx.Client(transport=transport, **httpx_kwargs)


def async_client(feature: str, *, gate: Gate | None = None, **httpx_kwargs: Any) -> httpx.AsyncClient:
    """The async twin of `client`."""
    options = _split(feature, httpx_kwargs)
    transport = AsyncGatedTransport(gate or current(), feature, _inner_async_transport(feature, options))
    return httpx.AsyncClient(transport=transport, **httpx_kwargs)
