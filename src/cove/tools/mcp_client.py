"""Tools of MCP servers, through the official `mcp` package (the `mcp` extra): list them, call one.

Each list or call is its own short connection (a stdio server is started for it and stopped
after), so a server that exits or hangs costs only that call: its step ends with a tool error
and the chat goes on.

An HTTP server is reached through a gate client for `mcp:NAME` (`cove.net.httpx2_bridge`): every
request the SDK sends, redirects included, is judged by the policy and counted in the ledger.
The declared URL's host may be on this machine or the LAN (the user named it); it still needs
`cove tools enable mcp:NAME --allow HOST` unless it is loopback. A stdio server is the command
the user declared: the backstop lets exactly that command start (`uv run`, `npx` included), and
its own network use is outside cove's process.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from .mcp_config import SEPARATOR, McpServer
from .registry import NAME, TIME_CAP_S, Tool, ToolContext, ToolError

if TYPE_CHECKING:
    from ..config import Settings

#: How long listing a server's tools may take (starting a stdio server included).
LIST_TIMEOUT_S = 20.0


def _mcp() -> Any:
    try:
        import mcp
    except ImportError:
        raise ToolError("MCP servers need the `mcp` package: pip install 'cove[mcp]'") from None
    return mcp


def server_tools(server: McpServer, settings: Settings | None = None) -> list[Tool]:
    """The server's tools as cove tools named SERVER__TOOL (raises when it cannot be listed)."""
    listed = _session(server, lambda client: client.list_tools(), LIST_TIMEOUT_S, settings)
    tools = []
    for item in listed.tools:
        name = f"{server.name}{SEPARATOR}{item.name}"
        if not NAME.match(name):
            continue  # a name the model could not call back
        schema = item.input_schema if isinstance(item.input_schema, dict) else {}
        tools.append(
            Tool(
                name=name,
                description=(item.description or item.title or item.name)[:1000],
                parameters=schema or {"type": "object", "properties": {}},
                run=_caller(server, item.name),
                network=server.url is not None,
                source=server.feature,
            )
        )
    return tools


def _caller(server: McpServer, tool_name: str) -> Callable[[dict[str, Any], ToolContext], str]:
    def run(arguments: dict[str, Any], context: ToolContext) -> str:
        cap = context.settings.tool_timeout_s if context.settings else TIME_CAP_S
        timeout = max(1.0, cap * 0.9)  # inside the run's own cap, so the server is stopped first
        call = lambda client: client.call_tool(tool_name, arguments)  # noqa: E731
        result = _session(server, call, timeout, context.settings)
        text = "\n".join(_text(part) for part in result.content)
        if result.is_error:
            raise ToolError(f"{server.name} answered with an error: {text or 'no detail'}")
        if not text and result.structured_content is not None:
            import json

            return json.dumps(result.structured_content, ensure_ascii=False)
        return text

    return run


def _text(part: Any) -> str:
    if getattr(part, "type", None) == "text":
        return str(part.text)
    return f"[{getattr(part, 'type', 'content')} not shown]"


def _session(
    server: McpServer,
    action: Callable[[Any], Awaitable[Any]],
    timeout_s: float,
    settings: Settings | None = None,
) -> Any:
    """Connect, do one thing, disconnect; every failure is one ToolError naming the server."""
    mcp = _mcp()

    async def main() -> Any:
        async with contextlib.AsyncExitStack() as stack:
            target = await _target(mcp, server, stack, timeout_s, settings)
            client = mcp.Client(target, raise_exceptions=True, read_timeout_seconds=timeout_s)
            await stack.enter_async_context(client)
            return await action(client)

    # A stdio server's own log lines go to cove's stderr (the package's default): they never reach
    # the model, and a person debugging a server wants them.
    with _declared(server):
        try:
            return asyncio.run(asyncio.wait_for(main(), timeout_s))
        except ToolError:
            raise
        except TimeoutError:
            raise ToolError(f"MCP server {server.name} did not answer within {timeout_s:g} s") from None
        except BaseException as exc:
            if isinstance(exc, KeyboardInterrupt | SystemExit):
                raise
            raise ToolError(f"MCP server {server.name} failed: {_reason(exc)}") from None


async def _target(
    mcp: Any, server: McpServer, stack: contextlib.AsyncExitStack, timeout_s: float, settings: Settings | None
) -> Any:
    """What `mcp.Client` connects to: the stdio command, or the URL over a gate client."""
    if not server.url:
        return mcp.StdioServerParameters(
            command=server.command or "", args=list(server.args), env=server.env or None
        )
    from mcp.client.streamable_http import streamable_http_client

    from ..net import gate, httpx2_bridge
    from ..net.safe_transport import host_port

    egress = gate.for_settings(settings) if settings is not None else None
    http = httpx2_bridge.async_client(
        server.feature, gate=egress, trusted_hosts=[host_port(server.url)], timeout_s=timeout_s
    )
    await stack.enter_async_context(http)  # closed last: the ledger rows are finished then
    return streamable_http_client(server.url, http_client=http)


def _reason(exc: BaseException) -> str:
    """The first real cause inside anyio's exception groups."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    return str(exc) or type(exc).__name__


def _declared(server: McpServer) -> contextlib.AbstractContextManager[None]:
    """A stdio server's command may start though it may reach the network: the user declared it."""
    if server.url or not server.command:
        return contextlib.nullcontext()
    from ..net import audit

    return audit.declared_program([server.command, *server.args])
