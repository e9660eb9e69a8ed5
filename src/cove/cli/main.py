"""`cove` subcommands for the store and the engine; errors become one line and a non-zero exit."""

from __future__ import annotations

import json
import sys
import traceback
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any, NoReturn

import click
from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TransferSpeedColumn
from rich.table import Table

from ..config import Settings
from ..errors import CoveError
from ..library.backend import Backend
from ..library.local import Cove
from ..library.remote import find_server
from ..store import catalog
from ..store.names import parse_name
from ..store.progress import PullProgress
from .confirm import confirm, yes_option
from .format import human_age, human_size
from .privacy import privacy, start_egress

out = Console(highlight=False)
err = Console(stderr=True, highlight=False)


class Context:
    """Per-invocation state: the debug flag, the local library, and a running server if any."""

    def __init__(self, debug: bool, local: bool) -> None:
        self.debug = debug
        self.local = local
        self._cove: Cove | None = None
        self._backend: Backend | None = None
        self._closers: list[Callable[[], None]] = []
        self.through_server = False  # set once `backend` has looked for a running server

    @property
    def cove(self) -> Cove:
        """The local store and engine (for commands that read files on this machine)."""
        if self._cove is None:
            # One person at a terminal needs one slot; a smaller KV cache also loads faster.
            self._cove = Cove(replace(Settings.from_env(), num_parallel=1))
        return self._cove

    @property
    def backend(self) -> Backend:
        """A server answering at COVE_HOST keeps models loaded between calls; else in-process."""
        if self._backend is None:
            settings = Settings.from_env()
            remote = None if self.local or settings.local else find_server(settings)
            self.through_server = remote is not None
            self._backend = remote or self.cove
        return self._backend

    def on_close(self, callback: Callable[[], None]) -> None:
        self._closers.append(callback)

    def close(self) -> None:
        for callback in self._closers:
            callback()
        for handle in {id(h): h for h in (self._backend, self._cove) if h is not None}.values():
            handle.close()


pass_ctx = click.make_pass_decorator(Context)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--debug", is_flag=True, help="Show tracebacks and engine details on errors.")
@click.option("--local", is_flag=True, help="Run in-process even if a server is up (or COVE_LOCAL).")
@click.option("--offline", is_flag=True, help="Connect to nothing off this machine, not even to pull.")
@click.version_option(package_name="cove")
@click.pass_context
def cli(ctx: click.Context, debug: bool, local: bool, offline: bool) -> None:
    """cove: a private, offline AI assistant on your own computer."""
    start_egress(offline)  # before any command can open a connection
    ctx.obj = Context(debug, local)
    ctx.call_on_close(ctx.obj.close)


def print_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, default=str))


@cli.command("list")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.option(
    "--available", is_flag=True, help="Show the catalog instead: what fits here and how fast, best first."
)
@pass_ctx
def list_models(ctx: Context, as_json: bool, available: bool) -> None:
    """List stored models (or the catalog with --available)."""
    if available:
        from .fit import available as show_available  # beside `cove fit`, registered below

        return show_available(as_json)
    models = ctx.backend.models()
    if as_json:
        return print_json([_model_row(m) for m in models])
    # KIND: chat (follows instructions), base (only continues text) or embedding (makes vectors).
    table = Table("NAME", "ID", "SIZE", "KIND", "MODIFIED", box=None)
    for m in models:
        table.add_row(m.name, m.short_id, human_size(m.size), catalog.model_kind(m), human_age(m.modified))
    out.print(table)


def _model_row(m: Any) -> dict[str, Any]:
    return {
        "name": m.name,
        "id": m.short_id,
        "digest": m.digest,
        "size": m.size,
        "kind": catalog.model_kind(m),
        "modified": m.modified,
    }


