"""Tests for the settings: declared once, read from COVE_* variables, refused in one clear line."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
from cli_helpers import run_main
from fakes import FakeEngine
from gguf_writer import write_gguf

from cove.config import DEFAULT_PORT, Settings, explain
from cove.errors import CoveError, InvalidSetting
from cove.library.local import Cove


def test_defaults_are_the_documented_ones(cove_home: Path) -> None:
    settings = Settings.from_env({"COVE_HOME": str(cove_home)})
    assert settings.home == cove_home
    assert (settings.host, settings.port) == ("127.0.0.1", DEFAULT_PORT)
    assert (settings.max_loaded, settings.num_parallel, settings.max_queue) == (2, 8, 64)
    assert settings.num_threads == 0 and settings.keep_alive_s == 300.0
    assert settings.hf_endpoint == "https://huggingface.co" and settings.hf_token is None
    assert settings.api_keys == () and settings.origins == ()
    assert settings.max_body == 16 << 20 and settings.debug is False
    assert settings.context_policy == "summarize"


def test_a_given_mapping_is_the_whole_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COVE_DEBUG", "1")
    assert Settings.from_env().debug is True
    assert Settings.from_env({}).debug is False


def test_values_are_read_and_converted(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COVE_HOST", "[::1]:8080")
    monkeypatch.setenv("COVE_API_KEYS", " one, two ,, ")
    monkeypatch.setenv("COVE_ORIGINS", "https://app.example")
    monkeypatch.setenv("COVE_NUM_PARALLEL", "3")
    monkeypatch.setenv("COVE_HF_ENDPOINT", "http://mirror.example/")
    monkeypatch.setenv("HF_TOKEN", "hf_secret")
    monkeypatch.setenv("COVE_DEBUG", "true")
    monkeypatch.setenv("COVE_CONTEXT_POLICY", " Refuse ")
    monkeypatch.setenv("COVE_MAX_QUEUE", "")  # empty means unset, as before
    settings = Settings.from_env()
    assert (settings.host, settings.port) == ("::1", 8080)
    assert settings.api_keys == ("one", "two") and settings.origins == ("https://app.example",)
    assert settings.num_parallel == 3 and settings.max_queue == 64
    assert settings.hf_endpoint == "http://mirror.example" and settings.hf_token == "hf_secret"
    assert settings.debug is True and settings.context_policy == "refuse"


def test_keep_alive_takes_durations_like_the_api() -> None:
    assert Settings.from_env({"COVE_KEEP_ALIVE": "5m"}).keep_alive_s == 300.0
    assert Settings.from_env({"COVE_KEEP_ALIVE": "90"}).keep_alive_s == 90.0
    assert Settings.from_env({"COVE_KEEP_ALIVE": "1h"}).keep_alive_s == 3600.0
    assert Settings.from_env({"COVE_KEEP_ALIVE": "0"}).keep_alive_s == 0.0
    assert Settings.from_env({"COVE_KEEP_ALIVE": "-1"}).keep_alive_s < 0


def test_keep_alive_minus_one_keeps_the_model_loaded(
    cove_home: Path, engine: FakeEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COVE_KEEP_ALIVE", "-1")
    with Cove(Settings.from_env(), factory=engine) as cove:
        cove.store.import_gguf(write_gguf(cove_home.parent / "tiny.gguf"), "tiny", source="test")
        cove.preload("tiny")  # no keep_alive of its own: the setting decides
        (loaded,) = cove.loaded()
        assert loaded.name == "tiny:latest"
        assert loaded.expires_in_s is None  # forever
        assert cove.scheduler.unload_expired() == []
    assert engine.closed  # closing cove still unloads it


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("COVE_HOST", "0.0.0.0:99999", "COVE_HOST has port 99999, outside 0-65535"),
        ("COVE_HOST", "localhost:http", "COVE_HOST has a bad port"),
        ("COVE_NUM_PARALLEL", "0", "COVE_NUM_PARALLEL must be at least 1, not '0'"),
        ("COVE_MAX_LOADED", "two", "COVE_MAX_LOADED must be a whole number, not 'two'"),
        ("COVE_MAX_BODY", "10", "COVE_MAX_BODY must be at least 1024"),
        ("COVE_KEEP_ALIVE", "soon", "COVE_KEEP_ALIVE must be seconds or a duration like 5m"),
        ("COVE_KEEP_ALIVE", "inf", "COVE_KEEP_ALIVE must be seconds"),
        ("COVE_DEBUG", "maybe", "COVE_DEBUG must be true or false"),
        ("COVE_HF_ENDPOINT", "ftp://mirror", "COVE_HF_ENDPOINT must be an http:// or https:// URL"),
        ("COVE_CONTEXT_POLICY", "sometimes", "COVE_CONTEXT_POLICY must be summarize or refuse, not 'some"),
    ],
)
def test_bad_values_are_one_line_naming_the_variable(variable: str, value: str, message: str) -> None:
    with pytest.raises(InvalidSetting) as info:
        Settings.from_env({variable: value})
    text = str(info.value)
    assert text.startswith(message)
    assert "\n" not in text and "pydantic" not in text and "validation error" not in text
    assert isinstance(info.value, CoveError)


def test_secrets_are_never_echoed_in_errors() -> None:
    with pytest.raises(InvalidSetting) as info:
        Settings(api_keys=12345)  # type: ignore[arg-type]
    assert "COVE_API_KEYS" in str(info.value) and "12345" not in str(info.value)


def test_replace_validates_and_the_snapshot_is_frozen(cove_home: Path) -> None:
    settings = Settings(home=cove_home)
    one = dataclasses.replace(settings, num_parallel=1)
    assert one.num_parallel == 1 and one.home == cove_home and settings.num_parallel == 8
    assert settings.replace(port=0).port == 0
    with pytest.raises(InvalidSetting, match=r"the port \(COVE_HOST or --port\) must be at most 65535"):
        dataclasses.replace(settings, port=70000)
    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.port = 1  # type: ignore[misc]


def test_explain_names_sources_and_masks_secrets(cove_home: Path) -> None:
    environ = {"COVE_HOME": str(cove_home), "COVE_HOST": ":9", "HF_TOKEN": "hf_x", "COVE_API_KEYS": "k,l"}
    rows = {row.name: row for row in explain(environ)}
    assert set(rows) == {f.name for f in dataclasses.fields(Settings)}
    assert rows["home"].source == "environment" and rows["home"].value == str(cove_home)
    assert rows["port"].source == "environment" and rows["port"].env == "COVE_HOST"
    assert rows["port"].value == 9
    assert rows["num_parallel"].source == "default" and rows["num_parallel"].env == "COVE_NUM_PARALLEL"
    assert rows["hf_token"].value == "****" and rows["api_keys"].value == ["****", "****"]
    assert rows["keep_alive_s"].env == "COVE_KEEP_ALIVE" and rows["keep_alive_s"].description
    assert rows["context_policy"].env == "COVE_CONTEXT_POLICY"


def test_cove_config_command(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], cove_home: Path
) -> None:
    monkeypatch.setenv("COVE_API_KEYS", "sesame-open")
    monkeypatch.setenv("HF_TOKEN", "hf_very_secret")
    monkeypatch.setenv("COVE_KEEP_ALIVE", "10m")
    code, out, err = run_main(monkeypatch, capsys, "config", "--json")
    assert code == 0, err
    rows = {row["env"] + ":" + row["name"]: row for row in json.loads(out)}
    assert rows["COVE_KEEP_ALIVE:keep_alive_s"]["value"] == 600.0
    assert rows["COVE_KEEP_ALIVE:keep_alive_s"]["source"] == "environment"
    assert rows["COVE_MAX_LOADED:max_loaded"] == {
        "name": "max_loaded",
        "env": "COVE_MAX_LOADED",
        "value": 2,
        "source": "default",
        "description": "models held in memory at once",
    }
    code, table, err = run_main(monkeypatch, capsys, "config")
    assert code == 0, err
    assert "COVE_NUM_PARALLEL" in table and "COVE_CONTEXT_POLICY" in table and "environment" in table
    for text in (out, table):
        assert "sesame-open" not in text and "hf_very_secret" not in text


def test_cove_config_reports_a_bad_setting_in_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("COVE_HOST", "127.0.0.1:65536")
    code, out, err = run_main(monkeypatch, capsys, "config")
    assert code == 1 and out == ""
    assert err.strip() == "Error: COVE_HOST has port 65536, outside 0-65535: '127.0.0.1:65536'"


@pytest.mark.parametrize("keys", [("",), ("good", "  ")])
def test_an_empty_api_key_is_refused_not_a_key_that_matches_no_key(
    cove_home: Path, keys: tuple[str, ...]
) -> None:
    # `cove serve --api-key "$UNSET"`: an empty key would accept requests that send none.
    with pytest.raises(InvalidSetting, match="COVE_API_KEYS holds an empty key"):
        Settings(home=cove_home).replace(api_keys=keys)
    assert Settings(home=cove_home).replace(api_keys=(" k ",)).api_keys == ("k",)


@pytest.mark.parametrize("key", ["clé-secrète", "tab\there", "snow☃"])
def test_a_key_no_client_can_send_is_refused(
    cove_home: Path, key: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(InvalidSetting, match="beyond printable ASCII") as caught:
        Settings(home=cove_home).replace(api_keys=(key,))
    assert key not in str(caught.value)  # a key is never echoed, not even a bad one
    monkeypatch.setenv("COVE_API_KEYS", key)
    with pytest.raises(InvalidSetting, match="COVE_API_KEYS holds a key"):
        Settings.from_env()


def test_cove_local_is_a_setting_the_cli_obeys(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], cove_home: Path
) -> None:
    import cove.cli.main as cli_main

    def no_server_wanted(settings: Settings) -> None:
        raise AssertionError("COVE_LOCAL=1 must not look for a server")

    monkeypatch.setattr(cli_main, "find_server", no_server_wanted)
    monkeypatch.setenv("COVE_LOCAL", "1")
    code, out, err = run_main(monkeypatch, capsys, "list")
    assert code == 0, err
    code, out, err = run_main(monkeypatch, capsys, "config", "--json")
    local = next(row for row in json.loads(out) if row["name"] == "local")
    assert local["env"] == "COVE_LOCAL" and local["value"] is True and local["source"] == "environment"
