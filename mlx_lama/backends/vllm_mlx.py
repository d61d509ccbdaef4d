"""The vllm-mlx backend: one supervised `vllm-mlx serve` process per loaded model.

vllm-mlx brings its own continuous batching, paged KV cache and prefix cache; it runs from an
environment of its own (see vllm_env.py) on a free loopback port, with a random API key.

Prompts are rendered here, exactly as for mlx-lm (engine/prompt.py, with the model's own
tokenizer), and sent as text to `/v1/completions`, which takes text only (0.6.0 refuses token
ids). That endpoint encodes its text with the tokenizer's special tokens, so a template that
writes BOS itself (Llama 3) would get a second one: the BOS our ids start with is left out of the
text, and the text is checked to encode to exactly our ids. Generated text comes back as SSE;
stop strings, thinking and tool calls are handled by the engine on that text, as for mlx-lm.

What vllm-mlx 0.6.0 honours, read from its source and checked against it: with
`--continuous-batching` one sampler (temperature, top_p, min_p) serves the whole batch, and a
request with other values that arrives while others run silently gets theirs. `SamplerGate`
therefore admits only requests that share the running ones' sampler. It ignores top_k,
presence_penalty and stop in that mode and has no seed, frequency_penalty or typical_p: when a
request asks for any of those, it is refused with a 400 rather than silently served otherwise.

It also notices a client that hung up only when its stream wrapper is garbage-collected (the
wrapper yields in `finally`, so closing it fails): measured, a cancelled request generated on for
6 to 13 s. So a request we stop reading is also cancelled explicitly, through its
`/v1/requests/{id}/cancel`, once `/v1/status` shows which request it is.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import logging
import os
import secrets
import socket
import time
from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from mlx_lama.api.errors import ApiError, BackendUnavailable, BadRequest
from mlx_lama.backends import catalog, vllm_env
from mlx_lama.backends.base import Availability, RemoteChunk
from mlx_lama.backends.mlx_lm import MlxPrompter, load_prompter
from mlx_lama.backends.supervisor import ServerError, Supervisor
from mlx_lama.config import Config
from mlx_lama.engine.params import GenJob, Options

log = logging.getLogger("mlx_lama.vllm_mlx")

SERVED_NAME = "mlx-lama"
# vllm-mlx penalizes repeats over mlx-lm's default window, which no request field changes.
REPEAT_WINDOW = 20
# No limit of vllm-mlx's own on top of num_ctx and num_predict, which the engine applies.
MAX_TOKENS = 2**31 - 1
# Its default is 300 s of silence from the engine, which a long prefill on a slow machine exceeds.
REQUEST_TIMEOUT = 24 * 3600
# What a child must not inherit from mlx-lama's own environment: it has its own Python packages.
_DROP_ENV = ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "__PYVENV_LAUNCHER__")


def refusals(opts: Options) -> list[str]:
    """The options in `opts` that vllm-mlx cannot honour (only those a request or Modelfile set)."""
    asked = opts.explicit
    sampled = opts.temperature > 0
    out = []
    if sampled and "seed" in asked and opts.seed >= 0:
        out.append("seed (vllm-mlx has no per-request seed; use temperature 0 for repeatable output)")
    if sampled and "top_k" in asked and opts.top_k > 0:
        out.append("top_k")
    if sampled and "typical_p" in asked and 0 < opts.typical_p < 1:
        out.append("typical_p")
    for key in ("presence_penalty", "frequency_penalty"):
        if key in asked and getattr(opts, key) != 0:
            out.append(key)
    if "repeat_last_n" in asked and opts.repeat_penalty != 1 and opts.repeat_last_n not in (0, REPEAT_WINDOW):
        out.append(f"repeat_last_n other than {REPEAT_WINDOW} (its fixed repeat window)")
    return out


def sampling_fields(opts: Options) -> dict[str, Any]:
    """The completion request's sampling fields. Greedy requests all send the same values, so
    they share vllm-mlx's batch sampler whatever top_p or min_p they carried."""
    fields: dict[str, Any] = {"temperature": 0.0, "top_p": 1.0, "min_p": 0.0}
    if opts.temperature > 0:
        fields = {"temperature": opts.temperature,
                  "top_p": opts.top_p if 0 < opts.top_p < 1 else 1.0, "min_p": opts.min_p}
    if opts.repeat_penalty != 1 and opts.repeat_last_n != 0:
        fields["repetition_penalty"] = opts.repeat_penalty
    return fields