@cli.command()
@click.argument("name")
@click.option("--json", "as_json", is_flag=True)
@pass_ctx
def show(ctx: Context, name: str, as_json: bool) -> None:
    """Show what a model's GGUF says, and its recipe."""
    m = ctx.cove.model(name)
    recipe = m.recipe_obj()
    if as_json:
        return print_json({**_model_row(m), "source": m.source, "info": m.info, "recipe": recipe.to_dict()})
    table = Table(box=None, show_header=False)
    for key in ("architecture", "parameters", "quantization", "context_length", "license"):
        table.add_row(key, str(m.info.get(key) if key != "parameters" else _params(m.info)))
    table.add_row(
        "chat template",
        "yes" if m.info.get("chat_template") else "no (recipe gives one)" if recipe.template else "no",
    )
    table.add_row("size", human_size(m.size))
    table.add_row("source", m.source)
    out.print(f"[bold]{m.name}[/bold]  {m.short_id}")
    out.print(table)
    out.print("\n[bold]Recipe[/bold]")
    click.echo(recipe.to_text())
    if m.info.get("tuned"):  # made by `cove tune`: its data, settings and before/after figures
        from .tune import show_tuned

        show_tuned(m.info["tuned"])


def _params(info: dict[str, Any]) -> str:
    count = info.get("parameter_count") or 0
    return f"{count / 1e9:.2f}B" if count >= 1e9 else f"{count / 1e6:.0f}M"


@cli.command()
@click.argument("names", nargs=-1, required=True)
@pass_ctx
def rm(ctx: Context, names: tuple[str, ...]) -> None:
    """Remove models (blobs nothing else uses are deleted)."""
    for name in names:
        removed = ctx.backend.remove(name)
        click.echo(f"deleted '{removed.name}'")


@cli.command()
@click.argument("source")
@click.argument("destination")
@yes_option
@pass_ctx
def cp(ctx: Context, source: str, destination: str, yes: bool) -> None:
    """Copy a model to a new name (no bytes are copied); asks before replacing one."""
    target = str(parse_name(destination))
    if target in {m.name for m in ctx.backend.models()}:
        confirm(
            f"'{target}' exists; replace it with a copy of '{source}'?",
            f"'{target}' already exists",
            yes,
        )
    copied = ctx.backend.copy(source, destination)
    click.echo(f"copied '{source}' to '{copied.name}'")


@cli.command("import")
@click.argument("path", type=click.Path(path_type=Path))
@click.argument("name", required=False)
@pass_ctx
def import_(ctx: Context, path: Path, name: str | None) -> None:
    """Validate a local GGUF file and add it to the store."""
    m = ctx.cove.import_model(path, name)
    click.echo(f"imported '{m.name}' ({human_size(m.size)}, {m.short_id})")


