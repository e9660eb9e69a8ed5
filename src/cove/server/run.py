"""Starting `cove serve`: refuse unsafe binds, bind the port, then run the app on uvicorn."""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import logging
import os
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterator
from types import FrameType

import uvicorn

from ..config import Settings
from ..errors import CoveError
from ..library.local import Cove
from ..net import audit
from ..net import gate as egress_gate
from .app import build_app
from .guard import Policy, is_loopback

log = logging.getLogger("cove.server")
#: On SIGTERM or Ctrl-C, how long answers in flight may take to finish before they are ended.
STOP_GRACE_S = 2.0


def check_bind(host: str, api_keys: tuple[str, ...], insecure: bool) -> None:
    """A listener other machines can reach needs an API key, unless the user loudly opts out."""
    if is_loopback(host) or api_keys:
        return
    if not insecure:
        raise CoveError(
            f"refusing to listen on {host} without an API key: set COVE_API_KEYS or pass "
            "--api-key (or --insecure-no-api-key to accept that anyone on the network can use it)"
        )
    log.warning("!!! listening on %s with NO API key: anyone who can reach it can use it !!!", host)


def bind(host: str, port: int) -> socket.socket:
    """A socket listening on host:port, or a CoveError saying in one line why it cannot be."""
    where = f"{_bracketed(host)}:{port}"
    if not 0 <= port <= 65535:  # getaddrinfo would quietly wrap 99999 round to 34463
        raise CoveError(f"cannot listen on {where}: a port is a number from 0 to 65535")
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
    except (OSError, OverflowError, UnicodeError) as e:
        reason = getattr(e, "strerror", None) or str(e)
        raise CoveError(f"cannot listen on {where}: {reason}") from None
    sock = socket.socket(family, kind, proto)
    try:
        if os.name != "nt":  # as uvicorn does: a restart need not wait for TIME_WAIT to pass
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(2048)  # uvicorn's backlog: clients that come early wait, not get refused
    except (OSError, OverflowError) as e:
        sock.close()
        raise CoveError(_bind_failure(e, host, port, where)) from None
    sock.set_inheritable(True)
    return sock


def _bind_failure(e: OSError | OverflowError, host: str, port: int, where: str) -> str:
    code = getattr(e, "errno", None)
    if code == errno.EADDRINUSE:
        return (
            f"port {port} on {host} is already in use (is `cove serve` already running?); "
            "pick another with --port or COVE_HOST"
        )
    if code == errno.EACCES:
        return (
            f"not allowed to listen on {where} (ports below 1024 need privileges); pick another with --port"
        )
    if code == errno.EADDRNOTAVAIL:
        return f"cannot listen on {where}: {host} is not an address of this machine"
    reason = getattr(e, "strerror", None) or str(e)
    return f"cannot listen on {where}: {reason}"


def serve(settings: Settings, *, insecure: bool = False) -> None:
    """Bind first, then announce and serve: a busy port is one line, never a half-started server."""
    logging.basicConfig(
        level=logging.DEBUG if settings.debug else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    check_bind(settings.host, settings.api_keys, insecure)
    # Every connection off this machine asks the gate (with --offline: refused) and is recorded.
    egress_gate.install(settings)
    audit.install("enforce")
    if settings.offline:
        log.info("offline: cove connects to nothing off this machine, pulls included (cove privacy)")
    policy = Policy(
        bind_host=settings.host,
        api_keys=settings.api_keys,
        extra_origins=settings.origins,
        max_body=settings.max_body,
    )
    # The socket is closed however start-up ends: a store that cannot open must not keep the port.
    with bind(settings.host, settings.port) as sock:
        # A server answers many people: a model's crash must cost only its own requests.
        engine = "process" if settings.engine == "auto" else settings.engine
        cove = Cove(dataclasses.replace(settings, engine=engine))
        try:
            app = build_app(cove, policy)
            port = sock.getsockname()[1]  # the real one when port 0 asked for any free port
            log.info("cove is listening on http://%s:%d (web chat at /)", _bracketed(settings.host), port)
            config = uvicorn.Config(
                app,
                host=settings.host,
                port=port,
                access_log=False,
                log_level="warning",
                timeout_graceful_shutdown=int(STOP_GRACE_S) + 3,
            )
            server = _Server(config, on_stop=lambda: _end_engines(cove))
            server.run(sockets=[sock])
        finally:
            cove.close()  # ends the engine processes, closes the history
        log.info("cove stopped")
        if server.stopped_by == signal.SIGINT:
            raise KeyboardInterrupt  # Ctrl-C exits 130, as for every cove command; SIGTERM exits 0


def _end_engines(cove: Cove) -> None:
    """Answers still streaming get STOP_GRACE_S to finish; then their engines are ended, and
    each ends with an error saying cove is shutting down, before uvicorn would cancel it (and
    log a traceback for each)."""
    time.sleep(STOP_GRACE_S)
    cove.scheduler.close()
    if cove.settings.engine == "process":
        from ..engine.process import stop_loading

        stop_loading()


class _Server(uvicorn.Server):
    """uvicorn sends itself the signal that stopped it again once it has shut down: for SIGTERM
    that ends the process right there, before cove ends its engine processes and closes its
    history. cove lets its own shutdown finish first."""

    def __init__(self, config: uvicorn.Config, on_stop: Callable[[], None]) -> None:
        super().__init__(config)
        self.stopped_by: int | None = None
        self._on_stop = on_stop

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        first = self.stopped_by is None
        self.stopped_by = self.stopped_by or sig
        super().handle_exit(sig, frame)
        if first:  # not in a signal handler, which may have interrupted a holder of a lock
            threading.Thread(target=self._on_stop, name="cove-stop", daemon=True).start()

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        handled = (signal.SIGINT, signal.SIGTERM)
        previous = {sig: signal.signal(sig, self.handle_exit) for sig in handled}
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)


def _bracketed(host: str) -> str:
    """An IPv6 address as it goes before `:port`."""
    return f"[{host}]" if ":" in host else host
