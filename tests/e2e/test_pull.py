"""POST /api/pull end to end: a real server pulling tiny models from a local fake Hugging Face hub.

Every test gets a fresh server with an empty store (so nothing is "already present" by accident)
and, where it injects faults or counts bytes, a repository of its own on the shared fake hub.
Nothing leaves 127.0.0.1: the server's `hf_endpoint` is the fake hub, and huggingface_hub's
offline switch (set for the whole suite by conftest) is lifted only for this module.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import ollama
import pytest

from mlx_lama.config import Config
from mlx_lama.store.pull import DOWNLOAD_RETRIES
from mlx_lama.store.store import Store
from tests.support.fake_hub import FakeHub
from tests.support.server import LiveServer

WEIGHTS = "model.safetensors"
# What a real repository carries beside the MLX files; none of it may be fetched.
JUNK = {
    "README.md": b"# tiny\n",
    ".gitattributes": b"*.safetensors filter=lfs diff=lfs merge=lfs -text\n",
    "pytorch_model.bin": b"\0" * 4096,
    "model.gguf": b"GGUF" + b"\0" * 1024,
    "original/consolidated.safetensors": b"\0" * 2048,
    "images/logo.png": b"\x89PNG" + b"\0" * 512,
}
TIMEOUT = 60.0


# ---------------------------------------------------------------- fixtures and helpers


@pytest.fixture(scope="module")
def hub(tiny_dirs: dict[str, Path]) -> Iterator[FakeHub]:
    """The fake hub, serving `org/tiny` (the tiny llama plus junk files)."""
    import huggingface_hub.constants as hf_constants

    fake = FakeHub().start()
    assert fake.url.startswith("http://127.0.0.1:") and fake.cdn_url.startswith("http://127.0.0.1:")
    fake.add_repo("org/tiny", tiny_dirs["default"], extra=JUNK, branches=("main", "dev"))
    with pytest.MonkeyPatch.context() as mp:
        # conftest sets HF_HUB_OFFLINE so nothing reaches the real hub; here the only hub is local.
        mp.setattr(hf_constants, "HF_HUB_OFFLINE", False)
        yield fake
    fake.stop()


@pytest.fixture
def server(hub: FakeHub, tmp_path: Path) -> Iterator[LiveServer]:
    """A server with an empty store whose pulls go to the fake hub."""
    live = LiveServer(Config(models_dir=tmp_path / "models", hf_endpoint=hub.url)).start()
    yield live
    live.stop()


@pytest.fixture(scope="module")
def shared_server(hub: FakeHub, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """One server for the tests that must leave its store empty anyway (refusals)."""
    live = LiveServer(Config(models_dir=tmp_path_factory.mktemp("refusals"), hf_endpoint=hub.url)).start()
    yield live
    live.stop()


@pytest.fixture
def repo(hub: FakeHub, tiny_dirs: dict[str, Path], request: pytest.FixtureRequest) -> str:
    """A repository of this test's own (fault knobs and byte counters are per repository)."""
    repo_id = "org/t-" + hashlib.sha1(request.node.nodeid.encode()).hexdigest()[:10]
    hub.add_repo(repo_id, tiny_dirs["default"], extra=JUNK)
    return repo_id


def model_files(directory: Path) -> dict[str, bytes]:
    """The files a pull must store: the model directory without dotfiles."""
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir())
            if p.is_file() and not p.name.startswith(".")}


def raw_pull(url: str, body: dict[str, Any]) -> tuple[int, str, list[dict[str, Any]]]:
    """POST /api/pull; (status, content type, parsed lines)."""
    r = httpx.post(url + "/api/pull", json=body, timeout=TIMEOUT)
    lines = [json.loads(line) for line in r.text.splitlines() if line.strip()]
    return r.status_code, r.headers.get("content-type", ""), lines


def tags(url: str) -> list[dict[str, Any]]:
    r = httpx.get(url + "/api/tags", timeout=TIMEOUT)
    assert r.status_code == 200
    return r.json()["models"]  # type: ignore[no-any-return]


def wait_until(predicate: Callable[[], bool], timeout: float = 15.0) -> bool:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def blob_files(server: LiveServer) -> list[str]:
    blobs = server.config.models_dir / "blobs"
    return sorted(p.name for p in blobs.iterdir()) if blobs.is_dir() else []


