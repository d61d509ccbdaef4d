"""Model-name grammar: Ollama's types/model/name.go cases plus hostile input."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import pytest

from mlx_lama.names import InvalidName, Name, is_valid, manifest_path, parse_name

P80 = "8" * 80
P81 = "8" * 81
P96 = "9" * 96
P350 = "3" * 350
P351 = "3" * 351

# (input, (host, namespace, model, tag)) — the fully qualified result after defaults.
VALID = [
    ("llama3.2", ("registry.ollama.ai", "library", "llama3.2", "latest")),
    ("llama3.2:1b", ("registry.ollama.ai", "library", "llama3.2", "1b")),
    ("mattw/pygmalion", ("registry.ollama.ai", "mattw", "pygmalion", "latest")),
    ("mattw/pygmalion:v1", ("registry.ollama.ai", "mattw", "pygmalion", "v1")),
    ("example.com/ns/m:v1", ("example.com", "ns", "m", "v1")),
    ("example.com:5000/ns/m", ("example.com:5000", "ns", "m", "latest")),
    ("example.com:5000/ns/m:v1", ("example.com:5000", "ns", "m", "v1")),
    (
        "registry.ollama.ai/library/dolphin-mistral:7b-v2.6-dpo-laser-q6_K",
        ("registry.ollama.ai", "library", "dolphin-mistral", "7b-v2.6-dpo-laser-q6_K"),
    ),
    ("http://localhost:5000/ns/m:t", ("localhost:5000", "ns", "m", "t")),
    ("https://example.com/ns/m", ("example.com", "ns", "m", "latest")),
    ("host:https/namespace/model:tag", ("host:https", "namespace", "model", "tag")),
    ("_why/_the/_lucky:_stiff", ("_why", "_the", "_lucky", "_stiff")),
    ("h/n/m:t", ("h", "n", "m", "t")),
    ("a../n/m:t", ("a..", "n", "m", "t")),  # a host may end in dots: still a plain file name
    ("m..x:t..y", ("registry.ollama.ai", "library", "m..x", "t..y")),
    ("Llama3:Latest", ("registry.ollama.ai", "library", "Llama3", "Latest")),
    ("0/1/2:3", ("0", "1", "2", "3")),
    (f"{P80}/{P80}/{P80}:{P80}", (P80, P80, P80, P80)),
    (f"{P350}/{P80}/{P80}:{P80}", (P350, P80, P80, P80)),
    # Hugging Face: host normalised, case kept, dotted orgs allowed, repos up to 96 chars.
    (
        "hf.co/bartowski/Llama-3.2-1B-Instruct-GGUF:Q4_K_M",
        ("hf.co", "bartowski", "Llama-3.2-1B-Instruct-GGUF", "Q4_K_M"),
    ),
    (
        "hf.co/mlx-community/Qwen2.5-0.5B-Instruct-4bit",
        ("hf.co", "mlx-community", "Qwen2.5-0.5B-Instruct-4bit", "latest"),
    ),
    ("huggingface.co/Org/Repo:q8_0", ("hf.co", "Org", "Repo", "q8_0")),
    ("HuggingFace.co/Org/Repo", ("hf.co", "Org", "Repo", "latest")),
    ("HF.CO/Org/Repo", ("hf.co", "Org", "Repo", "latest")),
    ("https://huggingface.co/Org/Repo", ("hf.co", "Org", "Repo", "latest")),
    ("hf.co/some.org/repo", ("hf.co", "some.org", "repo", "latest")),
    (f"hf.co/org/{P96}", ("hf.co", "org", P96, "latest")),
]
VALID_IDS = [
    "bare-model",
    "model-tag",
    "namespace-model",
    "namespace-model-tag",
    "host-ns-model-tag",
    "host-port-no-tag",
    "host-port-tag",
    "fully-qualified-dotted-tag",
    "http-scheme-dropped",
    "https-scheme-dropped",
    "host-with-colon-word",
    "leading-underscores",
    "one-char-parts",
    "host-trailing-dots",
    "inner-double-dots",
    "case-kept",
    "digits-only",
    "max-80-parts",
    "max-350-host",
    "hf-gguf-quant-tag",
    "hf-mlx-community",
    "huggingface-co-normalised",
    "huggingface-co-mixed-case",
    "hf-upper-case-host",
    "hf-https-url",
    "hf-dotted-org",
    "hf-96-char-repo",
]


@pytest.mark.parametrize(("text", "want"), VALID, ids=VALID_IDS)
def test_parse_valid(text: str, want: tuple[str, str, str, str]) -> None:
    name = parse_name(text)
    assert name.parts() == want
    assert (name.host, name.namespace, name.model, name.tag) == want
    assert is_valid(text)


# Everything here must be refused: Ollama's invalid cases, grammar edges and hostile input.
INVALID = [
    ("", "empty"),
    ("^", "caret"),
    ("mm:", "empty-tag"),
    (":t", "empty-model-before-tag"),
    ("/nn/mm", "empty-host"),
    ("nn/", "empty-model-after-slash"),
    ("//", "only-slashes"),
    ("//mm", "double-slash-model"),
    ("hh//", "trailing-double-slash"),
    ("h//m", "empty-namespace"),
    ("//mm:@", "slashes-and-at"),
    ("00@", "at-sign"),
    ("@", "bare-at"),
    ("m@sha256-abc", "digest-suffix"),
    ("x/y/z/w", "too-many-parts"),
    ("a/b/c/d:e", "too-many-parts-tag"),
    ("-hh/nn/mm:tt", "host-leading-dash"),
    ("hh/-nn/mm:tt", "namespace-leading-dash"),
    ("hh/nn/-mm:tt", "model-leading-dash"),
    ("hh/nn/mm:-tt", "tag-leading-dash"),
    ("host/name:space/model:tag", "colon-in-namespace"),
    ("ns.x/model", "dot-in-namespace"),
    ("model:tag:extra", "colon-in-model"),
    ("gpt-oss:20b:cloud", "cloud-suffix-not-grammar"),
    ("m:t/x", "slash-after-colon"),
    ("model+Q4_0", "plus-build"),
    (P81, "model-81"),
    (f"m:{P81}", "tag-81"),
    (f"{P81}/m", "namespace-81"),
    (f"{P351}/n/m:t", "host-351"),
    (f"hf.co/org/{P96}9", "hf-repo-97"),
    ("hf.co/repo", "hf-two-part-dotted-namespace"),
    ("ftp://h/n/m", "unknown-scheme"),
    ("HTTP://h/n/m", "uppercase-scheme"),
    ("http:///n/m", "scheme-empty-host"),
    ("https://m", "scheme-without-namespace"),
    # Ollama takes anything before the first "://" as the scheme, unchecked; we do not.
    ("\x00.ftp://b/c/m", "garbage-scheme-with-nul"),
    (" x%http:///ns/m", "garbage-scheme-empty-host"),
    # hostile: traversal
    ("..", "dotdot"),
    (".", "dot"),
    ("../m", "dotdot-namespace"),
    ("../../etc/passwd", "dotdot-chain"),
    ("h/../m", "dotdot-as-namespace"),
    ("h/n/..", "dotdot-as-model"),
    ("m:..", "dotdot-as-tag"),
    ("m:.", "dot-as-tag"),
    ("../n/m:t", "dotdot-as-host"),
    (".hidden", "leading-dot-model"),
    ("m:.t", "leading-dot-tag"),
    ("/etc/passwd", "absolute-path"),
    ("/m", "leading-slash"),
    ("m/", "trailing-slash"),
    ("..\\..\\m", "backslash-dotdot"),
    ("a\\b", "backslash"),
    ("%2e%2e/m", "percent-encoded-dotdot"),
    ("m%2fx", "percent-encoded-slash"),
    ("~/m", "tilde"),
    ("$HOME/m", "dollar"),
    # hostile: control characters and whitespace
    ("m\x00", "nul"),
    ("m\x00/../x", "nul-then-traversal"),
    ("m\n", "trailing-newline"),
    ("m\r\nx", "crlf"),
    ("m\t", "tab"),
    ("\x7fm", "del"),
    (" m", "leading-space"),
    ("m ", "trailing-space"),
    ("my model", "inner-space"),
    ("m:t ", "tag-trailing-space"),
    # hostile: non-ASCII look-alikes
    ("llamа", "cyrillic-a"),
    ("ｍodel", "fullwidth-m"),
    ("m\u2024\u2024", "one-dot-leaders"),
    ("m\u00b2", "superscript-two"),
    ("mo\u0301del", "combining-accent"),
    ("m\ufeff", "bom"),
    ("\u202em", "rtl-override"),
]


@pytest.mark.parametrize("text", [t for t, _ in INVALID], ids=[i for _, i in INVALID])
def test_parse_invalid(text: str) -> None:
    with pytest.raises(InvalidName) as info:
        parse_name(text)
    assert str(info.value) == "invalid model name"  # Ollama's message, usable as a 400 body
    assert info.value.name == text
    assert info.value.reason
    assert not is_valid(text)


@pytest.mark.parametrize(
    "value", [None, 3, b"llama3", ["llama3"]], ids=["none", "int", "bytes", "list"]
)
def test_parse_non_string(value: object) -> None:
    with pytest.raises(InvalidName):
        parse_name(value)  # type: ignore[arg-type]
    assert not is_valid(value)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("text", "full", "short"),
    [
        ("llama3.2", "registry.ollama.ai/library/llama3.2:latest", "llama3.2:latest"),
        ("llama3.2:1b", "registry.ollama.ai/library/llama3.2:1b", "llama3.2:1b"),
        ("mattw/pygmalion", "registry.ollama.ai/mattw/pygmalion:latest", "mattw/pygmalion:latest"),
        ("Registry.Ollama.AI/Library/M:T", "Registry.Ollama.AI/Library/M:T", "M:T"),
        ("registry.ollama.ai/NS/m", "registry.ollama.ai/NS/m:latest", "NS/m:latest"),
        ("host/namespace/model:tag", "host/namespace/model:tag", "host/namespace/model:tag"),
        ("host/library/model:tag", "host/library/model:tag", "host/library/model:tag"),
        ("example.com:5000/ns/m:v1", "example.com:5000/ns/m:v1", "example.com:5000/ns/m:v1"),
        ("http://example.com/ns/m", "example.com/ns/m:latest", "example.com/ns/m:latest"),
        (
            "huggingface.co/Org/Repo-GGUF:Q4_K_M",
            "hf.co/Org/Repo-GGUF:Q4_K_M",
            "hf.co/Org/Repo-GGUF:Q4_K_M",
        ),
    ],
    ids=[
        "default-everything",
        "default-host-ns",
        "other-namespace",
        "defaults-case-insensitive",
        "default-host-only",
        "other-host",
        "other-host-library-kept",
        "host-port",
        "scheme-not-shown",
        "hf-case-kept",
    ],
)
def test_str_and_display(text: str, full: str, short: str) -> None:
    name = parse_name(text)
    assert str(name) == full
    assert name.display() == short
    # Both forms parse back to the same name (the short one up to the case of dropped defaults).
    assert parse_name(full) == name
    assert parse_name(short).key() == name.key()


@pytest.mark.parametrize(
    ("a", "b", "same"),
    [
        ("Llama3", "llama3:latest", True),
        ("LLAMA3:LATEST", "registry.ollama.ai/library/llama3:latest", True),
        ("Mattw/Pygmalion", "mattw/pygmalion", True),
        ("huggingface.co/Org/Repo", "hf.co/org/repo", True),
        ("llama3", "llama3:8b", False),
        ("a/m", "b/m", False),
    ],
    ids=[
        "case",
        "upper-vs-qualified",
        "namespace-case",
        "hf-alias-and-case",
        "tag-differs",
        "namespace-differs",
    ],
)
def test_key_is_case_insensitive(a: str, b: str, same: bool) -> None:
    assert (parse_name(a).key() == parse_name(b).key()) is same


def test_key_shape() -> None:
    assert parse_name("Org/Model:Tag").key() == ("registry.ollama.ai", "org", "model", "tag")


def test_name_is_frozen_and_hashable() -> None:
    name = parse_name("llama3")
    with pytest.raises(AttributeError):
        name.tag = "x"  # type: ignore[misc]
    assert {name, parse_name("llama3:latest")} == {name}


@pytest.mark.parametrize(
    "parts",
    [
        ("..", "library", "m", "latest"),
        ("registry.ollama.ai", "..", "m", "latest"),
        ("registry.ollama.ai", "library", "..", "latest"),
        ("registry.ollama.ai", "library", "m", ".."),
        ("registry.ollama.ai", "library", "a/b", "latest"),
        ("registry.ollama.ai", "library", "m", ""),
        ("/abs", "library", "m", "latest"),
        ("registry.ollama.ai", "lib.rary", "m", "latest"),
    ],
    ids=[
        "host-dotdot",
        "ns-dotdot",
        "model-dotdot",
        "tag-dotdot",
        "slash",
        "empty",
        "absolute",
        "dot-namespace",
    ],
)
def test_direct_construction_validates(parts: tuple[str, str, str, str]) -> None:
    with pytest.raises(InvalidName):
        Name(*parts)


def test_direct_construction_ok() -> None:
    assert Name("hf.co", "some.org", "Repo", "Q4_K_M").display() == "hf.co/some.org/Repo:Q4_K_M"


def test_invalid_name_pickles() -> None:
    with pytest.raises(InvalidName) as info:
        parse_name("..")
    copy = pickle.loads(pickle.dumps(info.value))
    assert (str(copy), copy.name, copy.reason) == (str(info.value), "..", info.value.reason)


@pytest.mark.parametrize(
    ("text", "rel"),
    [
        ("llama3.2", "registry.ollama.ai/library/llama3.2/latest"),
        ("mattw/pygmalion:v1", "registry.ollama.ai/mattw/pygmalion/v1"),
        ("example.com:5000/ns/m:t", "example.com:5000/ns/m/t"),
        ("hf.co/Org/Repo:Q4_K_M", "hf.co/Org/Repo/Q4_K_M"),
    ],
    ids=["default", "namespace", "host-port", "hf"],
)
def test_manifest_path(tmp_path: Path, text: str, rel: str) -> None:
    root = tmp_path / "manifests"
    root.mkdir()
    path = manifest_path(root, parse_name(text))
    assert path == root.resolve() / rel
    assert path.resolve().is_relative_to(root.resolve())


def test_manifest_path_refuses_symlink_escape(tmp_path: Path) -> None:
    root = tmp_path / "manifests"
    outside = tmp_path / "outside"
    (root / "registry.ollama.ai").mkdir(parents=True)
    outside.mkdir()
    # A link planted in the store must not let a valid name write outside it.
    os.symlink(outside, root / "registry.ollama.ai" / "library")
    with pytest.raises(InvalidName):
        manifest_path(root, parse_name("llama3"))


def test_manifest_path_rechecks_tampered_name(tmp_path: Path) -> None:
    name = parse_name("llama3")
    object.__setattr__(name, "model", "..")  # bypass frozen, as a buggy caller could
    with pytest.raises(InvalidName):
        manifest_path(tmp_path, name)


def test_manifest_path_wants_a_name(tmp_path: Path) -> None:
    with pytest.raises(TypeError):
        manifest_path(tmp_path, "llama3")  # type: ignore[arg-type]
