"""Unit tests for the replay comparator (no server needed).

They prove the machinery both accepts an Ollama-identical answer and catches the
differences that break real clients: wrong status, wrong content type, NDJSON framing
errors, missing/extra keys, wrong JSON types (float durations), wrong values of the
fields clients branch on.
"""

from __future__ import annotations

import copy
import hashlib
import json
from pathlib import Path
from typing import Any

import pytest

from tests.compat.replay import (
    FIXTURE_ROOT,
    Fixture,
    FixtureError,
    MissingModelError,
    adapt_request,
    api_route,
    compare,
    full_model_name,
    load_fixtures,
    media_type,
    split_body,
)

FIXTURES = load_fixtures(FIXTURE_ROOT)
BY_ID = {f.id: f for f in FIXTURES}
NDJSON = "application/x-ndjson"
JSON_CT = "application/json; charset=utf-8"
MODELS = {"default": "tiny-llama:latest", "embed": "tiny-bert:latest"}  # conftest TINY roles the fixtures use


# --------------------------------------------------------------------------- helpers


def dumps(obj: Any) -> str:
    """Compact JSON, as Go's json.Marshal writes it."""
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False)


def ndjson(*objs: Any) -> bytes:
    return "".join(dumps(o) + "\n" for o in objs).encode()


def recorded_body(fx: Fixture) -> bytes:
    """Serialize a fixture's recorded response the way Ollama put it on the wire."""
    resp = fx.response
    if "lines" in resp:
        if fx.is_stream:
            return ndjson(*resp["lines"])
        return dumps(resp["lines"][0]).encode()  # gin's c.JSON: no trailing newline
    if "text" in resp:
        return resp["text"].encode()
    return b""


def check(fx: Fixture, status: int, ct: str | None, body: bytes | str, subs: dict | None = None) -> list[str]:
    raw = body.encode() if isinstance(body, str) else body
    return compare(fx, status, ct, split_body(ct, raw), subs)


def gen_stream_lines() -> list[dict[str, Any]]:
    return copy.deepcopy(BY_ID["generate/stream.json"].response["lines"])


def write_fixture(root: Path, rel: str, data: dict[str, Any]) -> None:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data), encoding="utf-8")


def minimal_fixture(**overrides: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "source": "unit test",
        "request": {"method": "POST", "path": "/api/generate", "headers": {}, "body": {"model": "llama3.2"}},
        "response": {"status": 200, "content_type": JSON_CT, "lines": [{"done": True}]},
    }
    data.update(overrides)
    return data


# --------------------------------------------------------------------------- the fixture set


def test_fixture_ids_are_unique_and_relative() -> None:
    ids = [f.id for f in FIXTURES]
    assert len(ids) == len(set(ids))
    assert all("/" in i and i.endswith(".json") and not i.startswith("/") for i in ids)


# Every core endpoint and case the brief asks for; a missing fixture fails here.
REQUIRED_CASES = [
    "root/get.json",
    "root/head.json",
    "version/get.json",
    "version/head.json",
    "tags/get.json",
    "show/basic.json",
    "show/verbose.json",
    "show/error_unknown_model.json",
    "ps/get.json",
    "generate/stream.json",
    "generate/nonstream.json",
    "generate/options.json",
    "generate/raw.json",
    "generate/load.json",
    "generate/unload.json",
    "generate/error_suffix_not_supported.json",
    "generate/error_images_not_supported.json",
    "generate/error_malformed_json.json",
    "generate/error_wrong_field_type.json",
    "generate/error_empty_body.json",
    "generate/error_missing_model.json",
    "generate/error_unknown_model.json",
    "generate/error_bad_keep_alive.json",
    "generate/error_raw_with_system.json",
    "generate/error_bad_option_type.json",
    "chat/stream.json",
    "chat/nonstream.json",
    "chat/load.json",
    "chat/unload.json",
    "chat/system_message.json",
    "chat/options.json",
    "chat/error_missing_model.json",
    "blobs/head_missing.json",
    "blobs/head_existing.json",
    "blobs/post_created.json",
    "blobs/post_digest_mismatch.json",
    "blobs/post_invalid_digest.json",
    "create/from_model_stream.json",
    "create/from_model_nonstream.json",
    "create/error_neither_from_nor_files.json",
    "copy/success.json",
    "copy/error_unknown_source.json",
    "delete/success.json",
    "delete/error_unknown.json",
    "router/unknown_path.json",
    "router/wrong_method_generate.json",
]


