"""The knowledge base of a running `cove serve`, through its /api/cove/kb routes: the same calls
and shapes as `KnowledgeBase`, so `cove kb` works the same either way."""

from __future__ import annotations

import builtins
import json
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx

from ..errors import CoveError
from ..knowledge.documents import Passage
from ..knowledge.errors import CollectionExists, CollectionNotFound, DocumentRefused
from ..knowledge.index import DocumentRow, Root
from ..knowledge.service import CollectionInfo, Found
from ..knowledge.sync import Progress, SyncProgress, SyncReport, no_progress
from .remote import ERRORS, error_type, raise_for

KB_ERRORS: dict[int, type[CoveError]] = {
    **ERRORS,
    404: CollectionNotFound,
    409: CollectionExists,
    422: DocumentRefused,
}


def _raise_for(response: httpx.Response) -> None:
    raise_for(response, KB_ERRORS)


class RemoteKnowledge:
    """`KnowledgeBase`'s calls over HTTP; paths are sent whole (the server runs on this machine)."""

    def __init__(self, http: httpx.Client) -> None:
        self.http = http
        self.relevant_ids: set[int] = set()  # of the last search: the passages past the threshold

    def _url(self, name: str, tail: str = "") -> str:
        return f"/api/cove/kb/{quote(name, safe='')}{tail}"

    def _json(self, method: str, url: str, body: dict[str, Any] | None = None) -> Any:
        response = self.http.request(method, url, json=body)
        _raise_for(response)
        return response.json()

    def create(self, name: str, model: str | None = None, rerank: str | None = None) -> CollectionInfo:
        return _info(self._json("POST", "/api/cove/kb", {"name": name, "model": model, "rerank": rerank}))

    def set_rerank(self, name: str, rerank: str | None) -> CollectionInfo:
        return _info(self._json("PUT", self._url(name, "/rerank"), {"rerank": rerank or "auto"}))

    def info(self, name: str) -> CollectionInfo:
        return _info(self._json("GET", self._url(name)))

    def list(self) -> builtins.list[CollectionInfo]:
        return [_info(c) for c in self._json("GET", "/api/cove/kb")["collections"]]

    def drop(self, name: str) -> None:
        self._json("DELETE", self._url(name))

    def add(
        self, name: str, paths: Iterable[str | Path], include: Sequence[str] = (), exclude: Sequence[str] = ()
    ) -> builtins.list[Root]:
        body = {
            "paths": [str(Path(p).expanduser().resolve()) for p in paths],
            "include": list(include),
            "exclude": list(exclude),
        }
        roots = self._json("POST", self._url(name, "/paths"), body)["roots"]
        return [Root(r["path"], tuple(r["include"]), tuple(r["exclude"])) for r in roots]

    def documents(self, name: str) -> builtins.list[DocumentRow]:
        return [_document(d) for d in self._json("GET", self._url(name, "/documents"))["documents"]]

    def remove(self, name: str, paths: Sequence[str] = (), *, all: bool = False) -> int:
        resolved = [
            str(Path(p).expanduser().resolve()) if Path(p).expanduser().exists() else p for p in paths
        ]
        return int(
            self._json("DELETE", self._url(name, "/documents"), {"paths": resolved, "all": all})["removed"]
        )

    def sync(
        self, name: str, progress: Progress = no_progress, *, ocr: bool = False, model: str | None = None
    ) -> SyncReport:
        body = {"ocr": ocr, "model": model, "stream": True}
        with self.http.stream("POST", self._url(name, "/sync"), json=body) as response:
            if response.status_code >= 400:
                response.read()
                _raise_for(response)
            for line in response.iter_lines():
                if not line.strip():
                    continue
                item = json.loads(line)
                if "error" in item:  # the stream had started: the error came as a line, typed
                    named = error_type(str(item.get("type") or ""), int(item.get("status") or 0))
                    raise (named or CoveError)(f"server: {item['error']}")
                if "progress" in item:
                    p = item["progress"]
                    progress(
                        SyncProgress(
                            p["files_done"],
                            p["files_total"],
                            p["pages"],
                            p["chunks"],
                            p["elapsed_s"],
                            p["current"],
                        )
                    )
                if "report" in item:
                    return _report(item["report"])
        raise CoveError("server: the sync ended without a report (the server may have stopped)")

    def search(
        self, names: Sequence[str], query: str, k: int = 5, mode: str = "hybrid", rerank: str | None = None
    ) -> builtins.list[Passage]:
        return self.find(names, query, k, mode, rerank).passages

    def find(
        self, names: Sequence[str], query: str, k: int = 5, mode: str = "hybrid", rerank: str | None = None
    ) -> Found:
        body = {"collections": list(names), "query": query, "k": k, "mode": mode, "rerank": rerank}
        answer = self._json("POST", "/api/cove/kb/search", body)
        found = answer["passages"]
        self.relevant_ids = {p["chunk_id"] for p in found if p.get("relevant")}
        return Found([_passage(p) for p in found], answer.get("reranked_by"), answer.get("warning"))

    def relevant(self, passages: Sequence[Passage]) -> builtins.list[Passage]:
        return [p for p in passages if p.chunk_id in self.relevant_ids]


def _info(d: dict[str, Any]) -> CollectionInfo:
    roots = [Root(r["path"], tuple(r["include"]), tuple(r["exclude"])) for r in d.get("roots", [])]
    return CollectionInfo(
        d["name"],
        d["model"],
        d["dimensions"],
        d["documents"],
        d["chunks"],
        d["created"],
        d["last_sync"],
        roots,
        d.get("rerank") or "auto",
    )


def _document(d: dict[str, Any]) -> DocumentRow:
    return DocumentRow(
        int(d.get("id") or 0), d["path"], d["file"], None, 0, d["size"], d["pages"], d["pages_without_text"],
        d["problems"], d["status"], d["chunks"], d["indexed_at"],
    )  # fmt: skip


def _report(d: dict[str, Any]) -> SyncReport:
    return SyncReport(
        collection=d["collection"],
        added=d["added"],
        updated=d["updated"],
        renamed=[(r["from"], r["to"]) for r in d["renamed"]],
        removed=d["removed"],
        unchanged=d["unchanged"],
        refused=[(r["file"], r["reason"]) for r in d["refused"]],
        without_text=[(r["file"], r["pages"]) for r in d["pages_without_text"]],
        pages=d["pages"],
        chunks=d["chunks"],
        seconds=d["seconds"],
        message=d.get("message"),
    )


def _passage(d: dict[str, Any]) -> Passage:
    heading = tuple(d.get("heading_path") or ())
    return Passage(
        chunk_id=d["chunk_id"],
        collection=d["collection"],
        file=d["file"],
        text=d["text"],
        score=d["score"],
        page=d["page"],
        heading=heading,
        start=d.get("start", 0),
        end=d.get("end", 0),
        similarity=d.get("similarity"),
    )
