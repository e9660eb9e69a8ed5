"""A remote engine: a model served by OpenAI-compatible upstreams (vLLM, llama-server, another
`cove serve`, Ray Serve), named in a recipe as `FROM openai+https://HOST:PORT/v1#MODEL`.

Only inference travels: cove keeps the history, the knowledge base, personas and tools, and
sends each request's prompt. Every connection goes through the egress gate (feature
"engine:remote", recorded): https to the hosts the recipe names, plain http to loopback, and
plain http to another host only where the user opted in (COVE_REMOTE_HTTP_HOSTS) with a loud
warning. The API key comes from the environment variable the recipe names and is sent only to
the replicas of that recipe, never on a redirect (redirects are not followed).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import httpx

from ..errors import BadRequest, CoveError, ShuttingDown
from ..net import gate
from ..net.policy import REMOTE_ENGINE, EngineHost, Policy, is_loopback_host, normal_host
from ..recipe import RemoteRef, parse_remote
from .base import ChunkCallback, LoadSpec
from .remote_errors import (
    RemoteError,
    UpstreamBusy,
    UpstreamKeyRefused,
    UpstreamRejected,
    UpstreamTimeout,
    mid_answer,
)
from .replicas import Replica, ReplicaSet

log = logging.getLogger(__name__)

PATHS = {"chat": "/chat/completions", "complete": "/completions", "embed": "/embeddings"}
#: Seconds to wait for an upstream's next byte, unless the recipe says (PARAMETER remote_timeout).
DEFAULT_TIMEOUT_S = 300.0
CONNECT_TIMEOUT_S = 10.0
PROBE_TIMEOUT_S = 3.0
#: The most one answer may send (whole or streamed): a runaway upstream is cut off, not buffered.
MAX_RESPONSE_BYTES = 64 << 20
MAX_LINE_BYTES = 4 << 20
#: Health checks of every replica, this often (seconds).
HEALTH_INTERVAL_S = 5.0
#: Hosts the user lets cove reach over plain http (comma-separated): prompts travel unencrypted.
HTTP_HOSTS_ENV = "COVE_REMOTE_HTTP_HOSTS"

#: The request fields an OpenAI-compatible upstream takes (a stricter one, like cove's own,
#: refuses others); llama.cpp-only fields the local engine takes are left out.
CHAT_FIELDS = frozenset(
    [
        "messages",
        "stream",
        "stream_options",
        "max_tokens",
        "max_completion_tokens",
        "temperature",
        "top_p",
        "top_k",
        "min_p",
        "repeat_penalty",
        "presence_penalty",
        "frequency_penalty",
        "seed",
        "stop",
        "n",
        "tools",
        "tool_choice",
        "parallel_tool_calls",
        "response_format",
        "logprobs",
        "top_logprobs",
        "logit_bias",
        "user",
    ]
)
COMPLETE_FIELDS = frozenset(
    [
        "prompt",
        "stream",
        "stream_options",
        "max_tokens",
        "temperature",
        "top_p",
        "top_k",
        "min_p",
        "presence_penalty",
        "frequency_penalty",
        "seed",
        "stop",
        "logprobs",
        "echo",
        "suffix",
        "logit_bias",
        "user",
    ]
)
EMBED_FIELDS = frozenset(["input", "encoding_format", "dimensions", "user"])
FIELDS = {"chat": CHAT_FIELDS, "complete": COMPLETE_FIELDS, "embed": EMBED_FIELDS}


class _EngineGate(gate.Gate):
    """The process's gate with this model's upstreams added to its policy (shares its ledger)."""

    def __init__(self, base: gate.Gate, engines: tuple[EngineHost, ...]) -> None:
        self.settings = base.settings
        self.ledger = base.ledger
        # Made once: a remote engine's verdict rests on the settings (offline, COVE_HOST) and
        # the recipe's upstreams, which a loaded model keeps, not on the tools' rules file,
        # which the base gate reads again for every request.
        settings = base.settings
        self._policy = Policy(
            offline=settings.offline,
            remote_host=settings.host,
            remote_port=settings.port,
            engines=engines,
        )

    def policy(self) -> Policy:
        return self._policy

    def close(self) -> None:
        """The ledger is the base gate's: it closes it."""


