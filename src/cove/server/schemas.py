"""Request bodies both APIs accept, validated strictly: wrong types, unknown fields, NaN → 400.

`null` means "not set", as OpenAI's and Ollama's clients use it: a null field takes its default,
and a null option is dropped, so `{"stop": null}` and `{"options": {"num_ctx": null}}` are fine.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator
from pydantic_core import PydanticCustomError


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    @model_validator(mode="before")
    @classmethod
    def _nulls_are_unset(cls, data: Any) -> Any:
        """A null for a field that has a default is the default; required fields stay required."""
        if not isinstance(data, dict):
            return data
        optional = {
            alias
            for name, spec in cls.model_fields.items()
            if not spec.is_required()
            for alias in (name, spec.alias)
            if alias
        }
        return {k: v for k, v in data.items() if not (v is None and k in optional)}


def _without_nulls(options: dict[str, Any] | None) -> dict[str, Any] | None:
    return None if options is None else {k: v for k, v in options.items() if v is not None}


#: Ollama's `options` (and a recipe's `parameters`): a null value is an option not set.
OptionMap = Annotated[dict[str, Any] | None, AfterValidator(_without_nulls)]

NO_VISION = "images need a vision model, which cove does not run yet; send text only"
#: OpenAI content parts cove's text models cannot read, and what to say about each.
UNREADABLE_PARTS = {
    "image_url": NO_VISION,
    "input_image": NO_VISION,
    "input_audio": "audio input is not supported; send text only",
    "file": "file parts are not supported; send the file's text as a text part",
}


def _unsupported(message: str) -> PydanticCustomError:
    return PydanticCustomError("unsupported", message)


def _text_parts(content: str | list[dict[str, Any]] | None) -> str | list[dict[str, Any]] | None:
    """Content parts must be text: an image sent to a text model is the caller's 400, not a crash."""
    for part in content if isinstance(content, list) else []:
        kind = part.get("type")
        if kind in UNREADABLE_PARTS:
            raise _unsupported(UNREADABLE_PARTS[kind])
        if kind != "text":
            raise _unsupported(f"content part type {str(kind)[:40]!r} is not supported; use type 'text'")
        if not isinstance(part.get("text"), str):
            raise _unsupported("a text content part needs a 'text' string")
    return content


def _no_images(images: list[str] | None) -> list[str] | None:
    if images:
        raise _unsupported(NO_VISION)
    return images


Content = Annotated[str | list[dict[str, Any]] | None, AfterValidator(_text_parts)]
Images = Annotated[list[str] | None, AfterValidator(_no_images)]
#: `collections`: the names of the user's document collections a chat turn answers from.
Collections = list[Annotated[str, Field(min_length=1, max_length=100)]] | None


# -- OpenAI ------------------------------------------------------------------------------------


class OAIMessage(Strict):
    role: Literal["system", "developer", "user", "assistant", "tool", "function"]
    content: Content = None
    name: str | None = None
    tool_calls: list[dict[str, Any]] | None = None
    tool_call_id: str | None = None
    refusal: str | None = None
    reasoning_content: str | None = None


class StreamOptions(Strict):
    include_usage: bool = False
    include_obfuscation: bool | None = None


