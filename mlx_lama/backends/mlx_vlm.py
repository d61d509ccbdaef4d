"""Vision models through mlx-vlm, the optional `vision` extra. The only module that imports mlx_vlm.

mlx-vlm loads a vision model directory with its processor (tokenizer, image processor, chat
template). A prompt with pictures is rendered with one placeholder per picture; the processor
then expands each into the picture's image tokens (Qwen2-VL: one per 28x28 pixels) and returns
the pixel tensors, so the prompt ids the engine counts include the images. Generation runs
mlx-vlm's `generate_step` token by token on the runner thread, one request at a time.

Without mlx-vlm (or when it lacks the architecture) a vision model still answers text through
mlx-lm where mlx-lm knows the architecture (it drops the vision tower); a request with pictures
then gets an error saying why, naming the extra to install when that is the reason. Imports
are lazy: the CLI's client verbs never load mlx-vlm.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from mlx_lama.backends import catalog
from mlx_lama.backends.base import Availability, BadInput, TokenStep, Unavailable
from mlx_lama.backends.decoding import DecodingSupport
from mlx_lama.backends.mlx_lm import MlxLmBackend, MlxLmModel, MlxPrompter, _logits_processors, _sampler
from mlx_lama.backends.threads import clear_thread_streams, release_model_memory, weight_bytes
from mlx_lama.engine.params import Decoding, Options

log = logging.getLogger("mlx_lama.vision")

INSTALL = "pip install 'mlx-lama[vision]'"
NOT_INSTALLED = f"images need mlx-vlm, which is not installed: {INSTALL}"
# Ollama's placement marker: each `[img]` in a message's text is where its next image goes; images
# without a marker come first.
IMG_MARKER = "[img]"


class MlxVlmBackend:
    """Loads vision models with `mlx_vlm.load`, or text-only with mlx-lm when mlx-vlm is missing
    or does not know the architecture."""

    name = "mlx-vlm"
    capabilities = catalog.MLX_VLM

    def availability(self) -> Availability:
        """Always runs: without mlx-vlm, as text through mlx-lm (the hint says what is missing)."""
        return catalog.availability(self.name)

    def load(self, path: Path) -> MlxVlmModel | TextOnlyModel:
        """Load weights, processor and tokenizer from a local directory."""
        if not (path / "config.json").is_file():
            raise FileNotFoundError(f"no MLX model at {path}")
        try:
            import mlx_vlm
            from mlx_vlm.utils import get_model_and_args, load_config
        except ImportError:
            return _text_only(path, NOT_INSTALLED)
        try:
            get_model_and_args(load_config(path))
        except (ValueError, KeyError) as exc:  # an architecture this mlx-vlm does not have
            return _text_only(path, f"the installed mlx-vlm cannot read this model's images: {exc}")
        try:
            model, processor = mlx_vlm.load(str(path))
        except BaseException:
            release_model_memory()  # whatever the failed load allocated
            raise
        return MlxVlmModel(model, processor)

    def release_thread(self) -> None:
        """The calling runner thread is about to exit: end its MLX streams."""
        clear_thread_streams()


def _text_only(path: Path, reason: str) -> TextOnlyModel:
    log.warning("serving the vision model in %s as text only, through mlx-lm: %s", path, reason)
    try:
        base = MlxLmBackend().load(path)
    except Exception as exc:
        raise Unavailable(f"{exc} (a vision model, and {reason})") from None
    return TextOnlyModel(base.model, base.tokenizer, reason)


class TextOnlyModel(MlxLmModel):
    """A vision model's language part on mlx-lm, because mlx-vlm cannot run it here."""

    def __init__(self, model: Any, tokenizer: Any, reason: str) -> None:
        super().__init__(model, tokenizer)
        self.reason = reason

    def prepare_images(self, text: str, images: list[bytes]) -> tuple[list[int], Any]:
        """Always refuses, saying why: the vision tower was not loaded."""
        raise Unavailable(self.reason)


def _picture(number: int, data: bytes) -> Any:
    """Decode one image as an RGB picture (400 for bytes that are no picture)."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as img:
            return img.convert("RGB")  # convert() reads the whole picture: truncated files fail here
    except UnidentifiedImageError:
        raise BadInput(f"image {number} is not a picture (unknown format)") from None
    except Exception as exc:  # noqa: BLE001 - Pillow raises many kinds for damaged files
        raise BadInput(f"image {number} cannot be decoded: {exc}") from None


def _content(message: dict[str, Any]) -> Any:
    """A user message's content as the text and image parts chat templates read."""
    images = len(message.get("images") or [])
    if not images or message.get("role") != "user":
        return message.get("content") or ""
    pieces = str(message.get("content") or "").split(IMG_MARKER, images)
    parts: list[dict[str, Any]] = [{"type": "image"}] * (images - (len(pieces) - 1))
    for i, piece in enumerate(pieces):
        if i:
            parts.append({"type": "image"})
        if piece:
            parts.append({"type": "text", "text": piece})
    return parts