@pytest.mark.parametrize("case", REQUIRED_CASES)
def test_required_case_present(case: str) -> None:
    assert case in BY_ID


def test_every_fixture_names_its_source() -> None:
    for fx in FIXTURES:
        assert fx.source.strip(), fx.id
        assert "ollama/ollama" in fx.source, f"{fx.id}: source should name the Ollama file it comes from"


@pytest.mark.parametrize("fx", FIXTURES, ids=[f.id for f in FIXTURES])
def test_fixture_accepts_its_own_recording(fx: Fixture) -> None:
    # The comparator must accept exactly what Ollama sent, or every replay would be noise.
    ct = fx.response["content_type"]
    assert check(fx, fx.response["status"], ct, recorded_body(fx)) == []


@pytest.mark.parametrize("fx", FIXTURES, ids=[f.id for f in FIXTURES])
def test_fixture_adapts(fx: Fixture) -> None:
    plan = adapt_request(fx, MODELS)
    assert plan["method"] == fx.request["method"]
    assert plan["path"].startswith("/")
    assert plan["content"] is None or isinstance(plan["content"], bytes)
    # No fixture model name that stands for an installed model may leak through.
    if plan["content"] and fx.request.get("body") and isinstance(fx.request["body"], dict):
        sent = json.loads(plan["content"])
        assert sent.get("model") not in {"llama3.2", "mistral", "llava"}


# --------------------------------------------------------------------------- status / content type


def test_wrong_status_is_reported() -> None:
    fx = BY_ID["generate/error_unknown_model.json"]
    out = check(fx, 400, JSON_CT, dumps({"error": "model 'does-not-exist' not found"}))
    assert any("status: expected 404, got 400" in m for m in out)


def test_content_type_parameters_are_ignored() -> None:
    fx = BY_ID["generate/stream.json"]
    assert check(fx, 200, "application/x-ndjson; charset=utf-8", ndjson(*gen_stream_lines())) == []
    fx = BY_ID["generate/nonstream.json"]
    assert check(fx, 200, "Application/JSON", recorded_body(fx)) == []


def test_json_instead_of_ndjson_is_reported() -> None:
    fx = BY_ID["generate/stream.json"]
    out = check(fx, 200, "application/json", ndjson(*gen_stream_lines()))
    assert any(m.startswith("content type:") for m in out)


def test_ndjson_instead_of_json_is_reported() -> None:
    # e.g. the load short-circuit must be application/json even though stream defaults to true
    fx = BY_ID["generate/load.json"]
    out = check(fx, 200, NDJSON, ndjson(fx.response["lines"][0]))
    assert any(m.startswith("content type:") for m in out)


def test_missing_content_type_is_reported() -> None:
    fx = BY_ID["version/get.json"]
    out = check(fx, 200, None, dumps({"version": "0.12.3"}))
    assert any(m.startswith("content type:") for m in out)


# --------------------------------------------------------------------------- NDJSON framing


def test_stream_with_more_chunks_and_length_reason_is_ok() -> None:
    fx = BY_ID["generate/stream.json"]
    chunk, final = gen_stream_lines()
    chunks = [dict(chunk, response=w) for w in ("The", " sky", " is", " blue")]
    final["done_reason"] = "length"
    assert check(fx, 200, NDJSON, ndjson(*chunks, final)) == []


def test_blank_line_in_ndjson_is_reported() -> None:
    fx = BY_ID["generate/stream.json"]
    chunk, final = gen_stream_lines()
    body = (dumps(chunk) + "\n\n" + dumps(final) + "\n").encode()
    out = check(fx, 200, NDJSON, body)
    assert any("blank line" in m for m in out)


def test_missing_trailing_newline_is_reported() -> None:
    fx = BY_ID["generate/stream.json"]
    chunk, final = gen_stream_lines()
    out = check(fx, 200, NDJSON, (dumps(chunk) + "\n" + dumps(final)).encode())
    assert any("does not end with a newline" in m for m in out)


