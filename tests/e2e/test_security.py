"""CORS, the Host check and the API key against a live server: raw HTTP, the official clients, the CLI.

Rows follow Ollama's behaviour (gin-contrib/cors v1.7.2 + allowedHostsMiddleware): a disallowed
Origin gets an empty 403, an allowed one gets its CORS headers, a preflight gets 204; while the
server listens on loopback a Host naming another machine gets an empty 403. The API key is ours.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import ollama
import openai
import pytest
from starlette.testclient import TestClient

from mlx_lama.config import Config
from mlx_lama.hostaddr import parse_host
from mlx_lama.server.app import ROUTES, build
from tests.support.server import LiveServer, free_port, import_model

ROOT = Path(__file__).resolve().parents[2]
KEY = "s3cr3t-key-for-tests"
LOCAL_PAGE = "http://localhost:3000"
EVIL = "http://evil.example"
PREFLIGHT = {"Access-Control-Request-Method": "POST",
             "Access-Control-Request-Headers": "content-type,x-stainless-os"}


@dataclass
class Row:
    """One request and what must come back."""

    method: str
    path: str
    headers: dict[str, str] = field(default_factory=dict)
    status: int = 200
    empty: bool = False  # the body must be empty (Ollama's refusals)
    has: dict[str, str] = field(default_factory=dict)  # response headers that must be present
    lacks: tuple[str, ...] = ()  # response headers that must be absent


def R(id: str, *args: Any, **kwargs: Any) -> Any:
    return pytest.param(Row(*args, **kwargs), id=id)


@pytest.fixture(scope="module")
def server(tiny_dirs: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    root = tmp_path_factory.mktemp("security-store")
    import_model(root, "tiny-llama:latest", tiny_dirs["default"])
    live = LiveServer(Config(models_dir=root)).start()
    yield live
    live.stop()


def send(server: LiveServer, row: Row) -> httpx.Response:
    headers = {k: v.replace("@PORT", server.url.rsplit(":", 1)[1]) for k, v in row.headers.items()}
    return httpx.request(row.method, server.url + row.path, headers=headers, timeout=30)


def check(r: httpx.Response, row: Row) -> None:
    assert r.status_code == row.status, (r.status_code, r.text[:200])
    if row.empty:
        assert r.content == b""
    for key, value in row.has.items():
        assert r.headers.get(key) == value, (key, dict(r.headers))
    for key in row.lacks:
        assert key not in r.headers, (key, dict(r.headers))


CORS_ROWS = [
    R("no-origin-never-blocked", "GET", "/api/tags", lacks=("access-control-allow-origin", "vary")),
    R("local-page", "GET", "/api/tags", {"Origin": LOCAL_PAGE},
      has={"access-control-allow-origin": LOCAL_PAGE, "vary": "Origin"}),
    R("local-page-https", "GET", "/api/version", {"Origin": "https://127.0.0.1:8443"},
      has={"access-control-allow-origin": "https://127.0.0.1:8443"}),
    R("electron-app", "GET", "/api/tags", {"Origin": "app://obsidian.md"},
      has={"access-control-allow-origin": "app://obsidian.md"}),
    R("vscode-webview", "GET", "/", {"Origin": "vscode-webview://1abc"},
      has={"access-control-allow-origin": "vscode-webview://1abc"}),
    R("evil-page", "GET", "/api/tags", {"Origin": EVIL}, status=403, empty=True),
    R("evil-page-post", "POST", "/api/pull", {"Origin": EVIL}, status=403, empty=True),
    R("evil-page-delete", "DELETE", "/api/delete", {"Origin": EVIL}, status=403, empty=True),
    R("sandboxed-null", "GET", "/api/tags", {"Origin": "null"}, status=403, empty=True),
    R("extension-not-by-default", "GET", "/", {"Origin": "chrome-extension://abcdef"}, status=403,
      empty=True),
    R("lookalike", "GET", "/", {"Origin": "http://localhost.evil.example"}, status=403, empty=True),
    R("same-origin-is-not-cors", "GET", "/api/tags", {"Origin": "http://127.0.0.1:@PORT"},
      lacks=("access-control-allow-origin",)),
    R("preflight", "OPTIONS", "/api/chat", {"Origin": LOCAL_PAGE, **PREFLIGHT}, status=204, empty=True,
      has={"access-control-allow-origin": LOCAL_PAGE, "access-control-max-age": "43200",
           "access-control-allow-methods": "GET,POST,PUT,PATCH,DELETE,HEAD,OPTIONS"}),
    R("preflight-evil", "OPTIONS", "/api/chat", {"Origin": EVIL, **PREFLIGHT}, status=403, empty=True),
    R("preflight-unknown-path", "OPTIONS", "/v1/nothing", {"Origin": LOCAL_PAGE, **PREFLIGHT},
      status=204, empty=True),
    R("error-answers-carry-cors", "POST", "/api/show", {"Origin": LOCAL_PAGE}, status=400,
      has={"access-control-allow-origin": LOCAL_PAGE}),
]


@pytest.mark.parametrize("row", CORS_ROWS)
def test_cors(server: LiveServer, row: Row) -> None:
    check(send(server, row), row)


def test_preflight_allows_the_openai_sdk_headers(server: LiveServer) -> None:
    r = httpx.options(server.url + "/v1/embeddings", headers={"Origin": LOCAL_PAGE, **PREFLIGHT})
    allowed = r.headers["access-control-allow-headers"].lower().split(",")
    for header in ("authorization", "content-type", "openai-beta", "x-stainless-arch",
                   "x-stainless-retry-count", "x-stainless-timeout", "x-api-key"):
        assert header in allowed
    assert r.headers.get_list("vary") == ["Origin", "Access-Control-Request-Method",
                                          "Access-Control-Request-Headers"]


HOST_ROWS = [
    R("ip-host", "GET", "/api/tags", {"Host": "127.0.0.1:@PORT"}),
    R("localhost", "GET", "/api/tags", {"Host": "localhost:@PORT"}),
    R("dot-localhost", "GET", "/api/tags", {"Host": "app.localhost"}),
    R("dot-local", "GET", "/api/tags", {"Host": "mac.local:@PORT"}),
    R("docker-internal", "GET", "/api/tags", {"Host": "host.docker.internal:@PORT"}),
    R("private-ip", "GET", "/api/tags", {"Host": "192.168.1.20:@PORT"}),
    R("ipv6-loopback", "GET", "/api/tags", {"Host": "[::1]:@PORT"}),
    R("dns-rebinding", "GET", "/api/tags", {"Host": "rebind.evil.example:@PORT"}, status=403, empty=True),
    R("dns-rebinding-post", "POST", "/api/generate", {"Host": "evil.example"}, status=403, empty=True),
    R("public-ip", "GET", "/", {"Host": "8.8.8.8"}, status=403, empty=True),
    R("options-on-a-name", "OPTIONS", "/api/tags", {"Host": "localhost:@PORT"}, status=204, empty=True),
    R("options-on-an-ip-reaches-the-router", "OPTIONS", "/api/tags", status=405),
    R("bad-host-keeps-cors-headers", "GET", "/api/tags", {"Host": "evil.example", "Origin": LOCAL_PAGE},
      status=403, empty=True, has={"access-control-allow-origin": LOCAL_PAGE}),
]


@pytest.mark.parametrize("row", HOST_ROWS)
def test_host_check_on_loopback(server: LiveServer, row: Row) -> None:
    check(send(server, row), row)


@pytest.mark.parametrize("bind, status", [("127.0.0.1:11434", 403), ("0.0.0.0:11434", 200), (":11434", 200)])
def test_host_check_only_on_loopback_listeners(models_dir: Path, bind: str, status: int) -> None:
    """The whole middleware stack in process (tests never listen beyond 127.0.0.1)."""
    app, _ = build(Config(models_dir=models_dir, host=parse_host(bind)))
    with TestClient(app, base_url="http://some.name.example") as client:
        assert client.get("/api/version").status_code == status


def test_origins_from_the_environment(make_server: Callable[..., LiveServer]) -> None:
    s = make_server(origins=("https://*.example.com", "chrome-extension://*"))
    for origin, status in [("https://app.example.com", 200), ("chrome-extension://abc", 200),
                           (LOCAL_PAGE, 200), (EVIL, 403)]:
        r = httpx.get(s.url + "/api/tags", headers={"Origin": origin})
        assert r.status_code == status, origin
    everyone = make_server(origins=("*",))
    r = httpx.get(everyone.url + "/api/tags", headers={"Origin": EVIL})
    assert r.status_code == 200 and r.headers["access-control-allow-origin"] == "*"
    assert "vary" not in r.headers


# ---------------------------------------------------------------- API key


@pytest.fixture(scope="module")
def keyed(tiny_dirs: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    root = tmp_path_factory.mktemp("keyed-store")
    import_model(root, "tiny-llama:latest", tiny_dirs["default"])
    import_model(root, "tiny-bert:latest", tiny_dirs["embed"])
    live = LiveServer(Config(models_dir=root, api_key=KEY)).start()
    yield live
    live.stop()


OPEN = {("GET", "/"), ("HEAD", "/"), ("GET", "/api/version"), ("HEAD", "/api/version")}
ALL_ROUTES = sorted({(m, r.path.replace("{digest}", "sha256:" + "0" * 64))
                     for r in ROUTES for m in getattr(r, "methods", None) or ()})


@pytest.mark.parametrize("method, path", ALL_ROUTES, ids=[f"{m} {p}" for m, p in ALL_ROUTES])
def test_every_route_but_the_health_checks_needs_the_key(keyed: LiveServer, method: str, path: str) -> None:
    url = keyed.url + path
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Basic {KEY}"}):
        r = httpx.request(method, url, headers=headers, timeout=30)
        if (method, path) in OPEN:
            assert r.status_code == 200
        else:
            assert r.status_code == 401, (headers, r.status_code)
            assert r.headers["www-authenticate"] == "Bearer"
    for headers in ({"Authorization": f"Bearer {KEY}"}, {"authorization": f"bearer  {KEY}"},
                    {"X-Api-Key": KEY}):
        assert httpx.request(method, url, headers=headers, timeout=30).status_code != 401


@pytest.mark.parametrize("path, body", [
    ("/api/tags", {"error": "unauthorized: this server requires an API key (Authorization: Bearer <key>)"}),
    ("/v1/embeddings", {"error": {"message": "unauthorized: this server requires an API key "
                                  "(Authorization: Bearer <key>)", "type": "invalid_request_error",
                                  "param": None, "code": "invalid_api_key"}}),
    ("/v1/messages", {"type": "error", "error": {
        "type": "authentication_error",
        "message": "unauthorized: this server requires an API key (Authorization: Bearer <key>)"}}),
], ids=["ollama", "openai", "anthropic"])
def test_401_in_each_dialect(keyed: LiveServer, path: str, body: dict[str, Any]) -> None:
    r = httpx.post(keyed.url + path, json={}, timeout=30)
    assert r.status_code == 401 and r.json() == body
    assert r.headers["content-type"].startswith("application/json")
    r = httpx.post(keyed.url + path, json={}, headers={"Authorization": "Bearer nope"}, timeout=30)
    assert r.status_code == 401 and "unauthorized: invalid API key" in r.text


def test_browsers_get_preflights_and_readable_401s_with_the_key_on(keyed: LiveServer) -> None:
    pre = httpx.options(keyed.url + "/api/chat", headers={"Origin": LOCAL_PAGE, **PREFLIGHT})
    assert pre.status_code == 204
    r = httpx.get(keyed.url + "/api/tags", headers={"Origin": LOCAL_PAGE})
    assert r.status_code == 401 and r.headers["access-control-allow-origin"] == LOCAL_PAGE


def test_the_official_python_client_sends_ollama_api_key(keyed: LiveServer,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OLLAMA_API_KEY", raising=False)
    with pytest.raises(ollama.ResponseError) as err:
        ollama.Client(host=keyed.url).list()
    assert err.value.status_code == 401 and "requires an API key" in err.value.error
    monkeypatch.setenv("OLLAMA_API_KEY", KEY)
    client = ollama.Client(host=keyed.url)
    assert "tiny-llama:latest" in [m.model for m in client.list().models]
    out = client.generate(model="tiny-llama", prompt="hi", options={"num_predict": 3})
    assert out.eval_count == 3


def test_the_openai_client_sends_its_api_key(keyed: LiveServer) -> None:
    client = openai.OpenAI(base_url=keyed.url + "/v1", api_key=KEY, max_retries=0)
    assert len(client.embeddings.create(model="tiny-bert", input="hi").data[0].embedding) > 0
    wrong = openai.OpenAI(base_url=keyed.url + "/v1", api_key="sk-wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError) as err:
        wrong.embeddings.create(model="tiny-bert", input="hi")
    assert err.value.code == "invalid_api_key"


def cli(url: str, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("MLX_LAMA_API_KEY", "OLLAMA_API_KEY"))}
    return subprocess.run([sys.executable, "-m", "mlx_lama", *args], capture_output=True, text=True,
                          env={**base, "OLLAMA_HOST": url, "PYTHONPATH": str(ROOT), **env},
                          timeout=60, check=False, cwd=ROOT)


def test_the_cli_sends_the_key(keyed: LiveServer, tmp_path: Path) -> None:
    r = cli(keyed.url, "list")
    assert r.returncode == 1
    assert r.stderr == ("Error: unauthorized: this server requires an API key "
                        "(Authorization: Bearer <key>)\n")
    assert "invalid API key" in cli(keyed.url, "list", MLX_LAMA_API_KEY="wrong").stderr
    key_file = tmp_path / "key"
    key_file.write_text(KEY + "\n")
    for env in ({"MLX_LAMA_API_KEY": KEY}, {"MLX_LAMA_API_KEY_FILE": str(key_file)},
                {"OLLAMA_API_KEY": KEY}):
        r = cli(keyed.url, "list", **env)
        assert r.returncode == 0 and "tiny-llama:latest" in r.stdout, (env, r.stderr)
    r = cli(keyed.url, "show", "tiny-llama", MLX_LAMA_API_KEY=KEY)
    assert r.returncode == 0 and "llama" in r.stdout, r.stderr


def test_serve_takes_the_key_from_a_file(models_dir: Path, tmp_path: Path) -> None:
    """`mlx-lama serve --api-key-file`: the key never appears in the process list."""
    key_file = tmp_path / "key"
    key_file.write_text(KEY)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OLLAMA_", "MLX_LAMA_"))}
    env.update(OLLAMA_HOST=url, OLLAMA_MODELS=str(models_dir), HF_HUB_OFFLINE="1", PYTHONPATH=str(ROOT))
    proc = subprocess.Popen([sys.executable, "-m", "mlx_lama", "serve", "--api-key-file", str(key_file)],
                            env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        for _ in range(600):
            try:
                if httpx.get(url + "/", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert proc.poll() is None, proc.stdout.read() if proc.stdout else ""
            time.sleep(0.1)
        assert httpx.get(url + "/api/tags").status_code == 401
        assert httpx.get(url + "/api/tags", headers={"Authorization": f"Bearer {KEY}"}).status_code == 200
    finally:
        proc.terminate()
        out = proc.communicate(timeout=30)[0].decode()
    assert KEY not in out
    assert "API key required" in out


def test_serve_refuses_bad_origins_and_missing_key_files(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OLLAMA_", "MLX_LAMA_"))}
    env["PYTHONPATH"] = str(ROOT)
    bad = subprocess.run([sys.executable, "-m", "mlx_lama", "serve"], capture_output=True, text=True,
                         env={**env, "OLLAMA_ORIGINS": "evil.com"}, timeout=60, check=False)
    assert bad.returncode == 1 and "OLLAMA_ORIGINS: bad origin 'evil.com'" in bad.stderr
    missing = subprocess.run([sys.executable, "-m", "mlx_lama", "serve", "--api-key-file",
                              str(tmp_path / "nope")], env=env, capture_output=True, text=True,
                             timeout=60, check=False)
    assert missing.returncode == 1 and "API key file" in missing.stderr
