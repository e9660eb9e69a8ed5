"""`cove run`: the terminal chat, streamed, with slash commands; one-shot for scripts."""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote as quote_path

import click
from rich.markup import escape

from ..chat.retrieval import Citation
from ..chat.service import TurnRequest
from ..engine.events import ChatChunk
from ..errors import CoveError, ModelNotFound
from ..history import History, chosen, db_path
from ..history import citations as kept_citations
from ..knowledge.errors import CollectionNotFound
from ..library.kb_remote import KB_ERRORS
from ..library.local import Cove
from ..library.remote import raise_for
from ..recipe import Recipe, check_parameter
from ..store import catalog
from ..store.names import parse_name
from ..tools.events import ToolEvent
from .main import Backend, Context, cli, err, pass_ctx, pull_progress

#: How much of each source `cove run --kb` quotes after the answer.
QUOTE_CHARS = 160
SET_USAGE = "Usage: /set system TEXT, or /set parameter NAME VALUE (e.g. /set parameter temperature 0.2)"
HELP = """Commands:
  /set system TEXT           set the system prompt
  /set parameter NAME VALUE  set a parameter (temperature, top_p, num_ctx, stop, ...)
  /show                      show the model, system prompt and parameters
  /persona NAME              use a saved persona's system prompt (cove persona add ...)
  /kb NAME [NAME ...]        answer from these document collections, citing them (cove kb ...)
  /kb NAME --strict          answer from the documents only
  /kb off                    stop answering from documents
  /clear                     start a new conversation (this one stays in cove history)
  /save NAME                 save this chat (system, parameters, messages) as a new model
  /bye                       leave (Ctrl-D works too)
  /?                         this help
Use \"\"\" to begin and end a multi-line message. Ctrl-C stops an answer."""


@dataclass
class Session:
    """One terminal conversation: the model, the overrides typed so far, and its stored id.

    The conversation service (in-process, or in a running server) keeps the conversation and
    its settings; a session sends each turn with whatever changed since the last one.
    """

    model: str
    history: History
    system: str | None = None
    persona: str | None = None
    options: dict[str, Any] = field(default_factory=dict)
    messages: list[dict[str, str]] = field(default_factory=list)
    conversation_id: str | None = None
    #: Whether the stored conversation already has `system` (so it need not be sent again).
    system_sent: bool = False
    #: Tools the person answered "always" for: they run without asking for the rest of this session.
    always: set[str] = field(default_factory=set)
    #: The document collections each answer searches and cites (`--kb`, `/kb`).
    collections: list[str] = field(default_factory=list)
    #: Answer only from the collections (`--strict`).
    strict: bool = False

    def request(self, text: str) -> TurnRequest:
        messages: list[dict[str, Any]] = []
        if self.system is not None and not self.system_sent:
            messages.append({"role": "system", "content": self.system})
        messages.append({"role": "user", "content": text})
        return TurnRequest(
            model=self.model,
            messages=messages,
            options=dict(self.options),
            conversation=self.conversation_id or "new",
            persona=self.persona if self.conversation_id is None else None,
            source="cli",
            asks_consent=True,  # the terminal asks before each tool call (see `tool_step`)
            collections=list(self.collections),
            strict=self.strict and bool(self.collections),
        )


def answer(cove: Backend, session: Session, text: str, verbose: bool) -> bool:
    """Stream one answer to stdout; Ctrl-C stops it and keeps what arrived (in history too).

    Returns whether the person stopped it.
    """
    stream = cove.chat_turn(session.request(text))
    session.conversation_id = stream.conversation_id
    session.system_sent = True
    session.messages.append({"role": "user", "content": text})
    if stream.notice:
        err.print(f"[yellow]note: {stream.notice}[/yellow]")
    parts: list[str] = []
    last: ChatChunk | None = None
    stopped = False
    try:
        for chunk in stream:
            if isinstance(chunk, ToolEvent):
                tool_step(cove, session, chunk)
                continue
            if chunk.content:
                parts.append(chunk.content)
                sys.stdout.write(chunk.content)
                sys.stdout.flush()
            if chunk.done:
                last = chunk
    except KeyboardInterrupt:
        stopped = True
        err.print("\n[dim](stopped)[/dim]")
    finally:
        stream.close()
    sys.stdout.write("\n")
    session.messages.append({"role": "assistant", "content": "".join(parts)})
    if stream.citations:
        print_sources(stream.citations, "".join(parts))
    if verbose and last is not None:
        report_speed(last)
    return stopped


