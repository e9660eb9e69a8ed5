"""The httpx transport URL tools connect through: resolve once, check every address, connect to it.

For each request (and so for each redirect hop, which httpx sends as its own request) the
transport reads the host from the very URL httpx will use, resolves it once, refuses the request
if any resolved address is not public (`cove.net.addresses`), and connects to a checked address:
the URL's host is replaced by that address, while the Host header and TLS (SNI and certificate
check) keep the name. No second lookup happens, so a name that answers a public address first and
loopback next cannot slip through (DNS rebinding).

Stable API:

- ``SafeTransport(*, resolver=None, allow_private=(), trusted_hosts=(), **options)`` and its
  async twin ``AsyncSafeTransport``: `options` are httpx.HTTPTransport's (verify, cert, http1,
  http2, limits, trust_env, retries). `allow_private` is a test's switch: addresses or networks
  (``{"127.0.0.1"}``) that may be reached though not public; never fill it from the environment.
  `trusted_hosts` are ``host`` or ``host:port`` the user configured by name (a SearXNG on the
  LAN): they may resolve to private addresses, and are still resolved once and pinned.
  `resolver(host, port) -> [address text, ...]` replaces the system lookup (tests).
- ``safe_client(**kwargs)`` / ``async_safe_client``: an httpx client on that transport, with
  redirects followed (at most 5) and no environment proxies.
- ``checked_addresses(host, port, ...)``: the same resolve-and-check, for a caller that opens
  its own socket; ``host_port(url)``: the `trusted_hosts` entry for a URL the user configured.
- Refusals raise `cove.net.addresses.UnsafeUrl` (a CoveError, HTTP 403); a name that does not
  resolve raises httpx.ConnectError.

Give a client on this transport ``trust_env=False`` or pass it as ``transport=``: httpx mounts
proxy transports from HTTP(S)_PROXY only when a client has neither, and a proxy would bypass it.
"""

from __future__ import annotations

import ipaddress
import socket
import threading
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from typing import Any

import anyio.to_thread
import httpx

from .addresses import IPAddress, IPNetwork, Target, UnsafeUrl, check_address, url_target

Resolver = Callable[[str, int], Sequence[str]]
#: Redirect hops a safe client follows before giving up.
MAX_REDIRECTS = 5
#: httpx.HTTPTransport options a safe transport passes on (the client helpers take them too).
TRANSPORT_OPTIONS = ("verify", "cert", "http1", "http2", "limits", "retries")
_REFUSED_OPTIONS = ("proxy", "uds", "local_address", "socket_options")


def system_resolver(host: str, port: int) -> list[str]:
    """Every address the system's resolver gives for host:port, in its order, once each."""
    found: list[str] = []
    for *_, sockaddr in socket.getaddrinfo(host, port, type=socket.SOCK_STREAM):
        address = str(sockaddr[0])
        if address not in found:
            found.append(address)
    return found


class AddressPolicy:
    """What a transport may connect to: public addresses, plus a test's and the user's exceptions."""

    def __init__(
        self,
        resolver: Resolver | None = None,
        allow_private: Iterable[str | IPAddress | IPNetwork] = (),
        trusted_hosts: Iterable[str] = (),
    ) -> None:
        self.resolver = resolver or system_resolver
        self.allow_private: tuple[IPAddress | IPNetwork, ...] = tuple(_as_allowed(a) for a in allow_private)
        self.trusted_hosts = frozenset(host.strip().lower().rstrip(".") for host in trusted_hosts)

    def trusts(self, target: Target) -> bool:
        host = target.host.rstrip(".")
        shown = f"[{host}]" if ":" in host else host
        return host in self.trusted_hosts or f"{shown}:{target.port}" in self.trusted_hosts

    def target(self, url: httpx.URL) -> Target:
        """The URL's target: refused unless http(s) and without credentials."""
        return url_target(url)

    def addresses(self, target: Target) -> tuple[IPAddress, ...]:
        """The addresses to connect to for `target`, each one checked; resolved at most once."""
        found = [target.address] if target.address is not None else self._resolve(target)
        if not self.trusts(target):
            for address in found:  # every one: a name with one private address among public ones is refused
                check_address(address, target.host, self.allow_private)
        return tuple(found)

    def _resolve(self, target: Target) -> list[IPAddress]:
        try:
            found = [ipaddress.ip_address(text) for text in self.resolver(target.host, target.port)]
        except (OSError, UnicodeError, ValueError) as exc:
            raise httpx.ConnectError(f"cannot resolve {target.host}: {exc}") from None
        if not found:
            raise httpx.ConnectError(f"cannot resolve {target.host}: it has no addresses")
        return found


