"""`cove history`, `cove persona` and `cove stats`: the person's own conversations and usage."""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import click
from rich.table import Table

from ..history import History, db_path, export_json, export_markdown, import_file, write_export
from ..history.prices import cost, load_prices
from .confirm import confirm, yes_option
from .format import human_age
from .main import Context, cli, out, pass_ctx, print_json


def open_history(ctx: Context) -> History:
    history = History(db_path(ctx.cove.settings.home))
    ctx.on_close(history.close)
    return history


@cli.group()
def history() -> None:
    """Conversations kept on this machine: list, show, search, export, import, delete."""


@history.command("list")
@click.option("--limit", default=30, show_default=True)
@click.option("--json", "as_json", is_flag=True)
@pass_ctx
def history_list(ctx: Context, limit: int, as_json: bool) -> None:
    """Conversations, newest first."""
    rows = open_history(ctx).list(limit=limit)
    if as_json:
        return print_json(
            [
                {
                    "id": r.id,
                    "title": r.title,
                    "model": r.model,
                    "messages": r.message_count,
                    "updated_at": r.updated_at.isoformat(),
                }
                for r in rows
            ]
        )
    table = Table("ID", "TITLE", "MODEL", "MESSAGES", "UPDATED", box=None)
    for r in rows:
        title = r.title or (r.preview or "")[:50]
        table.add_row(r.id[:8], title, r.model, str(r.message_count), human_age(r.updated_at.isoformat()))
    out.print(table)


@history.command("show")
@click.argument("conversation_id")
@pass_ctx
def history_show(ctx: Context, conversation_id: str) -> None:
    """Every message of one conversation, summarised ones included."""
    chat = open_history(ctx).get(conversation_id)
    click.echo(f"{chat.id}  {chat.title or ''}  ({chat.model}, {chat.source})")
    if chat.system:
        click.echo(f"system: {chat.system}")
    for m in chat.messages:
        mark = "" if m.in_context else " (summarised)"
        click.echo(f"\n[{m.role}{mark}]\n{m.content}")


@history.command("search")
@click.argument("text", nargs=-1, required=True)
@click.option("--limit", default=20, show_default=True)
@pass_ctx
def history_search(ctx: Context, text: tuple[str, ...], limit: int) -> None:
    """Full-text search over every message."""
    hits = open_history(ctx).search(" ".join(text), limit=limit)
    if not hits:
        click.echo("no matches")
    for hit in hits:
        click.echo(f"{hit.conversation_id[:8]}  {hit.role:<9} {hit.snippet}")


@history.command("rm")
@click.argument("conversation_id", required=False)
@click.option("--all", "everything", is_flag=True, help="Delete every conversation for good (asks).")
@yes_option
@pass_ctx
def history_rm(ctx: Context, conversation_id: str | None, everything: bool, yes: bool) -> None:
    """Delete a conversation (or --all): really gone, and the space reclaimed."""
    store = open_history(ctx)
    if everything:
        count = store.stats().conversations
        if count:
            confirm(
                f"Delete all {count} conversations for good?",
                f"--all would delete {count} conversations for good",
                yes,
            )
        click.echo(f"deleted {store.remove_all()} conversations")
    elif conversation_id:
        store.remove(conversation_id)
        click.echo(f"deleted {conversation_id}")
    else:
        raise click.UsageError("name a conversation id, or pass --all")


@history.command("rename")
@click.argument("conversation_id")
@click.argument("title")
@pass_ctx
def history_rename(ctx: Context, conversation_id: str, title: str) -> None:
    open_history(ctx).rename(conversation_id, title)
    click.echo(f"renamed {conversation_id}")


@history.command("export")
@click.argument("conversation_id", required=False)
@click.option("--format", "kind", type=click.Choice(["json", "md"]), default="json", show_default=True)
@click.option("-o", "--output", type=click.Path(path_type=Path), help="Write to a file (default: stdout).")
@pass_ctx
def history_export(ctx: Context, conversation_id: str | None, kind: str, output: Path | None) -> None:
    """Export one conversation or all of them as JSON (versioned schema) or Markdown."""
    store = open_history(ctx)
    ids = [conversation_id] if conversation_id else None
    if output:
        write_export(store, output, kind="json" if kind == "json" else "markdown", ids=ids)
        click.echo(f"wrote {output}", err=True)
    elif kind == "json":
        sys.stdout.write(json.dumps(export_json(store, ids), ensure_ascii=False, indent=2) + "\n")
    else:
        sys.stdout.write(export_markdown(store, ids))


