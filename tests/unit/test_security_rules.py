"""OLLAMA_ORIGINS, origin matching, the Host check and the API-key settings, as tables.

The origin lists are Ollama's own TestOrigins table (envconfig/config_test.go); the matching and
Host rows follow gin-contrib/cors v1.7.2 and Ollama's allowedHostsMiddleware (server/routes.go),
which have no tables of their own upstream.
"""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from mlx_lama.config import Config, ConfigError, parse_origins
from mlx_lama.server.cors import DEFAULT_ORIGINS, OriginPolicy, canonical_header, is_same_origin
from mlx_lama.server.security import host_verdict, listens_on_loopback, unauthorized_body

OLLAMA_DEFAULTS = [
    "http://localhost", "https://localhost", "http://localhost:*", "https://localhost:*",
    "http://127.0.0.1", "https://127.0.0.1", "http://127.0.0.1:*", "https://127.0.0.1:*",
    "http://0.0.0.0", "https://0.0.0.0", "http://0.0.0.0:*", "https://0.0.0.0:*",
    "app://*", "file://*", "tauri://*", "vscode-webview://*", "vscode-file://*",
]


@pytest.mark.parametrize("value, extra", [
    ("", []),
    ("http://10.0.0.1", ["http://10.0.0.1"]),
    ("http://172.16.0.1,https://192.168.0.1", ["http://172.16.0.1", "https://192.168.0.1"]),
    ("http://totally.safe,http://definitely.legit", ["http://totally.safe", "http://definitely.legit"]),
    # --- ours: Ollama would refuse to start on the space and the empty entry; we trim and skip
    (" http://a.example , ,https://b.example, ", ["http://a.example", "https://b.example"]),
    ('"chrome-extension://*,moz-extension://*"', ["chrome-extension://*", "moz-extension://*"]),
], ids=["empty", "one", "two", "names", "spaces", "quoted-extensions"])
def test_origins_as_ollama_lists_them(value: str, extra: list[str]) -> None:
    assert [*parse_origins(value), *DEFAULT_ORIGINS] == extra + OLLAMA_DEFAULTS


@pytest.mark.parametrize("value, error", [
    ("example.com", "bad origin 'example.com': origins must contain '*' or include http://,https://"),
    ("ftp://example.com", "bad origin"),
    ("http://*.example.*", "only one * is allowed"),
], ids=["no-scheme", "other-scheme", "two-stars"])
def test_origins_ollama_refuses_to_start_on(value: str, error: str) -> None:
    with pytest.raises(ConfigError, match=error.replace("*", r"\*").replace(".", r"\.")):
        Config.from_env({"OLLAMA_ORIGINS": value})


@pytest.mark.parametrize("configured, origin, allowed", [
    ("", "http://localhost", True),
    ("", "http://localhost:3000", True),
    ("", "https://127.0.0.1:8443", True),
    ("", "http://0.0.0.0:8080", True),
    ("", "app://obsidian.md", True),
    ("", "file://", True),
    ("", "tauri://localhost", True),
    ("", "vscode-webview://abc123", True),
    ("", "vscode-file://vscode-app", True),
    ("", "http://evil.example", False),
    ("", "http://localhost.evil.example", False),
    ("", "http://127.0.0.1.nip.io", False),
    ("", "null", False),
    ("", "chrome-extension://abcdef", False),
    ("", "HTTP://LOCALHOST", False),  # exact entries are lower-cased, the Origin is compared as sent
    ("http://Example.COM", "http://example.com", True),
    ("http://example.com", "http://example.com:8080", False),
    ("https://*.example.com", "https://app.example.com", True),
    ("https://*.example.com", "https://example.com", False),
    ("https://*.example.com", "http://app.example.com", False),
    ("http://*", "http://anything.at.all", True),
    ("*", "http://evil.example", True),
    ("*", "null", True),
    ("chrome-extension://*,moz-extension://*", "chrome-extension://abcdef", True),
    ("chrome-extension://*,moz-extension://*", "moz-extension://abcdef", True),
    ("chrome-extension://*,moz-extension://*", "safari-web-extension://abcdef", False),
], ids=lambda v: str(v))
def test_origin_matching(configured: str, origin: str, allowed: bool) -> None:
    assert OriginPolicy(parse_origins(configured)).allows(origin) is allowed


def test_cors_headers_as_gin_writes_them() -> None:
    policy = OriginPolicy(())
    pre = policy.preflight_headers("http://localhost:3000")
    assert (b"access-control-allow-methods", b"GET,POST,PUT,PATCH,DELETE,HEAD,OPTIONS") in pre
    assert (b"access-control-max-age", b"43200") in pre
    assert (b"access-control-allow-origin", b"http://localhost:3000") in pre
    assert [v for k, v in pre if k == b"vary"] == [b"Origin", b"Access-Control-Request-Method",
                                                   b"Access-Control-Request-Headers"]
    headers = dict(pre)[b"access-control-allow-headers"].decode().split(",")
    assert headers[:6] == ["Authorization", "Content-Type", "User-Agent", "Accept", "X-Requested-With",
                           "Openai-Beta"]
    assert "X-Stainless-Runtime-Version" in headers and "X-Stainless-Timeout" in headers
    assert policy.response_headers("http://localhost:3000") == [
        (b"vary", b"Origin"), (b"access-control-allow-origin", b"http://localhost:3000")]
    everyone = OriginPolicy(("*",))
    assert everyone.response_headers("http://x.example") == [(b"access-control-allow-origin", b"*")]
    assert (b"vary", b"Origin") not in everyone.preflight_headers("http://x.example")