def check_transport(name: str, ref: RemoteRef, plain_http_hosts: Iterable[str] = ()) -> None:
    """https anywhere the recipe names; http to loopback; http elsewhere only to the hosts the
    user opted in for (COVE_REMOTE_HTTP_HOSTS)."""
    if ref.scheme == "https" or is_loopback_host(ref.host):
        return
    opted = {normal_host(h) for h in plain_http_hosts if h.strip()}
    if normal_host(ref.host) not in opted:
        raise gate.EgressRefused(
            f"cove did not connect to {ref.host}:{ref.port} for {name}: plain http would send "
            f"prompts and the API key unencrypted; use openai+https://, or opt in for this host "
            f"with {HTTP_HOSTS_ENV}={ref.host}"
        )
    log.warning(
        "WARNING: %s talks to %s:%s over PLAIN HTTP (opted in by %s): every prompt, answer and the "
        "API key cross the network unencrypted",
        name,
        ref.host,
        ref.port,
        HTTP_HOSTS_ENV,
    )


def api_key(spec: LoadSpec) -> str | None:
    """The key from the environment variable the recipe names (never stored), or None."""
    if not spec.api_key_env:
        return None
    key = os.environ.get(spec.api_key_env)
    if not key:
        raise RemoteError(
            f"{spec.name} takes its API key from ${spec.api_key_env}, which is not set here: "
            f"set it where cove runs (export {spec.api_key_env}=…)",
            upstream=spec.name,
            retryable=False,
        )
    if not key.isascii() or any(c.isspace() for c in key):
        raise RemoteError(
            f"${spec.api_key_env} holds something no HTTP header can carry (spaces or non-ASCII)",
            upstream=spec.name,
            retryable=False,
        )
    return key


def affinity_key(kind: str, body: dict[str, Any]) -> str | None:
    """What keeps a conversation on one replica: the messages up to its first user message (a
    conversation's prefix, the same on every later turn), hashed; a completion's first 1,000
    characters."""
    messages = body.get("messages")
    if kind == "chat" and isinstance(messages, list) and messages:
        # Up to its first user message (the system prompt, examples, the opening question):
        # what every later turn of the conversation starts with.
        first = next(
            (i for i, m in enumerate(messages) if isinstance(m, dict) and m.get("role") == "user"), 0
        )
        head = json.dumps(messages[: first + 1], sort_keys=True, default=str)
    elif kind == "complete" and isinstance(body.get("prompt"), str):
        head = body["prompt"][:1000]
    else:
        return None
    return hashlib.sha256(head.encode("utf-8", "replace")).hexdigest()


