"""Hugging Face's HTTP protocol: naming a GGUF in a repo, picking it, resumable verified pulls."""

from __future__ import annotations

import hashlib
import re
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import httpx

from ..errors import DigestMismatch, InvalidName, ModelNotFound, PullError
from ..net import gate
from ..net.policy import PULL
from .blobs import Blobs, PartialBlob
from .progress import ProgressCallback, PullProgress, ignore_progress

USER_AGENT = "cove/0.1"
DEFAULT_ENDPOINT = "https://huggingface.co"
DEFAULT_QUANT = "Q4_K_M"
MAX_REDIRECTS = 5
MAX_RETRIES = 3
MAX_PAGES = 50
PROGRESS_INTERVAL = 0.1

_PREFIXES = (
    "https://huggingface.co/",
    "http://huggingface.co/",
    "https://hf.co/",
    "http://hf.co/",
    "huggingface.co/",
    "hf.co/",
)
_REPO_PART = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,95}$")
_QUANT = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$")
_UNSAFE = re.compile(r"[\x00-\x1f\x7f\\]")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_SHA1 = re.compile(r"^[0-9a-f]{40}$")
_SPLIT = re.compile(r"-\d{5}-of-\d{5}\.gguf$", re.IGNORECASE)
_QUANT_IN_NAME = re.compile(
    r"(?<![A-Za-z0-9])(I?Q\d+(?:_[A-Z0-9]+)*|TQ\d_\d|BF16|FP16|FP32|F16|F32)(?![A-Za-z0-9])",
    re.IGNORECASE,
)
_RANGE_START = re.compile(r"^bytes (\d+)-")


@dataclass(frozen=True)
class HFRef:
    """A GGUF in a Hugging Face repo, named by quant (`:Q4_K_M`) or by file path."""

    owner: str
    repo: str
    revision: str = "main"
    quant: str | None = None
    filename: str | None = None

    @property
    def repo_id(self) -> str:
        return f"hf.co/{self.owner}/{self.repo}"

    @property
    def store_name(self) -> str:
        """The cove model name this ref is stored under; lower-case so it round-trips parse_name."""
        return f"hf.co/{self.owner.lower()}/{self.repo.lower()}:{self._tag()}"

    def _tag(self) -> str:
        if self.filename:
            stem = self.filename.rsplit("/", 1)[-1][: -len(".gguf")]
            # A tag may not start with '.' or '-', so strip those after the replacement.
            tag = re.sub(r"[^a-z0-9._-]", "-", stem.lower())[:128].lstrip(".-")
            return tag or "gguf"
        return (self.quant or DEFAULT_QUANT).lower()


@dataclass(frozen=True)
class RemoteFile:
    """One resolved file: where to GET it and what it should hash to."""

    ref: HFRef
    filename: str
    url: str
    sha256: str | None
    size: int | None
    #: The server's ETag when it is not a sha256 (a git blob sha1 for small non-LFS files).
    etag: str | None = None


def parse_hf_ref(ref: str) -> HFRef | None:
    """Parse `hf.co/OWNER/REPO[:QUANT]` or `hf.co/OWNER/REPO/PATH.gguf`; None if not a HF ref."""
    rest = _strip_prefix(ref.strip())
    if rest is None:
        return None
    if _UNSAFE.search(rest) or rest.startswith("/"):
        raise InvalidName(
            f"invalid Hugging Face reference {_show(ref)}: "
            "no NUL, backslash, control character or absolute path"
        )
    parts = rest.rstrip("/").split("/")
    if len(parts) < 2:
        raise InvalidName(f"invalid Hugging Face reference {_show(ref)}: use hf.co/OWNER/REPO")
    owner, repo, file_parts = parts[0], parts[1], parts[2:]
    quant = None
    if not file_parts:
        repo, quant = _split_quant(repo, ref)
    for part in (owner, repo):
        if not _REPO_PART.match(part) or ".." in part:
            raise InvalidName(
                f"invalid Hugging Face reference {_show(ref)}: owner and repo use letters, "
                "digits, '.', '_' and '-'"
            )
    revision, filename = _split_file(file_parts, ref)
    return HFRef(owner, repo, revision, quant, filename)