class StreamingPull(threading.Thread):
    """A pull whose lines are collected as they arrive, so a test can act mid-pull."""

    def __init__(self, url: str, model: str, *, stop_on: Callable[[dict[str, Any]], bool] | None = None):
        super().__init__(daemon=True)
        self.url, self.model, self.stop_on = url, model, stop_on
        self.lines: list[dict[str, Any]] = []
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            with httpx.stream("POST", self.url + "/api/pull", json={"model": self.model},
                              timeout=TIMEOUT) as r:
                for line in r.iter_lines():
                    if line.strip():
                        self.lines.append(json.loads(line))
                        if self.stop_on is not None and self.stop_on(self.lines[-1]):
                            return  # leaving the block closes the connection mid-stream
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            self.error = exc

    def saw(self, digest: str) -> bool:
        return any(line.get("digest") == digest for line in list(self.lines))


# ---------------------------------------------------------------- the happy path


def test_pull_through_ollama_client(server: LiveServer, hub: FakeHub, tiny_dirs: dict[str, Path]) -> None:
    """Progress in Ollama's order and shape, only MLX files fetched, then list, show and chat."""
    client = ollama.Client(host=server.url, timeout=TIMEOUT)
    progress = list(client.pull("hf.co/org/tiny", stream=True))
    statuses = [p.status for p in progress]
    assert statuses[0] == "pulling manifest"
    assert statuses[-3:] == ["verifying sha256 digest", "writing manifest", "success"]

    files = model_files(tiny_dirs["default"])
    want = {f"sha256:{sha256(data)}": len(data) for data in files.values()}
    per_file = progress[1:-3]
    assert per_file and all(p.digest for p in per_file)
    assert {p.digest for p in per_file} == set(want)
    for p in per_file:
        assert p.status == f"pulling {p.digest[7:19]}"
        assert p.total == want[p.digest]
        assert 0 <= (p.completed or 0) <= p.total
    # Each file's lines never go backwards and end complete.
    for digest, total in want.items():
        seen = [p.completed or 0 for p in per_file if p.digest == digest]
        assert seen == sorted(seen) and seen[-1] == total
    # Files run one after another, as Ollama's layers do: each file's lines are contiguous.
    runs = [d for i, d in enumerate(p.digest for p in per_file) if i == 0 or d != per_file[i - 1].digest]
    assert len(runs) == len(want)

    for junk in JUNK:
        assert hub.requests("org/tiny", junk) == 0, junk

    listed = client.list().models
    assert [m.model for m in listed] == ["hf.co/org/tiny:latest"]
    manifest = server.config.models_dir / "manifests" / "hf.co" / "org" / "tiny" / "latest"
    raw = manifest.read_bytes()
    assert listed[0].digest == sha256(raw)
    config = json.loads(raw)["config"]
    assert listed[0].size == sum(want.values()) + config["size"]

    shown = client.show("hf.co/org/tiny")
    assert shown.details.format == "safetensors" and shown.details.family == "llama"
    assert shown.modelinfo and shown.modelinfo.get("general.architecture") == "llama"

    reply = client.chat("hf.co/org/tiny", messages=[{"role": "user", "content": "hi"}],
                        options={"num_predict": 4, "temperature": 0})
    assert reply.done and isinstance(reply.message.content, str)
    assert reply.eval_count and reply.eval_count > 0


def test_stream_false_and_js_name_key(server: LiveServer) -> None:
    """`stream: false` answers one JSON object; the JS client's `name` key names the model."""
    status, ctype, lines = raw_pull(server.url, {"name": "hf.co/org/tiny", "stream": False})
    assert status == 200 and ctype.startswith("application/json")
    assert lines == [{"status": "success"}]
    assert [m["name"] for m in tags(server.url)] == ["hf.co/org/tiny:latest"]


def test_bare_repo_and_revision_tags(server: LiveServer) -> None:
    """`org/repo` is that Hugging Face repository; a tag other than latest is a revision."""
    for model in ("org/tiny", "hf.co/org/tiny:dev", "huggingface.co/org/tiny:main"):
        status, ctype, lines = raw_pull(server.url, {"model": model})
        assert status == 200 and ctype.startswith("application/x-ndjson")
        assert lines[-1] == {"status": "success"}, (model, lines[-1])
    names = sorted(m["name"] for m in tags(server.url))
    assert names == ["hf.co/org/tiny:dev", "hf.co/org/tiny:main", "org/tiny:latest"]
    # Same files, same blobs: the three names share every blob.
    assert len({m["digest"] for m in tags(server.url)}) == 1