class RemoteModel:
    """The LoadedModel of a remote recipe: each request goes to one healthy replica."""

    def __init__(self, spec: LoadSpec, *, health_interval_s: float = HEALTH_INTERVAL_S) -> None:
        if not spec.remote:
            raise ValueError("RemoteModel needs a spec with remote upstreams")
        self.spec = spec
        self.refs = [parse_remote(ref) for ref in spec.remote]
        base = gate.current()
        for ref in self.refs:
            check_transport(spec.name, ref, base.settings.remote_http_hosts)
        key = api_key(spec)
        engines = tuple(EngineHost(r.host, r.port, spec.name) for r in self.refs)
        self._gate = _EngineGate(base, engines)
        refused = [self._gate.decide(REMOTE_ENGINE, r.host, r.port) for r in self.refs]
        if not any(d.allowed for d in refused):  # offline, say: one clear refusal, no probing
            for ref, decision in zip(self.refs, refused, strict=True):
                self._gate.refused(REMOTE_ENGINE, ref.host, ref.port, decision.reason)  # in the ledger
            raise gate.EgressRefused(
                f"cove did not connect to {self.refs[0].where} for {spec.name}: {refused[0].reason}"
            )
        self._timeout = spec.remote_timeout_s or DEFAULT_TIMEOUT_S
        self._closed = False
        replicas = [Replica(i, ref.where, self._client(ref, key)) for i, ref in enumerate(self.refs)]
        self.replicas: ReplicaSet[httpx.Client] = ReplicaSet(
            replicas, self._probe, interval_s=health_interval_s
        )
        self.replicas.check()  # who answers now; a model none of whose upstreams answers is not loaded
        if not self.replicas.any_healthy:
            whys = "; ".join(f"{r.name}: {r.why}" for r in replicas)
            self.close()
            raise RemoteError(f"{spec.name} cannot be reached: {whys}", upstream=spec.name, retryable=False)
        self.replicas.start()

    #: No tokenizer here: Ollama's `context` and token counts need the model's own.
    no_tools: str | None = None
    #: One upstream answers each call, so a batch is cut as for one engine.
    engines = 1

    @property
    def alive(self) -> bool:
        """A remote model stays loaded while cove holds it: its replicas come and go inside it."""
        return not self._closed

    def _client(self, ref: RemoteRef, key: str | None) -> httpx.Client:
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        timeout = httpx.Timeout(self._timeout, connect=CONNECT_TIMEOUT_S)
        return gate.client(
            REMOTE_ENGINE,
            gate=self._gate,
            base_url=ref.base_url,
            headers=headers,
            timeout=timeout,
            follow_redirects=False,  # a key is never carried to where a redirect points
            trust_env=False,  # no proxy from the environment sees the prompts or the key
        )

    # -- requests ---------------------------------------------------------------------------------

    def chat(self, body: dict[str, Any], on_chunk: ChunkCallback | None = None) -> dict[str, Any]:
        return self._call("chat", body, on_chunk)

    def complete(self, body: dict[str, Any], on_chunk: ChunkCallback | None = None) -> dict[str, Any]:
        if not isinstance(body.get("prompt"), str | list) or (
            isinstance(body.get("prompt"), list) and body["prompt"] and isinstance(body["prompt"][0], int)
        ):
            raise BadRequest(f"{self.spec.name} is a remote engine: send the prompt as text, not tokens")
        return self._call("complete", body, on_chunk)

    def embed(self, body: dict[str, Any]) -> dict[str, Any]:
        return self._call("embed", body, None)

    def rerank(self, body: dict[str, Any]) -> dict[str, Any]:
        raise BadRequest(f"{self.spec.name} is a remote engine: its upstreams have no rerank call")

    def prompt_tokens(self, messages: list[dict[str, Any]], *, continuing: bool) -> list[int]:
        raise BadRequest(
            f"{self.spec.name} is a remote engine: its tokenizer is upstream, so Ollama's `context` "
            "cannot be used with it; keep the conversation in messages (or a stored conversation)"
        )

    def tokenize(self, text: str) -> list[int]:
        raise BadRequest(f"{self.spec.name} is a remote engine: its tokenizer is upstream")

    def _call(self, kind: str, body: dict[str, Any], on_chunk: ChunkCallback | None) -> dict[str, Any]:
        """Send to the best replica; one that fails before the first token hands the request on."""
        if self._closed:
            raise ShuttingDown(f"{self.spec.name} was unloaded")
        request = {k: v for k, v in body.items() if k in FIELDS[kind]}
        if on_chunk is not None:
            request["stream"] = True
            request["stream_options"] = {"include_usage": True}
        else:
            request.pop("stream", None)
            request.pop("stream_options", None)
        key = affinity_key(kind, body)
        tried: set[int] = set()
        errors: list[CoveError] = []
        while True:
            replica = self.replicas.pick(key, tried)
            if replica is None and not tried:
                # None is in: one may have come back since its last check; look now.
                self.replicas.check(only_unhealthy=True)
                replica = self.replicas.pick(key, tried)
            if replica is None:
                raise self._all_failed(errors)
            tried.add(replica.index)
            try:
                return self._one(kind, replica, request, on_chunk)
            except RemoteError as exc:
                if not exc.retryable:  # a refusal no replica cures, or tokens already handed on
                    raise
                errors.append(exc)
            except UpstreamBusy as exc:  # full: another replica may have room
                errors.append(exc)
            finally:
                self.replicas.done(replica)

    def _one(
        self,
        kind: str,
        replica: Replica[httpx.Client],
        request: dict[str, Any],
        on_chunk: ChunkCallback | None,
    ) -> dict[str, Any]:
        """One try on one replica; a failure takes the replica out when it is the upstream's fault."""
        payload = {**request, "model": self.refs[replica.index].model}
        progress = _Progress()
        try:
            if on_chunk is None:
                return self._whole(replica, PATHS[kind], payload)
            return self._streamed(replica, PATHS[kind], payload, on_chunk, progress)
        except RemoteError as exc:
            if exc.replica_fault:
                self.replicas.failed(replica, str(exc))
            if progress.handed_on:
                raise mid_answer(exc) from exc
            raise

    def _all_failed(self, errors: list[CoveError]) -> CoveError:
        if not errors:
            down = "; ".join(f"{r.name}: {r.why or 'out'}" for r in self.replicas.replicas)
            return RemoteError(
                f"no replica of {self.spec.name} is healthy now ({down}); retry shortly",
                upstream=self.spec.name,
            )
        if len(errors) == 1:
            return errors[0]
        last = errors[-1]
        message = f"all {len(errors)} replicas of {self.spec.name} failed: " + "; ".join(map(str, errors))
        if isinstance(last, UpstreamBusy):
            return UpstreamBusy(message)
        assert isinstance(last, RemoteError)
        return type(last)(message, upstream=last.upstream, retryable=False)

    def _whole(self, replica: Replica[httpx.Client], path: str, payload: dict[str, Any]) -> dict[str, Any]:
        where = replica.name
        started = time.perf_counter()
        with (
            _failures(where, self._timeout, self._closed_check),
            replica.target.stream("POST", path, json=payload) as response,
        ):
            _check_status(where, path, response)
            data = _json_of(where, path, b"".join(_capped(where, response.iter_bytes())))
        if not isinstance(data, dict) or ("choices" not in data and "data" not in data):
            raise RemoteError(
                f"upstream {where} answered {path} with JSON that is not an OpenAI answer", upstream=where
            )
        _error_in(where, data)
        usage = data.get("usage") or {}
        if "timings" not in data and usage.get("completion_tokens"):
            seconds = time.perf_counter() - started
            data["timings"] = {"predicted_per_second": usage["completion_tokens"] / max(seconds, 1e-6)}
        return data

    def _streamed(
        self,
        replica: Replica[httpx.Client],
        path: str,
        payload: dict[str, Any],
        on_chunk: ChunkCallback,
        progress: _Progress,
    ) -> dict[str, Any]:
        where = replica.name
        timer = _Timer()
        last: dict[str, Any] = {}
        with (
            _failures(where, self._timeout, self._closed_check),
            replica.target.stream("POST", path, json=payload) as response,
        ):
            _check_status(where, path, response)
            kind = response.headers.get("content-type", "")
            if "text/event-stream" not in kind:
                raise RemoteError(
                    f"upstream {where} did not stream {path} (it answered {kind or 'no content type'}); "
                    "is it an OpenAI-compatible server?",
                    upstream=where,
                )
            finished = False
            for data in _events(where, response):
                if finished:
                    continue  # read to the body's end, so the connection is kept for the next request
                if data == b"[DONE]":
                    finished = True
                    continue
                chunk = _json_of(where, path, data)
                if not isinstance(chunk, dict):
                    raise RemoteError(
                        f"upstream {where} streamed something that is not a chunk", upstream=where
                    )
                _error_in(where, chunk)
                timer.saw(chunk)
                if chunk.get("usage"):
                    chunk = timer.with_timings(chunk)
                last = chunk
                if _has_token(chunk):
                    progress.handed_on = True
                if on_chunk(chunk):
                    return last  # the client stopped it: closing the stream cancels it upstream
            if not finished and not timer.finished:
                raise RemoteError(
                    f"upstream {where} ended the stream before the answer finished", upstream=where
                )
        return last

    def _closed_check(self) -> bool:
        return self._closed

    # -- health -------------------------------------------------------------------------------------

    def _probe(self, replica: Replica[httpx.Client]) -> str | None:
        """GET /models: the upstream answers, speaks OpenAI's API, accepts the key, has the model."""
        where, model = replica.name, self.refs[replica.index].model
        try:
            with _failures(where, PROBE_TIMEOUT_S, self._closed_check):
                response = replica.target.get("/models", timeout=PROBE_TIMEOUT_S)
                _check_status(where, "/models", response)
                data = _json_of(where, "/models", response.content[:MAX_LINE_BYTES])
        except CoveError as exc:
            return str(exc)
        ids = (
            [m.get("id") for m in data.get("data") or [] if isinstance(m, dict)]
            if isinstance(data, dict)
            else None
        )
        if ids is None or not isinstance(data, dict) or not isinstance(data.get("data"), list):
            return f"upstream {where} answered /models with something that is not OpenAI's model list"
        if model not in ids:
            shown = ", ".join(str(i) for i in ids[:8]) or "none"
            return f"upstream {where} does not serve model {model!r} (it serves: {shown})"
        return None

    def describe(self) -> list[dict[str, object]]:
        """Each replica: name, healthy, active, served, why it is out (`cove ps`, /api/ps)."""
        return self.replicas.describe()

    def close(self) -> None:
        self._closed = True
        self.replicas.close()
        for replica in self.replicas.replicas:
            replica.target.close()


