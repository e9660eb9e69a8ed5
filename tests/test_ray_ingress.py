"""The Ray Serve ingress and router without a cluster: their answers, with fake handles."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest

pytest.importorskip("ray.serve")

from cove.ray_serve.app import Ingress
from cove.ray_serve.router import ConversationRouter


@dataclass
class Method:
    calls: list[tuple[Any, ...]]
    answer: Any

    def remote(self, *args: Any, **kwargs: Any) -> Any:
        self.calls.append((*args, kwargs))
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        future.set_result(self.answer)
        return future


@dataclass
class Handle:
    """Stands in for the engine deployment's handle: records what the ingress sent."""

    calls: list[tuple[Any, ...]] = field(default_factory=list)
    answer: Any = None

    @property
    def whole(self) -> Method:
        return Method(self.calls, self.answer)


def asgi(ingress: Ingress) -> Any:
    from starlette.requests import Request

    async def app(scope: Any, receive: Any, send: Any) -> None:
        response = await ingress(Request(scope, receive))
        await response(scope, receive, send)

    return app


@pytest.mark.anyio
async def test_the_ingress_answers_openai_shapes_and_passes_the_conversation_key() -> None:
    handle = Handle(
        answer={"choices": [{"index": 0, "message": {"content": "hi"}}], "system_fingerprint": "r1"}
    )
    transport = httpx.ASGITransport(asgi(Ingress(handle, "gemma3:270m", api_key="k")))
    async with httpx.AsyncClient(transport=transport, base_url="http://ray") as http:
        assert (await http.get("/v1/models")).status_code == 401
        auth = {"authorization": "Bearer k"}
        models = (await http.get("/v1/models", headers=auth)).json()
        assert [m["id"] for m in models["data"]] == ["gemma3:270m"]
        body = {"model": "gemma3:270m", "messages": [{"role": "user", "content": "x"}]}
        reply = await http.post("/v1/chat/completions", json=body, headers=auth)
        assert reply.json()["choices"][0]["message"]["content"] == "hi"
        kind, sent, options = handle.calls[-1]
        assert kind == "chat" and sent == body and len(options["affinity"]) == 64
        other = await http.post("/v1/chat/completions", json={**body, "model": "other"}, headers=auth)
        assert other.status_code == 404 and "serves gemma3:270m" in other.json()["error"]["message"]
        bad = await http.post("/v1/chat/completions", content=b"{", headers=auth)
        assert bad.status_code == 400
        handle.answer = {"error": {"message": "the engine could not parse tools", "code": 400}}
        refused = await http.post("/v1/chat/completions", json=body, headers=auth)
        assert refused.status_code == 400 and "parse tools" in refused.json()["error"]["message"]


@dataclass
class FakeReplica:
    replica_id: str


class FakeCache:
    def __init__(self, lengths: dict[str, int]) -> None:
        self.lengths = lengths

    def get(self, replica_id: str) -> int | None:
        return self.lengths.get(replica_id)


@dataclass
class FakePending:
    kwargs: dict[str, Any]


def test_the_router_ranks_a_conversations_replica_first_else_the_least_busy() -> None:
    router = ConversationRouter.__new__(ConversationRouter)  # no cluster: just the policy
    router.initialize_state()
    router._replica_queue_len_cache = FakeCache({"a": 3, "b": 0})  # type: ignore[assignment]
    a, b = FakeReplica("a"), FakeReplica("b")
    fresh = asyncio.run(router.choose_replicas([a, b], FakePending({"affinity": "c1"})))  # type: ignore[arg-type, list-item]
    assert fresh == [[b, a]]  # no home yet: the least busy first
    router.on_request_routed(FakePending({"affinity": "c1"}), "a", None)  # type: ignore[arg-type]
    home = asyncio.run(router.choose_replicas([a, b], FakePending({"affinity": "c1"})))  # type: ignore[arg-type, list-item]
    assert home == [[a], [b]]  # its cache is on a, busy or not; Serve moves on if a is full
    gone = asyncio.run(router.choose_replicas([b], FakePending({"affinity": "c1"})))  # type: ignore[arg-type, list-item]
    assert gone == [[b]]
