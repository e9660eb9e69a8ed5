"""Recipes: cove's Modelfile-syntax description of a model (base, prompt, template, parameters)."""

from __future__ import annotations

import copy
import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cove.errors import CoveError, InvalidRecipe, InvalidTemplate
from cove.templates import check_template, is_builtin_template_name

MAX_RECIPE_BYTES = 1_000_000
INSTRUCTIONS = ("FROM", "ADAPTER", "DRAFT", "TEMPLATE", "SYSTEM", "PARAMETER", "MESSAGE", "LICENSE")
ROLES = ("system", "user", "assistant")
_FIELDS = ("base", "system", "template", "parameters", "adapter", "messages", "license", "draft", "replicas")
_INT64 = 2**63


@dataclass(frozen=True)
class ParameterType:
    """How one PARAMETER is typed and bounded; `repeats` ones collect into a list."""

    kind: type
    low: int | float | None = None
    high: int | float | None = None
    repeats: bool = False
    #: For a word-valued parameter: the words it takes.
    choices: tuple[str, ...] = ()
    #: For a text-valued parameter: the pattern its whole value must match, and what it is.
    pattern: str = ""
    pattern_means: str = ""


PARAMETER_TYPES: dict[str, ParameterType] = {
    "temperature": ParameterType(float, 0, 5),
    "top_p": ParameterType(float, 0, 1),
    "top_k": ParameterType(int, 0, 1_000_000),
    "min_p": ParameterType(float, 0, 1),
    "repeat_penalty": ParameterType(float, 0, 10),
    "repeat_last_n": ParameterType(int, -1, 1_000_000),
    "presence_penalty": ParameterType(float, -2, 2),
    "frequency_penalty": ParameterType(float, -2, 2),
    "num_ctx": ParameterType(int, 16, 10_000_000),
    "num_predict": ParameterType(int, -2, 10_000_000),
    "seed": ParameterType(int, -_INT64, _INT64 - 1),
    "stop": ParameterType(str, repeats=True),
    # A load setting: the KV cache's element type (q8_0 halves its memory); see engine/memory.py.
    "kv_cache_type": ParameterType(str, choices=("f16", "q8_0")),
    # A load setting: prompt-lookup speculative decoding, the most tokens drafted a step (0: off).
    "draft_ngram": ParameterType(int, 0, 64),
}

#: Parameters a recipe may set but a request's options may not (they say where a model runs).
RECIPE_ONLY_TYPES: dict[str, ParameterType] = {
    # A remote engine's API key: the name of the environment variable holding it (never the key).
    "api_key_env": ParameterType(
        str, pattern=r"[A-Za-z_][A-Za-z0-9_]{0,127}", pattern_means="an environment variable's name"
    ),
    # A remote engine: seconds to wait for the upstream's next byte before giving up on it.
    "remote_timeout": ParameterType(float, 1, 3600),
}

#: FROM schemes that name an OpenAI-compatible upstream instead of a model file or name.
REMOTE_SCHEMES = ("openai+http", "openai+https")