def test_library_name_through_alias_table(server: LiveServer, hub: FakeHub,
                                          tiny_dirs: dict[str, Path]) -> None:
    """`llama3.2:1b` pulls the repository the built-in alias table names, stored as `llama3.2:1b`."""
    from mlx_lama.names import parse_name
    from mlx_lama.store.registry import resolve

    target = resolve(parse_name("llama3.2:1b"))
    assert target is not None
    hub.add_repo(target.repo, tiny_dirs["default"], branches=(target.revision,))
    _, _, lines = raw_pull(server.url, {"model": "llama3.2:1b"})
    assert lines[-1] == {"status": "success"}, lines[-1]
    assert [m["name"] for m in tags(server.url)] == ["llama3.2:1b"]
    entry = Store(server.config.models_dir).get("llama3.2:1b")
    assert entry is not None and entry.config["backend"] == target.backend


def test_second_pull_fetches_nothing_large(server: LiveServer, hub: FakeHub, repo: str,
                                           tiny_dirs: dict[str, Path]) -> None:
    """Present blobs: one line each with completed == total, and no weight bytes served again."""
    size = len(model_files(tiny_dirs["default"])[WEIGHTS])
    assert raw_pull(server.url, {"model": f"hf.co/{repo}"})[2][-1] == {"status": "success"}
    assert hub.served(repo, WEIGHTS) == size
    _, _, lines = raw_pull(server.url, {"model": f"hf.co/{repo}"})
    per_file = [line for line in lines if "digest" in line]
    assert len(per_file) == len({line["digest"] for line in per_file})
    assert all(line["completed"] == line["total"] for line in per_file)
    assert hub.served(repo, WEIGHTS) == size and hub.requests(repo, WEIGHTS) == 1


def test_new_version_removes_unused_layers(server: LiveServer, hub: FakeHub,
                                           tiny_dirs: dict[str, Path]) -> None:
    """Re-pulling after the repository changed replaces the model and frees the old blobs."""
    repo_id = "org/changing"
    config = json.loads((tiny_dirs["default"] / "generation_config.json").read_text())
    hub.add_repo(repo_id, tiny_dirs["default"])
    assert raw_pull(server.url, {"model": f"hf.co/{repo_id}"})[2][-1] == {"status": "success"}
    old = f"sha256-{sha256((tiny_dirs['default'] / 'generation_config.json').read_bytes())}"
    assert old in blob_files(server)

    hub.add_repo(repo_id, tiny_dirs["default"],
                 extra={"generation_config.json": json.dumps({**config, "temperature": 0.5}).encode()})
    _, _, lines = raw_pull(server.url, {"model": f"hf.co/{repo_id}"})
    statuses = [line["status"] for line in lines[-3:]]
    assert statuses == ["writing manifest", "removing unused layers", "success"]
    assert old not in blob_files(server)
    assert len(tags(server.url)) == 1


# ---------------------------------------------------------------- errors


@pytest.mark.parametrize("model", ["hf.co/org/missing", "hf.co/org/tiny:no-such-branch", "nobody/nothing",
                                   "example.com/ns/model"],
                         ids=["unknown-repo", "unknown-revision", "bare-unknown-repo", "other-host"])
def test_unknown_model(shared_server: LiveServer, model: str) -> None:
    """Not on the hub: Ollama's text as the last line (stream) or a 500 (no stream); nothing listed."""
    status, _, lines = raw_pull(shared_server.url, {"model": model})
    assert status == 200
    assert lines == [{"status": "pulling manifest"}, {"error": "pull model manifest: file does not exist"}]

    with pytest.raises(ollama.ResponseError, match="pull model manifest: file does not exist"):
        list(ollama.Client(host=shared_server.url, timeout=TIMEOUT).pull(model, stream=True))

    status, _, lines = raw_pull(shared_server.url, {"model": model, "stream": False})
    assert status == 500 and lines == [{"error": "pull model manifest: file does not exist"}]
    assert tags(shared_server.url) == []


def test_repo_without_mlx_weights(server: LiveServer, hub: FakeHub) -> None:
    """A GGUF-only repository is refused with a reason, before any download."""
    hub.add_repo("org/gguf-only", None, extra={"config.json": b"{}", "model.gguf": b"GGUF" + b"\0" * 64})
    _, _, lines = raw_pull(server.url, {"model": "hf.co/org/gguf-only"})
    assert lines[0] == {"status": "pulling manifest"} and len(lines) == 2
    assert "no MLX weights" in lines[1]["error"]
    assert hub.requests("org/gguf-only", "model.gguf") == 0


