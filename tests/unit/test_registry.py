"""The alias registry: built-in table, user overrides, direct Hugging Face names, file errors."""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

import pytest

from mlx_lama.config import Config
from mlx_lama.names import parse_name
from mlx_lama.store import registry as registry_mod
from mlx_lama.store.registry import BACKENDS, Registry, RegistryError, Resolved


@pytest.fixture(scope="module")
def builtin() -> Registry:
    return Registry.load(None)


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
    return path


# --- resolving names -------------------------------------------------------------------------

# (typed name, expected repo, expected revision, expected backend)
RESOLVE = [
    ("llama3.2", "mlx-community/Llama-3.2-3B-Instruct-4bit", "main", "mlx-lm"),
    ("llama3.2:latest", "mlx-community/Llama-3.2-3B-Instruct-4bit", "main", "mlx-lm"),
    ("llama3.2:1b", "mlx-community/Llama-3.2-1B-Instruct-4bit", "main", "mlx-lm"),
    ("Llama3.2:1B", "mlx-community/Llama-3.2-1B-Instruct-4bit", "main", "mlx-lm"),
    ("LLAMA3.2", "mlx-community/Llama-3.2-3B-Instruct-4bit", "main", "mlx-lm"),
    ("library/llama3.2:1b", "mlx-community/Llama-3.2-1B-Instruct-4bit", "main", "mlx-lm"),
    ("registry.ollama.ai/library/llama3.2:1b", "mlx-community/Llama-3.2-1B-Instruct-4bit", "main", "mlx-lm"),
    ("qwen2.5", "mlx-community/Qwen2.5-7B-Instruct-4bit", "main", "mlx-lm"),
    ("qwen2.5:7b", "mlx-community/Qwen2.5-7B-Instruct-4bit", "main", "mlx-lm"),
    ("qwen3", "mlx-community/Qwen3-8B-4bit", "main", "mlx-lm"),
    ("qwen3:4b", "mlx-community/Qwen3-4B-4bit", "main", "mlx-lm"),
    ("qwen3:30b-a3b", "mlx-community/Qwen3-30B-A3B-4bit", "main", "mlx-lm"),
    ("gemma3", "mlx-community/gemma-3-4b-it-qat-4bit", "main", "mlx-lm"),
    ("gemma3:1b", "mlx-community/gemma-3-1b-it-qat-4bit", "main", "mlx-lm"),
    ("mistral", "mlx-community/Mistral-7B-Instruct-v0.3-4bit", "main", "mlx-lm"),
    ("phi4", "mlx-community/phi-4-4bit", "main", "mlx-lm"),
    ("deepseek-r1:1.5b", "mlx-community/DeepSeek-R1-Distill-Qwen-1.5B-4bit", "main", "mlx-lm"),
    ("smollm2:135m", "mlx-community/SmolLM2-135M-Instruct", "main", "mlx-lm"),
    ("smollm2", "mlx-community/SmolLM2-1.7B-Instruct", "main", "mlx-lm"),
    ("nomic-embed-text", "nomic-ai/nomic-embed-text-v1.5", "main", "mlx-embeddings"),
    ("all-minilm", "mlx-community/all-MiniLM-L6-v2-bf16", "main", "mlx-embeddings"),
    ("all-minilm:33m", "sentence-transformers/all-MiniLM-L12-v2", "main", "mlx-embeddings"),
    ("mxbai-embed-large", "mlx-community/mxbai-embed-large-v1", "main", "mlx-embeddings"),
    # Names that carry their own location.
    ("hf.co/mlx-community/Foo-4bit", "mlx-community/Foo-4bit", "main", "mlx-lm"),
    ("hf.co/mlx-community/Foo-4bit:latest", "mlx-community/Foo-4bit", "main", "mlx-lm"),
    ("hf.co/mlx-community/Foo-4bit:v1.2", "mlx-community/Foo-4bit", "v1.2", "mlx-lm"),
    ("huggingface.co/some.org/Repo_x", "some.org/Repo_x", "main", "mlx-lm"),
    ("https://hf.co/org/repo:abc123", "org/repo", "abc123", "mlx-lm"),
    ("mlx-community/Qwen3-0.6B-4bit", "mlx-community/Qwen3-0.6B-4bit", "main", "mlx-lm"),
    ("mlx-community/Qwen3-0.6B-4bit:pr1", "mlx-community/Qwen3-0.6B-4bit", "pr1", "mlx-lm"),
]