class MlxVlmModel(MlxPrompter):
    """An mlx-vlm model and its processor, whose tokenizer is the prompter's. That tokenizer is a
    plain HF one, which picks no tool parser of its own: `tool_syntax()` is None and the engine
    reads the syntax from the chat template."""

    def __init__(self, model: Any, processor: Any) -> None:
        super().__init__(getattr(processor, "tokenizer", processor))
        self.model = model
        self.processor = processor
        eos = getattr(model.config, "eos_token_id", None)
        eos = eos if isinstance(eos, list) else [eos]
        self._eos = {int(t) for t in [*eos, self.tokenizer.eos_token_id] if t is not None}
        self._support = DecodingSupport(self.tokenizer, self._eos)  # `format` and `logprobs`

    def chat_template(self) -> str | None:
        """The processor's (or tokenizer's) Jinja chat template."""
        template = getattr(self.processor, "chat_template", None)
        return template or getattr(self.tokenizer, "chat_template", None)

    def render_chat(self, messages: list[dict[str, Any]], *, tools: list[dict[str, Any]] | None,
                    think: bool | str | None, template: str | None = None) -> str:
        """Render with mlx-vlm's per-architecture message layout and the model's template; each
        image of a user message becomes an image part, placed at its `[img]` marker or first.
        `think` as in MlxLmModel.render_chat."""
        from mlx_vlm.prompt_utils import apply_chat_template

        kwargs: dict[str, Any] = {}
        if tools:
            kwargs["tools"] = tools
        if think is not None:
            kwargs["enable_thinking"] = bool(think)
        if isinstance(think, str):
            kwargs["reasoning_effort"] = "high" if think == "max" else think
        if template:
            kwargs["chat_template"] = template
        turns = [{**{k: v for k, v in m.items() if k != "images"}, "content": _content(m)} for m in messages]
        return str(apply_chat_template(self.processor, self.model.config, turns,
                                       add_generation_prompt=True, **kwargs))

    def prepare_images(self, text: str, images: list[bytes]) -> tuple[list[int], Any]:
        """The prompt's ids with each image placeholder expanded into its image tokens, and the
        tensors the vision tower reads (opaque to the engine; pass them back to `generate`)."""
        from mlx_vlm import prepare_inputs

        pictures = [_picture(i + 1, data) for i, data in enumerate(images)]
        try:
            inputs = prepare_inputs(self.processor, images=pictures, prompts=text,
                                    image_token_index=getattr(self.model.config, "image_token_index", None),
                                    add_special_tokens=False)  # the chat template wrote BOS already
        except ValueError as exc:  # the processor's complaint about these pictures or this prompt
            raise BadInput(f"cannot use these images: {exc}") from None
        ids = [int(t) for t in inputs.pop("input_ids")[0].tolist()]
        return ids, inputs

    def generate(self, ids: list[int], opts: Options, *, max_tokens: int, max_kv_size: int | None,
                 cancelled: Callable[[], bool], media: Any = None,
                 decoding: Decoding | None = None) -> Iterator[TokenStep]:
        """Stream tokens with mlx-vlm's `generate_step`; `media` is what `prepare_images` returned.

        Cancellation is checked after every token (mlx-vlm's prefill has no progress hook).
        """
        import mlx.core as mx
        from mlx_vlm.generate import generate_step
        from mlx_vlm.models.cache import make_prompt_cache
        from mlx_vlm.tokenizer_utils import make_streaming_detokenizer

        extra = dict(media or {})
        pixels, mask = extra.pop("pixel_values", None), extra.pop("attention_mask", None)
        cache = make_prompt_cache(self.model.language_model, max_kv_size=max_kv_size)
        if max_kv_size is not None:  # Ollama's context shift keeps the first num_keep tokens
            for layer in cache:
                if hasattr(layer, "keep"):
                    layer.keep = min(opts.num_keep, max_kv_size - 1)
        detokenizer = make_streaming_detokenizer(self.processor)
        # mlx-vlm calls logits processors as mlx-lm does: the same ones serve `format`/`logprobs`.
        processors, probe = self._support.processors(_logits_processors(opts), decoding, max_tokens)
        steps = generate_step(mx.array([ids]), self.model, pixels, mask, max_tokens=max_tokens,
                              sampler=_sampler(opts), logits_processors=processors,
                              prompt_cache=cache, prefill_step_size=max(1, opts.num_batch), **extra)
        try:
            for n, (item, _) in enumerate(steps):
                token = int(item)
                eos = token in self._eos
                logprob = probe.take(token, report=not eos) if probe else None
                if eos:
                    detokenizer.finalize()
                    yield TokenStep(token, detokenizer.last_segment, "stop")
                    return
                detokenizer.add_token(token)
                if n + 1 == max_tokens:
                    detokenizer.finalize()
                    yield TokenStep(token, detokenizer.last_segment, "length", logprob)
                    return
                yield TokenStep(token, detokenizer.last_segment, None, logprob)
                if cancelled():
                    return
        finally:
            steps.close()

    def batch(self, *, max_sequences: int, cache_bytes: int) -> None:
        """None: vision models are served one request at a time."""
        return None

    def memory_bytes(self) -> int:
        """Bytes of all weight arrays (vision tower included)."""
        return weight_bytes(self.model)

    def close(self) -> None:
        """Drop the weights and release MLX's buffer cache so the memory really goes back."""
        self.model = None
        self.processor = self.tokenizer = None
        release_model_memory()