def test_crlf_line_endings_are_reported() -> None:
    fx = BY_ID["generate/stream.json"]
    chunk, final = gen_stream_lines()
    out = check(fx, 200, NDJSON, (dumps(chunk) + "\r\n" + dumps(final) + "\r\n").encode())
    assert any("\\r" in m for m in out)


def test_sse_framing_is_reported() -> None:
    fx = BY_ID["generate/stream.json"]
    chunk, final = gen_stream_lines()
    out = check(fx, 200, NDJSON, f"data: {dumps(chunk)}\n\ndata: {dumps(final)}\n\n")
    assert any("not valid JSON" in m for m in out)


def test_pretty_printed_ndjson_is_reported() -> None:
    fx = BY_ID["generate/stream.json"]
    chunk, final = gen_stream_lines()
    body = json.dumps(chunk, indent=2) + "\n" + dumps(final) + "\n"
    assert check(fx, 200, NDJSON, body)


def test_stream_without_nonfinal_chunks_is_reported() -> None:
    fx = BY_ID["generate/stream.json"]
    _, final = gen_stream_lines()
    out = check(fx, 200, NDJSON, ndjson(final))
    assert any("at least 1 non-final" in m for m in out)


def test_error_line_mid_stream_is_reported() -> None:
    fx = BY_ID["generate/stream.json"]
    chunk, _ = gen_stream_lines()
    out = check(fx, 200, NDJSON, ndjson(chunk, {"error": "model runner has unexpectedly stopped"}))
    assert any("error line" in m and "unexpectedly stopped" in m for m in out)


def test_final_line_must_be_done() -> None:
    fx = BY_ID["generate/stream.json"]
    chunk, final = gen_stream_lines()
    out = check(fx, 200, NDJSON, ndjson(final, chunk))  # order swapped
    assert any("(final): done" in m for m in out)
    assert any("(non-final): done" in m for m in out)


def test_single_json_with_trailing_newline_is_ok_but_two_documents_are_not() -> None:
    fx = BY_ID["generate/load.json"]
    line = fx.response["lines"][0]
    assert check(fx, 200, JSON_CT, dumps(line) + "\n") == []
    out = check(fx, 200, JSON_CT, dumps(line) + "\n" + dumps(line))
    assert any("single valid JSON document" in m for m in out)


def test_nan_is_rejected() -> None:
    fx = BY_ID["generate/nonstream.json"]
    body = dumps(fx.response["lines"][0]).replace('"eval_duration":4709213000', '"eval_duration":NaN')
    out = check(fx, 200, JSON_CT, body)
    assert any("NaN" in m for m in out)


# --------------------------------------------------------------------------- keys and types


def test_float_duration_is_reported() -> None:
    fx = BY_ID["generate/stream.json"]
    chunk, final = gen_stream_lines()
    final["eval_duration"] = 4.23271e9
    out = check(fx, 200, NDJSON, ndjson(chunk, final))
    assert any("eval_duration: expected int, got float" in m for m in out)


def test_integral_float_count_is_reported() -> None:
    # Python's json writes 259.0 for a float: Go clients refuse it for an int field.
    fx = BY_ID["generate/nonstream.json"]
    body = dumps(fx.response["lines"][0]).replace('"eval_count":290', '"eval_count":290.0')
    out = check(fx, 200, JSON_CT, body)
    assert any("eval_count: expected int, got float" in m for m in out)


def test_int_where_fixture_has_float_is_ok() -> None:
    fx = BY_ID["show/basic.json"]
    line = copy.deepcopy(fx.response["lines"][0])
    line["model_info"]["llama.attention.layer_norm_rms_epsilon"] = 0  # open map anyway
    assert check(fx, 200, JSON_CT, dumps(line)) == []


def test_wrong_type_is_reported() -> None:
    fx = BY_ID["generate/stream.json"]
    chunk, final = gen_stream_lines()
    chunk["response"] = 5
    out = check(fx, 200, NDJSON, ndjson(chunk, final))
    assert any("response: expected str, got int" in m for m in out)


def test_bool_is_not_int() -> None:
    fx = BY_ID["generate/load.json"]
    line = dict(fx.response["lines"][0], done=1)
    out = check(fx, 200, JSON_CT, dumps(line))
    assert any("done: expected bool, got int" in m for m in out)


