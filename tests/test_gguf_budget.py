"""The GGUF check's work budget: bulky but well-formed files are refused fast, real-sized ones pass."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from gguf_writer import ARRAY, GGML_F32, INT32, STRING, gguf_string, header, tensor_info, u32, u64

from cove.errors import InvalidModelFile
from cove.store import gguf
from cove.store.gguf import read_gguf

# Far more than any check in this file needs on a loaded CI machine, far less than the seconds
# of CPU the unbounded check took on the files the refusals are about.
CPU_BOUND_S = 0.5


def keys(count: int) -> bytes:
    return b"".join(gguf_string(f"k{i}") + u32(4) + u32(i) for i in range(count))


def string_array(key: str, count: int) -> bytes:
    """An array of `count` empty strings: eight zero bytes each."""
    return gguf_string(key) + u32(ARRAY) + u32(STRING) + u64(count) + bytes(8 * count)


def write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


@contextmanager
def cpu_at_most(seconds: float) -> Iterator[None]:
    start = time.process_time()
    yield
    spent = time.process_time() - start
    assert spent < seconds, f"the check took {spent:.2f} s of CPU"


def refused(path: Path, *needles: str) -> str:
    with cpu_at_most(CPU_BOUND_S), pytest.raises(InvalidModelFile) as caught:
        read_gguf(path)
    message = str(caught.value)
    assert "\n" not in message, message
    assert "cove will load" in message or "cove checks" in message, message
    for needle in needles:
        assert needle in message, message
    return message


def test_more_keys_than_any_model_is_refused_from_the_header(tmp_path: Path) -> None:
    count = gguf._MAX_KEYS * 3  # legal, distinct keys: the old check read all of them
    path = write(tmp_path / "keys.gguf", header(3, 0, count) + keys(count))
    refused(path, f"{count} metadata entries", "65,536")


def test_more_tensors_than_any_model_is_refused_from_the_header(tmp_path: Path) -> None:
    count = gguf._MAX_TENSORS + 1
    infos = b"".join(tensor_info(f"t{i}", (1,), GGML_F32, 0) for i in range(count))
    path = write(tmp_path / "tensors.gguf", header(3, count, 0) + infos + bytes(64))
    refused(path, f"{count} tensors")


def test_a_vocabulary_beyond_the_budget_is_refused_before_it_is_walked(tmp_path: Path) -> None:
    path = write(tmp_path / "strings.gguf", header(3, 0, 1) + string_array("tokenizer.ggml.tokens", 5 << 20))
    refused(path, "too bulky")


def test_arrays_of_arrays_count_against_the_budget(tmp_path: Path) -> None:
    count = 2 << 20
    body = gguf_string("a") + u32(ARRAY) + u32(ARRAY) + u64(count) + (u32(INT32) + u64(0)) * count
    refused(write(tmp_path / "nested.gguf", header(3, 0, 1) + body), "too bulky")


def test_the_bulkiest_legal_file_is_accepted_within_a_bound(tmp_path: Path) -> None:
    """Near every limit at once; checked in about a second of CPU on a slow shared machine."""
    key_count, tensor_count = gguf._MAX_KEYS, gguf._MAX_TENSORS // 4
    used = key_count * gguf._KEY_WORK + tensor_count * gguf._TENSOR_WORK
    strings = gguf._WORK_BUDGET - used - 16
    infos = b"".join(tensor_info(f"t{i}", (1,), GGML_F32, 0) for i in range(tensor_count))
    data = header(3, tensor_count, key_count) + keys(key_count - 1) + string_array("v", strings) + infos
    path = write(tmp_path / "bulky.gguf", data + bytes(64))
    with cpu_at_most(8.0):
        info = read_gguf(path)
    assert len(info.metadata) == key_count and info.tensor_count == tensor_count


def test_one_string_more_than_the_budget_is_refused(tmp_path: Path) -> None:
    key_work = gguf._KEY_WORK
    path = write(tmp_path / "at.gguf", header(3, 0, 1) + string_array("v", gguf._WORK_BUDGET - key_work))
    read_gguf(path)  # exactly the budget
    path = write(
        tmp_path / "over.gguf", header(3, 0, 1) + string_array("v", gguf._WORK_BUDGET - key_work + 1)
    )
    refused(path, "too bulky")


def test_a_check_past_its_time_budget_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The wall-clock backstop: a machine so loaded that even the unit budget takes too long."""
    path = write(tmp_path / "slow.gguf", header(3, 0, 1) + string_array("v", 4 * gguf._CLOCK_EVERY))
    read_gguf(path)
    monkeypatch.setattr(gguf, "_TIME_BUDGET_S", -1.0)
    refused(path, "took over")