@pytest.mark.parametrize(("typed", "repo", "revision", "backend"), RESOLVE, ids=[r[0] for r in RESOLVE])
def test_resolve(builtin: Registry, typed: str, repo: str, revision: str, backend: str) -> None:
    assert builtin.resolve(parse_name(typed)) == Resolved(repo=repo, revision=revision, backend=backend)


UNKNOWN = [
    "no-such-model",
    "llama3.2:405b",  # a known family with an unknown size is not guessed at
    "llama3.2:1b-instruct-q4_K_M",  # Ollama's quantisation tags are not mapped
    "example.com/ns/model:tag",  # another registry entirely
    "localhost:5000/library/llama3.2",  # the same name on another host is another model
]


@pytest.mark.parametrize("typed", UNKNOWN, ids=UNKNOWN)
def test_unknown_names_resolve_to_none(builtin: Registry, typed: str) -> None:
    assert builtin.resolve(parse_name(typed)) is None


# --- the built-in table ----------------------------------------------------------------------

REPO_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*")


def test_builtin_has_at_least_30_entries(builtin: Registry) -> None:
    assert len(builtin.entries()) >= 30


def test_every_builtin_entry_parses_and_is_plausible(builtin: Registry) -> None:
    for display, resolved in builtin.entries().items():
        name = parse_name(display)
        assert name.display() == display
        assert (name.host, name.namespace) == ("registry.ollama.ai", "library"), display
        assert REPO_RE.fullmatch(resolved.repo), (display, resolved.repo)
        assert resolved.backend in BACKENDS, display
        assert resolved.revision == "main", display
        embedding = any(word in name.model for word in ("embed", "minilm"))
        assert (resolved.backend == "mlx-embeddings") == embedding, display


FAMILIES = [
    "llama3.2",
    "llama3.1",
    "qwen2.5",
    "qwen2.5-coder",
    "qwen3",
    "gemma3",
    "mistral",
    "mistral-nemo",
    "phi4",
    "phi4-mini",
    "deepseek-r1",
    "smollm2",
    "nomic-embed-text",
    "all-minilm",
    "mxbai-embed-large",
]


@pytest.mark.parametrize("family", FAMILIES, ids=FAMILIES)
def test_every_family_has_latest(builtin: Registry, family: str) -> None:
    assert f"{family}:latest" in builtin.entries()


# Ollama's default size per family: `:latest` must be the same repository as that tag.
LATEST_IS = [
    ("llama3.2", "3b"),
    ("llama3.1", "8b"),
    ("qwen2.5", "7b"),
    ("qwen2.5-coder", "7b"),
    ("qwen3", "8b"),
    ("gemma3", "4b"),
    ("mistral", "7b"),
    ("mistral-nemo", "12b"),
    ("phi4", "14b"),
    ("phi4-mini", "3.8b"),
    ("deepseek-r1", "8b"),
    ("smollm2", "1.7b"),
    ("all-minilm", "22m"),
    ("mxbai-embed-large", "335m"),
]


@pytest.mark.parametrize(("family", "tag"), LATEST_IS, ids=[f"{f}:{t}" for f, t in LATEST_IS])
def test_latest_matches_ollamas_default_size(builtin: Registry, family: str, tag: str) -> None:
    entries = builtin.entries()
    assert entries[f"{family}:latest"] == entries[f"{family}:{tag}"]


# --- the user's file -------------------------------------------------------------------------


def test_user_file_overrides_and_adds(tmp_path: Path) -> None:
    user = write(
        tmp_path / "registry.yaml",
        """
        models:
          Llama3.2:1B: {repo: mlx-community/Llama-3.2-1B-Instruct-8bit}
          my-coder: {repo: me/my-coder-mlx, default_backend: vllm-mlx, revision: v2}
          mlx-community/Qwen3-0.6B-4bit: {repo: me/qwen-fork}
          any-engine: {repo: me/any, default_backend: auto}
        """,
    )
    reg = Registry.load(user)
    builtin = Registry.load(None)
    assert reg.resolve(parse_name("llama3.2:1b")) == Resolved("mlx-community/Llama-3.2-1B-Instruct-8bit")
    assert reg.resolve(parse_name("my-coder")) == Resolved("me/my-coder-mlx", "v2", "vllm-mlx")
    assert reg.resolve(parse_name("MY-CODER:latest")) == Resolved("me/my-coder-mlx", "v2", "vllm-mlx")
    assert reg.resolve(parse_name("any-engine")) == Resolved("me/any", backend="auto")
    # The table wins over the org/repo reading, so users can redirect any name.
    assert reg.resolve(parse_name("mlx-community/Qwen3-0.6B-4bit")) == Resolved("me/qwen-fork")
    # Untouched built-ins remain; the override replaces rather than duplicates.
    assert reg.resolve(parse_name("qwen3")) == builtin.resolve(parse_name("qwen3"))
    assert len(reg.entries()) == len(builtin.entries()) + 3
    assert "Llama3.2:1B" in reg.entries() and "llama3.2:1b" not in reg.entries()


