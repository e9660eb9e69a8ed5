"""`cove kb`: collections of your own documents, indexed for search (and for `cove run --kb`).

Through a running `cove serve` when there is one (its watcher then keeps folders in sync),
in-process otherwise; the commands and their output are the same either way."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import TYPE_CHECKING

import click
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeRemainingColumn
from rich.table import Table

from ..errors import CoveError
from ..knowledge.service import KnowledgeBase, document_json, passage_json
from ..knowledge.sync import SyncProgress, SyncReport
from ..library.kb_remote import RemoteKnowledge
from ..library.remote import RemoteCove
from .confirm import confirm, yes_option
from .format import human_age, human_size

if TYPE_CHECKING:
    from .main import Context

#: The command's `Context` (made by `cove`'s group); not imported from main, which imports this.
pass_ctx = click.pass_obj

out = Console(highlight=False, emoji=False)
err = Console(stderr=True, highlight=False, emoji=False)

Knowledge = KnowledgeBase | RemoteKnowledge


def knowledge(ctx: Context) -> Knowledge:
    backend = ctx.backend
    if isinstance(backend, RemoteCove):
        return RemoteKnowledge(backend.http)
    return ctx.cove.knowledge


@click.group()
def kb() -> None:
    """Collections of your documents: create, add folders, sync, search."""


def rerank_options(auto: bool) -> Callable[[Callable[..., None]], Callable[..., None]]:
    """--rerank MODEL and --no-rerank (and, where a setting is kept, --auto-rerank)."""

    def add(command: Callable[..., None]) -> Callable[..., None]:
        command = click.option(
            "--no-rerank", "no_rerank", is_flag=True, help="Keep the fused BM25 + vector order."
        )(command)
        if auto:
            command = click.option(
                "--auto-rerank",
                "auto_rerank",
                is_flag=True,
                help="Rerank with a reranking model when the store has one (the default).",
            )(command)
        return click.option(
            "--rerank", "rerank", metavar="MODEL", help="Rerank the best passages with this reranking model."
        )(command)

    return add


def rerank_choice(rerank: str | None, no_rerank: bool, auto_rerank: bool = False) -> str | None:
    """The options as one setting: a model, "off", "auto", or None (none given)."""
    if sum((rerank is not None, no_rerank, auto_rerank)) > 1:
        raise click.UsageError("give one of --rerank MODEL, --no-rerank and --auto-rerank")
    return "off" if no_rerank else "auto" if auto_rerank else rerank


def rerank_shown(setting: str) -> str:
    return "auto (a reranker in the store)" if setting == "auto" else setting


@kb.command()
@click.argument("name")
@click.option("--model", help="Embedding model (default: all-minilm, made offline from a PyPI wheel).")
@rerank_options(auto=False)
@pass_ctx
def create(ctx: Context, name: str, model: str | None, rerank: str | None, no_rerank: bool) -> None:
    """Create an empty collection. Its searches are reranked with a reranking model when the
    store has one, unless --rerank names one or --no-rerank turns it off."""
    info = knowledge(ctx).create(name, model, rerank_choice(rerank, no_rerank))
    click.echo(
        f"created collection '{info.name}' (embeddings: {info.model}; reranking: {rerank_shown(info.rerank)})"
    )


@kb.command("rerank")
@click.argument("name")
@rerank_options(auto=True)
@pass_ctx
def set_rerank(ctx: Context, name: str, rerank: str | None, no_rerank: bool, auto_rerank: bool) -> None:
    """Change how a collection's searches are reranked."""
    choice = rerank_choice(rerank, no_rerank, auto_rerank)
    if choice is None:
        raise click.UsageError("give --rerank MODEL, --no-rerank or --auto-rerank")
    info = knowledge(ctx).set_rerank(name, choice)
    click.echo(f"'{info.name}' reranking: {rerank_shown(info.rerank)}")


@kb.command()
@click.argument("name")
@click.argument("paths", nargs=-1, required=True, type=click.Path(exists=True))
@click.option("--include", multiple=True, help="Only files matching this glob (repeatable), e.g. '*.pdf'.")
@click.option("--exclude", multiple=True, help="Skip files matching this glob (repeatable), e.g. 'drafts/*'.")
@click.option("--ocr", is_flag=True, help="Read PDF pages without a text layer with Tesseract.")
@pass_ctx
def add(
    ctx: Context,
    name: str,
    paths: tuple[str, ...],
    include: tuple[str, ...],
    exclude: tuple[str, ...],
    ocr: bool,
) -> None:
    """Add files or folders (recursive) and index them; folders are kept in step by `sync`."""
    kbase = knowledge(ctx)
    roots = kbase.add(name, paths, include, exclude)
    for root in roots:
        err.print(f"[dim]watching {escape(root.path)}[/dim]")
    _show(_synced(kbase, name, ocr=ocr))