@dataclass
class Recipe:
    """A parsed recipe; build one with parse_recipe or from_dict, which validate."""

    base: str
    system: str | None = None
    template: str | None = None
    parameters: dict[str, Any] = field(default_factory=dict)
    adapter: str | None = None
    messages: list[dict[str, str]] = field(default_factory=list)
    license: str | None = None
    #: A draft model for speculative decoding (a stored model or file; same vocabulary as base).
    draft: str | None = None
    #: More remote upstreams after `base` (one FROM line each), serving the same model.
    replicas: list[str] = field(default_factory=list)

    @property
    def remote(self) -> list[RemoteRef]:
        """The upstreams this recipe runs on (FROM openai+https://...), [] for a local model."""
        if not is_remote(self.base):
            return []
        return [parse_remote(ref) for ref in [self.base, *self.replicas]]

    def to_dict(self) -> dict[str, Any]:
        return {
            "base": self.base,
            "system": self.system,
            "template": self.template,
            "parameters": copy.deepcopy(self.parameters),
            "adapter": self.adapter,
            "messages": [dict(m) for m in self.messages],
            "license": self.license,
            "draft": self.draft,
            # Only when there are some: a local model's stored recipe (and digest) stays as it was.
            **({"replicas": list(self.replicas)} if self.replicas else {}),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Recipe:
        """Build a recipe from to_dict's shape, validating every field as parse_recipe does."""
        try:
            return cls._from_dict(d)
        except InvalidRecipe as e:
            raise InvalidRecipe(f"recipe: {e}") from None

    @classmethod
    def _from_dict(cls, d: dict[str, Any]) -> Recipe:
        if not isinstance(d, dict):
            raise InvalidRecipe(f"expected a mapping, got {type(d).__name__}")
        unknown = sorted(set(d) - set(_FIELDS))
        if unknown:
            raise InvalidRecipe(f"unknown field {unknown[0]!r} (known: {', '.join(_FIELDS)})")
        template = _optional_text(d.get("template"), "template")
        return cls(
            base=_check_ref(d.get("base"), "base"),
            system=_optional_text(d.get("system"), "system"),
            template=None if template is None else _check_template_value(template),
            parameters=_check_parameters(d.get("parameters") or {}),
            adapter=None if d.get("adapter") is None else _check_ref(d["adapter"], "adapter"),
            messages=_check_messages(d.get("messages") or []),
            license=_optional_text(d.get("license"), "license"),
            draft=None if d.get("draft") is None else _check_ref(d["draft"], "draft"),
            replicas=_check_replicas(d.get("replicas") or [], d.get("base")),
        )

    def to_text(self) -> str:
        """The recipe in recipe syntax; parse_recipe gives back an equal Recipe."""
        lines = [f"FROM {_quote(ref)}" for ref in [self.base, *self.replicas]]
        if self.adapter is not None:
            lines.append(f"ADAPTER {_quote(self.adapter)}")
        if self.draft is not None:
            lines.append(f"DRAFT {_quote(self.draft)}")
        if self.template is not None:
            lines.append(f"TEMPLATE {_quote(self.template)}")
        if self.system is not None:
            lines.append(f"SYSTEM {_quote(self.system)}")
        for name, value in self.parameters.items():
            for one in value if isinstance(value, list) else [value]:
                lines.append(f"PARAMETER {name} {_quote_parameter(one)}")
        for message in self.messages:
            lines.append(f"MESSAGE {message['role']} {_quote(message['content'])}")
        if self.license is not None:
            lines.append(f"LICENSE {_quote(self.license)}")
        return "\n".join(lines) + "\n"

    def merged_over(self, base: Recipe) -> Recipe:
        """This recipe layered on `base`: set fields win, parameters merge key by key."""

        def pick(mine: str | None, theirs: str | None) -> str | None:
            return mine if mine is not None else theirs

        return Recipe(
            base=self.base,
            system=pick(self.system, base.system),
            template=pick(self.template, base.template),
            parameters=copy.deepcopy({**base.parameters, **self.parameters}),
            adapter=pick(self.adapter, base.adapter),
            messages=[dict(m) for m in (self.messages or base.messages)],
            license=pick(self.license, base.license),
            draft=pick(self.draft, base.draft),
            replicas=list(self.replicas),
        )


# --- values: one rule per field, shared by the parser and from_dict


def check_parameter(name: str, value: Any, *, in_recipe: bool = False) -> Any:
    """Validate and coerce one parameter value; `stop` always comes back as a list of strings.
    `in_recipe`: a recipe's own PARAMETER, which may also be one of RECIPE_ONLY_TYPES."""
    key = name.lower() if isinstance(name, str) else name
    known = {**PARAMETER_TYPES, **RECIPE_ONLY_TYPES} if in_recipe else PARAMETER_TYPES
    spec = known.get(key)
    if spec is None:
        raise InvalidRecipe(f"unknown parameter {name!r} (known: {', '.join(sorted(known))})")
    if spec.repeats:
        return _check_stop(value)
    if spec.choices:
        return _check_choice(key, value, spec.choices)
    if spec.pattern:
        if not isinstance(value, str) or not re.fullmatch(spec.pattern, value.strip()):
            raise InvalidRecipe(f"{key} must be {spec.pattern_means}, got {value!r}")
        return value.strip()
    number = _to_int(key, value) if spec.kind is int else _to_float(key, value)
    if spec.low is not None and spec.high is not None and not spec.low <= number <= spec.high:
        raise InvalidRecipe(f"{key} must be between {spec.low} and {spec.high}, got {value}")
    return number


def _check_choice(name: str, value: Any, choices: tuple[str, ...]) -> str:
    word = value.strip().lower() if isinstance(value, str) else value
    if word not in choices:
        raise InvalidRecipe(f"{name} must be one of {', '.join(choices)}, got {value!r}")
    return str(word)


def _to_int(name: str, value: Any) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)  # JSON clients send 4096.0
    if isinstance(value, str) and re.fullmatch(r"\s*[+-]?\d{1,20}\s*", value):
        return int(value)
    raise InvalidRecipe(f"{name} must be a whole number, got {value!r}")