@pytest.mark.parametrize(
    "text",
    ["", "# nothing yet\n", "models:\n", "models: {}\n", "models:\n  # my-model: {repo: a/b}\n"],
    ids=["empty", "comment", "models-null", "models-empty", "models-commented"],
)
def test_empty_user_files_are_fine(tmp_path: Path, text: str) -> None:
    reg = Registry.load(write(tmp_path / "registry.yaml", text))
    assert reg.entries() == Registry.load(None).entries()


def test_missing_user_file_is_fine(tmp_path: Path) -> None:
    assert Registry.load(tmp_path / "absent.yaml").entries() == Registry.load(None).entries()


def test_scalars_are_text_not_yaml_1_1_numbers(tmp_path: Path) -> None:
    # PyYAML's safe_load reads 4:20 as the sexagesimal integer 260; names must stay as written.
    reg = Registry.load(write(tmp_path / "r.yaml", "models:\n  4:20: {repo: a/b, revision: 1234}\n"))
    assert reg.resolve(parse_name("4:20")) == Resolved("a/b", "1234")


# --- errors, each with file and line ---------------------------------------------------------

# (id, file text, line, message fragment after "file:line: ")
ERRORS = [
    (
        "bad-yaml",
        "models:\n  llama3.2: {repo: a/b\n  other: {repo: c/d}\n",
        3,
        "invalid YAML: ",
    ),
    ("bad-indent", "models:\n  a: {repo: a/b}\n bad: x\n", 3, "invalid YAML: "),
    ("two-documents", "models: {}\n---\nmodels: {}\n", 2, "invalid YAML: "),
    ("top-not-mapping", "- a\n- b\n", 1, "the top level must be a mapping"),
    (
        "unknown-top-key",
        "models: {}\n\naliases:\n  a: {repo: a/b}\n",
        3,
        "unknown key 'aliases' (expected: models)",
    ),
    ("models-not-mapping", "models:\n  - llama3.2\n", 2, "'models' must be a mapping"),
    (
        "unknown-entry-key",
        "# mine\nmodels:\n  a: {repo: a/b}\n\n\n\n  llama3.2:\n    repo_id: mlx-community/x\n",
        8,
        "unknown key 'repo_id' (expected: repo, default_backend, revision)",
    ),
    (
        "unknown-entry-key-flow",
        "models:\n  a: {repo: a/b}\n  b: {repo: c/d, backend: mlx-lm}\n",
        3,
        "unknown key 'backend' (expected: repo, default_backend, revision)",
    ),
    (
        "missing-repo",
        "models:\n  a: {repo: a/b}\n  b: {default_backend: mlx-lm}\n",
        3,
        "entry 'b' has no 'repo'",
    ),
    ("repo-null", "models:\n  a: {repo: }\n", 2, "'repo' must be a string"),
    ("repo-not-org-name", "models:\n  a: {repo: just-a-name}\n", 2, "'repo' must look like org/name"),
    ("repo-three-parts", "models:\n  a: {repo: a/b/c}\n", 2, "'repo' must look like org/name"),
    ("repo-traversal", "models:\n  a: {repo: ../etc}\n", 2, "'repo' must look like org/name"),
    ("repo-dotdot", "models:\n  a: {repo: org/a..b}\n", 2, "'repo' must look like org/name"),
    (
        "bad-backend",
        "models:\n  a: {repo: a/b}\n  b:\n    repo: c/d\n    default_backend: llama.cpp\n",
        3,
        "unknown default_backend 'llama.cpp' "
        "(expected one of: auto, mlx-embeddings, mlx-lm, mlx-vlm, vllm-mlx)",
    ),
    ("bad-revision", "models:\n  a: {repo: a/b, revision: '../x'}\n", 2, "invalid revision '../x'"),
    ("entry-not-mapping", "models:\n  a: a/b\n", 2, "entry 'a' must be a mapping"),
    (
        "bad-name-traversal",
        "models:\n  ok: {repo: a/b}\n  ../../etc: {repo: a/b}\n",
        3,
        "invalid model name '../../etc'",
    ),
    ("bad-name-space", "models:\n  'llama 3': {repo: a/b}\n", 2, "invalid model name 'llama 3'"),
    ("bad-name-empty-tag", "models:\n  'llama3:': {repo: a/b}\n", 2, "invalid model name 'llama3:'"),
    ("bad-name-not-string", "models:\n  [a, b]: {repo: a/b}\n", 2, "a model name must be a string"),
    (
        "duplicate-entry",
        "models:\n  llama3.2: {repo: a/b}\n  Llama3.2:latest: {repo: c/d}\n",
        3,
        "duplicate entry 'Llama3.2:latest' (first on line 2)",
    ),
    ("duplicate-field", "models:\n  a: {repo: a/b, repo: c/d}\n", 2, "duplicate key 'repo'"),
    (
        "python-tag",
        "models:\n  a: {repo: !!python/name:os.system a/b}\n",
        2,
        "unsupported YAML tag 'tag:yaml.org,2002:python/name:os.system'",
    ),
    ("local-tag", "models: !custom\n  a: {repo: a/b}\n", 1, "unsupported YAML tag '!custom'"),
    ("anchor-at-top", "base: &b {repo: a/b}\nmodels: {}\n", 1, "unknown key 'base' (expected: models)"),
    ("merge-key", "models:\n  a: &b {repo: a/b}\n  c:\n    <<: *b\n", 4, "unknown key '<<'"),
]