def test_null_where_list_expected_is_reported() -> None:
    fx = BY_ID["tags/get.json"]
    out = check(fx, 200, JSON_CT, dumps({"models": None}))
    assert any("models: expected list, got null" in m for m in out)


def test_empty_model_list_is_reported() -> None:
    fx = BY_ID["tags/get.json"]
    out = check(fx, 200, JSON_CT, dumps({"models": []}))
    assert any("empty list" in m for m in out)


def test_nested_list_element_type_is_checked() -> None:
    fx = BY_ID["tags/get.json"]
    line = copy.deepcopy(fx.response["lines"][0])
    line["models"][1]["size"] = 2019393189.0
    out = check(fx, 200, JSON_CT, dumps(line))
    assert any("models/1/size: expected int, got float" in m for m in out)


def test_missing_key_is_reported() -> None:
    fx = BY_ID["generate/stream.json"]
    chunk, final = gen_stream_lines()
    del final["context"]
    del chunk["created_at"]
    out = check(fx, 200, NDJSON, ndjson(chunk, final))
    assert any("(final): <line>: missing key 'context'" in m for m in out)
    assert any("(non-final): <line>: missing key 'created_at'" in m for m in out)


def test_missing_nested_key_is_reported() -> None:
    fx = BY_ID["chat/stream.json"]
    chunk, final = copy.deepcopy(fx.response["lines"])
    del final["message"]["role"]
    out = check(fx, 200, NDJSON, ndjson(chunk, final))
    assert any("message: missing key 'role'" in m for m in out)


def test_optional_key_may_be_absent() -> None:
    fx = BY_ID["show/basic.json"]
    line = copy.deepcopy(fx.response["lines"][0])
    del line["parameters"]
    del line["template"]
    assert check(fx, 200, JSON_CT, dumps(line)) == []
    del line["modelfile"]  # not optional
    assert any("missing key 'modelfile'" in m for m in check(fx, 200, JSON_CT, dumps(line)))


def test_unexpected_key_is_reported() -> None:
    fx = BY_ID["generate/stream.json"]
    chunk, final = gen_stream_lines()
    chunk["eval_count"] = 1  # metrics belong on the final chunk only
    final["choices"] = []
    out = check(fx, 200, NDJSON, ndjson(chunk, final))
    assert any("unexpected key 'eval_count'" in m for m in out)
    assert any("unexpected key 'choices'" in m for m in out)


def test_raw_generate_must_not_return_context() -> None:
    fx = BY_ID["generate/raw.json"]
    line = dict(fx.response["lines"][0], context=[1, 2, 3])
    out = check(fx, 200, JSON_CT, dumps(line))
    assert any("unexpected key 'context'" in m for m in out)


def test_globally_allowed_newer_keys_pass() -> None:
    fx = BY_ID["generate/stream.json"]
    chunk, final = gen_stream_lines()
    chunk["thinking"] = "hmm"
    assert check(fx, 200, NDJSON, ndjson(chunk, final)) == []
    fx = BY_ID["chat/nonstream.json"]
    line = copy.deepcopy(fx.response["lines"][0])
    line["message"]["thinking"] = "hmm"
    assert check(fx, 200, JSON_CT, dumps(line)) == []
    fx = BY_ID["tags/get.json"]
    line = copy.deepcopy(fx.response["lines"][0])
    for m in line["models"]:
        m["capabilities"] = ["completion"]
        m["details"]["context_length"] = 4096
    assert check(fx, 200, JSON_CT, dumps(line)) == []


def test_global_allowlist_is_per_route() -> None:
    # "system" is fine in /api/show output but not in a generate chunk.
    fx = BY_ID["generate/nonstream.json"]
    line = dict(fx.response["lines"][0], system="You are a pirate.")
    assert any("unexpected key 'system'" in m for m in check(fx, 200, JSON_CT, dumps(line)))