def print_sources(citations: list[Citation], answer: str) -> None:
    """After the answer: each source as [n] file, page, and a short quote; cited ones first."""
    used = {c.n for c in citations if f"[{c.n}]" in answer}
    ordered = sorted(citations, key=lambda c: (c.n not in used, c.n))
    lines = ["", "Sources:"]
    for citation in ordered:
        mark = "" if citation.n in used or not used else " (not cited)"
        lines.append(f"  [{citation.n}] {citation.where()}{mark}")
        lines.append(f"      “{quote(citation.text)}”")
    sys.stdout.write("\n".join(lines) + "\n")
    sys.stdout.flush()


def quote(text: str, limit: int = QUOTE_CHARS) -> str:
    """A passage on one line, cut at a word near `limit` characters (no control characters)."""
    flat = " ".join("".join(c if c.isprintable() else " " for c in text).split())
    if len(flat) <= limit:
        return flat
    cut = flat[:limit].rsplit(" ", 1)[0]
    return (cut or flat[:limit]) + "…"


def tool_step(cove: Backend, session: Session, event: ToolEvent) -> None:
    """Show a tool step; a consent is asked on the terminal: yes, no, or always (this session)."""
    if event.kind != "consent":
        shown = {"ran": "ran", "error": "failed", "refused": "not run", "limit": "stopped"}[event.kind]
        detail = f": {event.message[:200]}" if event.kind in ("error", "limit") else ""
        # Tool and model text is shown as it is: no markup, no :emoji: codes from it.
        err.print(f"[dim]({escape(event.name or 'tools')} {shown}{escape(detail)})[/dim]", emoji=False)
        return
    assert event.consent_id is not None
    if event.name in session.always:
        return send_consent(cove, event.consent_id, "yes")
    arguments = json.dumps(event.arguments, ensure_ascii=False)
    sys.stdout.write("\n")
    name, shown_arguments = escape(event.name), escape(arguments)
    err.print(f"The model wants to run the tool [bold]{name}[/bold] with {shown_arguments}", emoji=False)
    send_consent(cove, event.consent_id, ask_consent(event.name, session))


def ask_consent(name: str, session: Session) -> str:
    """yes / no / always from the terminal; anything else (or end of input) is a no."""
    try:
        reply = input("Run it? [y]es, [n]o, [a]lways for this tool: ").strip().lower()
    except EOFError:
        return "no"
    if reply in ("a", "always"):
        session.always.add(name)
        return "always"
    return "yes" if reply in ("y", "yes") else "no"


def send_consent(cove: Backend, consent_id: str, answer: str) -> None:
    """Answer the waiting call: in this process, or on the server that runs the turn."""
    if isinstance(cove, Cove):
        cove.conversations.consents.answer(consent_id, answer)
        return
    http = getattr(cove, "http", None)  # RemoteCove's client of the running server
    if http is not None:
        http.post("/api/cove/tools/consent", json={"consent_id": consent_id, "answer": answer})


def report_speed(chunk: ChatChunk) -> None:
    ttft = chunk.time_to_first_token_s
    speed = chunk.tokens_per_s
    err.print(
        f"[dim]time to first token: {ttft * 1000:.0f} ms · "
        f"{speed or 0:.1f} tokens/s · {chunk.completion_tokens} tokens[/dim]"
        if ttft is not None
        else f"[dim]{speed or 0:.1f} tokens/s · {chunk.completion_tokens} tokens[/dim]"
    )


def read_message() -> str | None:
    """One user message; None on Ctrl-D. Triple quotes open and close a multi-line message."""
    try:
        line = input(">>> ")
    except EOFError:
        return None
    if not line.lstrip().startswith('"""'):
        return line
    lines = [line.lstrip()[3:]]
    while not lines[-1].rstrip().endswith('"""') or (len(lines) == 1 and lines[0] == ""):
        try:
            lines.append(input("... "))
        except EOFError:
            return None
    lines[-1] = lines[-1].rstrip()[:-3]
    return "\n".join(lines).strip("\n")


def command(cove: Backend, session: Session, line: str) -> bool:
    """Run a slash command; returns False when the user wants to leave."""
    words = line.split(maxsplit=3)
    name = words[0].lower()
    if name in ("/bye", "/exit"):
        return False
    if name in ("/?", "/help"):
        click.echo(HELP)
    elif name == "/clear":
        session.messages.clear()
        session.conversation_id = None  # the old one stays in `cove history`
        click.echo("Cleared the conversation; the next message starts a new one.")
    elif name == "/persona" and len(words) == 2:
        use_persona(session, words[1])
    elif name == "/kb":
        use_collections(cove, session, line.split()[1:])
    elif name == "/show":
        show_session(cove, session)
    elif name == "/set" and len(words) >= 3:
        set_value(session, words, line)
    elif name == "/set":
        click.echo(SET_USAGE)
    elif name == "/save" and len(words) == 2:
        save(cove, session, words[1])
    else:
        click.echo(f"Unknown command {line!r}; /? lists them.")
    return True


