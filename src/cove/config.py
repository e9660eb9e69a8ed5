"""Every setting cove reads, declared once: its environment variable, type, default and meaning.

`Settings` is a frozen (pydantic) dataclass: building one, `Settings.from_env()` or
`dataclasses.replace(settings, ...)` all validate, and a bad value is one `InvalidSetting` line
that names the variable, never a traceback. pydantic-settings reads the environment.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

import platformdirs
from pydantic import AfterValidator, BeforeValidator, Field, ValidationError, create_model, model_validator
from pydantic.dataclasses import dataclass
from pydantic.fields import FieldInfo
from pydantic_core import ErrorDetails
from pydantic_settings import BaseSettings, SettingsConfigDict

from .errors import BadRequest, InvalidSetting

ENV_PREFIX = "COVE_"
DEFAULT_PORT = 11435  # beside Ollama's 11434, never on it
DEFAULT_KEEP_ALIVE_S = 300.0
#: Settings whose values `cove config` and error messages never show.
SECRETS = frozenset({"hf_token", "api_keys"})


def _default_home() -> Path:
    return Path(platformdirs.user_data_dir("cove", appauthor=False))


def _duration(value: Any) -> Any:
    """Seconds, or a duration as the API's keep_alive takes it ("5m", "1h", "-1" = forever)."""
    from .engine.options import parse_keep_alive  # the API's own parser: both accept the same

    if isinstance(value, str | int | float) and not isinstance(value, bool):
        try:
            seconds = parse_keep_alive(value)
        except BadRequest as exc:
            raise ValueError("must be seconds or a duration like 5m, 1h or -1 (forever)") from exc
        return value if seconds is None else seconds
    return value


def _comma_list(value: Any) -> Any:
    if isinstance(value, str):
        return tuple(part.strip() for part in value.split(",") if part.strip())
    return value


def _no_empty_keys(keys: tuple[str, ...]) -> tuple[str, ...]:
    # An empty key matches a request that sends none, so `--api-key "$UNSET"` would open the
    # server to anyone (and let a network bind pass as protected). Clients strip header values,
    # so spaces around a key could never match either.
    stripped = tuple(key.strip() for key in keys)
    if not all(stripped):
        raise ValueError("holds an empty key; give every key (COVE_API_KEYS or --api-key) some text")
    if not all(key.isascii() and key.isprintable() for key in stripped):
        # Headers travel as Latin-1 bytes: a key with other characters could never authenticate.
        raise ValueError("holds a key with characters beyond printable ASCII, which no client can send")
    return stripped


def _url(value: Any) -> Any:
    if isinstance(value, str):
        value = value.strip().rstrip("/")
        if not value.startswith(("http://", "https://")):
            raise ValueError("must be an http:// or https:// URL")
    return value


def _lower(value: Any) -> Any:
    return value.strip().lower() if isinstance(value, str) else value


Duration = Annotated[float, BeforeValidator(_duration)]
CommaList = Annotated[tuple[str, ...], BeforeValidator(_comma_list)]
ApiKeys = Annotated[CommaList, AfterValidator(_no_empty_keys)]
Url = Annotated[str, BeforeValidator(_url)]


def setting(default: Any = None, *, env: str, description: str, **checks: Any) -> Any:
    """One setting's declaration: where it is read from and what it means, beside its checks."""
    extra: dict[str, Any] = {"env": env}
    if callable(default) and not isinstance(default, type):
        return Field(default_factory=default, description=description, json_schema_extra=extra, **checks)
    return Field(default, description=description, json_schema_extra=extra, **checks)