def _strip_prefix(text: str) -> str | None:
    lower = text.lower()
    for prefix in _PREFIXES:
        if lower.startswith(prefix):
            rest = text[len(prefix) :]
            # A pasted browser URL may carry "?download=true" or an anchor.
            return re.split(r"[?#]", rest, maxsplit=1)[0] if "://" in prefix else rest
    return None


def _split_quant(repo: str, ref: str) -> tuple[str, str | None]:
    repo, sep, quant = repo.partition(":")
    if not sep:
        return repo, None
    if not _QUANT.match(quant):
        raise InvalidName(f"invalid quant in {_show(ref)}: use something like :Q4_K_M")
    # Ollama treats ":latest" on a HF ref as "the default quant".
    return repo, None if quant.lower() == "latest" else quant


def _split_file(parts: list[str], ref: str) -> tuple[str, str | None]:
    """Split `[resolve|blob/REV/]DIR/FILE.gguf` (a pasted URL) into revision and file path."""
    if not parts:
        return "main", None
    revision = "main"
    if len(parts) >= 3 and parts[0] in ("resolve", "blob"):
        revision, parts = parts[1], parts[2:]
    if any(p in ("", ".", "..") for p in [revision, *parts]):
        raise InvalidName(f"invalid Hugging Face reference {_show(ref)}: empty, '.' or '..' part")
    filename = "/".join(parts)
    if not filename.lower().endswith(".gguf") or len(parts[-1]) <= len(".gguf"):
        raise InvalidName(f"invalid Hugging Face reference {_show(ref)}: name a .gguf file")
    return revision, filename


def _show(raw: object) -> str:
    text = repr(raw)
    return text if len(text) <= 80 else text[:77] + "..."


