"""`cove tune`'s refusals before any model loads: missing extra, taken name, untrainable base, bad data."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
from cli_helpers import _workdir, run_main
from gguf_writer import DEFAULT_METADATA, write_gguf

from cove.library.local import Cove

__all__ = ["_workdir"]  # the fixture: the CLI's working folder stays private


def facts(path: Path, count: int = 8) -> Path:
    lines = [
        json.dumps(
            {"messages": [{"role": "user", "content": f"q{i}"}, {"role": "assistant", "content": f"a{i}"}]}
        )
        for i in range(count)
    ]
    path.write_text("\n".join(lines) + "\n")
    return path


def test_without_the_extra_it_says_exactly_what_to_install(
    fake_cove: Cove, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "peft" else real(name, *a)
    )
    code, _, err = run_main(
        monkeypatch, capsys, "tune", "tiny", "--data", str(facts(tmp_path / "d.jsonl")), "--name", "new"
    )
    assert code == 1
    assert "peft not installed" in err
    assert "pip install 'cove[tune]'" in err and "pip install torch==2.13.0" in err


def test_a_name_that_exists_already_is_refused(
    fake_cove: Cove, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run_main(
        monkeypatch, capsys, "tune", "tiny", "--data", str(facts(tmp_path / "d.jsonl")), "--name", "tiny"
    )
    assert code == 1
    assert (
        "a model named 'tiny:latest' exists already: choose another --name, or `cove rm tiny:latest`" in err
    )


def test_an_architecture_transformers_cannot_load_is_named(
    fake_cove: Cove, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("transformers")
    meta = {k.replace("llama.", "rwkv6."): v for k, v in DEFAULT_METADATA.items()}
    fake_cove.store.import_gguf(
        write_gguf(tmp_path / "r.gguf", {**meta, "general.architecture": "rwkv6"}), "rwkv", "test"
    )
    code, _, err = run_main(
        monkeypatch, capsys, "tune", "rwkv", "--data", str(facts(tmp_path / "d.jsonl")), "--name", "n"
    )
    assert code == 1
    assert "transformers cannot load 'rwkv6' models from GGUF, so cove cannot train them; it can: " in err
    assert "llama" in err


def test_too_little_data_left_after_bad_lines_is_refused_with_the_lines(
    fake_cove: Cove, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    path = facts(tmp_path / "d.jsonl", count=4)
    path.write_text(path.read_text() + "\n[1]\n")
    code, _, err = run_main(monkeypatch, capsys, "tune", "tiny", "--data", str(path), "--name", "n")
    assert code == 1
    assert "left out: d.jsonl line 5: empty" in err
    assert 'left out: d.jsonl line 6: expected {"messages": [...]}' in err
    assert "only 4 usable examples; at least 6 are needed" in err


def test_a_fine_tuned_model_cannot_be_tuned_again(
    fake_cove: Cove, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import numpy as np

    from cove.tune.adapter_gguf import BaseShape, LoraPair, write_adapter

    adapter = tmp_path / "a.gguf"
    pair = LoraPair(
        "model.layers.0.self_attn.v_proj", np.ones((2, 8), np.float32), np.ones((8, 2), np.float32)
    )
    write_adapter(adapter, BaseShape("llama", 1, 2, 2), 4.0, [pair], {})
    made = fake_cove.create_tuned("tuned", "tiny", adapter, {"base": "tiny:latest", "settings": {"rank": 2}})
    assert made.recipe["adapter"] == f"sha256:{made.adapter_digest}" and made.info["tuned"]["settings"] == {
        "rank": 2
    }
    assert fake_cove.store.blobs.path(made.adapter_digest).is_file()
    code, _, err = run_main(
        monkeypatch, capsys, "tune", "tuned", "--data", str(facts(tmp_path / "d.jsonl")), "--name", "x"
    )
    assert code == 1 and "'tuned:latest' is itself fine-tuned; tune its base model instead" in err


def test_bad_flags_are_refused_by_the_command(
    fake_cove: Cove, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    data = str(facts(tmp_path / "d.jsonl"))
    code, _, err = run_main(monkeypatch, capsys, "tune", "tiny", "--data", data, "--name", "n", "--rank", "0")
    assert code == 2 and "--rank" in err
    code, _, err = run_main(
        monkeypatch, capsys, "tune", "tiny", "--data", data, "--name", "n", "--target-modules", ","
    )
    assert code == 2 and "name at least one module" in err


def test_ctrl_c_exits_130_and_says_the_same_command_resumes(
    fake_cove: Cove, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from cove.tune import job

    def interrupted(*_: object) -> None:
        raise KeyboardInterrupt  # what train() raises once it has saved its checkpoint

    monkeypatch.setattr(job, "tune", interrupted)
    data = str(facts(tmp_path / "d.jsonl"))
    code, _, err = run_main(monkeypatch, capsys, "tune", "tiny", "--data", data, "--name", "n")
    assert code == 130 and "stopped before training began; nothing to resume" in err
    checkpoint = job.work_folder(fake_cove.settings.home, "n") / "checkpoint.pt"
    checkpoint.parent.mkdir(parents=True)
    checkpoint.write_bytes(b"saved")
    code, _, err = run_main(monkeypatch, capsys, "tune", "tiny", "--data", data, "--name", "n")
    assert code == 130
    assert "stopped; a checkpoint is kept: run the same command to resume 'n'" in err
