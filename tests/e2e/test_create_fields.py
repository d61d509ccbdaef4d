"""/api/create fields mlx-lama cannot honour are refused, never dropped; `requires` is kept."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.support.server import LiveServer


def create(server: LiveServer, **body: Any) -> httpx.Response:
    return httpx.post(f"{server.url}/api/create", json={"stream": False, **body}, timeout=60)


@pytest.mark.parametrize("field,value,error", [
    ("draft_files", {"d.gguf": "sha256:" + "0" * 64}, "draft_files: speculative-decoding draft models"),
    ("draft_quantize", "q8_0", "draft_quantize: speculative-decoding draft models"),
    ("remote_host", "https://ollama.com", "remote_host: remote (cloud) models"),
    ("renderer", "qwen3-coder", "renderer: Ollama's built-in renderers"),
    ("parser", "qwen3-coder", "parser: Ollama's built-in parsers"),
    ("info", {"capabilities": ["vision"]}, "info: model info overrides"),
])
def test_unsupported_create_fields_are_refused(live_server: LiveServer, field: str, value: Any,
                                               error: str) -> None:
    r = create(live_server, model="tiny-refused", **{"from": live_server.models["default"], field: value})
    assert r.status_code == 400
    assert r.json() == {"error": f"{error} are not supported by mlx-lama"}
    assert httpx.post(f"{live_server.url}/api/show", json={"model": "tiny-refused"}).status_code == 404


def test_requires_is_kept_and_inherited(live_server: LiveServer) -> None:
    try:
        assert create(live_server, model="tiny-req", requires="0.12.0",
                      **{"from": live_server.models["default"]}).json() == {"status": "success"}
        assert create(live_server, model="tiny-req-child", **{"from": "tiny-req"}).json() == {
            "status": "success"}
        for name in ("tiny-req", "tiny-req-child"):
            show = httpx.post(f"{live_server.url}/api/show", json={"model": name}).json()
            assert show["requires"] == "0.12.0"
        assert "requires" not in httpx.post(f"{live_server.url}/api/show",
                                            json={"model": live_server.models["default"]}).json()
    finally:
        for name in ("tiny-req", "tiny-req-child"):
            httpx.request("DELETE", f"{live_server.url}/api/delete", json={"model": name})