def host_port(url: str | httpx.URL) -> str:
    """The ``host:port`` that `trusted_hosts` takes, for a URL the user configured by name."""
    target = url_target(url)
    host = f"[{target.host}]" if ":" in target.host else target.host
    return f"{host}:{target.port}"


def checked_addresses(
    host: str,
    port: int,
    *,
    resolver: Resolver | None = None,
    allow_private: Iterable[str | IPAddress | IPNetwork] = (),
) -> tuple[IPAddress, ...]:
    """Resolve host once and check each address; for a caller that connects by itself."""
    policy = AddressPolicy(resolver, allow_private)
    url = httpx.URL(scheme="http", host=host, port=port)
    return policy.addresses(policy.target(url))


def pinned_request(request: httpx.Request, address: IPAddress, target: Target) -> httpx.Request:
    """A copy of `request` aimed at `address`, still naming its host in Host and in TLS."""
    url = request.url.copy_with(host=str(address))
    extensions = dict(request.extensions)
    if target.address is None and request.url.scheme == "https":
        extensions.setdefault("sni_hostname", request.url.raw_host.decode("ascii"))
    # Host was set from the original URL when the request was built; the copy keeps those headers.
    return httpx.Request(
        request.method, url, headers=request.headers, stream=request.stream, extensions=extensions
    )


class _Pools:
    """One connection pool per host name: a TLS connection checked for one name is never reused
    for another that happens to share its address."""

    def __init__(self, factory: Callable[[], Any]) -> None:
        self._factory = factory
        self._pools: dict[str, Any] = {}
        self._lock = threading.Lock()

    def get(self, host: str) -> Any:
        with self._lock:
            if host not in self._pools:
                self._pools[host] = self._factory()
            return self._pools[host]

    def take_all(self) -> list[Any]:
        with self._lock:
            pools, self._pools = list(self._pools.values()), {}
        return pools


def _transport_options(options: dict[str, Any]) -> dict[str, Any]:
    refused = [key for key in _REFUSED_OPTIONS if key in options]
    if refused:
        raise TypeError(f"a safe transport connects only to checked addresses; it takes no {refused[0]}")
    return options


class _Checked:
    """What both transports share: the address policy, one pool per host name, the attempts."""

    _pool_class: type[httpx.HTTPTransport] | type[httpx.AsyncHTTPTransport]

    def __init__(
        self,
        *,
        resolver: Resolver | None = None,
        allow_private: Iterable[str | IPAddress | IPNetwork] = (),
        trusted_hosts: Iterable[str] = (),
        **options: Any,
    ) -> None:
        self.policy = AddressPolicy(resolver, allow_private, trusted_hosts)
        options, pool_class = _transport_options(options), self._pool_class
        self._pools = _Pools(lambda: pool_class(**options))

    def _attempts(
        self, request: httpx.Request, target: Target, addresses: Sequence[IPAddress]
    ) -> Iterator[tuple[Any, httpx.Request, bool]]:
        """(pool, the request pinned to one checked address, whether it is the last address)."""
        pool = self._pools.get(target.host)
        for index, address in enumerate(addresses):
            yield pool, pinned_request(request, address, target), index == len(addresses) - 1


