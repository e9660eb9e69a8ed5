"""A remote engine as a model: recipes, the store, requests through loopback fake upstreams,
and every bad upstream turning into one clear error."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import certificates
import httpx
import pytest
from openai_fakes import Upstream, app
from server_fixtures import LiveServer, client, free_port, make_app

from cove.chat.service import TurnRequest
from cove.config import Settings
from cove.engine import remote
from cove.engine.base import LoadSpec
from cove.engine.remote_errors import RemoteError, UpstreamKeyRefused, UpstreamRejected, UpstreamTimeout
from cove.errors import BadRequest, InvalidRecipe
from cove.library.local import Cove
from cove.net import gate
from cove.net.policy import EngineHost, Policy, decide
from cove.net.report import policy_report
from cove.recipe import parse_recipe
from tests.fakes import FakeEngine


@pytest.fixture
def upstream() -> Iterator[tuple[Upstream, str]]:
    up = Upstream()
    with LiveServer(app(up)) as url:
        yield up, url


def recipe(*urls: str, extra: str = "") -> str:
    return "".join(f"FROM openai+{u}/v1#{m}\n" for u, m in urls) + extra


@pytest.fixture
def cove(fake_cove: Cove) -> Cove:
    return fake_cove


def make(cove: Cove, name: str, text: str) -> None:
    cove.create(name, text)


# -- recipes and the store --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("FROM openai+https://gpu:8000/v1\n", "names no model after '#'"),
        ("FROM openai+https:///v1#m\n", "names no host"),
        ("FROM openai+https://gpu:99999/v1#m\n", "malformed address"),
        ("FROM openai+https://me:secret@gpu/v1#m\n", "api_key_env"),
        ("FROM openai+https://gpu/v1?x=1#m\n", "query"),
        ("FROM openai+https:gpu#m\n", "not a remote engine URL"),
        ("FROM tiny\nFROM openai+https://gpu/v1#m\n", "line 2: duplicate FROM"),
        ("FROM openai+https://gpu/v1#m\nFROM openai+https://gpu/v1#m\n", "listed twice"),
        ("FROM openai+https://gpu/v1#m\nPARAMETER api_key_env 'x y'\n", "environment variable"),
    ],
)
def test_a_malformed_remote_recipe_is_one_line_naming_its_line(text: str, says: str) -> None:
    with pytest.raises(InvalidRecipe) as caught:
        parse_recipe(text)
    message = str(caught.value)
    assert says in message and "\n" not in message and message.startswith("recipe line ")


def test_a_remote_recipe_reads_back_the_same_with_its_replicas() -> None:
    text = recipe(("https://a:8000", "Qwen/Qwen2.5-7B"), ("https://b:8000", "Qwen/Qwen2.5-7B"))
    parsed = parse_recipe(text + "PARAMETER api_key_env VLLM_KEY\n")
    assert [r.base_url for r in parsed.remote] == ["https://a:8000/v1", "https://b:8000/v1"]
    assert parsed.remote[0].model == "Qwen/Qwen2.5-7B"
    assert parse_recipe(parsed.to_text()) == parsed


def test_an_api_key_env_is_a_recipe_setting_never_a_request_option(cove: Cove) -> None:
    from cove.engine.options import checked_options

    with pytest.raises(InvalidRecipe):
        checked_options({"api_key_env": "HOME"})


def test_create_stores_a_manifest_with_no_blob_and_never_the_key(
    cove: Cove, upstream: tuple[Upstream, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAR_KEY", "sekrit-123")
    _, url = upstream
    blobs_before = set(cove.store.blobs.all_digests())
    make(cove, "far", recipe((url, "m"), extra="PARAMETER api_key_env FAR_KEY\n"))
    manifest = cove.model("far")
    assert manifest.is_remote and manifest.size == 0
    assert set(cove.store.blobs.all_digests()) == blobs_before
    stored = cove.store.manifest_path(__import__("cove.store.names").store.names.parse_name("far"))
    assert "sekrit" not in stored.read_text() and "FAR_KEY" in stored.read_text()
    cove.store.collect_garbage()  # a remote manifest has no blob to keep; nothing breaks
    assert cove.model("far").is_remote


def test_a_remote_model_cannot_be_created_over_the_api(cove: Cove) -> None:
    with pytest.raises(BadRequest, match="cove create NAME -f Recipe"):
        cove.create_from_api("far", "FROM openai+https://gpu/v1#m\n", None, None)


# -- requests -------------------------------------------------------------------------------


def test_chat_goes_to_the_upstream_with_its_model_name_and_key(
    cove: Cove, upstream: tuple[Upstream, str], monkeypatch: pytest.MonkeyPatch, engine: FakeEngine
) -> None:
    up, url = upstream
    up.key = "k-1"
    monkeypatch.setenv("FAR_KEY", "k-1")
    make(cove, "far", recipe((url, "m"), extra="PARAMETER api_key_env FAR_KEY\nSYSTEM be brief\n"))
    answer = cove.chat("far", [{"role": "user", "content": "hi"}], options={"temperature": 0.1, "top_k": 3})
    assert answer.content == "a0 a1 a2 a3 a4 "
    assert answer.prompt_tokens == 7 and answer.completion_tokens == 5
    sent = up.requests[-1]
    assert sent["model"] == "m" and sent["temperature"] == 0.1
    assert sent["messages"][0] == {"role": "system", "content": "be brief"}
    assert up.headers[-1]["authorization"] == "Bearer k-1"
    assert engine.loads == []  # nothing loaded here


def test_streaming_passes_through_with_usage_and_speeds(cove: Cove, upstream: tuple[Upstream, str]) -> None:
    up, url = upstream
    up.token_delay_s = 0.01
    make(cove, "far", recipe((url, "m")))
    events = list(cove.stream_chat("far", [{"role": "user", "content": "hi"}]))
    assert "".join(e.content for e in events) == "a0 a1 a2 a3 a4 "
    done = events[-1]
    assert done.done and done.usage is not None and done.usage.completion_tokens == 5
    assert done.usage.tokens_per_s and done.usage.tokens_per_s > 10
    assert up.requests[-1]["stream_options"] == {"include_usage": True}


def test_vllm_names_and_usage(cove: Cove) -> None:
    up = Upstream(vllm=True, models=["Qwen/Qwen2.5-0.5B-Instruct"])
    with LiveServer(app(up)) as url:
        make(cove, "q", recipe((url, "Qwen/Qwen2.5-0.5B-Instruct")))
        events = list(cove.stream_chat("q", [{"role": "user", "content": "hi"}]))
        whole = cove.chat("q", [{"role": "user", "content": "hi"}])
    assert events[-1].usage is not None and events[-1].usage.prompt_tokens == 7
    assert whole.completion_tokens == 5 and whole.usage.cached_tokens == 0
    assert up.requests[-1]["model"] == "Qwen/Qwen2.5-0.5B-Instruct"


def test_tool_calls_and_a_json_schema_pass_through(cove: Cove, upstream: tuple[Upstream, str]) -> None:
    up, url = upstream
    up.tool_call = True
    make(cove, "far", recipe((url, "m")))
    tools = [{"type": "function", "function": {"name": "add", "parameters": {"type": "object"}}}]
    answer = cove.chat("far", [{"role": "user", "content": "add"}], tools=tools)
    assert answer.tool_calls[0].name == "add" and answer.tool_calls[0].parsed_arguments() == {"a": 1}
    assert up.requests[-1]["tools"] == tools
    streamed = list(cove.stream_chat("far", [{"role": "user", "content": "add"}]))
    assert any(piece.tool_calls for piece in streamed)
    schema = {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "object"}}}
    cove.run_chat("far", {"messages": [{"role": "user", "content": "j"}], "response_format": schema})
    assert up.requests[-1]["response_format"] == schema


def test_llama_cpp_only_fields_are_not_sent(cove: Cove, upstream: tuple[Upstream, str]) -> None:
    up, url = upstream
    make(cove, "far", recipe((url, "m")))
    body = {
        "messages": [{"role": "user", "content": "x"}],
        "chat_template_kwargs": {"a": 1},
        "repeat_last_n": 4,
    }
    cove.run_chat("far", body)
    assert "chat_template_kwargs" not in up.requests[-1] and "repeat_last_n" not in up.requests[-1]


def test_a_client_that_stops_reading_cancels_the_upstream(cove: Cove, upstream: tuple[Upstream, str]) -> None:
    up, url = upstream
    up.tokens, up.token_delay_s = 200, 0.02
    make(cove, "far", recipe((url, "m")))
    stream = cove.stream_chat("far", [{"role": "user", "content": "hi"}])
    next(stream)
    stream.close()
    deadline = time.monotonic() + 5
    while up.active and time.monotonic() < deadline:
        time.sleep(0.05)
    assert up.active == 0  # the upstream's stream ended well before its 200 tokens (4 s)


def test_ps_shows_a_remote_model_and_it_takes_no_local_slot(
    cove: Cove, upstream: tuple[Upstream, str]
) -> None:
    _, url = upstream
    make(cove, "far", recipe((url, "m")))
    cove.chat("far", [{"role": "user", "content": "hi"}])
    cove.chat("tiny", [{"role": "user", "content": "hi"}])
    cove.scheduler.max_loaded = 1
    loaded = {m.name: m for m in cove.loaded()}
    assert "far:latest" in loaded and loaded["far:latest"].size == 0
    assert loaded["far:latest"].runs_on == (url.split("//")[1].split("/")[0],)
    assert loaded["tiny:latest"].runs_on == ()
    cove.chat("tiny", [{"role": "user", "content": "again"}])  # no eviction of far needed
    assert {m.name for m in cove.loaded()} == {"far:latest", "tiny:latest"}


def test_the_gate_records_the_upstream_and_refuses_other_hosts(
    cove: Cove, upstream: tuple[Upstream, str]
) -> None:
    _, url = upstream
    make(cove, "far", recipe((url, "m")))
    cove.chat("far", [{"role": "user", "content": "hi"}])
    policy = Policy(engines=(EngineHost("gpu.example", 8000, "far:latest"),))
    assert decide(policy, "engine:remote", "gpu.example", 8000).allowed
    assert not decide(policy, "engine:remote", "gpu.example", 8001).allowed
    assert not decide(policy, "engine:remote", "evil.example", 8000).allowed
    assert not decide(
        Policy(offline=True, engines=policy.engines), "engine:remote", "gpu.example", 8000
    ).allowed


def test_plain_http_to_another_host_needs_an_opt_in(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    ref = parse_recipe("FROM openai+http://gpu.example:8000/v1#m\n").remote[0]
    with pytest.raises(gate.EgressRefused, match=r"COVE_REMOTE_HTTP_HOSTS=gpu\.example"):
        remote.check_transport("far", ref, ())
    with caplog.at_level("WARNING"):
        opted = Settings(remote_http_hosts="other, GPU.example").remote_http_hosts  # type: ignore[arg-type]
        remote.check_transport("far", ref, opted)
    assert "PLAIN HTTP" in caplog.text
    remote.check_transport("far", parse_recipe("FROM openai+http://127.0.0.1:1/v1#m\n").remote[0])


# -- bad upstreams: one clear line each -------------------------------------------------------


def spec(url: str, model: str = "m", **more: object) -> LoadSpec:
    return LoadSpec(
        name="far:latest",
        model_path=Path("/nonexistent"),
        digest="0" * 64,
        num_ctx=2048,
        remote=(f"openai+{url}/v1#{model}",),
        **more,  # type: ignore[arg-type]
    )


def one_line(error: BaseException) -> str:
    text = str(error)
    assert "\n" not in text and len(text) < 500
    return text


def test_an_upstream_that_is_down() -> None:
    with pytest.raises(RemoteError) as caught:
        remote.RemoteModel(spec(f"http://127.0.0.1:{free_port()}"))
    assert "is down" in one_line(caught.value) and caught.value.status == 502


@pytest.mark.parametrize(
    ("mode", "says"),
    [
        ("garbage", "not JSON"),
        ("404", "has no /models"),
        ("500", "failed (500)"),
    ],
)
def test_an_upstream_that_answers_wrongly_at_load(mode: str, says: str) -> None:
    up = Upstream(mode=mode)
    with LiveServer(app(up)) as url, pytest.raises(RemoteError) as caught:
        remote.RemoteModel(spec(url))
    assert says in one_line(caught.value) and "127.0.0.1" in str(caught.value)


def test_an_upstream_without_the_model_names_what_it_serves(upstream: tuple[Upstream, str]) -> None:
    _, url = upstream
    with pytest.raises(RemoteError, match=r"does not serve model 'other' \(it serves: m\)"):
        remote.RemoteModel(spec(url, "other"))


def test_a_wrong_key(upstream: tuple[Upstream, str], monkeypatch: pytest.MonkeyPatch) -> None:
    up, url = upstream
    up.key = "right"
    monkeypatch.setenv("FAR_KEY", "wrong")
    with pytest.raises(RemoteError, match=r"refused the API key \(401: Invalid API key\)"):
        remote.RemoteModel(spec(url, api_key_env="FAR_KEY"))
    monkeypatch.delenv("FAR_KEY")
    with pytest.raises(RemoteError, match=r"\$FAR_KEY, which is not set"):
        remote.RemoteModel(spec(url, api_key_env="FAR_KEY"))


def loaded(url: str, **more: object) -> remote.RemoteModel:
    return remote.RemoteModel(spec(url, **more), health_interval_s=3600)


def collect(model: remote.RemoteModel) -> tuple[list[str], BaseException | None]:
    pieces: list[str] = []

    def keep(chunk: dict[str, object]) -> bool:
        for choice in chunk.get("choices") or []:  # type: ignore[attr-defined]
            pieces.append((choice.get("delta") or {}).get("content") or "")
        return False

    try:
        model.chat({"messages": [{"role": "user", "content": "x"}]}, keep)
    except Exception as exc:
        return pieces, exc
    return pieces, None


@pytest.mark.parametrize(
    ("mode", "error", "says"),
    [
        ("error_mid", RemoteError, "CUDA error: out of memory; the answer stopped part way"),
        ("drop_mid", RemoteError, "broke the connection"),
        ("garbage", RemoteError, "did not stream /chat/completions (it answered text/plain"),
        ("500", RemoteError, "out of cheese"),
        ("404", RemoteError, "has no /chat/completions"),
    ],
)
def test_bad_upstream_streams(
    upstream: tuple[Upstream, str], mode: str, error: type[Exception], says: str
) -> None:
    up, url = upstream
    model = loaded(url)
    up.mode = mode
    _, failure = collect(model)
    assert isinstance(failure, error) and says in one_line(failure)
    model.close()


def test_a_slow_upstream_times_out(upstream: tuple[Upstream, str]) -> None:
    up, url = upstream
    model = loaded(url, remote_timeout_s=1.0)
    up.mode, up.slow_s = "slow", 5
    started = time.monotonic()
    _, failure = collect(model)
    assert isinstance(failure, UpstreamTimeout) and failure.status == 504
    assert "did not answer within 1 s" in one_line(failure) and time.monotonic() - started < 4
    model.close()


@pytest.mark.parametrize("mode", ["huge", "huge_line"])
def test_a_gigabyte_answer_is_cut_off(
    upstream: tuple[Upstream, str], mode: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(remote, "MAX_RESPONSE_BYTES", 8 << 20)
    up, url = upstream
    model = loaded(url)
    up.mode = mode
    _, failure = collect(model)
    assert isinstance(failure, RemoteError) and "cove stopped reading" in one_line(failure)
    if mode == "huge":  # a whole (not streamed) answer of a gigabyte, too
        with pytest.raises(RemoteError, match="cove stopped reading"):
            model.chat({"messages": [{"role": "user", "content": "x"}]})
    model.close()


def test_a_request_the_upstream_refuses_is_a_400_naming_it(upstream: tuple[Upstream, str]) -> None:
    up, url = upstream
    model = loaded(url)
    up.mode = "400"
    with pytest.raises(
        UpstreamRejected, match=r"refused the request \(400\): max_tokens is too large"
    ) as caught:
        model.chat({"messages": [{"role": "user", "content": "x"}]})
    assert caught.value.status == 400 and "127.0.0.1" in str(caught.value)
    assert model.replicas.any_healthy  # the request's fault, not the replica's
    assert len(up.requests) == 1  # and not tried again
    model.close()
    assert UpstreamKeyRefused.status == 502


def test_a_certificate_this_machine_does_not_trust(tmp_path: Path) -> None:
    cert, key = self_signed(tmp_path)
    up = Upstream()
    config_app = app(up)
    import uvicorn

    port = free_port()
    config = uvicorn.Config(
        config_app, host="127.0.0.1", port=port, ssl_certfile=cert, ssl_keyfile=key, log_level="error"
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 10
        while not server.started and time.monotonic() < deadline:
            time.sleep(0.05)
        with pytest.raises(RemoteError) as caught:
            remote.RemoteModel(spec(f"https://127.0.0.1:{port}"))
        assert "TLS certificate could not be verified" in one_line(caught.value)
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def self_signed(folder: Path) -> tuple[str, str]:
    """A throw-away self-signed certificate for 127.0.0.1: no trust store holds it."""
    cert, key = certificates.self_signed(folder, "127.0.0.1")
    return str(cert), str(key)


# -- through the server and the history -------------------------------------------------------


@pytest.mark.anyio
async def test_the_server_answers_an_upstream_failure_in_its_own_shape(
    cove: Cove, upstream: tuple[Upstream, str]
) -> None:
    up, url = upstream
    make(cove, "far", recipe((url, "m")))
    async with client(make_app(cove)) as http:
        ok = await http.post(
            "/v1/chat/completions", json={"model": "far", "messages": [{"role": "user", "content": "x"}]}
        )
        assert ok.status_code == 200 and ok.json()["choices"][0]["message"]["content"] == "a0 a1 a2 a3 a4 "
        up.mode = "500"
        bad = await http.post(
            "/v1/chat/completions", json={"model": "far", "messages": [{"role": "user", "content": "x"}]}
        )
        assert bad.status_code == 502 and "upstream 127.0.0.1" in bad.json()["error"]["message"]
        ollama = await http.post(
            "/api/chat",
            json={"model": "far", "stream": False, "messages": [{"role": "user", "content": "x"}]},
        )
        assert ollama.status_code == 502 and "upstream 127.0.0.1" in ollama.json()["error"]
        metrics = await http.get("/metrics")
        assert 'model="far:latest"' in metrics.text
        # The replica that just failed is out: its health gauge says so.
        gauges = [ln for ln in metrics.text.splitlines() if ln.startswith("cove_remote_replica_healthy{")]
        assert len(gauges) == 1 and 'model="far:latest"' in gauges[0] and gauges[0].endswith(" 0.0")


def test_a_failed_answer_is_never_kept_as_whole(cove: Cove, upstream: tuple[Upstream, str]) -> None:
    up, url = upstream
    make(cove, "far", recipe((url, "m")))
    turn = TurnRequest(model="far", messages=[{"role": "user", "content": "hello"}], conversation="new")
    up.mode = "500"  # fails before its first token: nothing of an answer is kept
    with pytest.raises(RemoteError):
        list(cove.chat_turn(turn))
    up.mode = "error_mid"  # two tokens, then the upstream's error
    stream = cove.chat_turn(
        TurnRequest(model="far", messages=[{"role": "user", "content": "again"}], conversation="new")
    )
    with pytest.raises(RemoteError):
        list(stream)
    assert stream.conversation_id is not None
    messages = cove.history.get(stream.conversation_id).messages
    answers = [m for m in messages if m.role == "assistant"]
    assert [a.content for a in answers] == ["a0 a1 "]
    # What streamed is kept (chat/service.py's rule) without the figures of a whole answer.
    assert not answers[0].completion_tokens and answers[0].tokens_per_s is None


def test_settings_unchanged_for_local_models(cove: Cove) -> None:
    request, _, _ = cove.prepare("tiny")
    assert (
        request.spec.remote == ()
        and request.spec.key
        == LoadSpec(
            name=request.spec.name,
            model_path=request.spec.model_path,
            digest=request.spec.digest,
            num_ctx=request.spec.num_ctx,
            template=request.spec.template,
            kv_type=request.spec.kv_type,
        ).key
    )
    assert Settings.from_env().home.exists()
    assert json.dumps(cove.model("tiny").recipe_obj().to_dict()).count("replicas") == 0
    assert httpx is not None


def test_a_redirect_is_not_followed_so_the_key_stays_with_its_host(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAR_KEY", "k-9")
    elsewhere = Upstream(name="z")
    up = Upstream(key="k-9")
    with LiveServer(app(elsewhere)) as other, LiveServer(app(up)) as url:
        model = loaded(url, api_key_env="FAR_KEY")
        up.mode = f"redirect {other}/v1/chat/completions"
        with pytest.raises(RemoteError, match="cove does not follow it"):
            model.chat({"messages": [{"role": "user", "content": "x"}]})
        model.close()
    assert elsewhere.requests == [] and elsewhere.headers == []


def test_the_scheduler_sends_a_remote_model_to_the_remote_engine_with_no_memory_plan() -> None:
    from cove.engine.scheduler import ModelRequest, Scheduler

    made: list[LoadSpec] = []

    def local(spec: LoadSpec) -> object:
        raise AssertionError("a remote model never reaches the local engine")

    def far(spec: LoadSpec) -> object:
        made.append(spec)
        return FakeEngine()(spec)

    scheduler = Scheduler(local, free_memory=lambda: 0, remote_factory=far, num_parallel=3, max_loaded=1)  # type: ignore[arg-type]
    two = spec("http://127.0.0.1:1")
    two = LoadSpec(**{**two.__dict__, "remote": (*two.remote, "openai+http://127.0.0.1:2/v1#m")})
    with scheduler.use(ModelRequest(two, {}, 0)):
        (runner,) = scheduler.loaded()
        assert runner.size == 0 and runner.spec.num_parallel == 6  # three slots a replica
    assert [s.remote for s in made] == [two.remote]
    scheduler.close()


def test_a_remote_answer_is_not_kept_as_a_measurement_of_this_machine(
    cove: Cove, upstream: tuple[Upstream, str]
) -> None:
    from cove.history.measurements import Measurements

    up, url = upstream
    up.tokens, up.token_delay_s = 12, 0.005  # long enough to be timed
    make(cove, "far", recipe((url, "m")))
    answer = cove.run_chat("far", {"messages": [{"role": "user", "content": "x"}]}, on_event=lambda e: False)
    assert answer.tokens_per_s
    found = Measurements.if_any(cove.settings.home)
    assert found is None or found.of(cove.model("far").digest) is None


def test_the_privacy_report_lines_name_each_upstream_and_what_travels(cove: Cove) -> None:
    make(cove, "far", recipe(("https://gpu.example:8000", "big"), ("http://127.0.0.1:9", "big")))
    rules = remote.privacy_rules(cove.settings.home, offline=False)
    assert [r["to"] for r in rules] == ["gpu.example:8000", "this machine only"]
    assert "far:latest" in rules[0]["why"] and "prompt" in rules[0]["why"] and rules[0]["allowed"]
    assert not remote.privacy_rules(cove.settings.home, offline=True)[0]["allowed"]
    # `cove privacy` (and /api/cove/privacy) shows them with every other way out.
    report = policy_report(gate.Gate(cove.settings))
    assert "gpu.example:8000" in [r["to"] for r in report["rules"] if r["feature"] == remote.REMOTE_ENGINE]


@pytest.mark.anyio
async def test_ollama_generate_on_a_remote_model_is_a_chat_turn(
    cove: Cove, upstream: tuple[Upstream, str]
) -> None:
    up, url = upstream
    make(cove, "far", recipe((url, "m"), extra="SYSTEM be brief\n"))
    async with client(make_app(cove)) as http:
        reply = await http.post("/api/generate", json={"model": "far", "prompt": "hi", "stream": False})
        assert reply.status_code == 200 and reply.json()["response"] == "a0 a1 a2 a3 a4 "
        assert up.requests[-1]["messages"][-1] == {"role": "user", "content": "hi"}
        again = await http.post(
            "/api/generate", json={"model": "far", "prompt": "hi", "context": [1, 2], "stream": False}
        )
        assert again.status_code == 400 and "cannot continue a `context`" in again.json()["error"]


def test_streamed_answers_keep_one_connection_to_the_upstream(upstream: tuple[Upstream, str]) -> None:
    up, url = upstream
    model = loaded(url)
    for _ in range(3):
        assert collect(model) == (["", "a0 ", "a1 ", "a2 ", "a3 ", "a4 ", ""], None)
    assert len(up.ports) == 3 and len(set(up.ports)) == 1  # read to its end, each is kept for the next
    model.close()


def test_a_recipe_pointing_at_another_api_version_says_so(upstream: tuple[Upstream, str]) -> None:
    _, url = upstream
    wrong = LoadSpec(**{**spec(url).__dict__, "remote": (f"openai+{url}/v2#m",)})
    with pytest.raises(RemoteError) as caught:
        remote.RemoteModel(wrong)
    assert "has no /models (404" in one_line(caught.value) and "(…/v1)" in str(caught.value)


@pytest.mark.anyio
async def test_ollama_format_reaches_the_upstream_as_response_format(
    cove: Cove, upstream: tuple[Upstream, str]
) -> None:
    up, url = upstream
    make(cove, "far", recipe((url, "m")))
    schema = {"type": "object", "properties": {"a": {"type": "integer"}}}
    async with client(make_app(cove)) as http:
        body = {
            "model": "far",
            "messages": [{"role": "user", "content": "x"}],
            "format": schema,
            "stream": False,
        }
        assert (await http.post("/api/chat", json=body)).status_code == 200
    sent = up.requests[-1]["response_format"]
    assert sent["type"] == "json_schema" and sent["json_schema"]["schema"] == schema


def test_unloading_with_a_stream_in_flight_says_so(upstream: tuple[Upstream, str]) -> None:
    from cove.errors import ShuttingDown

    up, url = upstream
    up.tokens, up.token_delay_s = 100, 0.02
    model = loaded(url)
    failure: list[BaseException | None] = []
    thread = threading.Thread(target=lambda: failure.append(collect(model)[1]))
    thread.start()
    deadline = time.monotonic() + 5
    while not up.active and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(0.1)
    model.close()
    thread.join(timeout=10)
    assert isinstance(failure[0], ShuttingDown) and "was unloaded" in str(failure[0])


def test_offline_a_remote_host_is_refused_by_the_gate_in_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COVE_OFFLINE", "1")
    gate.uninstall()
    with pytest.raises(gate.EgressRefused) as caught:
        remote.RemoteModel(spec("https://gpu.example:8000"))
    assert caught.value.status == 403 and "offline" in one_line(caught.value)
    assert "gpu.example:8000" in str(caught.value)
    (entry,) = [e for e in gate.current().ledger.entries() if e.host == "gpu.example"]
    assert entry.feature == "engine:remote" and entry.decision == "refused"
