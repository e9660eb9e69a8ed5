"""`cove ray serve MODEL --replicas N`: cove's engine as a Ray Serve deployment (cove[ray])."""

from __future__ import annotations

import os
import signal
import threading
from typing import Any

import click

from ..config import Settings
from ..errors import CoveError
from ..library.local import Cove

#: Object store for a Ray this command starts itself: a chat model's requests are small.
LOCAL_OBJECT_STORE_BYTES = 128 << 20


@click.group()
def ray() -> None:
    """Run cove's engine on a Ray cluster (install the extra: pip install 'cove[ray]')."""


@ray.command("serve", context_settings={"show_default": True})
@click.argument("model")
@click.option("--replicas", "-n", default=2, type=click.IntRange(1), help="Engine replicas.")
@click.option(
    "--address",
    default=None,
    help="An existing cluster (HOST:6379, ray://HOST:10001 or auto); else a local Ray of its own.",
)
@click.option("--host", default="127.0.0.1", help="Where Serve's HTTP proxy listens.")
@click.option("--port", default=8000, type=click.IntRange(1, 65535), help="Serve's HTTP port.")
@click.option("--cpus", default=1.0, type=click.FloatRange(0.1), help="CPUs each replica reserves.")
@click.option("--parallel", default=4, type=click.IntRange(1, 64), help="Slots in each replica.")
@click.option("--api-key-env", default=None, help="Environment variable holding the key clients must send.")
@click.option("--detach", is_flag=True, help="Leave it running on the cluster and return.")
def serve_command(
    model: str,
    replicas: int,
    address: str | None,
    host: str,
    port: int,
    cpus: float,
    parallel: int,
    api_key_env: str | None,
    detach: bool,
) -> None:
    """Deploy MODEL (from this store) as N replicas behind an OpenAI-compatible API.

    On a cluster the model file must be readable at the same path on every node (a shared
    folder): each node is checked before deploying. Without --address it starts a local Ray of
    its own, which stops with it. Use it from cove with a recipe: FROM openai+http://HOST:PORT/v1#MODEL.
    """
    try:
        import ray as ray_core
        from ray import serve

        from ..ray_serve.app import build
        from ..ray_serve.nodes import files_of, nodes_lacking
    except ImportError as exc:
        raise CoveError(f"Ray Serve is not installed ({exc.name}): pip install 'cove[ray]'") from None
    key = _key(api_key_env)
    cove = Cove(Settings.from_env())
    request, _, _ = cove.prepare(model)
    if request.spec.remote:
        raise CoveError(f"{model} is a remote model already; deploy a model stored here")
    started_here = address is None
    if detach and started_here:
        raise CoveError("--detach needs --address: a local Ray this command starts stops with it")
    # "local": a Ray of its own even where RAY_ADDRESS or a `ray start` would be joined, so what
    # it stops on the way out is only what it started.
    init: dict[str, Any] = (
        {"address": address}
        if address
        else {"address": "local", "object_store_memory": LOCAL_OBJECT_STORE_BYTES}
    )
    ray_core.init(include_dashboard=False, log_to_driver=False, **init)
    try:
        if started_here:
            gcs = ray_core.get_runtime_context().gcs_address
            click.echo(
                f"started a local Ray at {gcs}; it stops with this command "
                f"(RAY_AUTH_MODE=token cove ray serve --address {gcs} deploys more onto it)"
            )
        lacking = nodes_lacking(files_of(request.spec))
        if lacking:
            raise CoveError(
                f"{request.spec.name} cannot be deployed: not every node has its file at the same path "
                f"({'; '.join(lacking)}); put COVE_HOME on a folder shared at one path on every node, "
                "or copy the file to that path"
            )
        serve.start(http_options={"host": host, "port": port}, detach=detach or not started_here)
        app = build(request.spec, replicas=replicas, num_cpus=cpus, parallel=parallel, api_key=key)
        serve.run(app, name="cove", route_prefix="/")
    except BaseException:
        if started_here:
            ray_core.shutdown()
        raise
    shown = "127.0.0.1" if host in ("0.0.0.0", "::") else host
    click.echo(f"serving {request.spec.name} with {replicas} replicas at http://{shown}:{port}/v1")
    click.echo(
        f"use it from cove with a recipe line: FROM openai+http://{shown}:{port}/v1#{request.spec.name}"
    )
    if detach:
        return
    click.echo("Ctrl-C stops it")
    stopped_by = _wait_for_signal()
    serve.delete("cove")
    if started_here:
        serve.shutdown()
        ray_core.shutdown()
    click.echo("stopped")
    if stopped_by == signal.SIGINT:
        raise KeyboardInterrupt  # Ctrl-C exits 130, as for every cove command; SIGTERM exits 0


def _key(name: str | None) -> str | None:
    if not name:
        return None
    key = os.environ.get(name)
    if not key:
        raise CoveError(f"--api-key-env {name}: ${name} is not set")
    return key


def _wait_for_signal() -> int:
    """Until SIGINT or SIGTERM; which one came."""
    stop = threading.Event()
    came: list[int] = []

    def handle(sig: int, _frame: Any) -> None:
        came.append(sig)
        stop.set()

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, handle)
    while not stop.wait(1.0):
        pass
    return came[0]