@cli.command()
@click.argument("name")
@click.option("-f", "--file", "file", required=True, type=click.Path(path_type=Path))
@pass_ctx
def create(ctx: Context, name: str, file: Path) -> None:
    """Create a model from a recipe file."""
    try:
        text = file.read_text("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise CoveError(f"cannot read recipe {file.name}: {exc.__class__.__name__}") from exc
    m = ctx.cove.create(name, text, file.parent, source=file.name)  # errors name the file's line
    click.echo(f"created '{m.name}' from {file.name}")


@cli.command()
@click.argument("ref")
@pass_ctx
def pull(ctx: Context, ref: str) -> None:
    """Download a model: a catalog name (smollm2:135m) or hf.co/OWNER/REPO[:QUANT]."""
    with pull_progress() as report:
        m = ctx.backend.pull(ref, report)
    click.echo(f"pulled '{m.name}' ({human_size(m.size)}, {m.short_id})")


class pull_progress:
    """A rich progress bar fed by PullProgress events."""

    def __init__(self) -> None:
        columns = (
            TextColumn("{task.description}"),
            BarColumn(),
            DownloadColumn(),
            TransferSpeedColumn(),
        )
        self.bar = Progress(*columns, console=err, transient=True)
        self.task: Any = None

    def __enter__(self) -> pull_progress:
        self.bar.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.bar.stop()

    def __call__(self, event: PullProgress) -> None:
        if event.total is None:
            err.print(event.status)
            return
        if self.task is None:
            self.task = self.bar.add_task(event.status, total=event.total)
        self.bar.update(self.task, completed=event.completed or 0, total=event.total)


@cli.command()
@pass_ctx
def ps(ctx: Context) -> None:
    """List loaded models: ACTIVE/SLOTS is answers running now out of the parallel slots."""
    loaded = ctx.backend.loaded()
    if not loaded:
        hint = (
            "models unload when idle for COVE_KEEP_ALIVE"
            if ctx.through_server
            else "a model stays loaded between commands only while `cove serve` runs"
        )
        return out.print(f"no models loaded ({hint})")
    table = Table("NAME", "ID", "SIZE", "CONTEXT", "ACTIVE/SLOTS", "UNTIL", "WHERE", box=None)
    for r in loaded:
        forever = "busy" if r.active else "forever"  # no expiry while answering, or keep-alive -1
        until = forever if r.expires_in_s is None else f"{r.expires_in_s:.0f} s"
        slots = f"{r.active}/{r.num_parallel if r.num_parallel > 0 else '?'}"  # 0: a server too old to say
        size = "-" if r.runs_on else human_size(r.size)  # a remote model holds no memory here
        where = ", ".join(r.runs_on) if r.runs_on else "here"
        table.add_row(r.name, r.digest[:12], size, str(r.num_ctx), slots, until, where)
    out.print(table)


@cli.command()
@click.argument("name")
@pass_ctx
def stop(ctx: Context, name: str) -> None:
    """Unload a model now."""
    if not ctx.backend.stop(name):
        raise CoveError(f"'{name}' is not loaded")
    click.echo(f"stopped '{name}'")


def main() -> None:
    """Entry point: one line per error, a traceback only with --debug; Ctrl-C anywhere exits 130."""

    debug = "--debug" in sys.argv[1:]
    try:
        code = cli.main(standalone_mode=False)
    except (click.exceptions.Abort, KeyboardInterrupt):
        # click turns a Ctrl-C inside a command into Abort; one raised outside it arrives as is.
        _interrupted(debug)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except CoveError as exc:
        _fail(str(exc), debug)
    except Exception as exc:  # the last line of defence: still one line unless --debug
        _fail(f"unexpected {exc.__class__.__name__}: {exc} (run with --debug for details)", debug)
    # A command that raises click.exceptions.Exit(n) (an answer stopped with Ctrl-C: 130) gets
    # its code back here, as standalone_mode=False returns it instead of exiting.
    if isinstance(code, int) and not isinstance(code, bool) and code:
        sys.exit(code)


def _interrupted(debug: bool) -> NoReturn:
    if debug:
        traceback.print_exc()
    err.print("aborted")
    sys.exit(130)


def _fail(message: str, debug: bool) -> NoReturn:
    if debug:
        traceback.print_exc()
    click.echo(f"Error: {message}", err=True)
    sys.exit(1)


@cli.command()
@click.option("--host", help="Address to listen on (default 127.0.0.1, or COVE_HOST).")
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    help="Port (default 11435, or COVE_HOST's port; 0 picks a free one).",
)
@click.option("--api-key", "api_keys", multiple=True, help="Require this key (repeatable).")
@click.option(
    "--insecure-no-api-key",
    is_flag=True,
    help="Allow a non-loopback address without an API key (dangerous).",
)
@click.option("--offline", is_flag=True, help="Refuse every connection off this machine, pulls too.")
@pass_ctx
def serve(
    ctx: Context,
    host: str | None,
    port: int | None,
    api_keys: tuple[str, ...],
    insecure_no_api_key: bool,
    offline: bool,
) -> None:
    """Serve the Ollama (/api) and OpenAI (/v1) APIs."""
    from ..server.run import serve as run_server

    settings = Settings.from_env()
    settings = replace(
        settings,
        host=host or settings.host,
        port=settings.port if port is None else port,
        api_keys=settings.api_keys + api_keys,
        debug=ctx.debug or settings.debug,
        offline=offline or settings.offline,
    )
    run_server(settings, insecure=insecure_no_api_key)


cli.add_command(privacy)

from .tools import tools  # noqa: E402  (imports this module's names; registered last)

cli.add_command(tools)

from .bench import bench  # noqa: E402
from .doctor import doctor  # noqa: E402  (as above)
from .fit import fit  # noqa: E402
from .pick import pick  # noqa: E402

cli.add_command(doctor)
cli.add_command(fit)
cli.add_command(pick)
cli.add_command(bench)

from .ray import ray  # noqa: E402  (cove ray serve; Ray itself is imported only when it runs)

cli.add_command(ray)

from .tune import tune  # noqa: E402  (as above)

cli.add_command(tune)

from .kb import kb  # noqa: E402  (as above)

cli.add_command(kb)