@dataclass(frozen=True)
class Prepared:
    """A prompt as sent: its text, and how many tokens the server will count in it."""

    text: str
    tokens: int


class SamplerGate:
    """Admits at most `limit` requests at once, all with the same batch sampler.

    A request whose sampler differs from the running ones' waits until they are done; requests
    are admitted in arrival order, so a stream of one kind cannot starve another. Before the
    sampler changes, `settle` waits until the server holds no request any more (one we cut
    short, at a stop string or a departed client, lingers there until it notices).
    """

    def __init__(self, limit: int) -> None:
        self.limit = max(1, limit)
        self._cond = asyncio.Condition()
        self._queue: collections.deque[tuple[object, tuple[float, ...]]] = collections.deque()
        self._key: tuple[float, ...] | None = None
        self._active = 0
        self.lingering = False  # a request of the current sampler was cut short

    def _may_enter(self, ticket: object, key: tuple[float, ...]) -> bool:
        if self._active and (key != self._key or self._active >= self.limit):
            return False
        for waiting, waiting_key in self._queue:  # everyone ahead must be able to go too
            if waiting is ticket:
                return True
            if waiting_key != key:
                return False
        return True

    @contextlib.asynccontextmanager
    async def hold(self, key: tuple[float, ...], settle: Any) -> AsyncIterator[None]:
        """Wait for a slot for a request with sampler `key`; `settle()` is awaited before a switch."""
        ticket = object()
        async with self._cond:
            self._queue.append((ticket, key))
            try:
                await self._cond.wait_for(lambda: self._may_enter(ticket, key))
                if not self._active and key != self._key and self.lingering:
                    await settle()
                    self.lingering = False
            finally:
                self._queue.remove((ticket, key))
                self._cond.notify_all()
            self._key = key
            self._active += 1
        try:
            yield
        finally:
            async with self._cond:
                self._active -= 1
                self._cond.notify_all()


class VllmMlxBackend:
    """Starts a vllm-mlx server for each model it loads."""

    name = "vllm-mlx"
    capabilities = catalog.VLLM_MLX

    def __init__(self, config: Config) -> None:
        self.setting = config.vllm_mlx

    def availability(self) -> Availability:
        """Installed when a vllm-mlx executable can be found (see vllm_env.locate)."""
        return vllm_env.availability(self.setting)

    async def serve(self, path: Path, label: str, *, num_parallel: int) -> VllmMlxModel:
        """Load the model's tokenizer here and start its server; returns once it answers."""
        executable = vllm_env.locate(self.setting)
        if executable is None:
            raise BackendUnavailable(f'backend "vllm-mlx" is not installed: {self.availability().hint}')
        prompter = await asyncio.to_thread(load_prompter, path)
        key = secrets.token_hex(16)
        batch = str(max(1, num_parallel))

        def command(port: int) -> list[str]:
            return [str(executable), "serve", str(path), "--host", "127.0.0.1", "--port", str(port),
                    "--served-model-name", SERVED_NAME, "--api-key", key, "--continuous-batching",
                    "--max-num-seqs", batch, "--completion-batch-size", batch,
                    "--prefill-batch-size", batch, "--stream-interval", "1",
                    "--max-tokens", str(MAX_TOKENS), "--max-request-tokens", str(MAX_TOKENS),
                    "--timeout", str(REQUEST_TIMEOUT), "--offline"]

        env = {k: v for k, v in os.environ.items() if k not in _DROP_ENV}
        env["HF_HUB_OFFLINE"] = "1"  # a local directory: never the hub
        supervisor = Supervisor(f"vllm-mlx:{label}", command, env=env)
        try:
            await supervisor.start()
        except ServerError as exc:
            raise ApiError(str(exc)) from None
        except BaseException:
            await supervisor.stop()
            raise
        return VllmMlxModel(path, prompter, supervisor, key, num_parallel)