def _to_float(name: str, value: Any) -> float:
    number: float | None = None
    if isinstance(value, int | float) and not isinstance(value, bool):
        try:
            number = float(value)
        except OverflowError:  # an integer beyond any float: not a sampling value anyone means
            raise InvalidRecipe(
                f"{name} must be a finite number, got an integer of {len(str(value))} digits"
            ) from None
    elif isinstance(value, str):
        try:
            number = float(value)
        except ValueError:
            number = None
    if number is None:
        raise InvalidRecipe(f"{name} must be a number, got {value!r}")
    if not math.isfinite(number):
        raise InvalidRecipe(f"{name} must be a finite number, got {value!r}")
    return number


def _check_stop(value: Any) -> list[str]:
    values = [value] if isinstance(value, str) else value
    if not isinstance(values, list | tuple) or not all(isinstance(v, str) for v in values):
        raise InvalidRecipe(f"stop must be a string or a list of strings, got {value!r}")
    if any(v == "" for v in values):
        raise InvalidRecipe("stop strings must not be empty")
    return list(values)


def _check_parameters(parameters: Any) -> dict[str, Any]:
    if not isinstance(parameters, dict):
        raise InvalidRecipe(f"parameters must be a mapping, got {type(parameters).__name__}")
    checked = {str(name).lower(): check_parameter(name, v, in_recipe=True) for name, v in parameters.items()}
    if checked.get("stop") == []:
        del checked["stop"]  # no stop strings is the same as no stop parameter
    return checked


def _check_ref(value: Any, what: str) -> str:
    """A model name, store name or file path: one printable line, no stray spaces."""
    if not isinstance(value, str) or not value:
        raise InvalidRecipe(f"{what} needs a model name or a path to a .gguf file")
    if value != value.strip() or not value.isprintable():
        raise InvalidRecipe(f"{what} must be one line without surrounding spaces, got {value!r}")
    return value


def _optional_text(value: Any, what: str) -> str | None:
    if value is not None and not isinstance(value, str):
        raise InvalidRecipe(f"{what} must be text, got {type(value).__name__}")
    return value


def _check_template_value(value: str) -> str:
    if "{" not in value:
        if is_builtin_template_name(value):
            return value
        raise InvalidRecipe(
            f"TEMPLATE {value[:40]!r} is neither a Jinja chat template nor a built-in "
            "template name such as chatml or llama3"
        )
    try:
        check_template(value)
    except InvalidTemplate as e:
        raise InvalidRecipe(f"TEMPLATE: {e}") from None
    return value


def _check_message(role: Any, content: Any) -> dict[str, str]:
    if not isinstance(role, str) or role.lower() not in ROLES:
        raise InvalidRecipe(f"MESSAGE role must be one of {', '.join(ROLES)}, got {role!r}")
    if not isinstance(content, str):
        raise InvalidRecipe(f"MESSAGE content must be text, got {type(content).__name__}")
    return {"role": role.lower(), "content": content}


def _check_messages(messages: Any) -> list[dict[str, str]]:
    if not isinstance(messages, list):
        raise InvalidRecipe(f"messages must be a list, got {type(messages).__name__}")
    checked = []
    for message in messages:
        if not isinstance(message, dict) or set(message) != {"role", "content"}:
            raise InvalidRecipe(f"each message needs exactly a role and a content, got {message!r}")
        checked.append(_check_message(message["role"], message["content"]))
    return checked


# --- writing values back


def _quote(value: str) -> str:
    """Bare when that reads back the same, else a triple-quoted block, else an escaped string."""
    one_line = "\n" not in value and "\r" not in value
    bare = value == value.strip() and one_line and not value.startswith('"')
    if value and bare and not _COMMENT.search(value):
        return value
    if "\n" in value and '"""' not in value and "\r" not in value:
        return f'"""\n{value}\n"""'
    escaped = value.translate(_ESCAPES)
    return f'"{escaped}"'


# A `#` that starts a word begins a comment outside quotes, as Modelfile writers expect.
_COMMENT = re.compile(r"(?:^|\s)#")
_COMMENT_HINT = " (a # after a space starts a comment; quote the value to keep it)"
_ESCAPES = str.maketrans({"\\": "\\\\", '"': '\\"', "\n": "\\n", "\r": "\\r", "\t": "\\t"})
_UNESCAPES = {"\\": "\\", '"': '"', "n": "\n", "r": "\r", "t": "\t"}


