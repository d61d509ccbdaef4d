"""Replay every recorded Ollama exchange in ``compat_fixtures/`` against a live mlx-lama.

Needs the ``live_server`` pytest fixture (``tests/conftest.py``): an object with ``.url``
(``http://127.0.0.1:PORT``) and ``.models`` (``{"default": "<installed chat model>", ...}``).
Each test sends the adapted request (see :func:`tests.compat.replay.adapt_request`), reads
the whole response and asserts :func:`tests.compat.replay.compare` finds no mismatch.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from typing import Any

import httpx
import pytest

from tests.compat.replay import (
    FIXTURE_ROOT,
    Fixture,
    MissingModelError,
    adapt_request,
    compare,
    describe,
    load_fixtures,
    split_body,
)

FIXTURES: list[Fixture] = load_fixtures(FIXTURE_ROOT)

# Generous: the first generation request may have to load the model.
TIMEOUT = httpx.Timeout(300.0, connect=10.0)


def _send(client: httpx.Client, step: Mapping[str, Any]) -> httpx.Response:
    # content=None sends no body at all, which is what the "missing request body" fixtures
    # need; httpx would otherwise add nothing either, but be explicit about headers.
    return client.request(
        step["method"],
        step["path"],
        headers=step.get("headers") or None,
        content=step.get("content"),
    )


@pytest.mark.parametrize("fx", FIXTURES, ids=[f.id for f in FIXTURES])
def test_replay(fx: Fixture, live_server: Any) -> None:
    try:
        plan = adapt_request(fx, live_server.models)
    except MissingModelError as exc:
        pytest.skip(str(exc))

    with httpx.Client(base_url=live_server.url, timeout=TIMEOUT) as client:
        for step in plan["setup"]:
            r = _send(client, step)
            assert r.status_code in step["expect_status"], (
                f"setup {step['method']} {step['path']} -> {r.status_code}: {r.text[:300]}"
            )
        try:
            resp = _send(client, plan)
            # httpx has read the whole body here (no streaming API used), so a stream that
            # stalls fails on the timeout rather than hanging.
            body = resp.content
        finally:
            for step in plan["teardown"]:
                # Best effort: a failed cleanup must not mask the real result.
                with contextlib.suppress(httpx.HTTPError):
                    _send(client, step)

    content_type = resp.headers.get("content-type")
    lines = split_body(content_type, body)
    mismatches = compare(fx, resp.status_code, content_type, lines, plan["substitutions"])
    assert not mismatches, (
        f"{fx.id} ({fx.source})\n"
        f"{fx.request['method']} {plan['path']} -> {resp.status_code} {content_type!r}\n"
        f"{describe(mismatches)}\n"
        f"body (first 600 bytes): {body[:600]!r}"
    )
