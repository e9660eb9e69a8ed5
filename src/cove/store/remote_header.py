"""What a GGUF on Hugging Face is, before downloading it: the repo's file list with sizes, and
the chosen file's header read with HTTP Range requests (header bytes only, never the weights),
parsed by cove's own GGUF reader."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import httpx

from ..config import Settings
from ..errors import InvalidModelFile, InvalidName, PullError
from ..net import gate
from . import gguf
from .huggingface import HFRef, HuggingFace, parse_hf_ref
from .models import EMBEDDING_ARCHITECTURES

#: The first Range request; each further one doubles, so a 10 MB header (a big vocabulary
#: and its merges) takes four requests.
FIRST_BLOCK = 1 << 20
#: Past this the "header" is not one: real ones are tens of megabytes at most.
MAX_HEADER_BYTES = 128 << 20
_QUANT = re.compile(
    r"(?<![A-Za-z0-9])(I?Q\d+(?:_[A-Z0-9]+)*|TQ\d_\d|BF16|FP16|FP32|F16|F32)(?![A-Za-z0-9])",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class RemoteModel:
    """One GGUF in a repo as its header describes it, and the repo's other quants."""

    ref: HFRef
    filename: str
    size: int
    #: The header's summary, in the shape the store keeps (`Manifest.info`).
    info: dict[str, Any]
    #: Quant → bytes, for every single-file GGUF in the repo (the chosen one first).
    quants: dict[str, int] = field(default_factory=dict)
    #: Bytes the Range requests brought (the header and a little after it).
    bytes_read: int = 0

    @property
    def quant(self) -> str:
        return quant_of(self.filename) or str(self.info.get("quantization") or "file")

    def pull_ref(self, quant: str) -> str:
        return f"{self.ref.repo_id}:{quant}"


def quant_of(filename: str) -> str | None:
    stem = filename.rsplit("/", 1)[-1][: -len(".gguf")]
    found = _QUANT.findall(stem)
    return found[-1].upper() if found else None


def read_remote(text: str, settings: Settings, hf: HuggingFace | None = None) -> RemoteModel:
    """List the repo, pick the file the reference means, and read its header by Range."""
    ref = parse_hf_ref(text)
    if ref is None:
        raise InvalidName(f"{text!r} is not a Hugging Face reference (hf.co/OWNER/REPO[:QUANT])")
    own = hf is None
    client = hf or HuggingFace(settings.hf_endpoint, settings.hf_token, egress=gate.for_settings(settings))
    try:
        sizes = repo_sizes(client, ref)
        remote = client.resolve(ref)
        size = remote.size or sizes.get(remote.filename)
        if not size:
            raise PullError(f"{client.endpoint} did not say how big {remote.filename!r} is")
        source = RangeSource(client, remote.url, size)
        info = parse_header(source, size)
    finally:
        if own:
            client.close()
    quants = _quants(sizes, remote.filename, size)
    return RemoteModel(ref, remote.filename, size, info, quants, source.bytes_read)


def repo_sizes(hf: HuggingFace, ref: HFRef) -> dict[str, int]:
    """Path → bytes of every GGUF in the repo from its tree listing; {} if it gives none (the
    chosen file's own size is still known from its header read)."""
    try:
        sizes = hf.file_sizes(ref)
    except (PullError, httpx.HTTPError, ValueError):
        return {}
    return {path: size for path, size in sizes.items() if path.lower().endswith(".gguf")}


def _quants(sizes: dict[str, int], chosen: str, size: int) -> dict[str, int]:
    found = {quant_of(chosen) or "file": size}
    for path, nbytes in sorted(sizes.items(), key=lambda item: item[1]):
        quant = quant_of(path)
        split = re.search(r"-\d{5}-of-\d{5}\.gguf$", path)
        if quant and not split and "mmproj" not in path.lower():
            found.setdefault(quant, nbytes)
    return found


class RangeSource:
    """A read-only file over HTTP: each read past what is held fetches the next block by Range."""

    def __init__(self, hf: HuggingFace, url: str, size: int) -> None:
        self._hf, self._url, self.size = hf, url, size
        self._held = b""  # bytes [0, len(_held)) of the file
        self._pos = 0
        self._block = FIRST_BLOCK
        self.bytes_read = 0

    def seek(self, offset: int, whence: int = 0) -> int:
        self._pos = offset if whence == 0 else self._pos + offset if whence == 1 else self.size + offset
        return self._pos

    def tell(self) -> int:
        return self._pos

    def read(self, n: int = -1) -> bytes:
        end = self.size if n < 0 else min(self._pos + n, self.size)
        while len(self._held) < end:
            self._fetch(max(end, len(self._held) + self._block))
            self._block *= 2
        out = self._held[self._pos : end]
        self._pos = end
        return out

    def _fetch(self, end: int) -> None:
        start, end = len(self._held), min(end, self.size, MAX_HEADER_BYTES)
        if start >= end:
            raise InvalidModelFile(
                f"the GGUF header runs past {MAX_HEADER_BYTES >> 20} MiB; this file is not one cove will load"
            )
        try:
            response = self._hf.get_range(self._url, start, end)
        except httpx.HTTPError as exc:
            raise PullError(f"could not read the header of {self._url}: {type(exc).__name__}") from exc
        try:
            self._take(response, start, end)
        finally:
            response.close()

    def _take(self, response: httpx.Response, start: int, end: int) -> None:
        host, code = response.request.url.host, response.status_code
        if code not in (200, 206):
            raise PullError(f"{host} answered HTTP {code} for a header read")
        given = re.match(r"bytes (\d+)-", response.headers.get("content-range", ""))
        if (code == 200 and start) or (code == 206 and (given is None or int(given.group(1)) != start)):
            # The server ignores Range (or answers another); reading on would bring the weights.
            raise PullError(f"{host} does not serve the byte ranges asked for; cannot read the header only")
        wanted = end - start
        chunks, got = [], 0
        for chunk in response.iter_raw():
            chunks.append(chunk[: wanted - got])
            got += len(chunks[-1])
            if got >= wanted:
                break  # a server that sent more than asked: the rest is never read
        self.bytes_read += got
        if got < wanted:
            raise PullError(f"the header read ended after {got} of {wanted} bytes; try again")
        self._held += b"".join(chunks)


def parse_header(source: Any, size: int) -> dict[str, Any]:
    """The header's summary, by cove's reader (same limits as a file on disk), without the
    check that the tensor data is all there: it is still on the server."""
    info = gguf.read_header(source, size)
    return {**info.summary(), "embedding_only": info.architecture in EMBEDDING_ARCHITECTURES}