def _quote_parameter(value: Any) -> str:
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, str):
        return _quote(value)
    return str(value)


# --- parsing


Lookup = Callable[[str], object]


def parse_recipe(
    text: str, source: str = "recipe", folder: Path | None = None, lookup: Lookup | None = None
) -> Recipe:
    """Parse recipe text; every error is InvalidRecipe starting with '{source} line {n}: '.

    With `folder` (where the recipe file lives), FROM and ADAPTER values that look like file
    paths must name files there, so a typo says "no such file" with its line; the others are
    passed to `lookup` (finding a stored model), whose CoveError gets the line too.
    """
    if len(text) > MAX_RECIPE_BYTES or len(text.encode("utf-8", "replace")) > MAX_RECIPE_BYTES:
        raise InvalidRecipe(f"{source} line 1: recipe is larger than 1 MB")
    text = text.removeprefix("\ufeff").replace("\r\n", "\n").replace("\r", "\n")
    lines = text.split("\n")
    parser = _Parser(source)
    i = 0
    while i < len(lines):
        stripped = lines[i].strip()
        if not stripped or stripped.startswith("#"):
            i += 1
        else:
            i = parser.instruction(lines, i)
    last_line = len(lines) - (1 if lines[-1] == "" else 0)
    recipe = parser.finish(max(last_line, 1))
    if folder is not None:
        parser.check_references(recipe, folder, lookup)
    return recipe


_MODEL_FILE_SUFFIXES = (".gguf", ".safetensors")


def looks_like_path(value: str, *, slash_is_path: bool) -> bool:
    """Whether a FROM/ADAPTER value names a file rather than a stored model.

    Model names may hold '/' (`hf.co/owner/repo`, `owner/model`), so for FROM only a
    leading `/`, `.`, `~`, a backslash or a model-file suffix mark a path; an ADAPTER is
    almost always a file, so any '/' does too (except cove's own `hf.co/` references).
    """
    if value.lower().endswith(_MODEL_FILE_SUFFIXES) or "\\" in value:
        return True
    if value.startswith(("/", ".", "~")):
        return True
    return slash_is_path and "/" in value and not value.lower().startswith("hf.co/")