def set_value(session: Session, words: list[str], line: str) -> None:
    if words[1] == "system":
        # Keep the user's spacing (and any newlines from a """ block) exactly as typed.
        session.system = line.split(None, 2)[2]
        session.system_sent = False
        click.echo("Set the system prompt.")
    elif words[1] == "parameter" and len(words) == 4:
        value = check_parameter(words[2], words[3])
        if words[2] == "stop":
            value = [*session.options.get("stop", []), *value]
        session.options[words[2]] = value
        click.echo(f"Set {words[2]} to {value!r}.")
    else:
        click.echo(SET_USAGE)


def use_collections(cove: Backend, session: Session, names: list[str]) -> None:
    """`/kb NAME ...` answers from those collections from the next message on; `/kb off` stops."""
    if not names:
        shown = ", ".join(session.collections) or "none (/kb NAME to choose)"
        click.echo(f"Answering from: {shown}{' (strict)' if session.strict and session.collections else ''}")
        return
    if [n.lower() for n in names] == ["off"]:
        session.collections = []
        click.echo("No longer answering from documents.")
        return
    chosen = list(dict.fromkeys(n for n in names if n != "--strict"))
    if not chosen:
        click.echo("Name a collection: /kb NAME [--strict] (see `cove kb ls`).")
        return
    for name in chosen:
        check_collection(cove, name)  # a name that is not there is said now, not at each message
    session.collections, session.strict = chosen, "--strict" in names
    only = " only, saying when they do not say" if session.strict else ""
    click.echo(f"Answering from {', '.join(session.collections)}{only}, with sources after each answer.")


def check_collection(cove: Backend, name: str) -> None:
    """CollectionNotFound (or the server's 404, as a one-line error) for a name not there."""
    if isinstance(cove, Cove):
        info = getattr(cove.conversations.knowledge, "info", None)  # what the turns will search
        if callable(info):
            info(name)
        return
    http = getattr(cove, "http", None)  # RemoteCove's client of the running server
    if http is not None:
        raise_for(http.get(f"/api/cove/kb/{quote_path(name, safe='')}"), KB_ERRORS)


def use_persona(session: Session, name: str) -> None:
    persona = session.history.persona(name)
    session.system, session.persona = persona.system, persona.name
    session.system_sent = False
    click.echo(f"Using persona '{persona.name}'.")


def show_session(cove: Backend, session: Session) -> None:
    manifest = cove.model(session.model)
    recipe = manifest.recipe_obj()
    click.echo(
        f"model: {manifest.name} ({manifest.info.get('architecture')}, {manifest.info.get('quantization')})"
    )
    click.echo(f"system: {session.system or recipe.system or '(none)'}")
    click.echo(f"parameters: { ({**recipe.parameters, **session.options}) }")
    click.echo(f"messages so far: {len(session.messages)}")
    if session.collections:
        strict = " (strict)" if session.strict else ""
        click.echo(f"documents: {', '.join(session.collections)}{strict}")


def save(cove: Backend, session: Session, name: str) -> None:
    recipe = Recipe(
        base=session.model,
        system=session.system,
        parameters=dict(session.options),
        messages=list(session.messages),
    )
    saved = cove.create(name, recipe.to_text())
    click.echo(f"Saved as '{saved.name}'.")


def repl(cove: Backend, session: Session, verbose: bool) -> None:
    click.echo("Type a message, /? for help, Ctrl-D or /bye to leave.", err=True)
    while True:
        try:
            text = read_message()
        except KeyboardInterrupt:
            click.echo("\nUse Ctrl-D or /bye to leave.", err=True)
            continue
        if text is None:
            click.echo("", err=True)
            return
        if not text.strip():
            continue
        if text.startswith("/"):
            try:
                if not command(cove, session, text.strip()):
                    return
            except CoveError as exc:
                click.echo(f"Error: {exc}", err=True)
            continue
        try:
            answer(cove, session, text, verbose)
        except CoveError as exc:  # the chat goes on; what was typed is in the history
            click.echo(f"Error: {exc}", err=True)