class SafeTransport(_Checked, httpx.BaseTransport):
    """An httpx transport that connects only to addresses it resolved and checked itself."""

    _pool_class = httpx.HTTPTransport

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        target = self.policy.target(request.url)
        for pool, pinned, last in self._attempts(request, target, self.policy.addresses(target)):
            try:
                return pool.handle_request(pinned)  # type: ignore[no-any-return]
            except (httpx.ConnectError, httpx.ConnectTimeout):
                if last:  # the next address may answer; the last one's error stands
                    raise
        raise AssertionError("unreachable: addresses is never empty")

    def close(self) -> None:
        for pool in self._pools.take_all():
            pool.close()


class AsyncSafeTransport(_Checked, httpx.AsyncBaseTransport):
    """The async twin of SafeTransport (the lookup runs in a worker thread)."""

    _pool_class = httpx.AsyncHTTPTransport

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        target = self.policy.target(request.url)
        addresses = await anyio.to_thread.run_sync(self.policy.addresses, target)
        for pool, pinned, last in self._attempts(request, target, addresses):
            try:
                return await pool.handle_async_request(pinned)  # type: ignore[no-any-return]
            except (httpx.ConnectError, httpx.ConnectTimeout):
                if last:
                    raise
        raise AssertionError("unreachable: addresses is never empty")

    async def aclose(self) -> None:
        for pool in self._pools.take_all():
            await pool.aclose()


def _client_options(
    transport_class: type[SafeTransport] | type[AsyncSafeTransport],
    resolver: Resolver | None,
    allow_private: Collection[str | IPAddress | IPNetwork],
    trusted_hosts: Collection[str],
    kwargs: dict[str, Any],
) -> dict[str, Any]:
    """A safe client's keyword arguments: transport options to the transport, the rest kept."""
    options = {key: kwargs.pop(key) for key in TRANSPORT_OPTIONS if key in kwargs}
    transport = transport_class(
        resolver=resolver, allow_private=allow_private, trusted_hosts=trusted_hosts, **options
    )
    kwargs.setdefault("follow_redirects", True)
    kwargs.setdefault("max_redirects", MAX_REDIRECTS)
    return {**kwargs, "transport": transport, "trust_env": False}


def safe_client(
    *,
    resolver: Resolver | None = None,
    allow_private: Collection[str | IPAddress | IPNetwork] = (),
    trusted_hosts: Collection[str] = (),
    **kwargs: Any,
) -> httpx.Client:
    """An httpx.Client on a SafeTransport that follows at most MAX_REDIRECTS redirects.

    Transport options (TRANSPORT_OPTIONS: verify, cert, ...) go to the transport, the rest to
    httpx.Client; the environment's proxies and .netrc are never used.
    """
    return httpx.Client(**_client_options(SafeTransport, resolver, allow_private, trusted_hosts, kwargs))


def async_safe_client(
    *,
    resolver: Resolver | None = None,
    allow_private: Collection[str | IPAddress | IPNetwork] = (),
    trusted_hosts: Collection[str] = (),
    **kwargs: Any,
) -> httpx.AsyncClient:
    """The async twin of `safe_client`."""
    options = _client_options(AsyncSafeTransport, resolver, allow_private, trusted_hosts, kwargs)
    return httpx.AsyncClient(**options)


def _as_allowed(entry: str | IPAddress | IPNetwork) -> IPAddress | IPNetwork:
    if isinstance(entry, str):
        return ipaddress.ip_network(entry, strict=False) if "/" in entry else ipaddress.ip_address(entry)
    return entry


__all__ = [
    "MAX_REDIRECTS",
    "TRANSPORT_OPTIONS",
    "AddressPolicy",
    "AsyncSafeTransport",
    "Resolver",
    "SafeTransport",
    "UnsafeUrl",
    "async_safe_client",
    "checked_addresses",
    "host_port",
    "pinned_request",
    "safe_client",
    "system_resolver",
]