class HuggingFace:
    """A client for one Hugging Face endpoint (the real site, a mirror, or a test server)."""

    def __init__(
        self,
        endpoint: str = DEFAULT_ENDPOINT,
        token: str | None = None,
        *,
        client: httpx.Client | None = None,
        timeout: float = 30.0,
        retry_delay: float = 0.5,
        egress: gate.Gate | None = None,
    ) -> None:
        self.endpoint = endpoint.rstrip("/")
        self._origin = _origin(self.endpoint)
        self._token = token or None
        self._own_client = client is None
        # The egress gate judges every request (each redirect hop too) and records its bytes.
        # `egress`: the gate of the caller's settings (`gate.for_settings`); else the process's.
        self._client = client or gate.client(PULL, gate=egress, timeout=timeout, follow_redirects=False)
        self.retry_delay = retry_delay

    def close(self) -> None:
        if self._own_client:
            self._client.close()

    def __enter__(self) -> HuggingFace:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    # -- listing and choosing ---------------------------------------------------------------

    def list_files(self, ref: HFRef) -> list[str]:
        """Every file path in the repo at the ref's revision."""
        base = f"{self.endpoint}/api/models/{quote(ref.owner)}/{quote(ref.repo)}"
        tree = f"{base}/tree/{quote(ref.revision, safe='')}?recursive=true"
        try:
            files = self._tree(ref, tree)
            if files is None:
                files = self._siblings(ref, base)
        except httpx.HTTPError as exc:
            raise self._unreachable(exc) from exc
        return files

    def file_sizes(self, ref: HFRef) -> dict[str, int]:
        """Path → bytes of every file in the repo whose tree listing gives its size (the LFS
        object's size for weights); {} from an endpoint without a tree API."""
        base = f"{self.endpoint}/api/models/{quote(ref.owner)}/{quote(ref.repo)}"
        tree = f"{base}/tree/{quote(ref.revision, safe='')}?recursive=true"
        try:
            entries = self._tree_entries(ref, tree) or []
        except httpx.HTTPError as exc:
            raise self._unreachable(exc) from exc
        sizes = {}
        for entry in entries:
            lfs = entry.get("lfs")
            size = lfs.get("size") if isinstance(lfs, dict) else entry.get("size")
            if isinstance(size, int) and not isinstance(size, bool) and size > 0:
                sizes[str(entry["path"])] = size
        return sizes

    def get_range(self, url: str, start: int, end: int) -> httpx.Response:
        """Bytes [start, end) of `url`, streamed (the caller reads and closes it). The status
        and Content-Range are the caller's to check: a server may ignore the Range."""
        headers = {"Range": f"bytes={start}-{end - 1}", "Accept-Encoding": "identity"}
        response, _ = self._send("GET", url, headers, stream=True)
        return response

    def _tree(self, ref: HFRef, url: str) -> list[str] | None:
        """Walk the paginated tree listing; None when the endpoint has no tree API (404)."""
        entries = self._tree_entries(ref, url)
        return None if entries is None else [e["path"] for e in entries]

    def _tree_entries(self, ref: HFRef, url: str) -> list[dict[str, Any]] | None:
        """The tree listing's file entries, every page; None when there is no tree API (404)."""
        files: list[dict[str, Any]] = []
        for _ in range(MAX_PAGES):
            response, url = self._send("GET", url)
            if response.status_code == 404 and not files:
                return None
            self._expect(response, ref, 200)
            entries = _json(response, list)
            files += [
                e
                for e in entries
                if isinstance(e, dict) and e.get("type") == "file" and isinstance(e.get("path"), str)
            ]
            following = response.links.get("next", {}).get("url")
            if not following:
                break
            url = str(httpx.URL(url).join(following))
            if _origin(url) != self._origin:
                break
        return files

    def _siblings(self, ref: HFRef, url: str) -> list[str]:
        response, _ = self._send("GET", url)
        self._expect(response, ref, 200)
        siblings = _json(response, dict).get("siblings") or []
        return [
            s["rfilename"] for s in siblings if isinstance(s, dict) and isinstance(s.get("rfilename"), str)
        ]

    def choose_file(self, ref: HFRef, files: list[str]) -> str:
        """The GGUF the ref means: its named file, or the one with its quant as a whole token."""
        if ref.filename is not None:
            if ref.filename not in files:
                raise ModelNotFound(f"{ref.repo_id} has no file {ref.filename!r}")
            _refuse_split([ref.filename])
            return ref.filename
        ggufs = [f for f in files if f.lower().endswith(".gguf") and "mmproj" not in f.lower()]
        quant = ref.quant or DEFAULT_QUANT
        matches = _matching(quant, ggufs)
        if not matches:
            raise ModelNotFound(_no_quant_message(ref, quant, ggufs))
        whole = [f for f in matches if not _SPLIT.search(f)]
        if not whole:
            _refuse_split(matches)
        # Prefer the top-level, shortest name: sub-folders tend to hold variants.
        return min(whole, key=lambda f: (f.count("/"), len(f), f.lower()))

    # -- resolving ------------------------------------------------------------------------

    def resolve(self, ref: HFRef) -> RemoteFile:
        """Pick the file (listing the repo when needed) and read its digest and size with a HEAD."""
        if ref.filename is None:
            filename = self.choose_file(ref, self.list_files(ref))
        else:
            filename = ref.filename
            _refuse_split([filename])
        url = (
            f"{self.endpoint}/{quote(ref.owner)}/{quote(ref.repo)}/resolve/"
            f"{quote(ref.revision, safe='')}/{quote(filename)}"
        )
        try:
            # LFS files answer with a redirect to a CDN; its headers carry the sha256 already.
            response, url = self._send("HEAD", url, cross_host=False)
        except httpx.HTTPError as exc:
            raise self._unreachable(exc) from exc
        if not (response.is_success or response.is_redirect):
            self._expect(response, ref, 200, what=f"file {filename!r} in {ref.repo_id}")
        return _remote_from_headers(ref, filename, url, response)

    # -- downloading ----------------------------------------------------------------------

    def download(self, remote: RemoteFile, blobs: Blobs, progress: ProgressCallback = ignore_progress) -> str:
        """Fetch the file into `blobs`, resuming a partial one, verified; returns the hex digest."""
        sha = remote.sha256
        if sha and self._have(sha, remote, blobs, progress):
            return sha
        git_sha1 = self._git_sha1_to_check(remote)
        key = f"hf:{remote.url}"
        # Two pulls of one file share its partial: the second waits here, then finds it done.
        with blobs.writing(sha, key):
            if sha and self._have(sha, remote, blobs, progress):
                return sha
            partial = blobs.partial(sha, resume=True, key=key)
            try:
                if remote.size is not None:
                    needed = remote.size - min(partial.size, remote.size)
                    blobs.ensure_room(needed, f"{remote.ref.repo_id} ({remote.filename})")
                sink = _Sink(partial, remote, git_sha1, progress)
                self._fill(remote, sink)
                sink.report(force=True)
                sink.verify()
                return partial.finish()
            except BaseException:
                # Keep what arrived so the same pull resumes; verify/finish already removed bad bytes.
                partial.abandon(keep=partial.size > 0)
                raise

    def _have(self, sha: str, remote: RemoteFile, blobs: Blobs, progress: ProgressCallback) -> bool:
        if not blobs.exists(sha):
            return False
        progress(PullProgress("already have", f"sha256:{sha}", remote.size, remote.size))
        return True

    def _git_sha1_to_check(self, remote: RemoteFile) -> str | None:
        """Without a sha256 we need another check, unless the server gave no ETag at all."""
        if remote.sha256 or remote.etag is None:
            return None
        if _SHA1.match(remote.etag) and remote.size is not None:
            return remote.etag
        raise PullError(
            f"{_host(remote.url)} gave no sha256 for {remote.filename!r}, "
            "and an ETag cove cannot check; refusing an unverified download"
        )

    def _fill(self, remote: RemoteFile, sink: _Sink) -> None:
        """GET until the partial is complete: resume with Range, retry drops, restart when told."""
        failures = 0
        restarted = False
        while remote.size is None or sink.size < remote.size:
            if remote.size is not None and sink.size > remote.size:
                sink.restart()
            before = sink.size
            try:
                if self._fetch(remote, sink):
                    return
            except (httpx.TransportError, _ShortBody) as exc:
                # A retry that made progress starts the count again: long pulls on flaky links.
                failures = 1 if sink.size > before else failures + 1
                if failures > MAX_RETRIES:
                    raise PullError(
                        f"download interrupted after {sink.size} bytes; run the same pull again to resume"
                    ) from exc
                time.sleep(self.retry_delay * 2 ** (failures - 1))
                continue
            if restarted:
                raise PullError(f"{_host(remote.url)} refused the download even from byte 0")
            restarted = True
            sink.restart()

    def _fetch(self, remote: RemoteFile, sink: _Sink) -> bool:
        """One GET from the partial's end; False when the server wants us to start over."""
        offset = sink.size
        # Compressed transfer would make Content-Length and Range count the wrong bytes.
        headers = {"Accept-Encoding": "identity"}
        if offset:
            headers["Range"] = f"bytes={offset}-"
        response, _ = self._send("GET", remote.url, headers, stream=True)
        try:
            code = response.status_code
            if code == 416 or (code == 206 and _range_start(response) != offset):
                return False
            if code not in (200, 206):
                self._expect(response, remote.ref, 200, what=f"file {remote.filename!r}")
            if code == 200 and offset:
                sink.restart()
            expected = _int(response.headers.get("content-length"))
            received = 0
            for chunk in response.iter_raw():
                sink.write(chunk)
                received += len(chunk)
            if expected is not None and received < expected:
                raise _ShortBody(f"{received} of {expected} bytes")
            return True
        finally:
            response.close()

    # -- HTTP plumbing --------------------------------------------------------------------

    def _send(
        self,
        method: str,
        url: str,
        headers: dict[str, str] | None = None,
        *,
        stream: bool = False,
        cross_host: bool = True,
    ) -> tuple[httpx.Response, str]:
        """Send, following redirects by hand so the token never leaves the endpoint's host."""
        for _ in range(MAX_REDIRECTS + 1):
            request = self._client.build_request(method, url, headers=self._headers(url, headers))
            response = self._client.send(request, stream=stream, follow_redirects=False)
            if not response.is_redirect:
                return response, url
            try:
                target = _redirect_target(response, url)
            except PullError:
                response.close()
                raise
            if not cross_host and _origin(target) != self._origin:
                return response, url
            response.close()
            url = target
        raise PullError(f"too many redirects from {_host(url)}")

    def _headers(self, url: str, extra: dict[str, str] | None) -> dict[str, str]:
        headers = {"User-Agent": USER_AGENT, **(extra or {})}
        if self._token and _origin(url) == self._origin:
            headers["Authorization"] = f"Bearer {self._token}"
        return headers

    def _expect(self, response: httpx.Response, ref: HFRef, code: int, what: str = "") -> None:
        """Turn an unexpected status into the error a person can act on."""
        if response.status_code == code:
            return
        what = what or ref.repo_id
        host = response.request.url.host
        own_host = _origin(str(response.request.url)) == self._origin
        if response.status_code in (401, 403) and own_host:
            if self._token:
                raise PullError(
                    f"{ref.repo_id} is gated or private and the token in HF_TOKEN cannot read it: "
                    "accept its terms on the website or use another token"
                )
            raise PullError(
                f"{ref.repo_id} is private or gated (or does not exist): "
                "set HF_TOKEN to a token that can read it"
            )
        if response.status_code == 404:
            raise ModelNotFound(f"{what} was not found on {host}")
        raise PullError(f"{host} answered HTTP {response.status_code} for {what}")

    def _unreachable(self, exc: Exception) -> PullError:
        return PullError(f"could not reach {_host(self.endpoint)}: {type(exc).__name__}: {exc}")