@pytest.mark.parametrize("name, canonical", [
    ("x-stainless-os", "X-Stainless-Os"), ("OpenAI-Beta", "Openai-Beta"), ("accept", "Accept"),
])
def test_canonical_header(name: str, canonical: str) -> None:
    assert canonical_header(name) == canonical


def test_same_origin_is_not_cross_origin() -> None:
    assert is_same_origin("http://127.0.0.1:11434", "127.0.0.1:11434")
    assert is_same_origin("https://my.host:443", "my.host:443")
    assert not is_same_origin("http://127.0.0.1:11435", "127.0.0.1:11434")


HOSTNAME = socket.gethostname()


@pytest.mark.parametrize("host, verdict", [
    ("", "name"),
    ("localhost", "name"),
    ("localhost:11434", "name"),
    ("LOCALHOST:11434", "name"),
    ("app.localhost", "name"),
    ("printer.local:631", "name"),
    ("host.docker.internal:11434", "name"),
    (f"{HOSTNAME}:11434", "name"),
    (f"{HOSTNAME.upper()}", "name"),
    ("127.0.0.1:11434", "ip"),
    ("127.1.2.3", "ip"),
    ("[::1]:11434", "ip"),
    ("::1", "ip"),
    ("0.0.0.0:11434", "ip"),
    ("[::]:11434", "ip"),
    ("10.1.2.3:11434", "ip"),
    ("172.16.5.4", "ip"),
    ("192.168.1.10:11434", "ip"),
    ("[fd00::1]:11434", "ip"),
    ("[::ffff:127.0.0.1]:11434", "ip"),
    ("evil.example", ""),
    ("evil.example:11434", ""),
    ("localhost.evil.example", ""),
    ("evil-localhost", ""),
    ("8.8.8.8:11434", ""),
    ("172.32.0.1", ""),  # outside 172.16/12
    ("169.254.169.254", ""),  # link-local is not private to Go (unless an interface has it)
    ("100.64.0.1", ""),  # nor is carrier-grade NAT
    ("[::1]", ""),  # Go's SplitHostPort wants a port after brackets; "[::1]" names nothing
    ("127.0.0.1.nip.io", ""),
], ids=lambda v: str(v) or "empty")
def test_host_check(host: str, verdict: str) -> None:
    assert host_verdict(host) == verdict


@pytest.mark.parametrize("bind, loopback", [
    ("127.0.0.1", True), ("127.0.0.2", True), ("::1", True), ("localhost", True),
    ("0.0.0.0", False), ("::", False), ("", False), ("192.168.1.10", False),
])
def test_which_listeners_get_the_host_check(bind: str, loopback: bool) -> None:
    assert listens_on_loopback(bind) is loopback


@pytest.mark.parametrize("path, shape", [
    ("/api/chat", {"error": "m"}),
    ("/metrics", {"error": "m"}),
    ("/v1/chat/completions", {"error": {"message": "m", "type": "invalid_request_error", "param": None,
                                        "code": "invalid_api_key"}}),
    ("/v1/messages", {"type": "error", "error": {"type": "authentication_error", "message": "m"}}),
])
def test_unauthorized_body_speaks_each_dialect(path: str, shape: object) -> None:
    assert unauthorized_body(path, "m") == shape


def test_api_key_settings(tmp_path: Path) -> None:
    assert Config.from_env({}).api_key is None
    assert Config.from_env({"MLX_LAMA_API_KEY": " 'k1' "}).api_key == "k1"
    key_file = tmp_path / "key"
    key_file.write_text("from-file\n")
    assert Config.from_env({"MLX_LAMA_API_KEY_FILE": str(key_file)}).api_key == "from-file"
    both = {"MLX_LAMA_API_KEY": "env", "MLX_LAMA_API_KEY_FILE": str(key_file)}
    assert Config.from_env(both).api_key == "env"
    with pytest.raises(ConfigError, match="API key file .*missing"):
        Config.from_env({"MLX_LAMA_API_KEY_FILE": str(tmp_path / "missing")})
    (tmp_path / "empty").write_text("\n")
    with pytest.raises(ConfigError, match="is empty"):
        Config.from_env({"MLX_LAMA_API_KEY_FILE": str(tmp_path / "empty")})
    assert "k1" not in repr(Config.from_env({"MLX_LAMA_API_KEY": "k1"}))
    # OLLAMA_API_KEY is a client setting (Ollama's clients send it to ollama.com): never the server's.
    assert Config.from_env({"OLLAMA_API_KEY": "cloud"}).api_key is None


@pytest.mark.parametrize("value, debug", [("", False), ("0", False), ("false", False), ("1", True),
                                          ("true", True), ("2", True), (" 2 ", True)])
def test_ollama_debug_levels(value: str, debug: bool) -> None:
    assert Config.from_env({"OLLAMA_DEBUG": value}).debug is debug