@kb.command()
@click.argument("name")
@click.option("--ocr", is_flag=True, help="Read PDF pages without a text layer with Tesseract.")
@click.option("--model", help="Switch the collection to this embedding model (re-embeds every document).")
@pass_ctx
def sync(ctx: Context, name: str, ocr: bool, model: str | None) -> None:
    """Re-scan: new, changed, renamed and deleted files; only what changed is read again."""
    _show(_synced(knowledge(ctx), name, ocr=ocr, model=model))


@kb.command("ls")
@click.argument("name", required=False)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@pass_ctx
def ls(ctx: Context, name: str | None, as_json: bool) -> None:
    """List collections, or one collection's documents with pages, chunks and problems."""
    kbase = knowledge(ctx)
    if name is None:
        infos = kbase.list()
        if as_json:
            return click.echo(json.dumps([i.to_json() for i in infos], indent=2))
        if not infos:
            return err.print("no collections yet: `cove kb create NAME`, then `cove kb add NAME FOLDER`")
        table = Table("NAME", "MODEL", "RERANK", "DOCUMENTS", "CHUNKS", "LAST SYNC", box=None)
        table.add_column("FOLDERS", overflow="fold")  # a path cut short names no folder
        for i in infos:
            synced = human_age(i.last_sync) if i.last_sync else "never"
            folders = ", ".join(r.path for r in i.roots) or "-"
            row = (escape(i.name), escape(i.model), escape(i.rerank), str(i.documents), str(i.chunks))
            table.add_row(*row, synced, escape(folders))
        return out.print(table)
    info = kbase.info(name)
    docs = kbase.documents(name)
    if as_json:
        return click.echo(
            json.dumps({**info.to_json(), "documents": [document_json(d) for d in docs]}, indent=2)
        )
    table = Table(box=None)
    table.add_column("FILE", overflow="fold")
    for column in ("STATUS", "PAGES", "CHUNKS", "SIZE"):
        table.add_column(column)
    table.add_column("PROBLEMS", overflow="fold")
    for d in docs:
        problems = list(d.problems)
        if d.pages_without_text:
            problems.append(f"no text on page(s) {_pages(d.pages_without_text)} (try --ocr)")
        status = d.status if d.status == "indexed" else f"[yellow]{d.status}[/yellow]"
        pages = str(d.pages) if d.pages is not None else "-"
        table.add_row(
            escape(d.file), status, pages, str(d.chunks), human_size(d.size), escape("; ".join(problems))
        )
    out.print(table)
    synced = human_age(info.last_sync) if info.last_sync else "never"
    err.print(
        f"[dim]{info.documents} documents, {info.chunks} chunks, last sync {synced}, "
        f"embeddings {escape(info.model)}, reranking {escape(rerank_shown(info.rerank))}[/dim]"
    )


@kb.command()
@click.argument("name")
@click.argument("paths", nargs=-1)
@click.option("--all", "everything", is_flag=True, help="Remove every document (the collection stays).")
@pass_ctx
def rm(ctx: Context, name: str, paths: tuple[str, ...], everything: bool) -> None:
    """Remove documents: their text, vectors and search rows are deleted from the index."""
    if not paths and not everything:
        raise CoveError("name the files or folders to remove, or pass --all")
    count = knowledge(ctx).remove(name, paths, all=everything)
    click.echo(f"removed {count} document{'s' if count != 1 else ''} from '{name}'")


@kb.command()
@click.argument("name")
@yes_option
@pass_ctx
def drop(ctx: Context, name: str, yes: bool) -> None:
    """Delete a collection and its index (the files themselves are not touched)."""
    kbase = knowledge(ctx)
    info = kbase.info(name)
    confirm(f"drop collection '{name}' ({info.documents} documents)?", f"'{name}' was not dropped", yes)
    kbase.drop(name)
    click.echo(f"dropped collection '{name}'")


