"""Tiny HTTP servers on loopback for the URL-tool tests: routes are functions, requests are recorded."""

from __future__ import annotations

import http.server
import socket
import ssl
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Reply:
    """What a route answers: status, headers and a body (bytes, or chunks sent one by one)."""

    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes | Iterator[bytes] = b""


@dataclass
class Seen:
    method: str
    path: str
    headers: dict[str, str]


Route = Callable[[Seen], Reply]


class LoopbackServer:
    """An HTTP(S) server on a loopback address, in a thread; `with` it to start and stop it."""

    def __init__(
        self,
        routes: dict[str, Route],
        host: str = "127.0.0.1",
        tls: ssl.SSLContext | None = None,
    ) -> None:
        self.routes = routes
        self.seen: list[Seen] = []
        self.sni: list[str | None] = []
        owner = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                owner._answer(self)

            def log_message(self, *_: Any) -> None:
                pass

        family = socket.AF_INET6 if ":" in host else socket.AF_INET

        class Server(http.server.ThreadingHTTPServer):
            address_family = family
            daemon_threads = True

            def handle_error(self, request: Any, client_address: Any) -> None:
                if not isinstance(sys.exc_info()[1], ConnectionError):  # a client that hung up is fine
                    super().handle_error(request, client_address)

        self._server = Server((host, 0), Handler)
        if tls is not None:
            tls.sni_callback = lambda sock, name, ctx: self.sni.append(name)  # type: ignore[assignment]
            self._server.socket = tls.wrap_socket(self._server.socket, server_side=True)
        self.host = host
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True)

    def url(self, path: str = "/", host: str | None = None, scheme: str = "http") -> str:
        name = host or (f"[{self.host}]" if ":" in self.host else self.host)
        return f"{scheme}://{name}:{self.port}{path}"

    def _answer(self, handler: http.server.BaseHTTPRequestHandler) -> None:
        seen = Seen("GET", handler.path, dict(handler.headers.items()))
        self.seen.append(seen)
        route = self.routes.get(handler.path.split("?")[0])
        reply = route(seen) if route else Reply(404, body=b"not found")
        handler.send_response(reply.status)
        for name, value in reply.headers.items():
            handler.send_header(name, value)
        try:
            if isinstance(reply.body, bytes):
                if "Content-Length" not in reply.headers:
                    handler.send_header("Content-Length", str(len(reply.body)))
                handler.end_headers()
                handler.wfile.write(reply.body)
            else:
                handler.send_header("Connection", "close")
                handler.end_headers()
                for chunk in reply.body:
                    handler.wfile.write(chunk)
                    handler.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client stopped reading: what the size and time caps are for

    def __enter__(self) -> LoopbackServer:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._server.shutdown()
        self._server.server_close()


def text(body: str | bytes, content_type: str = "text/html; charset=utf-8", status: int = 200) -> Route:
    data = body.encode() if isinstance(body, str) else body
    return lambda _seen: Reply(status, {"Content-Type": content_type}, data)


def redirect(location: str, status: int = 302) -> Route:
    return lambda _seen: Reply(status, {"Location": location, "Content-Length": "0"})
