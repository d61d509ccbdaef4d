"""One generation's stream state, shared by the batched and the serial paths.

Tokens arrive with their text; stop strings are matched on that text with hold-back (so a stop
string never reaches the client), thinking is split from content, tool calls are taken out of the
content (engine/toolcalls.py says why here), and the final step carries Ollama's metrics. Where
the tokens come from (a batch step or `stream_generate`) does not matter.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from mlx_lama.backends.base import PromptModel
from mlx_lama.engine import prompt as prompting
from mlx_lama.engine import toolcalls
from mlx_lama.engine.params import Decoding, GenJob, ParsedToolCall, Step, TokenLogprob
from mlx_lama.engine.prompt import Prompt
from mlx_lama.engine.stops import StopMatcher
from mlx_lama.engine.thinking import ThinkSplitter
from mlx_lama.engine.toolcalls import ToolCallSplitter, ToolSyntax
from mlx_lama.vocab import THINK_OPEN

Emit = Callable[[Any], None]


@dataclass
class Plan:
    """What the runner decided for a job: its prompt ids, its token limit and its window."""

    job: GenJob
    prompt: Prompt
    limit: int | None  # tokens to generate at most; None = until EOS (context shift allowed)
    shift_window: int | None  # num_ctx when the KV cache may have to rotate (context shift)
    tool_syntaxes: tuple[ToolSyntax, ...] = ()  # how the model writes tool calls (tools offered)

    @property
    def ids(self) -> list[int]:
        """The prompt's token ids."""
        return self.prompt.ids

    @property
    def decoding(self) -> Decoding:
        """The job's decoding, told where a thinking model's answer (the constrained part) starts."""
        decoding = self.job.decoding
        if decoding.format is None or not self.job.split_thinking:
            return decoding
        return dataclasses.replace(decoding, thinking="open" if self.opens_thinking else "maybe")

    @property
    def opens_thinking(self) -> bool:
        """Whether the prompt itself opens the think block (some templates end with `<think>`)."""
        return self.prompt.text.rstrip().endswith(THINK_OPEN)


def plan_job(job: GenJob, model: PromptModel, emit: Emit, *, can_shift: bool = True) -> Plan | None:
    """Render the prompt and settle the token limit; answers at once (returning None) for
    render-only jobs and prompts that leave no room to generate. Without `can_shift` generation
    always ends at the window, as if the request had said `shift: false`."""
    opts = job.options
    prompt = prompting.render(job.spec, model, job.prompting, opts)
    if job.render_only:
        emit(Step(done=True, done_reason="stop", rendered=prompt.text))
        return None
    ids = prompt.ids
    room = opts.num_ctx - len(ids)
    limit = opts.num_predict if opts.num_predict >= 0 else None
    # A constrained answer must close its JSON within a known budget: no context shift.
    shift = job.spec.shift and can_shift and job.decoding.format is None
    if not shift:
        limit = room if limit is None else min(limit, room)
    shift_window = None
    if shift and (limit is None or limit > room):
        # Generation may outgrow the window: let the KV cache rotate (Ollama's context shift).
        shift_window = opts.num_ctx
    if limit is not None and limit <= 0:
        emit(Step(done=True, done_reason="length", prompt_eval_count=len(ids)))
        return None
    syntaxes: tuple[ToolSyntax, ...] = ()
    if job.spec.tools:
        template = job.spec.template or job.prompting.template
        syntaxes = toolcalls.syntaxes_for(model, template,
                                          go=bool(template) and not prompting.is_jinja(template))
    return Plan(job, prompt, limit, shift_window, syntaxes)


