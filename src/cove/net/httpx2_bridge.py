"""An httpx2 client (the HTTP library of the `mcp` package) whose every request goes through a gate client.

The MCP SDK speaks httpx2, a separate package from the httpx the gate is built on, and takes an
`httpx2.AsyncClient` (`streamable_http_client(url, http_client=...)`). `async_client` gives it one
whose transport hands each request to a `cove.net.gate.async_client`: the gate judges every
request and every redirect hop the SDK follows (each is its own request), counts the bytes both
ways into the ledger, and connects through the address-checking transport. Nothing is let through
by a blanket permit: a connection the gate did not judge is refused by the backstop.

Stable API: ``async_client(feature, *, gate=None, trusted_hosts=(), timeout_s=30.0) ->
httpx2.AsyncClient`` (the `mcp` extra must be installed). Close it (``async with``) to finish the
ledger rows.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Collection
from typing import TYPE_CHECKING, Any

import httpx
import httpx2

from . import gate as gate_module

if TYPE_CHECKING:
    from .gate import Gate

#: The request extensions httpx and httpx2 read the same way.
_EXTENSIONS = ("timeout", "sni_hostname")


class _Body(httpx2.AsyncByteStream):
    """The gate client's response body, raw (httpx2 decodes it), as an httpx2 stream."""

    def __init__(self, response: httpx.Response, request: httpx2.Request) -> None:
        self._response, self._request = response, request

    async def __aiter__(self) -> AsyncIterator[bytes]:
        try:
            async for chunk in self._response.aiter_raw():
                yield chunk
        except httpx.HTTPError as exc:
            raise _translated(exc, self._request) from exc

    async def aclose(self) -> None:
        await self._response.aclose()


class GatedBridge(httpx2.AsyncBaseTransport):
    """Sends each httpx2 request through an httpx client built by the gate."""

    def __init__(self, client: httpx.AsyncClient) -> None:
        self._client = client

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        body = await request.aread()  # MCP messages are small JSON: read, then sent as one piece
        extensions = {k: v for k, v in request.extensions.items() if k in _EXTENSIONS}
        sent = httpx.Request(
            request.method, str(request.url), headers=request.headers.raw, content=body, extensions=extensions
        )
        try:
            response = await self._client.send(sent, stream=True)
        except httpx.HTTPError as exc:
            raise _translated(exc, request) from exc
        kept = {k: v for k, v in response.extensions.items() if k in ("http_version", "reason_phrase")}
        return httpx2.Response(
            response.status_code,
            headers=response.headers.raw,
            stream=_Body(response, request),
            extensions=kept,
        )

    async def aclose(self) -> None:
        await self._client.aclose()


def _translated(exc: httpx.HTTPError, request: httpx2.Request) -> Exception:
    """The httpx2 error of the same name (the SDK handles those), with the same words."""
    kind: Any = getattr(httpx2, type(exc).__name__, None)
    if not (isinstance(kind, type) and issubclass(kind, httpx2.RequestError)):
        kind = httpx2.TransportError
    return kind(str(exc) or type(exc).__name__, request=request)  # type: ignore[no-any-return]


def async_client(
    feature: str,
    *,
    gate: Gate | None = None,
    trusted_hosts: Collection[str] = (),
    timeout_s: float = 30.0,
) -> httpx2.AsyncClient:
    """An httpx2.AsyncClient for `feature` whose every request asks the gate first.

    `trusted_hosts` (``host:port``) are the hosts the user declared by URL, which may be on this
    machine or the LAN; they are still resolved once and pinned. Redirects are the SDK's to follow.
    """
    inner = gate_module.async_client(
        feature, gate=gate, trusted_hosts=trusted_hosts, follow_redirects=False, timeout=timeout_s
    )
    return httpx2.AsyncClient(
        transport=GatedBridge(inner), timeout=httpx2.Timeout(timeout_s), trust_env=False
    )