@pytest.mark.parametrize("model", ["../x", "/abs", "a/../../b", "hf.co/../etc/passwd", "hf.co/org/re po",
                                   "hf.co//x", "x y", "model\n", "a/b/c/d", "%2e%2e/x", "C:\\x", "",
                                   "hf.co/org/" + "r" * 97],
                         ids=["dotdot", "absolute", "dotdot-mid", "hf-dotdot", "space-in-repo", "empty-part",
                              "space", "newline", "too-many-parts", "percent", "backslash", "empty",
                              "repo-too-long"])
def test_hostile_names_are_refused(shared_server: LiveServer, hub: FakeHub, model: str) -> None:
    """Names that are not names never reach the hub or the disk: 400 `invalid model name`."""
    before = hub.info_requests
    for body in ({"model": model}, {"name": model}, {"model": model, "stream": False}):
        status, ctype, lines = raw_pull(shared_server.url, body)
        assert (status, lines) == (400, [{"error": "invalid model name"}]), body
        assert ctype.startswith("application/json")
    assert hub.info_requests == before
    assert not (shared_server.config.models_dir / "manifests").exists()


# ---------------------------------------------------------------- faults, resume, sharing


def partials(server: LiveServer) -> list[Path]:
    blobs = server.config.models_dir / "blobs"
    return sorted(blobs.glob("sha256-*-partial")) if blobs.is_dir() else []


def test_dropped_connection_fails_cleanly_then_resumes(server: LiveServer, hub: FakeHub, repo: str,
                                                       tiny_dirs: dict[str, Path]) -> None:
    """Drops beyond the retry budget fail the pull, listing nothing; the next pull resumes."""
    weights = model_files(tiny_dirs["default"])[WEIGHTS]
    digest = f"sha256:{sha256(weights)}"
    cut = 1_200_000
    hub.drop_after(repo, WEIGHTS, cut, times=DOWNLOAD_RETRIES + 1)

    _, _, lines = raw_pull(server.url, {"model": f"hf.co/{repo}"})
    assert lines[0] == {"status": "pulling manifest"}
    assert "error" in lines[-1] and lines[-1]["error"].startswith(f"download {WEIGHTS}: ")
    assert tags(server.url) == []
    [partial] = partials(server)
    assert partial.name == f"sha256-{sha256(weights)}-partial"
    kept = partial.stat().st_size
    assert kept == cut * (DOWNLOAD_RETRIES + 1)  # every attempt resumed where the last one stopped
    assert weights.startswith(partial.read_bytes())
    assert hub.served(repo, WEIGHTS) == kept
    Store(server.config.models_dir).collect_garbage()  # what a delete runs: partials are kept
    assert partials(server) == [partial]

    _, _, lines = raw_pull(server.url, {"model": f"hf.co/{repo}"})
    assert lines[-1] == {"status": "success"}
    # The resumed pull reports where it starts, and the hub sent only the missing tail.
    assert next(line["completed"] for line in lines if line.get("digest") == digest) == kept
    assert hub.served(repo, WEIGHTS) == len(weights)
    assert hub.requests(repo, WEIGHTS) == DOWNLOAD_RETRIES + 2
    assert partials(server) == []
    assert [m["name"] for m in tags(server.url)] == [f"hf.co/{repo}:latest"]


def test_one_drop_is_retried_within_the_pull(server: LiveServer, hub: FakeHub, repo: str,
                                             tiny_dirs: dict[str, Path]) -> None:
    """A single dropped connection is resumed by the same pull, without refetching bytes."""
    size = len(model_files(tiny_dirs["default"])[WEIGHTS])
    hub.drop_after(repo, WEIGHTS, 700_000)
    _, _, lines = raw_pull(server.url, {"model": f"hf.co/{repo}"})
    assert lines[-1] == {"status": "success"}
    assert hub.served(repo, WEIGHTS) == size and hub.requests(repo, WEIGHTS) == 2