class _Progress:
    handed_on = False


class _Timer:
    """Time to first token and decode speed, for upstreams that send no llama.cpp `timings`."""

    def __init__(self) -> None:
        self.started = time.perf_counter()
        self.first: float | None = None
        self.finished = False

    def saw(self, chunk: dict[str, Any]) -> None:
        if self.first is None and _has_token(chunk):
            self.first = time.perf_counter()
        if any(c.get("finish_reason") for c in chunk.get("choices") or [] if isinstance(c, dict)):
            self.finished = True

    def with_timings(self, chunk: dict[str, Any]) -> dict[str, Any]:
        if chunk.get("timings"):
            return chunk
        now = time.perf_counter()
        first = self.first or now
        tokens = int((chunk.get("usage") or {}).get("completion_tokens") or 0)
        decode_ms = (now - first) * 1000
        timings: dict[str, Any] = {"prompt_ms": (first - self.started) * 1000, "predicted_ms": decode_ms}
        if tokens > 1 and decode_ms > 0:
            timings["predicted_per_second"] = (tokens - 1) / (decode_ms / 1000)
        return {**chunk, "timings": timings}


def _has_token(chunk: dict[str, Any]) -> bool:
    for choice in chunk.get("choices") or []:
        if not isinstance(choice, dict):
            continue
        delta = choice.get("delta") or {}
        if isinstance(delta, dict) and (
            delta.get("content") or delta.get("tool_calls") or delta.get("reasoning_content")
        ):
            return True
        if choice.get("text"):
            return True
    return False


