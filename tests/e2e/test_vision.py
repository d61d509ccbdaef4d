"""Vision models end to end: a tiny random Qwen2-VL on a real server, images on generate and chat.

Detection (`/api/show` capabilities, the backend recorded in the store) and the not-installed
error run everywhere; the tests that run the model need mlx-vlm and skip without it.
"""

from __future__ import annotations

import base64
import importlib.util
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import ollama
import pytest

from mlx_lama.config import Config
from mlx_lama.store.store import Store
from tests.support.server import LiveServer, import_model
from tests.support.tiny_model import build_tiny_model
from tests.support.tiny_vlm import build_tiny_vlm, png

VLM, TEXT = "tiny-vl:latest", "tiny-llama:latest"
HAVE_VLM = importlib.util.find_spec("mlx_vlm") is not None
needs_vlm = pytest.mark.skipif(not HAVE_VLM, reason=(
    "mlx-vlm is not installed (pip install --no-deps mlx-vlm==0.7.10 pillow, or '.[vision]')"))
GREEDY = {"temperature": 0, "num_predict": 8}


def b64(data: bytes) -> str:
    """Raw standard base64, as the native API takes images."""
    return base64.b64encode(data).decode()


# Two different pictures; WIDE is twice the area of SQUARE, so it costs twice the image tokens.
WIDE = b64(png(112, 56, lambda x, y: (x * 4 % 256, y * 5 % 256, 100)))
SQUARE = b64(png(56, 56, lambda x, y: (255 - x * 4 % 256, 30, y * 5 % 256)))
SQUARE_TOKENS, WIDE_TOKENS = 4, 8  # 28x28 pixels per token