@cli.command()
@click.argument("model", required=False)
@click.argument("prompt", nargs=-1)
@click.option("--verbose", is_flag=True, help="Print time to first token and tokens/s.")
@click.option("--system", help="A system prompt for this chat.")
@click.option("--persona", help="Use a saved persona's system prompt.")
@click.option("--resume", "resume", metavar="ID", help="Continue a stored conversation.")
@click.option(
    "--kb", "collections", multiple=True, metavar="NAME", help="Answer from a document collection, citing it."
)
@click.option("--strict", is_flag=True, help="With --kb: answer only from the documents.")
@pass_ctx
def run(
    ctx: Context,
    model: str | None,
    prompt: tuple[str, ...],
    verbose: bool,
    system: str | None,
    persona: str | None,
    resume: str | None,
    collections: tuple[str, ...],
    strict: bool,
) -> None:
    """Chat with MODEL; with PROMPT (or piped input) answer once and exit."""
    if strict and not collections and not resume:
        raise CoveError("--strict answers only from documents: name a collection with --kb NAME")
    if resume and model:
        # A resumed chat keeps its own model, so `run --resume ID hello` means the prompt "hello".
        prompt, model = (model, *prompt), None
    backend = ctx.backend
    if not model and not resume:
        model = first_run_model(backend)
    # Read here for personas and --resume; the backend (maybe a server) keeps the conversation.
    history = History(db_path(backend.settings.home))
    ctx.on_close(history.close)
    session = resumed(history, resume) if resume else new_session(history, model, system, persona)
    session.model = stored_model(backend, session.model)
    if collections or not resume:
        session.collections, session.strict = list(dict.fromkeys(collections)), strict
    elif strict:
        if not session.collections:
            raise CoveError("--strict answers only from documents: name a collection with --kb NAME")
        session.strict = True
    if resume and not collections and session.collections:
        say_kept_collections(backend, session)
    text = " ".join(prompt)
    if not sys.stdin.isatty():
        piped = sys.stdin.read()
        text = f"{text}\n{piped}".strip() if text else piped.strip()
        if not text:
            raise CoveError("nothing to answer: the prompt and standard input were empty")
    if text:
        if answer(backend, session, text, verbose):
            raise KeyboardInterrupt  # a one-shot answer stopped with Ctrl-C exits 130, as `pull` does
        return
    repl(backend, session, verbose)


def say_kept_collections(backend: Backend, session: Session) -> None:
    """One line on what a resumed conversation answers from; a collection dropped since is left
    out, and said, rather than failing every turn."""
    gone = []
    for name in session.collections:
        try:
            check_collection(backend, name)
        except CollectionNotFound:
            gone.append(name)
    session.collections = [n for n in session.collections if n not in gone]
    session.strict = session.strict and bool(session.collections)
    if gone:
        err.print(f"[yellow]note: {escape(', '.join(gone))} is no longer a collection[/yellow]", emoji=False)
    if session.collections:
        only = " only" if session.strict else ""
        names = escape(", ".join(session.collections))
        said = f"answering from {names}{only}, as this conversation chose (/kb off stops)"
        err.print(f"[dim]{said}[/dim]", emoji=False)


def stored_model(backend: Backend, name: str) -> str:
    """The model's full name, failing fast; a catalog model not yet in the store is pulled, saying so."""
    try:
        return backend.model(name).name
    except ModelNotFound:
        entry = catalog.find(str(parse_name(name)))
        if entry is None:
            raise
    err.print(f"{entry.name} is not in the store yet; pulling it ({entry.size_mb:.0f} MB) first")
    with pull_progress() as report:
        return backend.pull(entry.name, report).name


def first_run_model(backend: Backend) -> str:
    """No model named: with models stored, ask which; with none (a first run), pick for this
    machine and pull it, rather than download gigabytes the user already has an answer to."""
    from .pick import first_model

    stored = [m.name for m in backend.models() if catalog.model_kind(m) not in ("embedding", "reranker")]
    if stored:
        raise CoveError(f"name a model to chat with: {', '.join(stored[:5])} (see `cove list`)")
    return first_model(backend, lambda line: click.echo(line, err=True))


def new_session(history: History, model: str | None, system: str | None, persona: str | None) -> Session:
    if not model:
        raise CoveError("name a model to chat with (see `cove list`), or --resume a conversation")
    session = Session(model=model, history=history, system=system)
    if persona:
        session.system, session.persona = history.persona(persona).system, persona
    return session


def resumed(history: History, conversation_id: str) -> Session:
    """Pick a stored conversation up again with its model and settings."""
    chat = history.get(conversation_id)
    session = Session(
        model=chat.model,
        history=history,
        system=chat.system,
        persona=chat.persona,
        options=dict(chat.parameters),
        conversation_id=chat.id,
    )
    documents = chosen.of(history, chat.id)  # the collections its turns answer from
    session.collections, session.strict = documents.collections, documents.strict
    session.messages = [{"role": m.role, "content": m.content} for m in chat.messages if m.role != "system"]
    for message in session.messages[-4:]:
        err.print(f"[dim]{message['role']}: {message['content'][:200]}[/dim]")
    answers = [m for m in chat.messages if m.role == "assistant"]
    cited = kept_citations.of(history, chat.id).get(answers[-1].id, []) if answers else []
    if cited:  # the sources of the last answer, as they were shown after it
        places = "; ".join(f"[{c.n}] {c.where()}" for c in map(Citation.from_dict, cited))
        err.print(f"[dim]sources: {escape(places)}[/dim]", emoji=False)
    return session
