"""Talks to a running `cove serve` so CLI calls share its loaded models; same methods as Cove."""

from __future__ import annotations

import json
import time
from collections.abc import Generator, Iterator
from datetime import UTC, datetime
from typing import Any

import httpx

from ..config import Settings
from ..engine.events import ChatChunk, LoadedInfo
from ..errors import BadRequest, Busy, CoveError, DoesNotFit, ModelNotFound
from ..recipe import parse_recipe
from ..store.huggingface import parse_hf_ref
from ..store.models import Manifest
from ..store.names import parse_name
from ..store.progress import ProgressCallback, PullProgress, ignore_progress

ERRORS: dict[int, type[CoveError]] = {400: BadRequest, 404: ModelNotFound, 503: Busy, 507: DoesNotFit}


def find_server(settings: Settings) -> RemoteCove | None:
    """A server answering at COVE_HOST, or None; asked quickly so a missing one costs nothing."""
    remote = RemoteCove(settings)
    try:
        response = remote.http.get("/api/version", timeout=0.5)
    except httpx.HTTPError:
        remote.close()
        return None
    if response.status_code != 200 or "version" not in response.text:
        remote.close()
        return None
    return remote


class RemoteCove:
    """The subset of `Cove` the CLI uses, over the server's Ollama-compatible API."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        host = f"[{settings.host}]" if ":" in settings.host else settings.host
        headers = {"authorization": f"Bearer {settings.api_keys[0]}"} if settings.api_keys else {}
        self.http = httpx.Client(base_url=f"http://{host}:{settings.port}", headers=headers, timeout=None)

    def _post(self, path: str, body: dict[str, Any]) -> httpx.Response:
        response = self.http.post(path, json=body)
        _raise_for(response)
        return response

    def _lines(self, path: str, body: dict[str, Any]) -> Iterator[dict[str, Any]]:
        with self.http.stream("POST", path, json=body) as response:
            if response.status_code >= 400:
                response.read()
                _raise_for(response)
            for line in response.iter_lines():
                if line.strip():
                    data = json.loads(line)
                    if "error" in data:
                        raise CoveError(data["error"])
                    yield data

    def models(self) -> list[Manifest]:
        response = self.http.get("/api/tags")
        _raise_for(response)
        return [_manifest(m) for m in response.json()["models"]]

    def model(self, name: str) -> Manifest:
        shown = self._post("/api/show", {"model": name}).json()
        details = shown.get("details") or {}
        info = {"architecture": details.get("family"), "quantization": details.get("quantization_level")}
        recipe = parse_recipe(shown["modelfile"]).to_dict() if shown.get("modelfile") else {}
        return Manifest(name=name, digest="", size=0, source="server", info=info, recipe=recipe)

    def stream_chat(
        self, model: str, messages: list[dict[str, Any]], *, options: dict[str, Any] | None = None
    ) -> Generator[ChatChunk, None, None]:
        started = time.perf_counter()
        first: float | None = None
        body = {"model": model, "messages": messages, "options": options or {}, "stream": True}
        for data in self._lines("/api/chat", body):
            text = (data.get("message") or {}).get("content") or ""
            if text and first is None:
                first = time.perf_counter() - started
            if not data.get("done"):
                yield ChatChunk(content=text, raw=data)
                continue
            seconds = data.get("eval_duration", 0) / 1e9
            speed = data.get("eval_count", 0) / seconds if seconds else None
            yield ChatChunk(
                content=text,
                done=True,
                finish_reason=data.get("done_reason"),
                prompt_tokens=data.get("prompt_eval_count"),
                completion_tokens=data.get("eval_count"),
                tokens_per_s=speed,
                time_to_first_token_s=first,
                raw=data,
            )

    def pull(self, ref: str, progress: ProgressCallback = ignore_progress) -> Manifest:
        for data in self._lines("/api/pull", {"model": ref, "stream": True}):
            progress(
                PullProgress(
                    data.get("status", ""), data.get("digest"), data.get("total"), data.get("completed")
                )
            )
        wanted = parse_name(catalog_name(ref))
        return next((m for m in self.models() if m.name == str(wanted)), _manifest({"name": str(wanted)}))

    def remove(self, name: str) -> Manifest:
        response = self.http.request("DELETE", "/api/delete", json={"model": name})
        _raise_for(response)
        return _manifest({"name": name})

    def copy(self, source: str, destination: str) -> Manifest:
        self._post("/api/copy", {"source": source, "destination": destination})
        return _manifest({"name": destination})

    def create(self, name: str, recipe_text: str, folder: Any = None) -> Manifest:
        for _ in self._lines("/api/create", {"model": name, "modelfile": recipe_text}):
            pass
        return _manifest({"name": name})

    def loaded(self) -> list[LoadedInfo]:
        response = self.http.get("/api/ps")
        _raise_for(response)
        return [
            LoadedInfo(
                name=m["name"],
                digest=m.get("digest", ""),
                size=m.get("size", 0),
                num_ctx=m.get("context_length", 0),
                num_parallel=0,
                active=0,
                expires_in_s=_seconds_until(m.get("expires_at")),
            )
            for m in response.json()["models"]
        ]

    def stop(self, name: str) -> bool:
        loaded = {m.name for m in self.loaded()}
        self._post("/api/generate", {"model": name, "keep_alive": 0})
        return any(n == name or n.split(":")[0] == name for n in loaded)

    def close(self) -> None:
        self.http.close()


def catalog_name(ref: str) -> str:
    """The store name a pull of `ref` ends up under (an hf.co ref is renamed by quant)."""
    hf = parse_hf_ref(ref)
    return hf.store_name if hf else ref


def _seconds_until(stamp: str | None) -> float | None:
    if not stamp:
        return None
    try:
        when = datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    except ValueError:
        return None
    return (when - datetime.now(UTC)).total_seconds()


def _manifest(data: dict[str, Any]) -> Manifest:
    return Manifest(
        name=data.get("name", ""),
        digest=data.get("digest", ""),
        size=data.get("size", 0),
        source="server",
        info={},
        modified=data.get("modified_at", ""),
    )


def _raise_for(response: httpx.Response) -> None:
    if response.status_code < 400:
        return
    try:
        message = response.json().get("error") or response.text
    except ValueError:
        message = response.text
    if isinstance(message, dict):
        message = message.get("message", str(message))
    raise ERRORS.get(response.status_code, CoveError)(f"server: {message}")