@pytest.mark.parametrize(("text", "line", "fragment"), [e[1:] for e in ERRORS], ids=[e[0] for e in ERRORS])
def test_errors_name_file_and_line(tmp_path: Path, text: str, line: int, fragment: str) -> None:
    path = write(tmp_path / "reg.yaml", text)
    with pytest.raises(RegistryError) as info:
        Registry.load(path)
    message = str(info.value)
    assert message.startswith(f"{path}:{line}: "), message
    assert fragment in message, message


def test_error_shows_home_as_tilde(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    write(
        tmp_path / ".mlx-lama" / "registry.yaml",
        """
        # my aliases
        models:
          mine:
            repo: me/mine

          other:
            repo_id: me/other
        """,
    )
    with pytest.raises(RegistryError) as info:
        Registry.load(Path("~/.mlx-lama/registry.yaml"))
    assert str(info.value) == (
        "~/.mlx-lama/registry.yaml:7: unknown key 'repo_id' (expected: repo, default_backend, revision)"
    )


def test_unreadable_user_file(tmp_path: Path) -> None:
    (tmp_path / "dir.yaml").mkdir()
    with pytest.raises(RegistryError, match=r"dir\.yaml: cannot read"):
        Registry.load(tmp_path / "dir.yaml")


def test_non_utf8_user_file(tmp_path: Path) -> None:
    (tmp_path / "latin1.yaml").write_bytes(b"models:\n  caf\xe9: {repo: a/b}\n")
    with pytest.raises(RegistryError, match=r"latin1\.yaml: not UTF-8"):
        Registry.load(tmp_path / "latin1.yaml")


def test_registry_error_is_a_value_error() -> None:
    assert issubclass(RegistryError, ValueError)


# --- the process-wide default ----------------------------------------------------------------


def test_config_reads_mlx_lama_registry(tmp_path: Path) -> None:
    chosen = tmp_path / "r.yaml"
    assert Config.from_env({"MLX_LAMA_REGISTRY": str(chosen)}).registry_file == chosen
    default = Path.home() / ".mlx-lama" / "registry.yaml"
    assert Config.from_env({}).registry_file == default
    assert Config.from_env({"MLX_LAMA_REGISTRY": "  "}).registry_file == default  # blank = unset, as Ollama
    assert Config().registry_file == default


def test_module_resolve_uses_env_file_and_caches(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    user = write(tmp_path / "r.yaml", "models:\n  mine: {repo: me/mine}\n")
    monkeypatch.setenv("MLX_LAMA_REGISTRY", str(user))
    registry_mod.default_registry.cache_clear()
    try:
        assert registry_mod.resolve(parse_name("mine")) == Resolved("me/mine")
        assert registry_mod.resolve(parse_name("llama3.2:1b")) is not None
        write(user, "models:\n  mine: {repo: me/changed}\n")
        assert registry_mod.resolve(parse_name("mine")) == Resolved("me/mine")  # read once
    finally:
        registry_mod.default_registry.cache_clear()