class OAIChatRequest(Strict):
    model: str = Field(min_length=1, max_length=300)
    messages: list[OAIMessage] = Field(min_length=1)
    stream: bool = False
    stream_options: StreamOptions | None = None
    max_tokens: int | None = Field(None, ge=1, le=10_000_000)
    max_completion_tokens: int | None = Field(None, ge=1, le=10_000_000)
    temperature: float | None = Field(None, ge=0, le=5)
    top_p: float | None = Field(None, ge=0, le=1)
    top_k: int | None = Field(None, ge=0, le=1_000_000)
    min_p: float | None = Field(None, ge=0, le=1)
    repeat_penalty: float | None = Field(None, ge=0, le=10)
    presence_penalty: float | None = Field(None, ge=-2, le=2)
    frequency_penalty: float | None = Field(None, ge=-2, le=2)
    seed: int | None = None
    stop: str | list[str] | None = None
    n: int | None = Field(None, ge=1)
    tools: list[dict[str, Any]] | None = None
    tool_choice: str | dict[str, Any] | None = None
    parallel_tool_calls: bool | None = None
    response_format: dict[str, Any] | None = None
    logprobs: bool | None = None
    top_logprobs: int | None = Field(None, ge=0, le=20)
    logit_bias: dict[str, float] | None = None
    user: str | None = None
    metadata: dict[str, Any] | None = None
    store: bool | None = None
    service_tier: str | None = None
    reasoning_effort: str | None = None
    modalities: list[str] | None = None
    prediction: dict[str, Any] | None = None
    keep_alive: float | str | None = None
    num_ctx: int | None = Field(None, ge=16, le=10_000_000)
    conversation_id: str | None = None
    persona: str | None = Field(None, max_length=100)
    #: cove's own tools this request lets the model call (each must be switched on by the user).
    cove_tools: list[Annotated[str, Field(max_length=64)]] | None = Field(None, max_length=64)
    #: The user's document collections to answer from; the answer carries `citations`.
    collections: Collections = Field(None, max_length=32)
    #: With collections: answer only from them, and say so when they do not hold the answer.
    cove_strict: bool | None = None


class OAICompletionRequest(Strict):
    model: str = Field(min_length=1, max_length=300)
    prompt: str | list[str]
    stream: bool = False
    stream_options: StreamOptions | None = None
    max_tokens: int | None = Field(None, ge=1, le=10_000_000)
    temperature: float | None = Field(None, ge=0, le=5)
    top_p: float | None = Field(None, ge=0, le=1)
    top_k: int | None = Field(None, ge=0, le=1_000_000)
    min_p: float | None = Field(None, ge=0, le=1)
    presence_penalty: float | None = Field(None, ge=-2, le=2)
    frequency_penalty: float | None = Field(None, ge=-2, le=2)
    seed: int | None = None
    stop: str | list[str] | None = None
    n: int | None = Field(None, ge=1)
    logprobs: int | None = Field(None, ge=0, le=20)
    echo: bool | None = None
    suffix: str | None = None
    best_of: int | None = Field(None, ge=1)
    logit_bias: dict[str, float] | None = None
    user: str | None = None
    keep_alive: float | str | None = None


class OAIEmbeddingRequest(Strict):
    model: str = Field(min_length=1, max_length=300)
    input: str | list[str] | list[int] | list[list[int]]
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: int | None = Field(None, ge=1)
    user: str | None = None


# -- Ollama ------------------------------------------------------------------------------------


class Options(BaseModel):
    """Ollama's `options`: the ones cove uses are checked by the recipe rules; others are ignored."""

    model_config = ConfigDict(extra="allow", allow_inf_nan=False)


class OllamaToolCall(BaseModel):
    model_config = ConfigDict(extra="allow")
    function: dict[str, Any]


class OllamaMessage(Strict):
    role: Literal["system", "user", "assistant", "tool"]
    content: str = ""
    images: Images = None
    tool_calls: list[OllamaToolCall] | None = None
    thinking: str | None = None
    tool_name: str | None = None


class OllamaChatRequest(Strict):
    model: str = Field(min_length=1, max_length=300)
    messages: list[OllamaMessage] = Field(default_factory=list)
    tools: list[dict[str, Any]] | None = None
    format: Literal["json", ""] | dict[str, Any] | None = None
    options: OptionMap = None
    stream: bool = True
    keep_alive: float | str | None = None
    think: bool | str | None = None
    logprobs: bool | None = None
    top_logprobs: int | None = Field(None, ge=0, le=20)
    conversation_id: str | None = None
    persona: str | None = Field(None, max_length=100)
    #: cove's own tools this request lets the model call (each must be switched on by the user).
    cove_tools: list[Annotated[str, Field(max_length=64)]] | None = Field(None, max_length=64)
    #: The user's document collections to answer from; the answer carries `citations`.
    collections: Collections = Field(None, max_length=32)
    #: With collections: answer only from them, and say so when they do not hold the answer.
    cove_strict: bool | None = None