def test_open_map_requirements() -> None:
    fx = BY_ID["show/basic.json"]
    line = copy.deepcopy(fx.response["lines"][0])
    line["model_info"] = {
        "general.architecture": "qwen3",
        "general.parameter_count": 1_300_000,
        "qwen3.context_length": 4096,
        "qwen3.embedding_length": 64,
        "qwen3.block_count": 2,
    }
    assert check(fx, 200, JSON_CT, dumps(line)) == []
    del line["model_info"]["qwen3.context_length"]
    line["model_info"]["general.parameter_count"] = "1.3M"
    out = check(fx, 200, JSON_CT, dumps(line))
    assert any("context_length" in m and "no key matching" in m for m in out)
    assert any("general.parameter_count: expected int, got str" in m for m in out)
    line["model_info"] = None
    assert any("model_info: expected dict, got null" in m for m in check(fx, 200, JSON_CT, dumps(line)))


def test_timestamp_format_is_checked() -> None:
    fx = BY_ID["generate/load.json"]
    good = dict(fx.response["lines"][0], created_at="2026-01-02T03:04:05.123456+00:00")
    assert check(fx, 200, JSON_CT, dumps(good)) == []
    bad = dict(good, created_at="2026-01-02 03:04:05.123456")  # no T, no zone
    assert any("RFC 3339" in m for m in check(fx, 200, JSON_CT, dumps(bad)))


def test_value_pattern() -> None:
    fx = BY_ID["version/get.json"]
    assert check(fx, 200, JSON_CT, dumps({"version": "0.12.3-rc1"})) == []
    out = check(fx, 200, JSON_CT, dumps({"version": "v0.12.3"}))
    assert any("does not match" in m for m in out)
    fx = BY_ID["tags/get.json"]
    line = copy.deepcopy(fx.response["lines"][0])
    line["models"][0]["digest"] = "sha256:" + line["models"][0]["digest"]
    assert any("digest" in m for m in check(fx, 200, JSON_CT, dumps(line)))


# --------------------------------------------------------------------------- exact values


def test_done_reason_value_is_checked() -> None:
    fx = BY_ID["generate/stream.json"]
    chunk, final = gen_stream_lines()
    final["done_reason"] = "eos"
    out = check(fx, 200, NDJSON, ndjson(chunk, final))
    assert any("done_reason" in m and "eos" in m for m in out)
    fx = BY_ID["generate/unload.json"]
    line = dict(fx.response["lines"][0], done_reason="load")
    assert any('expected "unload"' in m for m in check(fx, 200, JSON_CT, dumps(line)))


def test_message_role_value_is_checked() -> None:
    fx = BY_ID["chat/nonstream.json"]
    line = copy.deepcopy(fx.response["lines"][0])
    line["message"]["role"] = "Assistant"
    out = check(fx, 200, JSON_CT, dumps(line))
    assert any("message/role" in m for m in out)


def test_progress_status_values() -> None:
    fx = BY_ID["create/from_model_stream.json"]
    ok = ndjson(
        {"status": "using existing layer sha256:" + "a" * 64},
        {"status": "creating new layer sha256:" + "b" * 64},
        {"status": "writing manifest"},
        {"status": "success"},
    )
    assert check(fx, 200, NDJSON, ok) == []
    out = check(fx, 200, NDJSON, ndjson({"status": "reading model metadata"}, {"status": "done"}))
    assert any("reading model metadata" in m for m in out)
    assert any('expected "success"' in m for m in out)


def test_error_message_is_exact() -> None:
    fx = BY_ID["generate/error_bad_keep_alive.json"]
    assert check(fx, 400, JSON_CT, dumps({"error": 'time: missing unit in duration "-1"'})) == []
    out = check(fx, 400, JSON_CT, dumps({"error": "invalid keep_alive"}))
    assert any("error: expected" in m for m in out)
    out = check(fx, 400, JSON_CT, dumps({"detail": 'time: missing unit in duration "-1"'}))
    assert any("missing key 'error'" in m for m in out)


def test_error_message_model_names_are_substituted() -> None:
    fx = BY_ID["generate/error_suffix_not_supported.json"]
    plan = adapt_request(fx, MODELS)
    ours = {"error": "registry.ollama.ai/library/tiny-llama:latest does not support insert"}
    assert check(fx, 400, JSON_CT, dumps(ours), plan["substitutions"]) == []
    # Unsubstituted, the fixture's own name is expected, so ours is a mismatch.
    assert check(fx, 400, JSON_CT, dumps(ours)) != []


