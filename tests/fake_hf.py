"""A loopback HTTP server that answers like Hugging Face, with switches for how pulls fail."""

from __future__ import annotations

import hashlib
import json
import re
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import unquote, urlsplit

CHUNK = 16 * 1024


@dataclass
class FakeFile:
    data: bytes
    lfs: bool
    sha256: str = field(init=False)
    git_sha1: str = field(init=False)

    def __post_init__(self) -> None:
        self.sha256 = hashlib.sha256(self.data).hexdigest()
        self.git_sha1 = git_blob_sha1(self.data)


@dataclass
class Seen:
    """One request as received: method, unquoted path, and headers with lower-case names."""

    method: str
    path: str
    headers: dict[str, str]


def git_blob_sha1(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data, usedforsecurity=False).hexdigest()


class FakeHF:
    """`with FakeHF() as hf:` serves `hf.url`; tests flip the public switches between calls."""

    def __init__(self, host: str = "127.0.0.1") -> None:
        self.repos: dict[tuple[str, str], dict[str, FakeFile]] = {}
        self.requests: list[Seen] = []
        self.ignore_range = False
        self.drop_after_bytes: int | None = None
        self.drops_remaining = 0
        self.wrong_digest = False
        self.redirect_to: str | None = None
        self.slow = 0.0
        self.require_token: str | None = None
        self.no_tree = False
        self.no_etag = False
        #: Answer `Range: bytes=A-B` with only those bytes (off: from A to the end, as before).
        self.honour_range_end = False
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer((host, 0), _Handler)
        self._server.daemon_threads = True
        self._server.fake = self  # type: ignore[attr-defined]
        self.url = f"http://{host}:{self._server.server_address[1]}"
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )
        self._thread.start()

    def __enter__(self) -> FakeHF:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def add_repo(self, owner: str, repo: str) -> None:
        self.repos.setdefault((owner, repo), {})

    def add_file(self, owner: str, repo: str, filename: str, data: bytes, lfs: bool = True) -> FakeFile:
        fake = FakeFile(data, lfs)
        self.repos.setdefault((owner, repo), {})[filename] = fake
        return fake

    def seen(self, method: str | None = None, contains: str = "") -> list[Seen]:
        with self._lock:
            return [r for r in self.requests if (method is None or r.method == method) and contains in r.path]

    def _log(self, method: str, path: str, headers: Any) -> None:
        with self._lock:
            self.requests.append(Seen(method, path, {k.lower(): v for k, v in headers.items()}))

    def _take_drop(self) -> int | None:
        """The byte count to cut this body at, consuming one drop; None to send it whole."""
        with self._lock:
            if self.drop_after_bytes is None or self.drops_remaining <= 0:
                return None
            self.drops_remaining -= 1
            return self.drop_after_bytes


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: ThreadingHTTPServer

    def log_message(self, *_: Any) -> None:
        pass

    def do_GET(self) -> None:
        self._route(send_body=True)

    def do_HEAD(self) -> None:
        self._route(send_body=False)

    @property
    def fake(self) -> FakeHF:
        return self.server.fake  # type: ignore[attr-defined,no-any-return]

    def _route(self, send_body: bool) -> None:
        path = urlsplit(self.path).path
        self.fake._log(self.command, unquote(path), self.headers)
        parts = [unquote(p) for p in path.split("/")[1:]]
        if self.fake.require_token and self.headers.get("authorization") != (
            f"Bearer {self.fake.require_token}"
        ):
            return self._reply(401, b'{"error":"Invalid credentials"}')
        if parts[:2] == ["api", "models"] and len(parts) >= 4:
            return self._api(parts[2], parts[3], parts[4:])
        if len(parts) >= 5 and parts[2] == "resolve":
            return self._resolve(parts[0], parts[1], parts[3], "/".join(parts[4:]), send_body)
        self._reply(404, b"Not Found")

    def _api(self, owner: str, repo: str, rest: list[str]) -> None:
        files = self.fake.repos.get((owner, repo))
        if files is None:
            return self._reply(404, b'{"error":"Repository not found"}')
        if not rest:
            siblings = [{"rfilename": name} for name in files]
            return self._json({"id": f"{owner}/{repo}", "siblings": siblings})
        if self.fake.no_tree or rest[0] != "tree" or rest[1:] != ["main"]:
            return self._reply(404, b'{"error":"Not found"}')
        self._json(_tree(files))

    def _resolve(self, owner: str, repo: str, rev: str, name: str, send_body: bool) -> None:
        found = self.fake.repos.get((owner, repo), {}).get(name)
        if found is None or rev != "main":
            return self._reply(404, b"Entry not found")
        headers = self._file_headers(found)
        if self.fake.redirect_to:
            location = self.fake.redirect_to + self.path
            return self._reply(302, b"", {**headers, "Location": location})
        start = self._range_start()
        total = len(found.data)
        if start is None:
            return self._send_file(200, found.data, headers, send_body)
        if start >= total:
            return self._reply(416, b"", {"Content-Range": f"bytes */{total}"})
        last = min(self._range_end(), total - 1) if self.fake.honour_range_end else total - 1
        headers["Content-Range"] = f"bytes {start}-{last}/{total}"
        self._send_file(206, found.data[start : last + 1], headers, send_body)

    def _file_headers(self, found: FakeFile) -> dict[str, str]:
        headers = {"Accept-Ranges": "bytes", "Content-Type": "application/octet-stream"}
        if self.fake.no_etag:
            return headers
        wrong = self.fake.wrong_digest
        if found.lfs:
            sha = hashlib.sha256(found.data + b"x").hexdigest() if wrong else found.sha256
            pointer = f"version https://git-lfs.github.com/spec/v1\noid sha256:{sha}\n"
            headers["X-Linked-Etag"] = f'"{sha}"'
            headers["X-Linked-Size"] = str(len(found.data))
            headers["ETag"] = f'W/"{git_blob_sha1(pointer.encode())}"'
        else:
            sha1 = git_blob_sha1(found.data + b"x") if wrong else found.git_sha1
            headers["ETag"] = f'"{sha1}"'
        return headers

    def _range_start(self) -> int | None:
        match = re.fullmatch(r"bytes=(\d+)-\d*", self.headers.get("range", ""))
        if self.fake.ignore_range or not match:
            return None
        return int(match.group(1))

    def _range_end(self) -> int:
        """The B of `bytes=A-B` (a very large number when the range is open-ended)."""
        match = re.fullmatch(r"bytes=\d+-(\d+)", self.headers.get("range", ""))
        return int(match.group(1)) if match else 1 << 62

    def _send_file(self, code: int, body: bytes, headers: dict[str, str], send_body: bool) -> None:
        self.send_response(code)
        for key, value in {**headers, "Content-Length": str(len(body))}.items():
            self.send_header(key, value)
        self.end_headers()
        if not send_body:
            return
        cut = self.fake._take_drop()
        try:
            self._stream(body if cut is None else body[:cut])
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True
        if cut is not None:
            # Ending the connection short of Content-Length is how a dropped link looks.
            self.close_connection = True

    def _stream(self, body: bytes) -> None:
        for offset in range(0, len(body), CHUNK):
            self.wfile.write(body[offset : offset + CHUNK])
            self.wfile.flush()
            if self.fake.slow:
                time.sleep(self.fake.slow)

    def _json(self, value: object) -> None:
        self._reply(200, json.dumps(value).encode(), {"Content-Type": "application/json"})

    def _reply(self, code: int, body: bytes, headers: dict[str, str] | None = None) -> None:
        self.send_response(code)
        for key, value in {**(headers or {}), "Content-Length": str(len(body))}.items():
            self.send_header(key, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)


def _tree(files: dict[str, FakeFile]) -> list[dict[str, object]]:
    """The recursive tree listing: folders first, then files, with LFS details where they apply."""
    folders = sorted({name.rsplit("/", 1)[0] for name in files if "/" in name})
    entries: list[dict[str, object]] = [{"type": "directory", "path": f} for f in folders]
    for name, found in files.items():
        entry: dict[str, object] = {"type": "file", "path": name, "size": len(found.data)}
        if found.lfs:
            entry["lfs"] = {"oid": found.sha256, "size": len(found.data)}
        entries.append(entry)
    return entries