class _failures:
    """Turns httpx's failures into RemoteErrors that name the upstream (a context manager)."""

    def __init__(self, where: str, timeout: float, closed: Any) -> None:
        self.where, self.timeout, self.closed = where, timeout, closed

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: Any) -> None:
        if exc is None or isinstance(exc, CoveError):
            return
        where = self.where
        if self.closed():  # cove closed the connection under it: shutting down or unloading
            raise ShuttingDown(f"the remote engine for {where} was unloaded") from exc
        if isinstance(exc, httpx.TimeoutException):
            what = "connect" if isinstance(exc, httpx.ConnectTimeout) else "answer"
            raise UpstreamTimeout(
                f"upstream {where} did not {what} within {self.timeout:g} s "
                "(the recipe's PARAMETER remote_timeout sets it)",
                upstream=where,
            ) from exc
        if isinstance(exc, httpx.ConnectError):
            text = str(exc)
            if "CERTIFICATE" in text.upper() or "SSL" in text.upper():
                raise RemoteError(
                    f"upstream {where}: its TLS certificate could not be verified ({_short(text)}); "
                    "give it a certificate this machine trusts",
                    upstream=where,
                    retryable=True,
                ) from exc
            raise RemoteError(
                f"upstream {where} is down: {_short(text) or 'connection refused'}", upstream=where
            ) from exc
        if isinstance(exc, httpx.TransportError):
            raise RemoteError(
                f"upstream {where} broke the connection: {_short(str(exc)) or type(exc).__name__}",
                upstream=where,
            ) from exc
        return


def _short(text: str) -> str:
    return " ".join(text.split())[:200]


def _check_status(where: str, path: str, response: httpx.Response) -> None:
    """A non-2xx answer as one of cove's errors, with what the upstream said."""
    status = response.status_code
    if status < 400:
        if status >= 300:
            raise RemoteError(
                f"upstream {where} redirected {path} to {response.headers.get('location', '?')}; "
                "cove does not follow it (the key would go along): name the final URL in the recipe",
                upstream=where,
                retryable=False,
            )
        return
    said = _said(response)
    if status in (401, 403):
        raise UpstreamKeyRefused(
            f"upstream {where} refused the API key ({status}{': ' + said if said else ''}); "
            "check the environment variable the recipe's api_key_env names",
            upstream=where,
            retryable=True,
        )
    if status == 404:
        raise RemoteError(
            f"upstream {where} has no {path} (404{': ' + said if said else ''}): is the recipe's URL "
            "the API's base (…/v1), and does it serve this model?",
            upstream=where,
            retryable=True,
        )
    if status in (429, 503):
        raise UpstreamBusy(f"upstream {where} is busy ({status}{': ' + said if said else ''}); retry shortly")
    if 400 <= status < 500:
        raise UpstreamRejected(
            f"upstream {where} refused the request ({status}): {said or 'no reason given'}"
        )
    raise RemoteError(f"upstream {where} failed ({status}): {said or 'no reason given'}", upstream=where)