def test_digest_mismatch_error_is_substituted() -> None:
    fx = BY_ID["blobs/post_digest_mismatch.json"]
    plan = adapt_request(fx, MODELS)
    want = plan["path"].rsplit("/", 1)[1]
    got = "sha256:" + hashlib.sha256(plan["content"]).hexdigest()
    assert want != got
    ours = {"error": f'digest mismatch, expected "{want}", got "{got}"'}
    assert check(fx, 400, JSON_CT, dumps(ours), plan["substitutions"]) == []
    swapped = {"error": f'digest mismatch, expected "{got}", got "{want}"'}
    assert check(fx, 400, JSON_CT, dumps(swapped), plan["substitutions"]) != []


# --------------------------------------------------------------------------- empty / text bodies


def test_empty_body_expected() -> None:
    fx = BY_ID["copy/success.json"]
    assert check(fx, 200, None, b"") == []
    assert check(fx, 200, JSON_CT, b"") == []  # no content type recorded -> not checked
    out = check(fx, 200, JSON_CT, b"{}")
    assert any("expected an empty body" in m for m in out)
    out = check(fx, 200, JSON_CT, b"null")
    assert any("expected an empty body" in m for m in out)


def test_head_content_type_is_still_checked() -> None:
    fx = BY_ID["blobs/head_missing.json"]
    assert check(fx, 404, JSON_CT, b"") == []
    assert any(m.startswith("content type") for m in check(fx, 404, "text/plain", b""))


def test_text_body() -> None:
    fx = BY_ID["root/get.json"]
    assert check(fx, 200, "text/plain; charset=utf-8", b"Ollama is running") == []
    out = check(fx, 200, "text/plain; charset=utf-8", b"mlx-lama is running")
    assert any("expected text" in m for m in out)
    out = check(fx, 200, JSON_CT, b'{"status":"ok"}')
    assert any(m.startswith("content type") for m in out)


def test_router_errors_are_plain_text() -> None:
    fx = BY_ID["router/unknown_path.json"]
    assert check(fx, 404, "text/plain", b"404 page not found") == []
    out = check(fx, 404, JSON_CT, dumps({"detail": "Not Found"}))  # a typical Python framework default
    assert any(m.startswith("content type") for m in out)
    assert any("expected text" in m for m in out)


def test_parsed_lines_are_accepted() -> None:
    fx = BY_ID["generate/stream.json"]
    assert compare(fx, 200, NDJSON, gen_stream_lines()) == []


# --------------------------------------------------------------------------- adapt_request


def test_adapt_renames_installed_models_and_caps_num_predict() -> None:
    fx = BY_ID["generate/options.json"]
    plan = adapt_request(fx, MODELS)
    sent = json.loads(plan["content"])
    assert sent["model"] == "tiny-llama:latest"
    assert sent["options"]["num_predict"] == 8
    assert sent["options"]["temperature"] == 0.8  # kept as recorded
    assert plan["substitutions"]["registry.ollama.ai/library/llama3.2:latest"] == (
        "registry.ollama.ai/library/tiny-llama:latest"
    )


def test_adapt_leaves_missing_models_missing() -> None:
    for fid in (
        "generate/error_unknown_model.json",
        "show/error_unknown_model.json",
        "copy/error_unknown_source.json",
        "delete/error_unknown.json",
    ):
        plan = adapt_request(BY_ID[fid], MODELS)
        assert b"does-not-exist" in plan["content"], fid
        assert b"tiny-llama" not in plan["content"], fid


def test_adapt_does_not_inject_options_into_load_or_unload() -> None:
    for fid in ("generate/load.json", "generate/unload.json", "chat/load.json", "chat/unload.json"):
        sent = json.loads(adapt_request(BY_ID[fid], MODELS)["content"])
        assert "options" not in sent, fid
        assert sent["model"] == "tiny-llama:latest"


def test_adapt_keeps_copy_destination() -> None:
    sent = json.loads(adapt_request(BY_ID["copy/success.json"], MODELS)["content"])
    assert sent == {"source": "tiny-llama:latest", "destination": "llama3-backup"}