class _ShortBody(Exception):
    """The connection ended before Content-Length bytes arrived."""


class _Sink:
    """The partial blob plus what watches it grow: progress reports and an optional git sha1."""

    def __init__(
        self,
        partial: PartialBlob,
        remote: RemoteFile,
        git_sha1: str | None,
        progress: ProgressCallback,
    ) -> None:
        self.partial = partial
        self.remote = remote
        self.git_sha1 = git_sha1
        self._progress = progress
        self._last_report = 0.0
        # Only a file without a sha256 pays for a second hash over every byte.
        self._sha1 = self._new_sha1() if git_sha1 else None
        if git_sha1 and partial.size:
            self._hash_existing()
        self._status, self._digest = _labels(remote, git_sha1)
        self.report(force=True)

    @property
    def size(self) -> int:
        return self.partial.size

    def write(self, data: bytes) -> None:
        self.partial.write(data)
        if self._sha1 is not None:
            self._sha1.update(data)
        self.report()

    def restart(self) -> None:
        self.partial.restart()
        if self._sha1 is not None:
            self._sha1 = self._new_sha1()

    def report(self, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._last_report < PROGRESS_INTERVAL:
            return
        self._last_report = now
        total = self.remote.size
        self._progress(PullProgress(self._status, self._digest, total, self.partial.size))

    def verify(self) -> None:
        """Checks finish() cannot make: the git blob sha1, or at least the size."""
        size = self.remote.size
        if self.git_sha1 and self._sha1 is not None and self._sha1.hexdigest() != self.git_sha1:
            self.partial.abandon(keep=False)
            raise DigestMismatch(
                f"{self.remote.filename!r}: git sha1 mismatch, expected {self.git_sha1[:12]}…; "
                "nothing was stored"
            )
        if size is not None and self.partial.size != size:
            self.partial.abandon(keep=False)
            raise PullError(f"{self.remote.filename!r}: got {self.partial.size} bytes, expected {size}")

    def _new_sha1(self) -> Any:
        # Git hashes "blob <size>\0" + content; the size is known before the first byte.
        header = f"blob {self.remote.size or 0}\0".encode()
        return hashlib.sha1(header, usedforsecurity=False)

    def _hash_existing(self) -> None:
        assert self._sha1 is not None
        remaining = self.partial.size
        with open(self.partial.path, "rb") as handle:
            while remaining and (block := handle.read(min(remaining, 1 << 20))):
                self._sha1.update(block)
                remaining -= len(block)


def _labels(remote: RemoteFile, git_sha1: str | None) -> tuple[str, str | None]:
    """Progress status and digest: the sha256 when known, else say how the file is checked."""
    if remote.sha256:
        return f"pulling {remote.sha256[:12]}", f"sha256:{remote.sha256}"
    name = remote.filename.rsplit("/", 1)[-1]
    if git_sha1:
        return f"pulling {name} (checked by git sha1 {git_sha1[:12]})", None
    return f"pulling {name} (unverified: the server sent no checksum)", None


def _matching(quant: str, files: list[str]) -> list[str]:
    """Files carrying the quant as a whole token; Q4_K falls back to Q4_K_M like llama.cpp."""
    q = re.escape(quant)
    tiers = [rf"(?<![A-Za-z0-9]){q}(?![A-Za-z0-9_])"]
    if quant.upper().endswith("_K"):
        tiers.append(rf"(?<![A-Za-z0-9]){q}_M(?![A-Za-z0-9_])")
    tiers.append(rf"(?<![A-Za-z0-9]){q}(?![A-Za-z0-9])")
    for tier in tiers:
        pattern = re.compile(tier, re.IGNORECASE)
        found = [f for f in files if pattern.search(f[: -len(".gguf")])]
        if found:
            return found
    return []


def _no_quant_message(ref: HFRef, quant: str, ggufs: list[str]) -> str:
    if not ggufs:
        return f"{ref.repo_id} has no GGUF files"
    quants = set()
    for name in ggufs:
        stem = name.rsplit("/", 1)[-1][: -len(".gguf")]
        found = _QUANT_IN_NAME.findall(stem)
        quants.add(found[-1].upper() if found else stem)
    listed = ", ".join(sorted(quants))
    return f"{ref.repo_id} has no {quant} GGUF; it has {listed} (use {ref.repo_id}:QUANT)"


def _refuse_split(files: list[str]) -> None:
    split = [f for f in files if _SPLIT.search(f)]
    if split:
        raise PullError(f"split GGUF files are not supported yet: {split[0]}")


def _remote_from_headers(ref: HFRef, filename: str, url: str, response: httpx.Response) -> RemoteFile:
    headers = response.headers
    linked = _clean_etag(headers.get("x-linked-etag"))
    plain = _clean_etag(headers.get("etag"))
    sha = next((e for e in (linked, plain) if e and _SHA256.match(e)), None)
    size = _int(headers.get("x-linked-size"))
    if size is None and not response.is_redirect:
        # A redirect's Content-Length is that of its own (empty) body, not the file's.
        size = _int(headers.get("content-length"))
    etag = None if sha else (linked or plain)
    return RemoteFile(ref, filename, url, sha, size, etag)


def _clean_etag(raw: str | None) -> str | None:
    if raw is None:
        return None
    text = raw.strip()
    if text.startswith("W/"):
        text = text[2:]
    return text.strip('"').lower() or None


def _int(raw: str | None) -> int | None:
    try:
        value = int(raw) if raw is not None else None
    except ValueError:
        return None
    return value if value is not None and value >= 0 else None


def _range_start(response: httpx.Response) -> int | None:
    match = _RANGE_START.match(response.headers.get("content-range", ""))
    return int(match.group(1)) if match else None


def _redirect_target(response: httpx.Response, url: str) -> str:
    try:
        target = httpx.URL(url).join(response.headers["location"])
    except httpx.InvalidURL as exc:
        raise PullError(f"{_host(url)} redirected to an invalid URL") from exc
    if target.scheme not in ("http", "https"):
        raise PullError(f"{_host(url)} redirected to a {target.scheme!r} URL; refusing it")
    return str(target)


def _origin(url: str) -> tuple[str, str, int | None]:
    parsed = httpx.URL(url)
    default = {"http": 80, "https": 443}.get(parsed.scheme)
    return parsed.scheme, parsed.host, parsed.port or default


def _host(url: str) -> str:
    return httpx.URL(url).host


def _json(response: httpx.Response, kind: type) -> Any:
    try:
        data = response.json()
    except ValueError as exc:
        raise PullError(f"{response.request.url.host} sent a listing that is not JSON") from exc
    if not isinstance(data, kind):
        raise PullError(f"{response.request.url.host} sent an unexpected listing")
    return data