@dataclass(frozen=True)
class Settings:
    """A snapshot of the settings; read fresh with `Settings.from_env()` so tests can change env."""

    home: Path = setting(
        _default_home,
        env="COVE_HOME",
        description="the store: models, history (cove.db) and prices.json",
    )
    host: str = setting(
        "127.0.0.1",
        env="COVE_HOST",
        description="address `cove serve` listens on and the CLI looks for (host[:port])",
        min_length=1,
    )
    port: int = setting(DEFAULT_PORT, env="COVE_HOST", description="port part of COVE_HOST", ge=0, le=65535)
    max_loaded: int = setting(2, env="COVE_MAX_LOADED", description="models held in memory at once", ge=1)
    num_parallel: int = setting(
        8, env="COVE_NUM_PARALLEL", description="decoding slots per model (fewer if memory is short)", ge=1
    )
    max_queue: int = setting(
        64, env="COVE_MAX_QUEUE", description="requests that may wait per model before a 503 (0: none)", ge=0
    )
    num_threads: int = setting(
        0, env="COVE_NUM_THREADS", description="engine threads (0: the physical cores idle at load)", ge=0
    )
    # On by default: llama.cpp's "mod" drafter drafts only where the answer repeats a long run of
    # the prompt (quoting or editing a document), so a plain question costs nothing
    # (benchmarks/speculative.py: 1.3-1.6x on a repeat-and-edit chat, 1.0-1.1x on a plain one).
    draft_ngram: int = setting(
        32,
        env="COVE_DRAFT_NGRAM",
        description="prompt-lookup speculative decoding for chat models: most tokens drafted a "
        "step (0: off), for models whose recipe does not set PARAMETER draft_ngram",
        ge=0,
        le=64,
    )
    keep_alive_s: Duration = setting(
        DEFAULT_KEEP_ALIVE_S,
        env="COVE_KEEP_ALIVE",
        description="how long an idle model stays loaded: seconds or 5m/1h; negative (-1): forever",
    )
    hf_endpoint: Url = setting(
        "https://huggingface.co", env="COVE_HF_ENDPOINT", description="Hugging Face or a mirror"
    )
    hf_token: str | None = setting(
        None, env="HF_TOKEN", description="Hugging Face token, sent only to COVE_HF_ENDPOINT's host"
    )
    api_keys: ApiKeys = setting(
        (), env="COVE_API_KEYS", description="comma-separated keys the server requires"
    )
    origins: CommaList = setting(
        (), env="COVE_ORIGINS", description="comma-separated extra browser origins allowed to call the API"
    )
    max_body: int = setting(
        16 << 20, env="COVE_MAX_BODY", description="largest request body, in bytes", ge=1024
    )
    debug: bool = setting(False, env="COVE_DEBUG", description="debug logging and tracebacks")
    local: bool = setting(
        False, env="COVE_LOCAL", description="the CLI runs models in-process even when `cove serve` is up"
    )
    offline: bool = setting(
        False,
        env="COVE_OFFLINE",
        description="refuse every connection off this machine, even a `cove pull` (see `cove privacy`)",
    )
    context_policy: Annotated[Literal["summarize", "refuse"], BeforeValidator(_lower)] = setting(
        "summarize",
        env="COVE_CONTEXT_POLICY",
        description="when a conversation outgrows the context: summarize the oldest turns, or refuse",
    )
    engine: Annotated[Literal["auto", "process", "in-process"], BeforeValidator(_lower)] = setting(
        "auto",
        env="COVE_ENGINE",
        description="where models run: each in its own engine process (a crash costs only its "
        "requests), or inside cove's own; auto: processes under `cove serve`, in-process elsewhere",
    )
    tool_timeout_s: float = setting(
        30.0, env="COVE_TOOL_TIMEOUT", description="seconds one tool call may run before it is stopped", gt=0
    )
    tool_consent_s: float = setting(
        120.0,
        env="COVE_TOOL_CONSENT_TIMEOUT",
        description="seconds a tool call waits for the person's yes before it counts as a no",
        gt=0,
    )
    mcp_servers: Path | None = setting(
        None,
        env="COVE_MCP_SERVERS",
        description="JSON file declaring MCP servers whose tools cove offers (default COVE_HOME/mcp.json)",
    )
    remote_http_hosts: CommaList = setting(
        (),
        env="COVE_REMOTE_HTTP_HOSTS",
        description="comma-separated hosts a remote model may reach over plain http (unencrypted; "
        "https and loopback need nothing)",
    )
    searxng_url: Url | None = setting(
        None,
        env="COVE_SEARXNG_URL",
        description="the SearXNG instance web_search asks (its JSON format on), e.g. http://localhost:8888",
    )

    @model_validator(mode="wrap")
    @classmethod
    def _one_line_errors(cls, values: Any, handler: Any) -> Any:
        """A bad value is an InvalidSetting naming its variable, not pydantic's traceback."""
        try:
            return handler(values)
        except ValidationError as exc:
            raise InvalidSetting(_message(exc.errors()[0])) from None

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """The settings the environment gives (unset and empty variables take the default)."""
        values: dict[str, Any] = dict(read_environment(environ))
        if "host" in values:
            values["host"], values["port"] = parse_host(values["host"])
        return cls(**values)

    def replace(self, **changes: Any) -> Settings:
        """A validated copy with some settings changed (same as `dataclasses.replace`)."""
        return dataclasses.replace(self, **changes)


def _fields() -> dict[str, FieldInfo]:
    fields: dict[str, FieldInfo] = Settings.__pydantic_fields__  # type: ignore[attr-defined]
    return fields


def env_name(name: str) -> str:
    """The environment variable a setting is read from."""
    extra = _fields()[name].json_schema_extra
    assert isinstance(extra, dict)
    return str(extra["env"])