@pytest.fixture(scope="module")
def vision_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A store with the tiny vision model and a text-only model."""
    root = tmp_path_factory.mktemp("vision")
    import_model(root / "store", VLM, build_tiny_vlm(root / "tiny-vl"))
    import_model(root / "store", TEXT, build_tiny_model(root / "tiny-llama", arch="llama"))
    return root / "store"


@pytest.fixture(scope="module")
def server(vision_store: Path) -> Iterator[LiveServer]:
    """One server over the vision store."""
    live = LiveServer(Config(models_dir=vision_store)).start()
    yield live
    live.stop()


def post(server: LiveServer, path: str, body: dict[str, Any]) -> httpx.Response:
    return httpx.post(server.url + path, json=body, timeout=120)


def generate(server: LiveServer, prompt: str = "What is this?", images: list[str] | None = None,
             **body: Any) -> dict[str, Any]:
    r = post(server, "/api/generate", {"model": VLM, "prompt": prompt, "images": images or [],
                                       "stream": False, "options": GREEDY, **body})
    assert r.status_code == 200, r.text
    return dict(r.json())


def lines(r: httpx.Response) -> list[dict[str, Any]]:
    return [json.loads(line) for line in r.text.splitlines() if line]


# ------------------------------------------------------------------ detection (no mlx-vlm needed)


def test_show_reports_vision_and_the_store_routes_to_mlx_vlm(server: LiveServer, vision_store: Path) -> None:
    show = post(server, "/api/show", {"model": VLM}).json()
    assert show["capabilities"] == ["completion", "vision"]
    assert show["details"]["family"] == "qwen2_vl"
    assert show["model_info"]["qwen2_vl.context_length"] == 2048
    assert "vision" not in post(server, "/api/show", {"model": TEXT}).json()["capabilities"]
    store = Store(vision_store)
    assert store.get(VLM).config["backend"] == "mlx-vlm"  # type: ignore[union-attr]
    assert store.get(TEXT).config["backend"] == "mlx-lm"  # type: ignore[union-attr]


@pytest.mark.parametrize(("path", "body"), [
    ("/api/generate", {"model": TEXT, "prompt": "hi", "images": [SQUARE]}),
    ("/api/chat", {"model": TEXT, "messages": [{"role": "user", "content": "hi", "images": [SQUARE]}]}),
], ids=["generate", "chat"])
def test_images_to_a_model_without_vision_are_400_alike(server: LiveServer, path: str,
                                                        body: dict[str, Any]) -> None:
    r = post(server, path, body)
    assert (r.status_code, r.json()) == (400, {"error": "this model does not support image input"})


@pytest.mark.parametrize(("path", "body"), [
    ("/api/generate", {"model": VLM, "prompt": "hi", "images": ["data:image/png;base64," + SQUARE]}),
    ("/api/chat", {"model": VLM, "messages": [{"role": "user", "content": "hi",
                                               "images": ["data:image/png;base64," + SQUARE]}]}),
], ids=["generate", "chat"])
def test_data_urls_keep_ollamas_base64_error(server: LiveServer, path: str, body: dict[str, Any]) -> None:
    r = post(server, path, body)
    assert (r.status_code, r.json()) == (400, {"error": "illegal base64 data at input byte 4"})


def test_without_mlx_vlm_images_name_the_extra_and_text_still_works(
        vision_store: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # An injected import failure: `import mlx_vlm` raises ImportError, as where it is not installed.
    monkeypatch.setitem(sys.modules, "mlx_vlm", None)
    live = LiveServer(Config(models_dir=vision_store)).start()
    try:
        message = {"role": "user", "content": "hi", "images": [SQUARE]}
        for path, body in (("/api/generate", {"prompt": "hi", "images": [SQUARE]}),
                           ("/api/chat", {"messages": [message]})):
            r = post(live, path, {"model": VLM, "stream": False, **body})
            assert r.status_code == 500, r.text
            assert r.json() == {"error": "images need mlx-vlm, which is not installed: "
                                         "pip install 'mlx-lama[vision]'"}
        # Text goes through mlx-lm, which loads Qwen2-VL's language model without the tower.
        r = post(live, "/api/generate", {"model": VLM, "prompt": "hi", "stream": False, "options": GREEDY})
        assert r.status_code == 200, r.text
        assert r.json()["eval_count"] == GREEDY["num_predict"] and r.json()["response"]
    finally:
        live.stop()


# ------------------------------------------------------------------ running the model (mlx-vlm)


@needs_vlm
def test_generate_with_an_image_counts_its_tokens_and_sees_it(server: LiveServer) -> None:
    plain = generate(server)
    square, wide, both = generate(server, images=[SQUARE]), generate(server, images=[WIDE]), \
        generate(server, images=[SQUARE, WIDE])
    # Each picture adds <|vision_start|>, its image tokens and <|vision_end|> to the prompt.
    assert square["prompt_eval_count"] == plain["prompt_eval_count"] + 2 + SQUARE_TOKENS
    assert wide["prompt_eval_count"] == plain["prompt_eval_count"] + 2 + WIDE_TOKENS
    assert both["prompt_eval_count"] == plain["prompt_eval_count"] + 4 + SQUARE_TOKENS + WIDE_TOKENS
    # Greedy decoding: the picture changes the answer, the same picture gives the same answer.
    answers = {plain["response"], square["response"], wide["response"], both["response"]}
    assert len(answers) == 4
    assert generate(server, images=[SQUARE])["response"] == square["response"]
    assert all(r["eval_count"] == GREEDY["num_predict"] and r["done_reason"] == "length"
               for r in (plain, square, wide, both))


@needs_vlm
def test_streamed_generate_and_chat_match_their_folded_answers(server: LiveServer) -> None:
    body = {"model": VLM, "options": GREEDY}
    gen_stream = lines(post(server, "/api/generate", {**body, "prompt": "What is this?", "images": [WIDE]}))
    gen_whole = generate(server, images=[WIDE])
    message = {"role": "user", "content": "What is this?", "images": [WIDE]}
    chat_stream = lines(post(server, "/api/chat", {**body, "messages": [message]}))
    chat_whole = post(server, "/api/chat", {**body, "messages": [message], "stream": False}).json()
    assert len(gen_stream) > 2 and len(chat_stream) > 2  # token by token, then the final chunk
    assert gen_stream[-1]["done"] and chat_stream[-1]["done"]
    assert "".join(c["response"] for c in gen_stream) == gen_whole["response"]
    assert "".join(c["message"]["content"] for c in chat_stream) == chat_whole["message"]["content"]
    # generate's prompt is a user message with the images: the same prompt as this chat.
    assert chat_whole["message"]["content"] == gen_whole["response"]
    assert chat_stream[-1]["prompt_eval_count"] == gen_whole["prompt_eval_count"]


@needs_vlm
def test_the_official_client_sends_image_bytes(server: LiveServer) -> None:
    client = ollama.Client(host=server.url)
    picture = base64.b64decode(SQUARE)
    chunks = list(client.chat(model=VLM, stream=True, options=GREEDY,
                              messages=[{"role": "user", "content": "What is this?", "images": [picture]}]))
    assert chunks[-1].done and chunks[-1].prompt_eval_count == generate(server, images=[SQUARE])[
        "prompt_eval_count"]
    reply = client.generate(model=VLM, prompt="What is this?", images=[picture], options=GREEDY)
    assert reply.response == generate(server, images=[SQUARE])["response"]


@needs_vlm
def test_img_markers_place_images_and_history_keeps_them(server: LiveServer) -> None:
    def rendered(messages: list[dict[str, Any]]) -> str:
        r = post(server, "/api/chat", {"model": VLM, "messages": messages, "_debug_render_only": True})
        assert r.status_code == 200, r.text
        return str(r.json()["_debug_info"]["rendered_template"])

    image = "<|vision_start|><|image_pad|><|vision_end|>"
    assert rendered([{"role": "user", "content": "Compare", "images": [SQUARE, WIDE]}]) == (
        f"<|im_start|>user\n{image}{image}Compare<|im_end|>\n<|im_start|>assistant\n")
    marked = {"role": "user", "content": "A [img] then B [img] [img]", "images": [SQUARE, WIDE]}
    assert rendered([marked]) == (
        f"<|im_start|>user\nA {image} then B {image} [img]<|im_end|>\n<|im_start|>assistant\n")
    history = [{"role": "user", "content": "One", "images": [SQUARE]},
               {"role": "assistant", "content": "A square."},
               {"role": "user", "content": "Two", "images": [WIDE]}]
    assert rendered(history).count(image) == 2
    r = post(server, "/api/chat", {"model": VLM, "messages": history, "stream": False, "options": GREEDY})
    single = post(server, "/api/chat", {"model": VLM, "messages": history[-1:], "stream": False,
                                        "options": GREEDY}).json()
    assert r.json()["prompt_eval_count"] > single["prompt_eval_count"] + SQUARE_TOKENS


@needs_vlm
def test_chunked_prefill_and_context_shift_work_with_images(server: LiveServer) -> None:
    whole = generate(server, images=[WIDE])["response"]
    for num_batch in (1, 5):  # the prefill in chunks of this many tokens, cutting through the image
        chunked = generate(server, images=[WIDE], options={**GREEDY, "num_batch": num_batch})
        assert chunked["response"] == whole
    # An answer longer than the window: the KV cache rotates, keeping num_keep tokens.
    shifted = generate(server, images=[WIDE], options={"temperature": 0, "num_predict": 40, "num_ctx": 32})
    assert shifted["eval_count"] == 40 and shifted["prompt_eval_count"] == 26


@needs_vlm
def test_a_vision_model_still_answers_text(server: LiveServer) -> None:
    r = post(server, "/api/chat", {"model": VLM, "stream": False, "options": GREEDY,
                                   "messages": [{"role": "system", "content": "Be brief."},
                                                {"role": "user", "content": "Hello"}]})
    assert r.status_code == 200, r.text
    assert r.json()["message"]["content"] and r.json()["eval_count"] == GREEDY["num_predict"]


@needs_vlm
def test_generate_context_continues_on_a_vision_model(server: LiveServer) -> None:
    first = generate(server, prompt="Hello")
    assert first["context"] and all(isinstance(t, int) for t in first["context"])
    second = generate(server, prompt="And then?", context=first["context"])
    assert second["prompt_eval_count"] > len(first["context"])
    r = post(server, "/api/generate", {"model": VLM, "prompt": "x", "stream": False,
                                       "context": [10**9]})
    assert r.status_code == 400, r.text


@needs_vlm
def test_leaving_a_stream_frees_the_model(server: LiveServer) -> None:
    body = {"model": VLM, "prompt": "Tell me everything", "images": [WIDE],
            "options": {"temperature": 0, "num_predict": 100_000}}
    with httpx.stream("POST", server.url + "/api/generate", json=body, timeout=120) as r:
        first = next(r.iter_lines())
    assert json.loads(first)["done"] is False
    # Served one at a time: this answers only once the abandoned request has stopped.
    assert generate(server, images=[SQUARE])["done"]


@needs_vlm
@pytest.mark.parametrize(("body", "status", "error"), [
    ({"prompt": "x", "images": [b64(b"not a picture")]}, 400, "image 1 is not a picture (unknown format)"),
    ({"prompt": "x", "images": [SQUARE, b64(base64.b64decode(WIDE)[:60])]}, 400, "image 2 cannot be decoded"),
    ({"messages": [{"role": "user", "content": "x", "images": [b64(b"GIF89a")]}]}, 400,
     "image 1 is not a picture"),
    ({"prompt": "x", "images": [SQUARE], "raw": True}, 400, "images need the model's chat template"),
    ({"prompt": "x", "images": [SQUARE], "template": "{{ .Prompt }}"}, 400,
     "images need the model's chat template"),
    ({"messages": [{"role": "user", "content": "x"},
                   {"role": "assistant", "content": "y", "images": [SQUARE]}]}, 400,
     "images are only supported on user messages"),
    ({"prompt": "x", "images": [WIDE], "options": {"num_ctx": 12}}, 400,
     "the input length (21 tokens, images included) exceeds the context length (12 tokens)"),
], ids=["not-a-picture", "truncated-png", "chat-not-a-picture", "raw", "go-template",
        "assistant-images", "over-context"])
def test_bad_images_are_clear_400s(server: LiveServer, body: dict[str, Any], status: int, error: str) -> None:
    path = "/api/chat" if "messages" in body else "/api/generate"
    for stream in (False, True):  # the error comes before the first byte either way
        r = post(server, path, {"model": VLM, "stream": stream, **body})
        assert r.status_code == status, r.text
        assert r.json()["error"].startswith(error)


@needs_vlm
def test_format_and_logprobs_with_an_image(server: LiveServer) -> None:
    """mlx-vlm runs the same logits processors: the JSON constraint and the logprob probe."""
    import jsonschema

    schema = {"type": "object", "properties": {"colour": {"type": "string"}, "count": {"type": "integer"}},
              "required": ["colour", "count"]}
    for stream in (False, True):
        r = post(server, "/api/generate", {
            "model": VLM, "prompt": "Describe it.", "images": [SQUARE], "stream": stream, "format": schema,
            "logprobs": True, "top_logprobs": 2,
            "options": {"temperature": 1.0, "seed": 5, "num_predict": 48}})
        assert r.status_code == 200, r.text
        chunks = lines(r) if stream else [r.json()]
        answer = "".join(c["response"] for c in chunks)
        jsonschema.validate(json.loads(answer), schema)
        entries = [e for c in chunks for e in c.get("logprobs", [])]
        assert "".join(e["token"] for e in entries) == answer
        assert all(len(e["top_logprobs"]) == 2 for e in entries)


@needs_vlm
def test_dialects_carry_images_onto_the_native_path(server: LiveServer) -> None:
    """OpenAI's data URLs and Anthropic's base64 image blocks give the native chat's answer."""
    native = post(server, "/api/chat", {"model": VLM, "stream": False, "options": GREEDY, "messages": [
        {"role": "user", "content": "What is this?", "images": [SQUARE]}]}).json()
    url = "data:image/png;base64," + SQUARE
    parts = [{"type": "text", "text": "What is this?"}, {"type": "image_url", "image_url": {"url": url}}]
    oa = post(server, "/v1/chat/completions", {"model": VLM, "temperature": 0, "max_tokens": 8,
                                               "messages": [{"role": "user", "content": parts}]})
    assert oa.status_code == 200, oa.text
    assert oa.json()["choices"][0]["message"]["content"] == native["message"]["content"]
    assert oa.json()["usage"]["prompt_tokens"] == native["prompt_eval_count"]
    source = {"type": "base64", "media_type": "image/png", "data": SQUARE}
    blocks = [{"type": "image", "source": source}, {"type": "text", "text": "What is this?"}]
    an = post(server, "/v1/messages", {"model": VLM, "temperature": 0, "max_tokens": 8,
                                       "messages": [{"role": "user", "content": blocks}]})
    assert an.status_code == 200, an.text
    assert an.json()["content"][0]["text"] == native["message"]["content"]
    assert an.json()["usage"]["input_tokens"] == native["prompt_eval_count"]
