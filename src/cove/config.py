"""Every setting cove reads, declared once: its environment variable, default and meaning."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import platformdirs

DEFAULT_PORT = 11435  # beside Ollama's 11434, never on it
DEFAULT_KEEP_ALIVE_S = 300.0


def _env(name: str, default: str) -> str:
    return os.environ.get(name, default)


def _int(name: str, default: int, minimum: int = 0) -> int:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError as exc:
        from .errors import BadRequest

        raise BadRequest(f"{name} must be a whole number, got {raw!r}") from exc
    return max(minimum, value)


def _list(name: str) -> list[str]:
    return [part.strip() for part in os.environ.get(name, "").split(",") if part.strip()]


@dataclass(frozen=True)
class Settings:
    """A snapshot of the settings; read fresh with `Settings.from_env()` so tests can change env."""

    home: Path
    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    max_loaded: int = 2
    num_parallel: int = 8
    max_queue: int = 64
    num_threads: int = 0  # 0: one per core
    keep_alive_s: float = DEFAULT_KEEP_ALIVE_S
    hf_endpoint: str = "https://huggingface.co"
    hf_token: str | None = None
    api_keys: tuple[str, ...] = field(default_factory=tuple)
    origins: tuple[str, ...] = field(default_factory=tuple)
    max_body: int = 16 << 20
    debug: bool = False

    @classmethod
    def from_env(cls) -> Settings:
        home = os.environ.get("COVE_HOME") or platformdirs.user_data_dir("cove", appauthor=False)
        host, port = parse_host(_env("COVE_HOST", f"127.0.0.1:{DEFAULT_PORT}"))
        return cls(
            home=Path(home),
            host=host,
            port=port,
            max_loaded=_int("COVE_MAX_LOADED", 2, minimum=1),
            num_parallel=_int("COVE_NUM_PARALLEL", 8, minimum=1),
            max_queue=_int("COVE_MAX_QUEUE", 64, minimum=1),
            num_threads=_int("COVE_NUM_THREADS", 0),
            keep_alive_s=float(_int("COVE_KEEP_ALIVE", int(DEFAULT_KEEP_ALIVE_S))),
            hf_endpoint=_env("COVE_HF_ENDPOINT", "https://huggingface.co").rstrip("/"),
            hf_token=os.environ.get("HF_TOKEN") or None,
            api_keys=tuple(_list("COVE_API_KEYS")),
            origins=tuple(_list("COVE_ORIGINS")),
            max_body=_int("COVE_MAX_BODY", 16 << 20, minimum=1024),
            debug=os.environ.get("COVE_DEBUG", "") not in ("", "0", "false"),
        )


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
    try:
        port_number = int(port) if port else DEFAULT_PORT
    except ValueError as exc:
        from .errors import BadRequest

        raise BadRequest(f"COVE_HOST has a bad port: {value!r}") from exc
    return host or "127.0.0.1", port_number