def description(name: str) -> str:
    return _fields()[name].description or ""


def setting_names() -> list[str]:
    return [f.name for f in dataclasses.fields(Settings)]


class _EnvironmentBase(BaseSettings):
    # Values stay strings here; Settings itself checks and converts them, once, for every caller.
    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, case_sensitive=True, env_ignore_empty=True, extra="ignore"
    )


#: The variables pydantic-settings reads; `port` shares COVE_HOST with `host`.
_Environment = create_model(  # type: ignore[call-overload]
    "Environment",
    __base__=_EnvironmentBase,
    **{
        name: (str | None, Field(None, validation_alias=env_name(name)))
        for name in setting_names()
        if name != "port"
    },
)


def read_environment(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The settings given by environment variables, as their raw text, by setting name.

    pydantic-settings reads the process environment; a mapping given instead (tests, `explain`)
    is the whole environment, looked up by the same names.
    """
    if environ is None:
        found: dict[str, str | None] = _Environment().model_dump()
    else:
        found = {name: environ.get(env_name(name)) for name in setting_names() if name != "port"}
    # Blank counts as unset, as an empty one does for pydantic-settings.
    return {key: value for key, value in found.items() if value is not None and value.strip()}


@dataclasses.dataclass(frozen=True)
class Explained:
    """One setting as `cove config` shows it: its value (secrets masked) and where it came from."""

    name: str
    env: str
    value: Any
    source: str
    description: str

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def explain(environ: Mapping[str, str] | None = None) -> list[Explained]:
    """Every setting, its value and its source ("environment" or "default")."""
    given = read_environment(environ)
    settings = Settings.from_env(environ)
    rows = []
    for name in setting_names():
        from_env = name in given or (name == "port" and "host" in given)
        value = _shown(name, getattr(settings, name))
        source = "environment" if from_env else "default"
        rows.append(Explained(name, env_name(name), value, source, description(name)))
    return rows


def _shown(name: str, value: Any) -> Any:
    """JSON-able, and masked when it is a secret: a key is never printed, only that it is set."""
    if name in SECRETS:
        if isinstance(value, tuple):
            return ["****"] * len(value)
        return None if value is None else "****"
    if isinstance(value, tuple):
        return list(value)
    return str(value) if isinstance(value, Path) else value


def parse_host(value: str) -> tuple[str, int]:
    """Split `host:port`, `host`, `:port` or `[v6]:port` into its parts."""
    value = value.strip()
    for scheme in ("http://", "https://"):
        if value.startswith(scheme):
            value = value[len(scheme) :]
    value = value.rstrip("/")
    if value.startswith("["):
        host, _, rest = value[1:].partition("]")
        port = rest.lstrip(":")
    elif value.count(":") == 1:
        host, port = value.split(":")
    else:
        host, port = value, ""
    if port and not port.isdigit():
        raise InvalidSetting(f"COVE_HOST has a bad port: {value!r} (use host:port, like 127.0.0.1:11435)")
    port_number = int(port) if port else DEFAULT_PORT
    if port_number > 65535:
        raise InvalidSetting(f"COVE_HOST has port {port_number}, outside 0-65535: {value!r}")
    return host or "127.0.0.1", port_number


def _message(error: ErrorDetails) -> str:
    """`COVE_PORT must be at least 1, not '0'` from one pydantic error."""
    name = str(error["loc"][0]) if error["loc"] else ""
    fields = _fields()
    label = env_name(name) if name in fields else name or "a setting"
    if name == "port":
        label = "the port (COVE_HOST or --port)"
    if name not in fields and error["type"] == "unexpected_keyword_argument":
        return f"{name} is not a setting"
    what = _phrase(error)
    if name in SECRETS:
        return f"{label} {what}"
    return f"{label} {what}, not {error.get('input')!r}"


def _phrase(error: ErrorDetails) -> str:
    kind, ctx = error["type"], error.get("ctx") or {}
    if kind == "int_parsing" or kind == "int_from_float":
        return "must be a whole number"
    if kind == "float_parsing":
        return "must be a number"
    if kind == "greater_than_equal":
        return f"must be at least {ctx.get('ge')}"
    if kind == "less_than_equal":
        return f"must be at most {ctx.get('le')}"
    if kind == "bool_parsing":
        return "must be true or false (1/0, yes/no)"
    if kind == "literal_error":
        return "must be " + str(ctx.get("expected", "")).replace("'", "")
    if kind == "value_error":
        return str(ctx.get("error", error["msg"]))
    return error["msg"][:1].lower() + error["msg"][1:]