class _Parser:
    """Collects instructions line by line; knows where each one was first seen."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.seen: dict[str, int] = {}
        self.fields: dict[str, Any] = {"parameters": {}, "messages": []}
        self.handlers: dict[str, Callable[[str, str, int], None]] = {
            "FROM": self._from,
            "ADAPTER": self._adapter,
            "DRAFT": self._draft,
            "TEMPLATE": self._template,
            "SYSTEM": self._system,
            "PARAMETER": self._parameter,
            "MESSAGE": self._message,
            "LICENSE": self._license,
        }

    def error(self, line: int, reason: str) -> InvalidRecipe:
        return InvalidRecipe(f"{self.source} line {line}: {reason}")

    def instruction(self, lines: list[str], i: int) -> int:
        """Handle the instruction starting on lines[i]; return the index of the next line."""
        line = i + 1
        keyword, rest = _split_word(lines[i].lstrip())
        name = keyword.upper()
        if name not in self.handlers:
            expected = ", ".join(INSTRUCTIONS)
            raise self.error(line, f"unknown instruction {keyword!r} (expected one of {expected})")
        argument = ""
        if name in ("PARAMETER", "MESSAGE"):
            argument, rest = _split_word(rest)
            if not argument or argument.startswith("#"):
                what = "a name" if name == "PARAMETER" else "a role"
                raise self.error(line, f"{name} needs {what} and a value")
        value, next_i = _read_value(rest, lines, i, self.error)
        if value is None:
            hint = _COMMENT_HINT if rest.strip() else ""
            raise self.error(line, f"{name} {argument + ' ' if argument else ''}needs a value{hint}")
        try:
            self.handlers[name](value, argument, line)
        except InvalidRecipe as e:
            raise self.error(line, str(e)) from None
        return next_i

    def once(self, key: str, line: int) -> None:
        if key in self.seen:
            raise InvalidRecipe(f"duplicate {key} (first on line {self.seen[key]})")
        self.seen[key] = line

    def _from(self, value: str, _: str, line: int) -> None:
        ref = _check_ref(value, "FROM")
        if is_remote(ref):
            parse_remote(ref)  # a malformed upstream URL is an error on its own line
        if "FROM" not in self.seen:
            self.seen["FROM"] = line
            self.fields["base"] = ref
            return
        # Several FROM lines are the replicas of one remote model; a local model has one file.
        if not (is_remote(ref) and is_remote(self.fields["base"])):
            raise InvalidRecipe(
                f"duplicate FROM (first on line {self.seen['FROM']}); only remote upstreams "
                "(FROM openai+https://HOST/v1#MODEL) may be listed more than once, as replicas"
            )
        if ref == self.fields["base"] or ref in self.fields.setdefault("replicas", []):
            raise InvalidRecipe(f"FROM {ref!r} is listed twice")
        self.fields["replicas"].append(ref)

    def _adapter(self, value: str, _: str, line: int) -> None:
        self.once("ADAPTER", line)
        self.fields["adapter"] = _check_ref(value, "ADAPTER")

    def _draft(self, value: str, _: str, line: int) -> None:
        self.once("DRAFT", line)
        self.fields["draft"] = _check_ref(value, "DRAFT")

    def _template(self, value: str, _: str, line: int) -> None:
        self.once("TEMPLATE", line)
        self.fields["template"] = _check_template_value(value)

    def _system(self, value: str, _: str, line: int) -> None:
        self.once("SYSTEM", line)
        self.fields["system"] = value

    def _license(self, value: str, _: str, line: int) -> None:
        # `ollama show --modelfile` writes one LICENSE per licence; keep them all.
        previous = self.fields.get("license")
        self.fields["license"] = value if previous is None else f"{previous}\n\n{value}"

    def _message(self, value: str, role: str, line: int) -> None:
        self.fields["messages"].append(_check_message(role, value))

    def _parameter(self, value: str, name: str, line: int) -> None:
        key = name.lower()
        checked = check_parameter(key, value, in_recipe=True)
        parameters = self.fields["parameters"]
        if key in PARAMETER_TYPES and PARAMETER_TYPES[key].repeats:
            parameters.setdefault(key, []).extend(checked)
        else:
            self.once(f"PARAMETER {key}", line)
            parameters[key] = checked

    def check_references(self, recipe: Recipe, folder: Path, lookup: Lookup | None) -> None:
        """Name the line of a FROM or ADAPTER that is neither a file there nor a known model."""
        for key, value, slash_is_path in (
            ("FROM", recipe.base, False),
            ("ADAPTER", recipe.adapter, True),
            ("DRAFT", recipe.draft, False),
        ):
            if value is None or (key == "FROM" and is_remote(value)) or (folder / value).is_file():
                continue
            if key == "FROM" and (folder / value).is_dir():
                continue  # a model's folder in Hugging Face's layout, converted (Cove._converted_base)
            if key == "DRAFT" and value.startswith("sha256:"):
                continue  # a draft file `cove create` stored as a blob: checked against the store there
            if looks_like_path(value, slash_is_path=slash_is_path):
                raise self.error(
                    self.seen[key],
                    f"{key} {value!r}: no such file (paths are relative to the recipe's folder)",
                )
            if lookup is not None:
                try:
                    lookup(value)
                except CoveError as e:
                    raise self.error(self.seen[key], f"{key}: {e}") from None

    def finish(self, last_line: int) -> Recipe:
        if "base" not in self.fields:
            raise self.error(
                last_line, "no FROM instruction; a recipe starts from a model (FROM gemma3:270m)"
            )
        return Recipe(**self.fields)


def _split_word(text: str) -> tuple[str, str]:
    """First whitespace-separated word and the rest with its leading whitespace removed."""
    match = re.match(r"(\S*)\s*(.*)", text, re.DOTALL)
    assert match is not None  # the pattern matches every string
    return match.group(1), match.group(2)


ErrorFactory = Callable[[int, str], InvalidRecipe]


def _read_value(rest: str, lines: list[str], i: int, error: ErrorFactory) -> tuple[str | None, int]:
    """The value starting at `rest` on lines[i] and the next line index; None when absent."""
    if rest.startswith('"""'):
        return _read_block(rest[3:], lines, i, error)
    if rest.startswith('"'):
        return _read_quoted(rest, i + 1, error), i + 1
    comment = _COMMENT.search(rest)
    bare = rest[: comment.start()] if comment else rest
    return bare.strip() or None, i + 1


def _only_comment(text: str) -> bool:
    """Whether what follows a closing quote is nothing or a comment."""
    stripped = text.strip()
    return not stripped or (stripped.startswith("#") and text[:1].isspace())


