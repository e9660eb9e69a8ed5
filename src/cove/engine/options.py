"""Turns a recipe and Ollama-style options into the engine's OpenAI-shaped request body."""

from __future__ import annotations

import math
from typing import Any

from ..errors import BadRequest
from ..recipe import Recipe, check_parameter

DEFAULT_NUM_CTX = 4096

#: Ollama option name -> engine request field. num_ctx is a load setting, not a request field.
OPTION_FIELDS = {
    "temperature": "temperature",
    "top_p": "top_p",
    "top_k": "top_k",
    "min_p": "min_p",
    "repeat_penalty": "repeat_penalty",
    "repeat_last_n": "repeat_last_n",
    "presence_penalty": "presence_penalty",
    "frequency_penalty": "frequency_penalty",
    "seed": "seed",
    "stop": "stop",
    "num_predict": "max_tokens",
}


#: Ollama options that tune its own runner; llama.cpp here sizes these itself, so they are ignored.
IGNORED_OPTIONS = frozenset(
    {
        "num_gpu",
        "main_gpu",
        "num_thread",
        "num_batch",
        "num_keep",
        "low_vram",
        "use_mmap",
        "use_mlock",
        "numa",
        "f16_kv",
        "vocab_only",
        "logits_all",
        "embedding_only",
        "penalize_newline",
        "mirostat",
        "mirostat_tau",
        "mirostat_eta",
        "tfs_z",
        "typical_p",
    }
)


def checked_options(options: dict[str, Any] | None) -> dict[str, Any]:
    """Validate every option (range, type, NaN) with the recipe's own rules.

    A null option is one not set (LangChain sends every option it knows, most as null).
    """
    return {
        name: check_parameter(name, value)
        for name, value in (options or {}).items()
        if name not in IGNORED_OPTIONS and value is not None
    }


def options_to_body(options: dict[str, Any]) -> dict[str, Any]:
    body: dict[str, Any] = {}
    for name, value in options.items():
        field = OPTION_FIELDS.get(name)
        if field == "max_tokens" and value is not None and value < 0:
            continue  # -1 / -2 mean "until the model stops": simply no limit
        if field:
            body[field] = value
    return body


def with_recipe(body: dict[str, Any], recipe: Recipe, options: dict[str, Any]) -> dict[str, Any]:
    """Request fields win over explicit options, which win over the recipe's parameters."""
    merged = dict(options_to_body(recipe.parameters))
    merged.update(options_to_body(options))
    if (options.get("num_predict") or 0) < 0:
        merged.pop("max_tokens", None)  # an explicit "no limit" overrides the recipe's limit too
    merged.update(body)
    if "messages" in merged:
        merged["messages"] = _with_system(list(merged["messages"]), recipe)
    return merged


def _with_system(messages: list[dict[str, Any]], recipe: Recipe) -> list[dict[str, Any]]:
    """The recipe's system prompt and example messages come first, unless the caller sent a system."""
    has_system = any(m.get("role") == "system" for m in messages)
    prefix: list[dict[str, Any]] = []
    if recipe.system and not has_system:
        prefix.append({"role": "system", "content": recipe.system})
    prefix.extend(dict(m) for m in recipe.messages if not (has_system and m["role"] == "system"))
    return prefix + messages


def context_size(recipe: Recipe, options: dict[str, Any], trained: int | None) -> int:
    """num_ctx from the request, else the recipe, else a default capped by what the model knows."""
    asked = options.get("num_ctx") or recipe.parameters.get("num_ctx")
    if asked:
        return int(asked)
    return min(DEFAULT_NUM_CTX, trained) if trained else DEFAULT_NUM_CTX


_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_keep_alive(value: float | str | None) -> float | None:
    """Ollama's keep_alive: seconds as a number, or "5m", "30s", "1h", "-1" (forever), "0"."""
    if value is None or value == "":
        return None
    if isinstance(value, int | float):
        return _finite(float(value), value)
    text = value.strip().lower()
    try:
        return _finite(float(text), value)
    except ValueError:
        pass
    for unit in sorted(_UNITS, key=len, reverse=True):
        if text.endswith(unit):
            try:
                amount = float(text[: -len(unit)])
            except ValueError:
                break
            # "nanm" or "1e999h" would become a duration that breaks every later comparison.
            return _finite(amount * _UNITS[unit], value)
    raise BadRequest(f"keep_alive {value!r} is not a duration like 5m, 30s or -1")


def _finite(seconds: float, raw: object) -> float:
    if math.isnan(seconds) or math.isinf(seconds):
        raise BadRequest(f"keep_alive {raw!r} is not a duration; use -1 to keep a model loaded")
    return seconds
