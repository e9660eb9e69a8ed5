"""Several replicas behind one model: least busy, conversation affinity, health, and retry."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest
from openai_fakes import Upstream, app
from server_fixtures import LiveServer

from cove.engine.base import LoadSpec
from cove.engine.remote import RemoteModel
from cove.engine.remote_errors import RemoteError
from cove.engine.replicas import Replica, ReplicaSet


@pytest.fixture
def pair() -> Iterator[tuple[list[Upstream], list[str]]]:
    ups = [Upstream(name="a"), Upstream(name="b")]
    with ExitStack() as stack:
        urls = [stack.enter_context(LiveServer(app(up))) for up in ups]
        yield ups, urls


def model_on(urls: list[str]) -> RemoteModel:
    spec = LoadSpec(
        name="far:latest",
        model_path=Path("/nonexistent"),
        digest="0" * 64,
        num_ctx=2048,
        remote=tuple(f"openai+{u}/v1#m" for u in urls),
    )
    return RemoteModel(spec, health_interval_s=3600)  # tests check health by hand


def ask(model: RemoteModel, first: str, then: str = "") -> str:
    messages = [{"role": "user", "content": first}]
    if then:
        messages += [{"role": "assistant", "content": "ok"}, {"role": "user", "content": then}]
    pieces: list[str] = []

    def keep(chunk: dict[str, Any]) -> bool:
        for choice in chunk.get("choices") or []:
            pieces.append((choice.get("delta") or {}).get("content") or "")
        return False

    model.chat({"messages": messages}, keep)
    return "".join(pieces)


def test_concurrent_requests_spread_over_the_least_busy(pair: tuple[list[Upstream], list[str]]) -> None:
    ups, urls = pair
    for up in ups:
        up.token_delay_s, up.tokens = 0.05, 8
    model = model_on(urls)
    threads = [threading.Thread(target=ask, args=(model, f"conversation {i}")) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert [len(up.requests) for up in ups] == [2, 2]
    assert [up.most_active for up in ups] == [2, 2]
    model.close()


def test_a_conversation_stays_on_its_replica(pair: tuple[list[Upstream], list[str]]) -> None:
    _, urls = pair
    model = model_on(urls)
    first = ask(model, "tell me about owls")
    home = 0 if first.startswith("a") else 1
    for turn in range(3):  # later turns share its first messages: the replica holding its cache
        assert ask(model, "tell me about owls", f"and then {turn}")[0] == "ab"[home]
    other = ask(model, "tell me about cats")  # a new conversation goes to the idler one
    assert other[0] == "ab"[1 - home]
    model.close()


def test_health_checks_take_a_replica_out_and_put_it_back(pair: tuple[list[Upstream], list[str]]) -> None:
    ups, urls = pair
    model = model_on(urls)
    ups[0].mode = "down"
    model.replicas.check()
    assert [r["healthy"] for r in model.describe()] == [False, True]
    assert "failed (500)" in str(model.describe()[0]["why"])
    assert all(ask(model, f"c{i}").startswith("b") for i in range(3))
    ups[0].mode = "ok"
    model.replicas.check()
    assert [r["healthy"] for r in model.describe()] == [True, True]
    assert ask(model, "fresh").startswith("a")  # a has served fewer
    model.close()


def test_a_request_that_fails_before_its_first_token_is_retried_elsewhere(
    pair: tuple[list[Upstream], list[str]],
) -> None:
    ups, urls = pair
    model = model_on(urls)
    ups[0].mode = "500"
    assert ask(model, "hello").startswith("b0")
    assert len(ups[0].requests) == 1 and len(ups[1].requests) == 1
    assert model.describe()[0]["healthy"] is False
    model.close()


def test_a_replica_dying_mid_answer_is_a_clear_error_and_the_other_goes_on(
    pair: tuple[list[Upstream], list[str]],
) -> None:
    ups, urls = pair
    model = model_on(urls)
    ups[0].mode = "drop_mid"
    with pytest.raises(RemoteError, match=r"broke the connection.*the answer stopped part way") as caught:
        ask(model, "hello")
    assert "\n" not in str(caught.value)
    assert len(ups[1].requests) == 0  # tokens were handed on: never retried as if fresh
    assert ask(model, "hello again").startswith("b0")
    model.close()


def test_all_replicas_failing_says_so_in_one_line(pair: tuple[list[Upstream], list[str]]) -> None:
    ups, urls = pair
    model = model_on(urls)
    for up in ups:
        up.mode = "500"
    with pytest.raises(RemoteError, match="all 2 replicas of far:latest failed") as caught:
        ask(model, "hello")
    assert "\n" not in str(caught.value) and "out of cheese" in str(caught.value)
    with pytest.raises(RemoteError, match="no replica of far:latest is healthy now"):
        ask(model, "hello")
    for up in ups:
        up.mode = "ok"
    assert ask(model, "hello")  # the synchronous re-check lets them back at once
    model.close()


def test_a_model_loads_while_one_replica_is_down(pair: tuple[list[Upstream], list[str]]) -> None:
    ups, urls = pair
    ups[1].mode = "down"
    model = model_on(urls)
    assert [r["healthy"] for r in model.describe()] == [True, False]
    assert ask(model, "x").startswith("a")
    model.close()


# -- the set itself, with a fake probe and clock -----------------------------------------------


def test_affinity_follows_a_replica_only_while_it_is_healthy() -> None:
    state = {"a": None, "b": None}
    replicas = [Replica(0, "a", "A"), Replica(1, "b", "B")]
    sets: ReplicaSet[str] = ReplicaSet(replicas, lambda r: state[r.name], interval_s=3600)
    chosen = sets.pick("conv", set())
    assert chosen is not None and chosen.name == "a"
    sets.done(chosen)
    state["a"] = "down"
    sets.check()
    moved = sets.pick("conv", set())
    assert moved is not None and moved.name == "b"
    sets.done(moved)
    state["a"] = None
    sets.check()
    stays = sets.pick("conv", set())  # b holds its cache now
    assert stays is not None and stays.name == "b"
    sets.done(stays)
    assert sets.pick("conv", {0, 1}) is None


def test_the_watcher_thread_puts_a_replica_back_on_its_own() -> None:
    state: dict[str, str | None] = {"a": "down"}
    replicas = [Replica(0, "a", "A")]
    sets: ReplicaSet[str] = ReplicaSet(replicas, lambda r: state[r.name], interval_s=0.05)
    sets.check()
    assert not sets.any_healthy
    sets.start()
    state["a"] = None
    done = threading.Event()
    for _ in range(100):
        if sets.any_healthy:
            done.set()
            break
        threading.Event().wait(0.05)
    sets.close()
    assert done.is_set()