class OllamaGenerateRequest(Strict):
    model: str = Field(min_length=1, max_length=300)
    prompt: str = ""
    suffix: str | None = None
    system: str | None = None
    template: str | None = None
    context: list[int] | None = None
    images: Images = None
    format: Literal["json", ""] | dict[str, Any] | None = None
    options: OptionMap = None
    stream: bool = True
    raw: bool = False
    keep_alive: float | str | None = None
    think: bool | str | None = None
    logprobs: bool | None = None
    top_logprobs: int | None = Field(None, ge=0, le=20)


class ModelRef(Strict):
    model: str | None = Field(None, max_length=300)
    name: str | None = Field(None, max_length=300)
    verbose: bool | None = None
    insecure: bool | None = None
    stream: bool = True

    @property
    def ref(self) -> str:
        return self.model or self.name or ""


class CopyRequest(Strict):
    source: str = Field(min_length=1, max_length=300)
    destination: str = Field(min_length=1, max_length=300)


class CreateRequest(Strict):
    model: str | None = Field(None, max_length=300)
    name: str | None = Field(None, max_length=300)
    modelfile: str | None = Field(None, max_length=1_000_000)
    from_: str | None = Field(None, alias="from", max_length=300)
    files: dict[str, str] | None = None
    adapters: dict[str, str] | None = None
    template: str | None = None
    license: str | list[str] | None = None
    system: str | None = None
    parameters: OptionMap = None
    messages: list[OllamaMessage] | None = None
    quantize: str | None = None
    stream: bool = True
    path: str | None = None


class EmbedRequest(Strict):
    model: str = Field(min_length=1, max_length=300)
    input: str | list[str]
    truncate: bool | None = None
    options: OptionMap = None
    keep_alive: float | str | None = None
    dimensions: int | None = Field(None, ge=1)


class EmbeddingsRequest(Strict):
    model: str = Field(min_length=1, max_length=300)
    prompt: str
    options: OptionMap = None
    keep_alive: float | str | None = None


# -- OpenAI Responses ------------------------------------------------------------------------------


class ResponsesText(Strict):
    format: dict[str, Any] | None = None
    verbosity: str | None = None


class ResponsesRequest(Strict):
    """`POST /v1/responses`: `input` is a string or a list of items (messages, function calls, outputs)."""

    model: str = Field(min_length=1, max_length=300)
    input: str | list[dict[str, Any]]
    instructions: str | None = None
    stream: bool = False
    tools: list[dict[str, Any]] | None = None
    tool_choice: str | dict[str, Any] | None = None
    parallel_tool_calls: bool | None = None
    text: ResponsesText | None = None
    temperature: float | None = Field(None, ge=0, le=5)
    top_p: float | None = Field(None, ge=0, le=1)
    max_output_tokens: int | None = Field(None, ge=1, le=10_000_000)
    previous_response_id: str | None = Field(None, max_length=100)
    store: bool | None = None
    metadata: dict[str, Any] | None = None
    reasoning: dict[str, Any] | None = None
    truncation: str | None = None
    user: str | None = None
    include: list[str] | None = None
    service_tier: str | None = None
    top_logprobs: int | None = Field(None, ge=0, le=20)
    background: bool | None = None
    prompt_cache_key: str | None = None
    safety_identifier: str | None = None
    stream_options: dict[str, Any] | None = None
    keep_alive: float | str | None = None
    #: cove's own tools this response may run (as on /v1/chat/completions).
    cove_tools: list[Annotated[str, Field(max_length=64)]] | None = Field(None, max_length=64)
    #: The user's document collections to answer from (as on /v1/chat/completions).
    collections: Collections = Field(None, max_length=32)
    cove_strict: bool | None = None