@dataclass
class SeqStream:
    """Turns a job's generated tokens into steps for its client."""

    plan: Plan
    emit: Emit
    cancel: threading.Event
    start: int = field(default_factory=time.perf_counter_ns)
    first: int = 0
    generated: list[int] = field(default_factory=list)
    reason: str = ""
    ended: bool = False  # a stop string was reached: the rest of the output is dropped
    eval_count: int | None = None  # tokens generated, when known better than `generated` says
    cached: int = 0  # prompt tokens the batch reused from its prompt cache

    def __post_init__(self) -> None:
        job = self.plan.job
        self.stops = StopMatcher(job.options.stop)
        self.splitter = ThinkSplitter(started=self.plan.opens_thinking) if job.split_thinking else None
        # As Ollama, calls are looked for only when the request offers tools.
        self.tools = ToolCallSplitter(self.plan.tool_syntaxes, job.spec.tools) \
            if job.spec.tools and self.plan.tool_syntaxes else None
        self.logprobs = _LogprobQueue() if job.decoding.logprobs else None

    def _send(self, text: str, *, last: bool = False) -> None:
        """Pass text through the thinking and tool-call splits (`last`: release what they hold)."""
        thinking, content = self.splitter.feed(text) if self.splitter else ("", text)
        if last and self.splitter:
            rest = self.splitter.flush()
            thinking, content = thinking + rest[0], content + rest[1]
        calls: list[ParsedToolCall] = []
        if self.tools:
            content, calls = self.tools.feed(content)
            if last:
                rest_content, rest_calls = self.tools.flush()
                content, calls = content + rest_content, calls + rest_calls
        # Logprobs go out with their tokens' text, or alone while the splits hold that text back.
        logprobs = self.logprobs.ready() if self.logprobs else None
        if thinking or content or logprobs:
            self.emit(Step(text=content, thinking=thinking, logprobs=logprobs))
        if calls:  # calls come in a chunk of their own, with no text (Ollama's stream)
            self.emit(Step(tool_calls=calls))

    def feed(self, token: int | None, text: str, finish_reason: str | None,
             logprob: TokenLogprob | None = None) -> bool:
        """Take one token (or, from a server that sends text only, `None` and a piece of text);
        returns True once a stop string is reached (generation must end)."""
        if not self.first:
            self.first = time.perf_counter_ns()
        if token is not None:
            self.generated.append(token)
        self.reason = finish_reason or self.reason
        out, hit = self.stops.feed(text)
        if self.logprobs:
            self.logprobs.fed(logprob, len(text), len(out), cut=hit)
        self._send(out)
        if hit:
            self.reason, self.ended = "stop", True
        return hit

    def finish(self) -> None:
        """Release held text and send the final step with the metrics (unless cancelled)."""
        held = "" if self.ended else self.stops.flush()
        if self.logprobs and not self.ended:
            self.logprobs.fed(None, 0, len(held), cut=False)
        self._send(held, last=True)
        if self.cancel.is_set():
            return
        end = time.perf_counter_ns()
        first = self.first or end
        ids = self.plan.ids
        self.emit(Step(
            done=True, done_reason=self.reason or "stop",
            # The whole prompt, even when a cached prefix was reused (Ollama reports it so since
            # its PR #5371); the duration is what the evaluation really took.
            prompt_eval_count=len(ids), prompt_eval_duration=first - self.start,
            eval_count=len(self.generated) if self.eval_count is None else self.eval_count,
            eval_duration=end - first,
            context=ids + self.generated if self.plan.job.want_context else None,
            cached_tokens=self.cached,
        ))


class _LogprobQueue:
    """Keeps each token's logprob until the stop-string matcher releases that token's text.

    Every generated token but EOS gets exactly one entry, in order, on the step that sends the
    last of its text (a token whose text is held back as a possible stop string waits for it; one
    with no text yet, the first bytes of a character, goes at once). Tokens whose text lies wholly
    inside a stop string are dropped with it, as Ollama drops them.
    """

    def __init__(self) -> None:
        self._held: deque[tuple[int, int, TokenLogprob]] = deque()  # (start, end of its text, entry)
        self._fed = 0  # characters of text fed to the stop matcher
        self._released = 0  # characters it has let through
        self._ready: list[TokenLogprob] = []

    def fed(self, logprob: TokenLogprob | None, n_text: int, n_out: int, *, cut: bool) -> None:
        """One token (`logprob`, None for EOS) with `n_text` characters went in, `n_out` came out;
        `cut` when a stop string was reached (what was not let through is dropped)."""
        if logprob is not None:
            self._held.append((self._fed, self._fed + n_text, logprob))
        self._fed += n_text
        self._released += n_out
        while self._held and (self._held[0][1] <= self._released
                              or cut and self._held[0][0] < self._released):
            self._ready.append(self._held.popleft()[2])
        if cut:
            self._held.clear()

    def ready(self) -> list[TokenLogprob] | None:
        """The entries released since the last call, if any."""
        out, self._ready = self._ready, []
        return out or None
