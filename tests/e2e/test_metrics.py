"""`GET /metrics` and the access log after real requests: counts move as the requests say.

Each test reads the metrics before and after what it does and compares the difference with what
the responses themselves report (eval_count, prompt_eval_count, /api/ps sizes).
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from mlx_lama import OLLAMA_COMPAT_VERSION, __version__
from mlx_lama.config import Config
from tests.support.server import LiveServer, import_model

LLAMA = "tiny-llama:latest"
BERT = "tiny-bert:latest"
GEN = "/api/generate"
TIMEOUT = 60


@pytest.fixture(scope="module")
def server(tiny_dirs: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    root = tmp_path_factory.mktemp("metrics-store")
    import_model(root, LLAMA, tiny_dirs["default"])
    import_model(root, BERT, tiny_dirs["embed"])
    live = LiveServer(Config(models_dir=root)).start()
    yield live
    live.stop()


Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape(url: str, headers: dict[str, str] | None = None) -> Samples:
    """Every sample of /metrics by (name, sorted labels)."""
    r = httpx.get(url + "/metrics", headers=headers, timeout=TIMEOUT)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/plain; version=0.0.4")
    out = {}
    for family in text_string_to_metric_families(r.text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def value(samples: dict[Any, float], name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def generate(url: str, prompt: str = "hello", n: int = 5, **extra: Any) -> dict[str, Any]:
    r = httpx.post(url + GEN, json={"model": LLAMA, "prompt": prompt, "stream": False,
                                     "options": {"num_predict": n, "temperature": 0}, **extra},
                   timeout=TIMEOUT)
    assert r.status_code == 200, r.text
    return r.json()  # type: ignore[no-any-return]


def test_requests_tokens_and_latencies_are_counted(server: LiveServer) -> None:
    before = scrape(server.url)
    outs = [generate(server.url, prompt=f"count me {i}") for i in range(3)]
    after = scrape(server.url)

    def delta(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert delta("mlx_lama_requests_total", method="POST", route=GEN, status="200") == 3
    assert delta("mlx_lama_generated_tokens_total", model=LLAMA) == sum(o["eval_count"] for o in outs) == 15
    assert delta("mlx_lama_prompt_tokens_total", model=LLAMA) == sum(o["prompt_eval_count"] for o in outs)
    assert delta("mlx_lama_time_to_first_token_seconds_count", model=LLAMA) == 3
    assert delta("mlx_lama_generation_tokens_per_second_count", model=LLAMA) == 3
    assert delta("mlx_lama_request_duration_seconds_count", route=GEN) == 3
    # The scrape before this one counted too (as a GET of /metrics).
    assert delta("mlx_lama_requests_total", method="GET", route="/metrics", status="200") == 1
    ttft = delta("mlx_lama_time_to_first_token_seconds_sum", model=LLAMA)
    total = sum(o["total_duration"] for o in outs) / 1e9
    assert 0 < ttft < total


def test_errors_and_unknown_paths_are_counted_by_status(server: LiveServer) -> None:
    before = scrape(server.url)
    assert httpx.post(server.url + GEN, json={"model": "missing"}).status_code == 404
    assert httpx.get(server.url + "/no/such/path").status_code == 404
    assert httpx.get(server.url + "/api/tags", headers={"Origin": "http://evil.example"}).status_code == 403
    after = scrape(server.url)
    for labels in ({"route": GEN, "status": "404", "method": "POST"},
                   {"route": "unmatched", "status": "404", "method": "GET"},
                   {"route": "/api/tags", "status": "403", "method": "GET"}):
        assert value(after, "mlx_lama_requests_total", **labels) - value(
            before, "mlx_lama_requests_total", **labels) == 1, labels


def test_engine_gauges(server: LiveServer) -> None:
    generate(server.url)
    samples = scrape(server.url)
    ps = {m["name"]: m for m in httpx.get(server.url + "/api/ps").json()["models"]}
    assert value(samples, "mlx_lama_loaded_models") == len(ps) >= 1
    assert value(samples, "mlx_lama_model_memory_bytes", model=LLAMA) == ps[LLAMA]["size"]
    assert value(samples, "mlx_lama_batch_capacity", model=LLAMA) == server.config.num_parallel
    assert value(samples, "mlx_lama_batch_active_sequences", model=LLAMA) == 0
    assert value(samples, "mlx_lama_requests_in_flight") == 0
    assert value(samples, "mlx_lama_queue_depth") == 0
    assert value(samples, "mlx_lama_prompt_cache_entries", model=LLAMA) >= 1
    assert value(samples, "mlx_lama_prompt_cache_bytes", model=LLAMA) > 0
    assert value(samples, "process_resident_memory_bytes") > 0
    assert value(samples, "mlx_lama_build_info", version=__version__,
                 ollama_version=OLLAMA_COMPAT_VERSION) == 1


def test_a_running_stream_shows_in_the_gauges(server: LiveServer) -> None:
    body = {"model": LLAMA, "prompt": "hello", "options": {"num_predict": -1, "temperature": 0}}
    with httpx.stream("POST", server.url + GEN, json=body, timeout=TIMEOUT) as r:
        lines = r.iter_lines()
        next(lines), next(lines)
        samples = scrape(server.url)
        assert value(samples, "mlx_lama_batch_active_sequences", model=LLAMA) == 1
        assert value(samples, "mlx_lama_requests_in_flight") == 1
        assert value(samples, "mlx_lama_queue_depth") == 0


def test_prompt_cache_hits(server: LiveServer) -> None:
    prompt = "the same long prompt, twice over, so the second request reuses the first one's cache"
    generate(server.url, prompt=prompt)
    before = scrape(server.url)
    generate(server.url, prompt=prompt)
    after = scrape(server.url)
    assert value(after, "mlx_lama_prompt_cache_hits_total", model=LLAMA) - value(
        before, "mlx_lama_prompt_cache_hits_total", model=LLAMA) == 1
    assert value(after, "mlx_lama_prompt_cache_tokens_total", model=LLAMA) > value(
        before, "mlx_lama_prompt_cache_tokens_total", model=LLAMA)


def test_embedding_tokens_are_counted(server: LiveServer) -> None:
    before = scrape(server.url)
    r = httpx.post(server.url + "/api/embed", json={"model": BERT, "input": ["one", "two words"]},
                   timeout=TIMEOUT)
    assert r.status_code == 200, r.text
    after = scrape(server.url)
    assert value(after, "mlx_lama_prompt_tokens_total", model=BERT) - value(
        before, "mlx_lama_prompt_tokens_total", model=BERT) == r.json()["prompt_eval_count"]


def test_metrics_follow_the_api_key(make_server: Callable[..., LiveServer]) -> None:
    s = make_server(api_key="metrics-key")
    assert httpx.get(s.url + "/metrics").status_code == 401
    samples = scrape(s.url, headers={"Authorization": "Bearer metrics-key"})
    assert value(samples, "mlx_lama_requests_total", method="GET", route="/metrics", status="401") == 1


# ---------------------------------------------------------------- the access log


SECRET_PROMPT = "zebra-umbrella-7731 is the secret"
SECRET_KEY = "key-never-logged-991"


def test_one_line_per_request_without_prompt_or_key(make_server: Callable[..., LiveServer],
                                                      caplog: pytest.LogCaptureFixture) -> None:
    s = make_server(api_key=SECRET_KEY)
    auth = {"Authorization": f"Bearer {SECRET_KEY}"}
    with caplog.at_level(logging.INFO):
        caplog.clear()
        r = httpx.post(s.url + GEN, headers=auth, timeout=TIMEOUT, json={
            "model": LLAMA, "prompt": SECRET_PROMPT, "stream": False, "options": {"num_predict": 4}})
        out = r.json()
        httpx.get(s.url + "/", timeout=TIMEOUT)  # a heartbeat: quiet at INFO
        httpx.get(s.url + "/api/tags", headers={"Authorization": f"Bearer {SECRET_KEY}x"})
    access = [rec for rec in caplog.records if rec.name == "mlx_lama.access"]
    assert [rec.levelno for rec in access] == [logging.INFO, logging.INFO], [r.getMessage() for r in access]
    line = access[0].getMessage()
    assert line.startswith(f"method=POST path={GEN} status=200 model={LLAMA} "
                           f"prompt_tokens={out['prompt_eval_count']} eval_tokens=4 ttft="), line
    assert " total=" in line and line.endswith("s")
    assert access[1].getMessage().startswith("method=GET path=/api/tags status=401 total=")
    everything = "\n".join(rec.getMessage() + str(rec.args) for rec in caplog.records)
    assert "zebra" not in everything and SECRET_KEY not in everything


def test_debug_adds_detail_and_heartbeats(make_server: Callable[..., LiveServer],
                                          caplog: pytest.LogCaptureFixture) -> None:
    s = make_server()
    with caplog.at_level(logging.DEBUG, logger="mlx_lama.access"):
        caplog.clear()
        generate(s.url, prompt="debug me")
        httpx.get(s.url + "/", timeout=TIMEOUT)
    lines = [rec.getMessage() for rec in caplog.records if rec.name == "mlx_lama.access"]
    assert len(lines) == 2
    assert "client=127.0.0.1" in lines[0] and "done_reason=length" in lines[0] and "eval_rate=" in lines[0]
    assert lines[1].startswith("method=GET path=/ status=200")


def test_a_client_that_leaves_is_logged_as_gone(make_server: Callable[..., LiveServer],
                                                 caplog: pytest.LogCaptureFixture) -> None:
    s = make_server()
    done = threading.Event()
    with caplog.at_level(logging.INFO, logger="mlx_lama.access"):
        caplog.clear()
        body = {"model": LLAMA, "prompt": "hello", "options": {"num_predict": -1, "temperature": 0}}
        with httpx.stream("POST", s.url + GEN, json=body, timeout=TIMEOUT) as r:
            for i, line in enumerate(r.iter_lines()):
                assert "error" not in json.loads(line)
                if i == 3:
                    break
        for _ in range(200):
            if any("client_gone=true" in rec.getMessage() for rec in caplog.records):
                done.set()
                break
            threading.Event().wait(0.05)
    assert done.is_set(), [rec.getMessage() for rec in caplog.records]
