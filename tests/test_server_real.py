"""A real `cove serve` on the bundled gemma3:270m, driven by the official `openai` and `ollama` clients."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import ollama
import openai
import pytest
from openai.types.chat import ChatCompletionMessageParam
from prometheus_client.parser import text_string_to_metric_families
from server_fixtures import RealServer, _real_servers, real_server, single_slot_server

__all__ = ["_real_servers", "real_server", "single_slot_server"]
pytestmark = pytest.mark.model

MODEL = "gemma3:270m"
HELLO: list[ChatCompletionMessageParam] = [{"role": "user", "content": "Write one sentence about the sea."}]
GREEDY: dict[str, Any] = {"num_predict": 8, "temperature": 0}


def oai(server: RealServer) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.url + "/v1", api_key="unused", timeout=120, max_retries=0)


def oll(server: RealServer) -> ollama.Client:
    return ollama.Client(host=server.url, timeout=120)


# -- the openai package --------------------------------------------------------------------------


def test_openai_chat_stream_matches_whole(real_server: RealServer) -> None:
    api = oai(real_server)
    whole = api.chat.completions.create(model=MODEL, messages=HELLO, temperature=0, max_tokens=8)
    (choice,) = whole.choices
    assert choice.message.role == "assistant"
    assert choice.message.content
    assert choice.finish_reason in ("length", "stop")
    assert whole.model == MODEL
    assert whole.usage is not None and 0 < whole.usage.completion_tokens <= 8

    stream = api.chat.completions.create(
        model=MODEL,
        messages=HELLO,
        temperature=0,
        max_tokens=8,
        stream=True,
    )
    chunks = list(stream)
    assert all(c.usage is None for c in chunks)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == choice.message.content


def test_openai_stream_include_usage(real_server: RealServer) -> None:
    stream = oai(real_server).chat.completions.create(
        model=MODEL,
        messages=HELLO,
        temperature=0,
        max_tokens=8,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    last = chunks[-1]
    assert last.choices == []
    assert last.usage is not None
    assert 0 < last.usage.completion_tokens <= 8
    assert last.usage.prompt_tokens > 0
    assert all(c.usage is None for c in chunks[:-1])


def test_openai_completions_stream(real_server: RealServer) -> None:
    api = oai(real_server)
    whole = api.completions.create(model=MODEL, prompt="Count: 1, 2, 3,", temperature=0, max_tokens=8)
    chunks = list(
        api.completions.create(
            model=MODEL,
            prompt="Count: 1, 2, 3,",
            temperature=0,
            max_tokens=8,
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    *parts, last = chunks
    assert "".join(c.choices[0].text for c in parts) == whole.choices[0].text
    assert all(c.usage is None for c in parts)
    assert last.choices == [] and last.usage is not None
    assert whole.usage is not None and last.usage.completion_tokens == whole.usage.completion_tokens


def test_openai_models_and_embeddings(real_server: RealServer) -> None:
    api = oai(real_server)
    ids = [m.id for m in api.models.list()]
    assert MODEL in ids
    assert api.models.retrieve(MODEL).id == MODEL
    result = api.embeddings.create(model=MODEL, input=["The sea is blue.", "Taxes are due in April."])
    first, second = result.data
    assert len(first.embedding) == len(second.embedding) > 100
    assert first.embedding != second.embedding
    assert all(isinstance(v, float) for v in first.embedding[:5])


def test_openai_json_schema(real_server: RealServer) -> None:
    schema = {
        "type": "object",
        "properties": {"a": {"type": "integer"}},
        "required": ["a"],
        "additionalProperties": False,
    }
    answer = oai(real_server).chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": "Give me a JSON object with an integer a."}],
        temperature=0,
        max_tokens=200,
        response_format={"type": "json_schema", "json_schema": {"name": "thing", "schema": schema}},
    )
    content = answer.choices[0].message.content
    assert content is not None
    data = json.loads(content)
    assert isinstance(data, dict)
    assert isinstance(data["a"], int)


def test_openai_unknown_model(real_server: RealServer) -> None:
    api = oai(real_server)
    with pytest.raises(openai.NotFoundError) as caught:
        api.chat.completions.create(model="nosuch-model:1b", messages=HELLO)
    assert "nosuch-model" in str(caught.value)
    with pytest.raises(openai.BadRequestError):
        api.chat.completions.create(model=MODEL, messages=HELLO, temperature=-1)


# -- the ollama package --------------------------------------------------------------------------


def test_ollama_chat_and_generate(real_server: RealServer) -> None:
    client = oll(real_server)
    whole = client.chat(model=MODEL, messages=HELLO, options=GREEDY)
    assert whole.done is True
    assert whole.message.role == "assistant" and whole.message.content
    assert whole.eval_count is not None and 0 < whole.eval_count <= 8
    assert whole.done_reason in ("length", "stop")

    parts = list(client.chat(model=MODEL, messages=HELLO, options=GREEDY, stream=True))
    assert all(p.done is False for p in parts[:-1]) and parts[-1].done is True
    assert parts[-1].eval_count == whole.eval_count
    assert "".join(p.message.content or "" for p in parts) == whole.message.content

    generated = client.generate(model=MODEL, prompt="The capital of France is", options=GREEDY)
    assert generated.done is True and generated.response
    pieces = list(
        client.generate(model=MODEL, prompt="The capital of France is", options=GREEDY, stream=True)
    )
    assert pieces[-1].done is True and pieces[-1].done_reason
    assert "".join(p.response or "" for p in pieces) == generated.response
    # Ollama's token memory: returned, and accepted to continue (it grows by the new turn).
    assert generated.context and all(isinstance(t, int) for t in generated.context)
    assert pieces[-1].context == generated.context
    follow = client.generate(model=MODEL, prompt="And of Spain?", context=generated.context, options=GREEDY)
    assert follow.done is True and follow.context is not None
    assert follow.context[: len(generated.context)] == generated.context
    assert follow.prompt_eval_count is not None and follow.prompt_eval_count > 0
    json_answer = client.generate(
        model=MODEL, prompt="A JSON object with a key a.", format="json", options={"num_predict": 40}
    )
    assert json_answer.response.lstrip().startswith("{")

    raw = list(client.generate(model=MODEL, prompt="Count: 1, 2, 3,", raw=True, options=GREEDY, stream=True))
    assert raw[-1].done is True and raw[-1].done_reason == "length"
    assert raw[-1].eval_count == 8
    assert "".join(p.response or "" for p in raw)


def test_ollama_models(real_server: RealServer) -> None:
    client = oll(real_server)
    client.generate(model=MODEL, prompt="Hi", options={"num_predict": 1})
    names = [m.model for m in client.list().models]
    assert MODEL in names
    shown = client.show(MODEL)
    assert shown.modelinfo is not None and shown.modelinfo["general.architecture"] == "gemma3"
    assert shown.capabilities == ["completion"]
    assert shown.details is not None and shown.details.family == "gemma3"
    running = [m.model for m in client.ps().models]
    assert MODEL in running

    embedded = client.embed(model=MODEL, input=["The sea is blue.", "Taxes are due."])
    first, second = embedded.embeddings
    assert len(first) == len(second) > 100

    assert client.copy(MODEL, "sea-copy:test").status == "success"
    assert "sea-copy:test" in [m.model for m in client.list().models]
    assert client.delete("sea-copy:test").status == "success"
    assert "sea-copy:test" not in [m.model for m in client.list().models]
    assert MODEL in [m.model for m in client.list().models]
    with pytest.raises(ollama.ResponseError) as caught:
        client.delete("sea-copy:test")
    assert caught.value.status_code == 404


def test_ollama_pull_unknown(real_server: RealServer) -> None:
    client = oll(real_server)
    with pytest.raises(ollama.ResponseError) as caught:
        client.pull("nosuch-model:1b")
    assert "nosuch-model" in str(caught.value)
    assert caught.value.status_code == 404
    with pytest.raises(ollama.ResponseError):
        list(client.pull("nosuch-model:1b", stream=True))


# -- concurrency ---------------------------------------------------------------------------------

# Each continues a sequence with one clear answer. llama.cpp is not bit-exact across batch
# shapes, so an open-ended prompt ("Planets: ...") can flip a near-tie when batched; these cannot.
PROMPTS = {
    "Count: 1, 2, 3,": "4",
    "Alphabet: A, B, C,": "D",
    "Months: January, February, March,": "April",
    "Even numbers: 2, 4, 6,": "8",
}


def complete(url: str, prompt: str) -> str:
    body = {"model": MODEL, "prompt": prompt, "temperature": 0, "max_tokens": 12}
    r = httpx.post(url + "/v1/completions", json=body, timeout=120)
    assert r.status_code == 200, r.text
    text: str = r.json()["choices"][0]["text"]
    return text


def test_parallel_conversations_never_mix(real_server: RealServer) -> None:
    alone = [complete(real_server.url, p) for p in PROMPTS]
    for answer, starts in zip(alone, PROMPTS.values(), strict=True):
        assert answer.split(",")[0].strip() == starts
    with ThreadPoolExecutor(len(PROMPTS)) as pool:
        together = list(pool.map(lambda p: complete(real_server.url, p), PROMPTS))
    assert together == alone


def metric(url: str, name: str) -> float:
    text = httpx.get(url + "/metrics", timeout=30).text
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and not sample.labels:
                return float(sample.value)
    raise AssertionError(f"{name} not in /metrics")


def test_disconnect_frees_the_only_slot(single_slot_server: RealServer) -> None:
    url = single_slot_server.url
    body = {"model": MODEL, "prompt": "Once upon a time", "max_tokens": 400, "stream": True}
    with httpx.Client(timeout=120) as http:
        with http.stream("POST", url + "/v1/completions", json=body) as response:
            assert response.status_code == 200
            events = (line for line in response.iter_lines() if line.startswith("data: {"))
            for _ in range(2):
                assert json.loads(next(events)[6:])["choices"]
        # The connection is closed with most of the answer unsent; the slot must come back.
        answer = complete(url, "Count: 1, 2, 3,")
        assert answer
        assert metric(url, "cove_queue_depth") == 0
        assert metric(url, "cove_loaded_models") == 1
    # Walking away is routine: it must not show up as a crash in the server's log.
    assert "Traceback" not in single_slot_server.log_tail()
