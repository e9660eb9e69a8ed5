"""Starting `cove serve`: refuse unsafe binds, then run the app on uvicorn."""

from __future__ import annotations

import logging

import uvicorn

from ..config import Settings
from ..errors import CoveError
from ..library.local import Cove
from .app import build_app
from .guard import Policy, is_loopback

log = logging.getLogger("cove.server")


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


def serve(settings: Settings, *, insecure: bool = False) -> None:
    logging.basicConfig(
        level=logging.DEBUG if settings.debug else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    check_bind(settings.host, settings.api_keys, insecure)
    policy = Policy(
        bind_host=settings.host,
        api_keys=settings.api_keys,
        extra_origins=settings.origins,
        max_body=settings.max_body,
    )
    cove = Cove(settings)
    app = build_app(cove, policy)
    log.info("cove is listening on http://%s:%d (web chat at /)", settings.host, settings.port)
    try:
        uvicorn.run(
            app,
            host=settings.host,
            port=settings.port,
            access_log=False,
            log_level="warning",
            timeout_graceful_shutdown=3,
        )
    finally:
        cove.close()