def _said(response: httpx.Response) -> str:
    """The upstream's own error message, from a short (capped) body."""
    try:
        raw = b""
        for piece in response.iter_bytes():
            raw += piece
            if len(raw) > 8192:
                break
    except (httpx.HTTPError, httpx.StreamError, RuntimeError):
        raw = b""
    try:
        data = json.loads(raw)
        error = data.get("error", data.get("detail")) if isinstance(data, dict) else None
        message = error.get("message") if isinstance(error, dict) else error
        return _short(str(message)) if message else _short(raw.decode("utf-8", "replace"))
    except ValueError:
        return _short(raw.decode("utf-8", "replace"))


def _error_in(where: str, data: dict[str, Any]) -> None:
    """An error the upstream sent inside a 200 answer or a stream (a 500 mid-stream)."""
    error = data.get("error")
    if not error:
        return
    message = error.get("message", "an error") if isinstance(error, dict) else str(error)
    code = error.get("code") if isinstance(error, dict) else None
    if isinstance(code, int) and 400 <= code < 500 and code not in (401, 403, 404, 429):
        raise UpstreamRejected(f"upstream {where} refused the request ({code}): {_short(str(message))}")
    raise RemoteError(f"upstream {where} failed: {_short(str(message))}", upstream=where)


def _json_of(where: str, path: str, raw: bytes) -> Any:
    try:
        try:
            return json.loads(raw)
        except UnicodeDecodeError:  # a broken character is shown as one, not a broken answer
            return json.loads(raw.decode("utf-8", "replace"))
    except ValueError:
        sample = _short(raw[:80].decode("utf-8", "replace"))
        raise RemoteError(
            f"upstream {where} answered {path} with something that is not JSON ({sample!r}): "
            "is it an OpenAI-compatible server?",
            upstream=where,
        ) from None


def _capped(where: str, pieces: Iterator[bytes]) -> Iterator[bytes]:
    total = 0
    for piece in pieces:
        total += len(piece)
        if total > MAX_RESPONSE_BYTES:
            raise RemoteError(
                f"upstream {where} sent more than {MAX_RESPONSE_BYTES >> 20} MiB for one answer; "
                "cove stopped reading",
                upstream=where,
                retryable=False,
            )
        yield piece


def _events(where: str, response: httpx.Response) -> Iterator[bytes]:
    """The `data:` payloads of a server-sent-event stream, each line and the whole stream capped."""
    buffer = bytearray()
    for piece in _capped(where, response.iter_bytes()):
        buffer += piece
        while (end := buffer.find(b"\n")) >= 0:
            line = bytes(buffer[:end]).rstrip(b"\r")
            del buffer[: end + 1]
            if line.startswith(b"data:"):
                yield line[5:].strip()
        if len(buffer) > MAX_LINE_BYTES:
            raise RemoteError(
                f"upstream {where} sent a line longer than {MAX_LINE_BYTES >> 20} MiB; cove stopped reading",
                upstream=where,
                retryable=False,
            )
    if buffer.startswith(b"data:"):
        yield bytes(buffer[5:]).strip()


def privacy_rules(home: Path, offline: bool) -> list[dict[str, Any]]:
    """The privacy report's lines for remote models (net/report.py's rule shape): each upstream a
    stored recipe names, whether it may be reached, and what travels there."""
    from ..store.models import ModelStore

    rules = []
    for manifest in ModelStore(home).list():
        if not manifest.is_remote:
            continue
        for ref in manifest.recipe_obj().remote:
            local = is_loopback_host(ref.host)
            plain = "" if ref.scheme == "https" or local else ", over plain http (unencrypted)"
            rules.append(
                {
                    "feature": REMOTE_ENGINE,
                    "allowed": local or not offline,
                    "to": "this machine only" if local else f"{ref.host}:{ref.port}",
                    "why": f"model {manifest.name} runs there ({ref.model}): each request's prompt "
                    f"and answer travel{plain}; the history and documents stay here",
                }
            )
    return rules