@kb.command()
@click.argument("name")
@click.argument("query")
@click.option("-k", "k", type=click.IntRange(1, 100), default=5, show_default=True, help="How many passages.")
@click.option("--mode", type=click.Choice(["hybrid", "bm25", "vector"]), default="hybrid", show_default=True)
@click.option("--json", "as_json", is_flag=True, help='[{"file","page","heading","text","score","chunk_id"}]')
@rerank_options(auto=False)
@pass_ctx
def search(
    ctx: Context,
    name: str,
    query: str,
    k: int,
    mode: str,
    as_json: bool,
    rerank: str | None,
    no_rerank: bool,
) -> None:
    """Search a collection (several: NAME1,NAME2); passages best first, with file and page.
    Reranked as the collection says (`cove kb ls`), or as --rerank MODEL / --no-rerank say."""
    kbase = knowledge(ctx)
    names = [n for n in name.split(",") if n]
    result = kbase.find(names, query, k, mode, rerank_choice(rerank, no_rerank))
    found = result.passages
    relevant = {p.chunk_id for p in kbase.relevant(found)}
    if result.warning:
        err.print(f"[yellow]{escape(result.warning)}[/yellow]")
    if result.reranked_by:  # on stderr, so --json stays the passages alone
        err.print(f"[dim]reranked by {escape(result.reranked_by)} (scores are its own)[/dim]")
    if as_json:
        rows = [{**passage_json(p), "relevant": p.chunk_id in relevant} for p in found]
        return click.echo(json.dumps(rows, indent=2, ensure_ascii=False))
    if not found:
        return err.print("nothing found")
    if not relevant:
        err.print("[yellow]none of these passages looks relevant to the question[/yellow]")
    for n, p in enumerate(found, start=1):
        where = f"page {p.page}" if p.page is not None else " > ".join(p.heading) or "-"
        out.print(f"[bold][{n}] {escape(p.file)}[/bold]  {escape(where)}  [dim]score {p.score:.4f}[/dim]")
        out.print(escape(p.text.strip()), soft_wrap=False)
        out.print()


# -- progress and summary ----------------------------------------------------------------------


class _Bar:
    """A rich progress bar: files done of all, pages and chunks, files per second, ETA."""

    def __init__(self) -> None:
        self.bar = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            TextColumn("{task.completed}/{task.total} files"),
            TextColumn("{task.fields[pages]} pages, {task.fields[chunks]} chunks"),
            TextColumn("{task.fields[rate]:.1f} files/s"),
            TimeRemainingColumn(),
            console=err,
            transient=True,
        )
        self.task: TaskID | None = None

    def __call__(self, p: SyncProgress) -> None:
        if self.task is None:
            if p.files_total == 0:
                return
            self.bar.start()
            self.task = self.bar.add_task("indexing", total=p.files_total, pages=0, chunks=0, rate=0.0)
        self.bar.update(
            self.task,
            completed=p.files_done,
            total=p.files_total,
            pages=p.pages,
            chunks=p.chunks,
            rate=p.rate,
        )

    def stop(self) -> None:
        self.bar.stop()


def _synced(kbase: Knowledge, name: str, *, ocr: bool, model: str | None = None) -> SyncReport:
    bar = _Bar()
    try:
        return kbase.sync(name, bar, ocr=ocr, model=model)
    finally:
        bar.stop()


def _show(report: SyncReport) -> None:
    if report.message:
        err.print(escape(report.message))
    parts = [
        f"{len(report.added)} added",
        f"{len(report.updated)} updated",
        f"{len(report.renamed)} renamed",
        f"{len(report.removed)} removed",
        f"{report.unchanged} unchanged",
    ]
    click.echo(
        f"synced '{report.collection}': {', '.join(parts)} "
        f"({report.pages} pages, {report.chunks} chunks, {report.seconds:.1f} s)"
    )
    for file, reason in report.refused:
        err.print(f"[yellow]skipped {escape(file)}: {escape(reason)}[/yellow]")
    for file, pages in report.without_text:
        err.print(
            f"[yellow]{escape(file)}: no text on page(s) {_pages(pages)}; "
            "sync with --ocr to read them[/yellow]"
        )


def _pages(pages: list[int]) -> str:
    shown = ", ".join(str(p) for p in pages[:10])
    return shown + (f" and {len(pages) - 10} more" if len(pages) > 10 else "")