def _read_block(first: str, lines: list[str], start: int, error: ErrorFactory) -> tuple[str, int]:
    """A triple-quoted value; the line break after the opening and before the closing go."""
    pieces: list[str] = []
    line, j = first, start
    while (end := line.find('"""')) < 0:
        pieces.append(line)
        j += 1
        if j == len(lines):
            raise error(start + 1, f'unterminated """ (opened on line {start + 1})')
        line = lines[j]
    pieces.append(line[:end])
    if not _only_comment(line[end + 3 :]):
        raise error(j + 1, 'unexpected text after closing """')
    if j > start:
        # `SYSTEM """` alone on its line and `"""` alone on the last line add no text.
        if not pieces[-1].strip():
            pieces.pop()
        if not pieces[0].strip():
            pieces.pop(0)
    return "\n".join(pieces), j + 1


def _read_quoted(rest: str, line: int, error: ErrorFactory) -> str:
    """A one-line "double-quoted" value; \\\\, \\", \\n, \\r, \\t are escapes."""
    out: list[str] = []
    k = 1
    while k < len(rest):
        char = rest[k]
        if char == '"':
            if not _only_comment(rest[k + 1 :]):
                raise error(line, "unexpected text after closing quote")
            return "".join(out)
        if char == "\\" and k + 1 < len(rest):
            k += 1
            out.append(_UNESCAPES.get(rest[k], "\\" + rest[k]))
        else:
            out.append(char)
        k += 1
    raise error(line, 'unterminated " string')


# --- remote upstreams


@dataclass(frozen=True)
class RemoteRef:
    """One `FROM openai+https://host:port/v1#Model`: the API's base URL and the upstream's model."""

    scheme: str  # "http" or "https"
    host: str
    port: int
    base_url: str  # "https://host:port/v1", no trailing slash
    model: str

    @property
    def where(self) -> str:
        """How errors and `cove ps` name it: host:port and the model."""
        return f"{self.host}:{self.port} ({self.model})"


def is_remote(value: str) -> bool:
    """Whether a FROM value names an OpenAI-compatible upstream (openai+http / openai+https)."""
    return value.lower().startswith(tuple(s + ":" for s in REMOTE_SCHEMES))


def parse_remote(value: str) -> RemoteRef:
    """`openai+https://host[:port]/path#Model` checked piece by piece, each with its own message."""
    from urllib.parse import urlsplit

    hint = "write it as openai+https://HOST:PORT/v1#MODEL"
    scheme, _, rest = value.partition(":")
    if scheme.lower() not in REMOTE_SCHEMES or not rest.startswith("//"):
        raise InvalidRecipe(f"FROM {value!r} is not a remote engine URL; {hint}")
    url, _, model = rest.partition("#")
    if not model.strip():
        raise InvalidRecipe(f"FROM {value!r} names no model after '#'; {hint}")
    if model != model.strip() or any(c.isspace() for c in model):
        raise InvalidRecipe(f"FROM {value!r}: the model name after '#' has spaces in it")
    try:
        parts = urlsplit("x:" + url)
        port = parts.port
    except ValueError as exc:
        raise InvalidRecipe(f"FROM {value!r} has a malformed address ({exc}); {hint}") from None
    if not parts.hostname:
        raise InvalidRecipe(f"FROM {value!r} names no host; {hint}")
    if parts.username is not None or parts.password is not None:
        raise InvalidRecipe(
            f"FROM {value!r} has a user or key in its address; name the environment variable that "
            "holds the key with PARAMETER api_key_env NAME instead"
        )
    if parts.query:
        raise InvalidRecipe(f"FROM {value!r} has a query ('?…'); {hint}")
    tls = scheme.lower() == "openai+https"
    host = parts.hostname
    port = port or (443 if tls else 80)
    shown = f"[{host}]" if ":" in host else host
    path = parts.path.rstrip("/")
    web = "https" if tls else "http"
    return RemoteRef(web, host, port, f"{web}://{shown}:{port}{path}", model)


def _check_replicas(replicas: Any, base: Any) -> list[str]:
    if not isinstance(replicas, list):
        raise InvalidRecipe(f"replicas must be a list, got {type(replicas).__name__}")
    checked = [_check_ref(r, "replicas") for r in replicas]
    if checked and not (isinstance(base, str) and is_remote(base)):
        raise InvalidRecipe("replicas are for a remote model: its base must be an openai+https:// URL")
    for ref in checked:
        if not is_remote(ref):
            raise InvalidRecipe(f"replica {ref!r} is not a remote engine URL (openai+https://HOST/v1#MODEL)")
        parse_remote(ref)
    return checked