@pytest.mark.parametrize("path", [WEIGHTS, "config.json"], ids=["lfs-sha256", "git-blob-sha1"])
def test_wrong_bytes_fail_and_leave_nothing(server: LiveServer, hub: FakeHub, repo: str,
                                            tiny_dirs: dict[str, Path], path: str) -> None:
    """Bytes that do not match the hub's hash: an error, nothing listed, no partial, no blob."""
    hub.corrupt(repo, path)
    _, _, lines = raw_pull(server.url, {"model": f"hf.co/{repo}"})
    assert lines[-1]["error"].startswith("digest mismatch, file must be downloaded again: ")
    assert tags(server.url) == []
    assert partials(server) == []
    data = model_files(tiny_dirs["default"])[path]
    assert f"sha256-{sha256(data)}" not in blob_files(server)


def test_concurrent_pulls_share_one_download(server: LiveServer, hub: FakeHub, repo: str,
                                             tiny_dirs: dict[str, Path]) -> None:
    """Two pulls of one model: one transfer of the weights, progress on both streams, two successes."""
    weights = model_files(tiny_dirs["default"])[WEIGHTS]
    digest = f"sha256:{sha256(weights)}"
    gate = hub.hold(repo, WEIGHTS)
    first = StreamingPull(server.url, f"hf.co/{repo}")
    first.start()
    assert wait_until(lambda: first.saw(digest) and hub.served(repo, WEIGHTS) > 0)
    second = StreamingPull(server.url, f"hf.co/{repo}")
    second.start()
    assert wait_until(lambda: second.saw(digest))  # watching the transfer still held at the hub
    assert hub.requests(repo, WEIGHTS) == 1
    gate.set()
    first.join(TIMEOUT)
    second.join(TIMEOUT)
    for pull in (first, second):
        assert pull.error is None
        assert pull.lines[-1] == {"status": "success"}
        mine = [line for line in pull.lines if line.get("digest") == digest]
        assert mine[-1]["completed"] == mine[-1]["total"] == len(weights)
    assert hub.requests(repo, WEIGHTS) == 1 and hub.served(repo, WEIGHTS) == len(weights)
    assert [m["name"] for m in tags(server.url)] == [f"hf.co/{repo}:latest"]


def test_client_gone_mid_pull_leaves_only_a_partial(server: LiveServer, hub: FakeHub, repo: str,
                                                    tiny_dirs: dict[str, Path]) -> None:
    """A client that leaves stops its download: a resumable partial file, no listed model."""
    weights = model_files(tiny_dirs["default"])[WEIGHTS]
    digest = f"sha256:{sha256(weights)}"
    blob = server.config.models_dir / "blobs" / f"sha256-{sha256(weights)}"
    gate = hub.hold(repo, WEIGHTS)
    leaver = StreamingPull(server.url, f"hf.co/{repo}", stop_on=lambda line: line.get("digest") == digest
                           and line.get("completed", 0) > 0)
    leaver.start()
    leaver.join(TIMEOUT)
    assert leaver.error is None
    assert wait_until(lambda: len(partials(server)) == 1)
    gate.set()  # the hub would now send the rest; the abandoned download must not take it
    time.sleep(0.5)
    assert not blob.exists() and tags(server.url) == []
    [partial] = partials(server)
    kept = partial.stat().st_size
    assert 0 < kept < len(weights) and weights.startswith(partial.read_bytes())

    before = hub.served(repo, WEIGHTS)
    _, _, lines = raw_pull(server.url, {"model": f"hf.co/{repo}"})
    assert lines[-1] == {"status": "success"}
    assert hub.served(repo, WEIGHTS) - before == len(weights) - kept
    assert blob.read_bytes() == weights and partials(server) == []


def test_fake_hub_speaks_huggingface_hub(hub: FakeHub, tiny_dirs: dict[str, Path], tmp_path: Path) -> None:
    """huggingface_hub's own downloader accepts the fake hub (so the fake is a fair stand-in)."""
    from huggingface_hub import hf_hub_download

    files = model_files(tiny_dirs["default"])
    for name in ("config.json", WEIGHTS):
        path = hf_hub_download("org/tiny", name, revision="dev", endpoint=hub.url, cache_dir=tmp_path)
        assert Path(path).read_bytes() == files[name]


def test_held_blobs_survive_garbage_collection(tmp_path: Path) -> None:
    """A pull's blobs, stored before its manifest, are safe from a concurrent delete's collection."""
    store = Store(tmp_path)
    with store.hold() as held:
        layer = store.put_bytes(b"downloaded, not yet in a manifest")
        held.add(layer.digest)
        store.collect_garbage()
        assert store.has_blob(layer.digest)
    store.collect_garbage()
    assert not store.has_blob(layer.digest)