@history.command("import")
@click.argument("path", type=click.Path(path_type=Path))
@pass_ctx
def history_import(ctx: Context, path: Path) -> None:
    """Import a cove JSON export or ChatGPT's conversations.json (importing twice adds nothing)."""
    result = import_file(open_history(ctx), path)
    click.echo(f"imported {result.imported} conversations, skipped {result.skipped} already here")


@cli.group()
def persona() -> None:
    """System-prompt presets of your own, usable from every interface."""


@persona.command("add")
@click.argument("name")
@click.argument("system", required=False)
@click.option("-f", "--file", "file", type=click.Path(path_type=Path), help="Read the prompt from a file.")
@yes_option
@pass_ctx
def persona_add(ctx: Context, name: str, system: str | None, file: Path | None, yes: bool) -> None:
    """Save NAME with a system prompt (an argument, a file, or standard input); asks before replacing."""
    store = open_history(ctx)
    if name.strip() in {p.name for p in store.personas()}:
        # Asked before the prompt is read: standard input may be where the prompt comes from.
        confirm(
            f"Persona '{name.strip()}' exists; replace its prompt?", f"persona '{name.strip()}' exists", yes
        )
    text = file.read_text("utf-8") if file else system if system is not None else sys.stdin.read()
    saved = store.add_persona(name, text.strip())
    click.echo(f"saved persona '{saved.name}'")


@persona.command("list")
@pass_ctx
def persona_list(ctx: Context) -> None:
    table = Table("NAME", "SYSTEM PROMPT", box=None)
    for p in open_history(ctx).personas():
        table.add_row(p.name, p.system[:80].replace("\n", " "))
    out.print(table)


@persona.command("rm")
@click.argument("name")
@pass_ctx
def persona_rm(ctx: Context, name: str) -> None:
    open_history(ctx).remove_persona(name)
    click.echo(f"deleted persona '{name}'")


@cli.command()
@click.option("--days", type=int, help="Only the last N days (default: everything).")
@click.option("--json", "as_json", is_flag=True)
@pass_ctx
def stats(ctx: Context, days: int | None, as_json: bool) -> None:
    """What you ran, how fast, and what the same tokens would have cost in the cloud."""
    since = datetime.now(UTC) - timedelta(days=days) if days else None
    usage = open_history(ctx).stats(since=since)
    prices = load_prices(ctx.cove.settings.home)
    costs = cost(usage, prices)
    if as_json:
        return print_json(
            {
                "conversations": usage.conversations,
                "messages": usage.messages,
                "tokens_in": usage.tokens_in,
                "tokens_out": usage.tokens_out,
                "by_model": {k: vars(v) for k, v in usage.by_model.items()},
                "cloud_cost_usd": costs,
                "prices_as_of": prices.as_of,
            }
        )
    period = f"the last {days} days" if days else "all time"
    out.print(
        f"[bold]{period}[/bold]: {usage.conversations} conversations, {usage.messages} messages, "
        f"{usage.tokens_in} tokens in, {usage.tokens_out} tokens out"
    )
    table = Table("MODEL", "ANSWERS", "TOKENS IN", "TOKENS OUT", "TOKENS/S", "FIRST TOKEN", box=None)
    for name, m in usage.by_model.items():
        speed = f"{m.avg_tokens_per_s:.1f}" if m.avg_tokens_per_s else "-"
        ttft = f"{m.avg_ttft_ms:.0f} ms" if m.avg_ttft_ms else "-"
        table.add_row(name, str(m.answers), str(m.tokens_in), str(m.tokens_out), speed, ttft)
    out.print(table)
    out.print(f"\nThe same tokens in the cloud (prices as of {prices.as_of}; edit COVE_HOME/prices.json):")
    for name, usd in sorted(costs.items(), key=lambda kv: kv[1]):
        out.print(f"  {name:<20} ${usd:,.4f}")
    out.print("Here: $0, no subscription, no message caps.")