def test_adapt_raw_and_empty_bodies_are_sent_verbatim() -> None:
    assert adapt_request(BY_ID["generate/error_empty_body.json"], MODELS)["content"] is None
    assert adapt_request(BY_ID["chat/error_null_body.json"], MODELS)["content"] == b"null"
    raw = adapt_request(BY_ID["generate/error_malformed_json.json"], MODELS)["content"]
    assert raw == BY_ID["generate/error_malformed_json.json"].request["body"].encode()


def test_adapt_blob_digest_matches_content() -> None:
    fx = BY_ID["blobs/post_created.json"]
    plan = adapt_request(fx, MODELS)
    digest = plan["path"].rsplit("/", 1)[1]
    assert digest == "sha256:" + hashlib.sha256(plan["content"]).hexdigest()
    # fresh content per call, so "201 Created" is never answered with "200 already exists"
    assert adapt_request(fx, MODELS)["path"] != plan["path"]


def test_adapt_setup_uses_same_blob_and_placeholders() -> None:
    plan = adapt_request(BY_ID["blobs/head_existing.json"], MODELS)
    (setup,) = plan["setup"]
    assert setup["path"] == plan["path"]
    assert setup["path"].endswith(hashlib.sha256(setup["content"]).hexdigest())
    plan = adapt_request(BY_ID["delete/success.json"], MODELS)
    assert json.loads(plan["setup"][0]["content"])["source"] == "tiny-llama:latest"


def test_adapt_missing_model_key_raises(tmp_path: Path) -> None:
    data = minimal_fixture(
        request={
            "method": "POST",
            "path": "/api/generate",
            "headers": {},
            "body": {"model": "codellama:code", "prompt": "def f(", "suffix": "return 1"},
        },
        replay={"models": {"codellama:code": "fim"}},
    )
    write_fixture(tmp_path, "generate/fim.json", data)
    (fx,) = load_fixtures(tmp_path)
    with pytest.raises(MissingModelError):
        adapt_request(fx, MODELS)
    plan = adapt_request(fx, {**MODELS, "fim": "tiny-fim:latest"})
    assert json.loads(plan["content"])["model"] == "tiny-fim:latest"


def test_full_model_name() -> None:
    assert full_model_name("llama3.2") == "registry.ollama.ai/library/llama3.2:latest"
    assert full_model_name("llama3:13b") == "registry.ollama.ai/library/llama3:13b"
    assert full_model_name("mattw/pygmalion") == "registry.ollama.ai/mattw/pygmalion:latest"
    assert full_model_name("example.com:5000/ns/m:q4") == "example.com:5000/ns/m:q4"


def test_small_helpers() -> None:
    assert media_type("application/json; charset=utf-8") == "application/json"
    assert media_type(None) is None
    assert api_route("/api/blobs/sha256:abc") == "/api/blobs/:digest"
    assert split_body(NDJSON, b'{"a":1}\n') == ['{"a":1}', ""]
    assert split_body(JSON_CT, b"") == []


# --------------------------------------------------------------------------- fixture validation


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda d: d.update(extra_key=1), "unknown top-level keys"),
        (lambda d: d.pop("source"), "'source'"),
        (lambda d: d["response"].update(text="x"), "exactly one of"),
        (lambda d: d["response"].update(status="200"), "status must be an integer"),
        (lambda d: d["request"].update(method="FETCH"), "method"),
        (lambda d: d["request"].update(method="HEAD"), "HEAD responses carry no body"),
        (lambda d: d.update(replay={"optinal": []}), "unknown keys"),
        (lambda d: d.update(replay={"patterns": {"final": {"x": "("}}}), "bad regex"),
        (lambda d: d.update(replay={"body_blob": "sha256:x"}), "body_blob"),
        (lambda d: d["response"].update(lines=[{"a": 1}, {"b": 2}]), "exactly one line"),
    ],
)
def test_malformed_fixtures_are_rejected(tmp_path: Path, mutate: Any, message: str) -> None:
    data = minimal_fixture()
    mutate(data)
    write_fixture(tmp_path, "x/bad.json", data)
    with pytest.raises(FixtureError, match=message):
        load_fixtures(tmp_path)


def test_invalid_json_fixture_is_rejected(tmp_path: Path) -> None:
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "bad.json").write_text("{", encoding="utf-8")
    with pytest.raises(FixtureError, match="not readable JSON"):
        load_fixtures(tmp_path)