class VllmMlxModel:
    """A model served by its own vllm-mlx process."""

    def __init__(self, path: Path, prompter: MlxPrompter, supervisor: Supervisor, key: str,
                 num_parallel: int) -> None:
        self.path = path
        self.prompter = prompter
        self.supervisor = supervisor
        self._headers = {"Authorization": f"Bearer {key}"}
        self._client = httpx.AsyncClient(timeout=httpx.Timeout(30.0, read=None))
        self._gate = SamplerGate(num_parallel)
        # What the tokenizer adds in front when a text is encoded with special tokens (BOS).
        with_special = prompter.encode("a", special=True)
        plain = prompter.encode("a", special=False)
        self._prefix = with_special[: len(with_special) - len(plain)]
        self._warned = False
        # Requests being read: (prompt tokens, max_tokens, start), to tell them from ones we left.
        self._live: dict[object, tuple[int, int, float]] = {}
        self._reapers: set[asyncio.Task[None]] = set()

    def check(self, job: GenJob) -> None:
        """Refuse what vllm-mlx cannot honour, naming every such option."""
        refused = refusals(job.options)
        # Its /v1/completions has no structured output and no logprobs: a job asking for them is
        # refused too.
        refused += [f for f in ("format", "logprobs", "top_logprobs") if getattr(job.decoding, f)]
        if refused:
            raise BadRequest(f"the vllm-mlx backend cannot honour these options: {', '.join(refused)}")

    def prepare(self, ids: list[int], text: str) -> Prepared:
        """The text whose encoding, with the tokenizer's special tokens, is exactly `ids`."""
        bos = self.prompter.bos_token
        candidates = []
        if self._prefix and ids[: len(self._prefix)] == self._prefix:
            if bos and text.startswith(bos):
                candidates.append(text[len(bos):])
            candidates.append(self.prompter.decode(ids[len(self._prefix):]))
        else:
            candidates.append(text)
            candidates.append(self.prompter.decode(ids))
        for candidate in candidates:
            if self.prompter.encode(candidate, special=True) == ids:
                return Prepared(candidate, len(ids))
        if not self._warned:  # e.g. a raw prompt without BOS: the server will add one
            log.warning("%s: vllm-mlx will not see exactly the prompt tokens mlx-lama rendered",
                        self.supervisor.label)
            self._warned = True
        return Prepared(candidates[0], len(self.prompter.encode(candidates[0], special=True)))

    def memory_bytes(self) -> int:
        """Bytes of the weight files (the server holds them all)."""
        return sum(p.stat().st_size for p in self.path.glob("*.safetensors"))

    async def _status(self) -> dict[str, Any]:
        base = await self.supervisor.ready()
        return dict((await self._client.get(base + "/v1/status", headers=self._headers)).json())

    async def _settle(self) -> None:
        """Wait (a bounded while: 30 s) until the server holds no request."""
        for _ in range(600):
            try:
                status = await self._status()
            except Exception:  # noqa: BLE001 - a server in trouble: the next request will say so
                return
            if not status.get("num_running") and not status.get("num_waiting"):
                return
            await asyncio.sleep(0.05)
        log.warning("%s: vllm-mlx still runs requests mlx-lama left; switching sampler anyway",
                    self.supervisor.label)

    async def _reap(self, prompt_tokens: int, max_tokens: int, started: float) -> None:
        """Cancel in the server the request we stopped reading, unless it cannot be told apart
        from one still being read (same prompt length and limit, started at the same moment)."""
        for _ in range(20):
            try:
                status = await self._status()
                now = time.monotonic()
                same = [r for r in status.get("requests", [])
                        if (r.get("prompt_tokens"), r.get("max_tokens")) == (prompt_tokens, max_tokens)]
                if not same:
                    return  # it is over
                target = min(same, key=lambda r: abs(float(r.get("elapsed_s", 0)) - (now - started)))
                age = float(target.get("elapsed_s", 0))
                if any((p, m) == (prompt_tokens, max_tokens) and abs(now - t - age) < 0.5
                       for p, m, t in self._live.values()):
                    return  # it may be a live one: leave it to the server
                base = await self.supervisor.ready()
                await self._client.post(f"{base}/v1/requests/{target['request_id']}/cancel",
                                        headers=self._headers)
                return
            except (httpx.HTTPError, ServerError, ValueError, KeyError):
                await asyncio.sleep(0.1)

    async def generate(self, prepared: Prepared, opts: Options, *,
                       max_tokens: int) -> AsyncGenerator[RemoteChunk, None]:
        """Stream a completion of `prepared`; closing this iterator early cancels the request."""
        body = {"model": SERVED_NAME, "prompt": prepared.text, "stream": True,
                "max_tokens": max(1, min(max_tokens, MAX_TOKENS)), **sampling_fields(opts)}
        key = (body["temperature"], body["top_p"], body["min_p"])
        async with self._gate.hold(key, self._settle):
            ticket = object()
            self._live[ticket] = (prepared.tokens, body["max_tokens"], time.monotonic())
            finished = False
            try:
                async with contextlib.aclosing(self._stream(body)) as chunks:
                    async for chunk in chunks:
                        finished = chunk.finish_reason is not None
                        yield chunk
            finally:
                live = self._live.pop(ticket)
                if not finished:
                    self._gate.lingering = True
                    reaper = asyncio.ensure_future(self._reap(*live))
                    self._reapers.add(reaper)
                    reaper.add_done_callback(self._reapers.discard)

    async def _stream(self, body: dict[str, Any]) -> AsyncGenerator[RemoteChunk, None]:
        for attempt in range(2):
            try:
                base = await self.supervisor.ready()
                async with self._client.stream("POST", base + "/v1/completions", json=body,
                                               headers=self._headers) as resp:
                    if resp.status_code != 200:
                        detail = (await resp.aread()).decode(errors="replace")[:500]
                        raise ApiError(f"vllm-mlx answered {resp.status_code}: {detail}")
                    try:
                        async for line in resp.aiter_lines():
                            if not line.startswith("data:"):
                                continue  # blank separators and ": keepalive" comments
                            data = line[5:].strip()
                            if data == "[DONE]":
                                return
                            chunk = _chunk(json.loads(data))
                            if chunk is not None:
                                yield chunk
                    except BaseException:
                        _hang_up(resp)
                        raise
                return
            except ServerError as exc:
                raise ApiError(str(exc)) from None
            except httpx.ConnectError:
                # Refused before anything was sent: the server died a moment ago and its
                # supervisor has not noticed yet. Safe to send again once it is back.
                if attempt:
                    raise ApiError(self.supervisor.failure() or "vllm-mlx refused the connection") from None
                await asyncio.sleep(0.2)
            except httpx.HTTPError as exc:
                raise ApiError(self.supervisor.failure() or f"vllm-mlx: {exc}") from None

    async def close(self) -> None:
        """Stop the server (and everything it started)."""
        for reaper in list(self._reapers):
            reaper.cancel()
        await self.supervisor.stop()
        await self._client.aclose()


def _hang_up(resp: httpx.Response) -> None:
    """Shut the request's socket now, so the server sees the client go.

    Closing the response is not enough when the task was cancelled in the middle of a read:
    httpcore (1.0) then drops the connection from its pool without closing the socket, and the
    server's log still showed the client connected 5 s later.
    """
    stream = resp.extensions.get("network_stream")
    sock = stream.get_extra_info("socket") if stream is not None else None
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)


def _chunk(event: dict[str, Any]) -> RemoteChunk | None:
    """One SSE event of a completion stream as a chunk (None for events with no choice)."""
    if "error" in event:
        error = event["error"]
        raise ApiError(f"vllm-mlx: {error.get('message', error) if isinstance(error, dict) else error}")
    choices = event.get("choices") or []
    if not choices:
        return None
    choice = choices[0]
    reason = choice.get("finish_reason")
    usage = event.get("usage") or {}
    return RemoteChunk(
        text=choice.get("text") or "",
        finish_reason=None if reason is None else ("length" if reason == "length" else "stop"),
        prompt_tokens=usage.get("prompt_tokens"), completion_tokens=usage.get("completion_tokens"))
