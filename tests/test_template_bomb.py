"""A template bomb: a chat template whose costly branch depends on the conversation passes the
create-time check, and is refused with a 400 on the request that sets it off, before the engine
renders it (llama.cpp's renderer spent 44 s of CPU and 1.8 GB on one such request). In the
engine in-process and in an engine process; from a recipe's TEMPLATE and from inside the GGUF."""

from __future__ import annotations

import shutil
import struct
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from gguf_writer import kv
from server_fixtures import client, make_app

from cove.config import Settings
from cove.engine.process import IsolatedModel
from cove.errors import InvalidTemplate
from cove.library.local import Cove
from cove.templates import GEMMA_TEMPLATE

pytestmark = pytest.mark.model

MODEL = "gemma3:270m"
SHORT = {"num_predict": 2, "temperature": 0}
#: Gemma's own template with one branch that loops three million times on the word "boom".
BOMB = (
    "{%- for m in messages -%}{%- if m['content'] == 'boom' -%}"
    "{%- for i in range(3000000) -%}{{ 'x' }}{%- endfor -%}{%- endif -%}{%- endfor -%}\n" + GEMMA_TEMPLATE
)
BOOM = [
    {"role": "user", "content": "Hi"},
    {"role": "assistant", "content": "Hello."},
    {"role": "user", "content": "boom"},
]
HI = [{"role": "user", "content": "Hi"}]
REFUSED = r"chat template .* on this conversation; the request was not sent to the engine"


def with_chat_template(source: Path, target: Path, template: str) -> Path:
    """The bundled model with `tokenizer.chat_template` added to its metadata. The new entry goes
    first and is padded to the 32-byte alignment, so the tensor data keeps its alignment."""
    head = struct.calcsize("<4sIQQ")
    with source.open("rb") as f:
        magic, version, tensors, kvs = struct.unpack("<4sIQQ", f.read(head))
        while len(entry := kv("tokenizer.chat_template", template)) % 32:
            template += " "  # trailing spaces: the template renders the same prompt
        with target.open("wb") as out:
            out.write(struct.pack("<4sIQQ", magic, version, tensors, kvs + 1) + entry)
            shutil.copyfileobj(f, out, 16 << 20)
    return target


@pytest.fixture(params=["in-process", "engine-process"])
def cove(real_home: Path, request: pytest.FixtureRequest) -> Iterator[Cove]:
    factory = IsolatedModel if request.param == "engine-process" else None
    with Cove(Settings.from_env(), **({"factory": factory} if factory else {})) as cove:
        yield cove


def assert_refused_fast(cove: Cove, name: str) -> None:
    started = time.monotonic()
    with pytest.raises(InvalidTemplate, match=REFUSED):
        cove.chat(name, BOOM, options=SHORT)
    # Without the check the engine renders it for tens of seconds; the sandbox refuses it at once.
    assert time.monotonic() - started < 15
    assert cove.chat(name, HI, options=SHORT).content  # the model itself still answers


def test_a_bomb_in_a_recipe_template_is_refused_before_the_engine(cove: Cove) -> None:
    cove.create("bomb", f'FROM {MODEL}\nTEMPLATE """{BOMB}"""\n')  # passes the create-time check
    assert_refused_fast(cove, "bomb")


def test_a_bomb_inside_the_gguf_is_refused_before_the_engine(cove: Cove, tmp_path: Path) -> None:
    source = cove.store.model_path(cove.model(MODEL))
    path = with_chat_template(source, tmp_path / "bomb.gguf", BOMB)
    cove.store.import_gguf(path, "gguf-bomb", source="test")
    assert "range(3000000)" in (cove.model("gguf-bomb").info.get("chat_template") or "")
    assert_refused_fast(cove, "gguf-bomb")


@pytest.mark.anyio
async def test_the_server_answers_the_bomb_with_a_400(real_home: Path) -> None:
    with Cove(Settings.from_env()) as cove:
        cove.create("bomb", f'FROM {MODEL}\nTEMPLATE """{BOMB}"""\n')
        async with client(make_app(cove)) as c:
            ollama = await c.post("/api/chat", json={"model": "bomb", "messages": BOOM, "stream": False})
            openai = await c.post(
                "/v1/chat/completions", json={"model": "bomb", "messages": BOOM, "max_tokens": 2}
            )
            streamed = await c.post("/api/chat", json={"model": "bomb", "messages": BOOM})
    assert ollama.status_code == 400 and "not sent to the engine" in ollama.json()["error"]
    assert openai.status_code == 400 and "not sent to the engine" in openai.json()["error"]["message"]
    assert streamed.status_code == 400 or "not sent to the engine" in streamed.text
