"""The alias table: which Hugging Face repository an Ollama model name stands for.

Ollama's library names (``llama3.2``, ``qwen2.5:7b``) mean nothing to Hugging Face, so a built-in
table (``mlx_lama/data/models.yaml``) maps them to MLX repositories, and the user's own
``registry.yaml`` (``~/.mlx-lama/registry.yaml``, or ``MLX_LAMA_REGISTRY``) adds to it or overrides
it name by name. Names that already say where the weights are need no table:
``hf.co/<org>/<repo>[:revision]`` and ``<org>/<repo>`` go straight to that repository.

Both files share one format::

    models:
      llama3.2:latest: {repo: mlx-community/Llama-3.2-3B-Instruct-4bit, default_backend: mlx-lm}

The files are hand-edited, so every mistake is reported as ``file:line: what is wrong`` rather than
as a traceback. Parsing stops at YAML's node graph (``yaml.compose`` with the safe loader): nothing
is ever constructed from a tag, and scalars are taken as the text written, so a name like ``4:20``
is not turned into YAML 1.1's sexagesimal integer 260.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterator
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import yaml

from mlx_lama.backends import catalog
from mlx_lama.config import Config
from mlx_lama.names import (
    DEFAULT_HOST,
    DEFAULT_NAMESPACE,
    DEFAULT_TAG,
    HF_HOST,
    InvalidName,
    Name,
    parse_name,
)

__all__ = [
    "BACKENDS",
    "DEFAULT_BACKEND",
    "DEFAULT_REVISION",
    "Registry",
    "RegistryError",
    "Resolved",
    "default_registry",
    "resolve",
]

DEFAULT_BACKEND = "mlx-lm"
DEFAULT_REVISION = "main"
# The backends of mlx_lama/backends/catalog.py, and auto: the server picks (engine/selection.py).
BACKENDS = frozenset(catalog.NAMES) | {catalog.AUTO}

_ENTRY_KEYS = ("repo", "default_backend", "revision")
_TOP_KEYS = ("models",)
_BUILTIN_LABEL = "mlx_lama/data/models.yaml"

# Hugging Face repo ids: `org/name`, each part of [A-Za-z0-9._-] starting with a letter or digit,
# at most 96 characters (the hub's own limit); the hub also refuses "..", which would read as a
# path step once the id lands in a cache path.
_REPO_PART_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,95}")
# Revisions are branch or tag names or commit hashes; branches may hold '/' (`refs/pr/1`).
_REVISION_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._/-]{0,254}")

# The safe loader's own tags; anything else (`!!python/name:...`, `!custom`) is refused rather than
# silently read as text, so a file written for some other loader fails loudly.
_YAML_TAGS = frozenset(
    f"tag:yaml.org,2002:{t}"
    for t in ("str", "int", "float", "bool", "null", "map", "seq", "merge", "timestamp")
)
_NULL_TAG = "tag:yaml.org,2002:null"


class RegistryError(ValueError):
    """A registry file that cannot be used; the message starts with ``file:line:``."""


@dataclass(frozen=True)
class Resolved:
    """Where a model name's weights live, and which backend runs them by default."""

    repo: str
    revision: str = DEFAULT_REVISION
    backend: str = DEFAULT_BACKEND


def _label(path: Path) -> str:
    """The path as messages show it: under the home directory as ``~/...``, as users write it."""
    try:
        return "~/" + path.expanduser().relative_to(Path.home()).as_posix()
    except ValueError:
        return str(path)


def _valid_repo(repo: str) -> bool:
    parts = repo.split("/")
    return len(parts) == 2 and all(_REPO_PART_RE.fullmatch(p) for p in parts) and ".." not in repo


def _valid_revision(revision: str) -> bool:
    return _REVISION_RE.fullmatch(revision) is not None and ".." not in revision and "//" not in revision


class _Parser:
    """Validates one file's node graph into ``(Name, Resolved)`` pairs, errors as ``file:line``."""

    def __init__(self, label: str) -> None:
        self.label = label

    def error(self, node: yaml.Node | yaml.Mark | None, message: str) -> RegistryError:
        mark = node.start_mark if isinstance(node, yaml.Node) else node
        # Marks count lines from 0; editors and our messages from 1.
        where = f"{self.label}:{mark.line + 1}" if mark is not None else self.label
        return RegistryError(f"{where}: {message}")

    def scalar(self, node: yaml.Node, what: str) -> str:
        """The text of a plain scalar node (not null, not a collection)."""
        if not isinstance(node, yaml.ScalarNode) or node.tag == _NULL_TAG:
            raise self.error(node, f"{what} must be a string")
        return str(node.value)

    def check_tags(self, node: yaml.Node) -> None:
        if node.tag not in _YAML_TAGS:
            raise self.error(node, f"unsupported YAML tag {node.tag!r}")

    def mapping(self, node: yaml.Node, what: str) -> Iterator[tuple[yaml.Node, yaml.Node]]:
        self.check_tags(node)
        if not isinstance(node, yaml.MappingNode):
            raise self.error(node, f"{what} must be a mapping")
        for key, value in node.value:
            self.check_tags(key)
            self.check_tags(value)
            yield key, value

    def parse(self, text: str) -> list[tuple[Name, Resolved]]:
        try:
            root = yaml.compose(text, Loader=yaml.SafeLoader)
        except yaml.MarkedYAMLError as exc:
            mark = exc.problem_mark or exc.context_mark
            problem = exc.problem or exc.context or "syntax error"
            if exc.context and problem.startswith("but "):
                # The composer splits one sentence in two: "expected a single document ...".
                problem = f"{exc.context}, {problem}"
            raise self.error(mark, f"invalid YAML: {problem}") from None
        except yaml.YAMLError as exc:  # reader errors (e.g. control characters) carry no mark
            raise self.error(None, f"invalid YAML: {exc}") from None
        if root is None:  # empty file, or only comments
            return []

        models: yaml.Node | None = None
        for key, value in self.mapping(root, "the top level"):
            top = self.scalar(key, "a top-level key")
            if top not in _TOP_KEYS:
                raise self.error(key, f"unknown key {top!r} (expected: {', '.join(_TOP_KEYS)})")
            if models is not None:
                raise self.error(key, f"duplicate key {top!r}")
            models = value
        if models is None or (isinstance(models, yaml.ScalarNode) and models.tag == _NULL_TAG):
            return []  # `models:` with every entry commented out

        entries: list[tuple[Name, Resolved]] = []
        seen: dict[tuple[str, ...], int] = {}
        for key, value in self.mapping(models, "'models'"):
            name = self.entry_name(key)
            line = key.start_mark.line + 1
            if name.key() in seen:
                first = seen[name.key()]
                raise self.error(key, f"duplicate entry {name.display()!r} (first on line {first})")
            seen[name.key()] = line
            entries.append((name, self.entry(key, value)))
        return entries

    def entry_name(self, key: yaml.Node) -> Name:
        text = self.scalar(key, "a model name")
        try:
            return parse_name(text)
        except InvalidName as exc:
            raise self.error(key, f"invalid model name {text!r}: {exc.reason}") from None

    def entry(self, key: yaml.Node, value: yaml.Node) -> Resolved:
        fields: dict[str, str] = {}
        for field_key, field_value in self.mapping(value, f"entry {key.value!r}"):
            field_name = self.scalar(field_key, "a field name")
            if field_name not in _ENTRY_KEYS:
                raise self.error(
                    field_key, f"unknown key {field_name!r} (expected: {', '.join(_ENTRY_KEYS)})"
                )
            if field_name in fields:
                raise self.error(field_key, f"duplicate key {field_name!r}")
            fields[field_name] = self.scalar(field_value, f"'{field_name}'")

        # Missing fields are reported at the entry's own line, where the user will look for them.
        repo = fields.get("repo")
        if repo is None:
            raise self.error(key, f"entry {key.value!r} has no 'repo'")
        if not _valid_repo(repo):
            raise self.error(key, f"'repo' must look like org/name, got {repo!r}")
        backend = fields.get("default_backend", DEFAULT_BACKEND)
        if backend not in BACKENDS:
            raise self.error(
                key, f"unknown default_backend {backend!r} (expected one of: {', '.join(sorted(BACKENDS))})"
            )
        revision = fields.get("revision", DEFAULT_REVISION)
        if not _valid_revision(revision):
            raise self.error(key, f"invalid revision {revision!r}")
        return Resolved(repo=repo, revision=revision, backend=backend)


def _parse(text: str, label: str) -> list[tuple[Name, Resolved]]:
    return _Parser(label).parse(text)


def _hf_resolved(namespace: str, model: str, tag: str) -> Resolved:
    # `latest` is only Ollama's filler for "no tag given"; any other tag names a hub revision.
    return Resolved(repo=f"{namespace}/{model}", revision=DEFAULT_REVISION if tag == DEFAULT_TAG else tag)


class Registry:
    """The built-in alias table merged with the user's; see the module docstring."""

    def __init__(self, entries: list[tuple[Name, Resolved]] | None = None) -> None:
        # Keyed case-insensitively (Name.key) like Ollama's own lookups; later entries win, so
        # feeding built-ins first and the user's file second gives "user overrides".
        self._table: dict[tuple[str, ...], tuple[Name, Resolved]] = {}
        for name, resolved in entries or ():
            self._table[name.key()] = (name, resolved)

    @classmethod
    def load(cls, user_file: Path | None) -> Registry:
        """Built-in ``data/models.yaml`` merged with ``user_file`` (absent or ``None`` is fine)."""
        builtin = resources.files("mlx_lama").joinpath("data", "models.yaml").read_text(encoding="utf-8")
        entries = _parse(builtin, _BUILTIN_LABEL)
        if user_file is not None:
            entries += cls._read_user_file(Path(user_file))
        return cls(entries)

    @staticmethod
    def _read_user_file(path: Path) -> list[tuple[Name, Resolved]]:
        label = _label(path)
        try:
            text = path.expanduser().read_text(encoding="utf-8")
        except FileNotFoundError:
            return []  # most users never write one
        except UnicodeDecodeError:
            raise RegistryError(f"{label}: not UTF-8 text") from None
        except OSError as exc:
            raise RegistryError(f"{label}: cannot read: {exc.strerror or exc}") from None
        return _parse(text, label)

    def resolve(self, name: Name) -> Resolved | None:
        """The repository behind ``name``, or ``None`` when nothing is known about it.

        The table comes first (so users may alias any name, even ``org/repo``); then names that
        carry their own location: ``hf.co/org/repo[:tag]`` and, on Ollama's default host, a
        non-library namespace (``org/repo[:tag]``), both read as Hugging Face repositories. An
        unknown library name, or a name on any other host, resolves to ``None``.
        """
        hit = self._table.get(name.key())
        if hit is not None:
            return hit[1]
        host = name.host.lower()
        if host == HF_HOST:
            return _hf_resolved(name.namespace, name.model, name.tag)
        if host == DEFAULT_HOST and name.namespace.lower() != DEFAULT_NAMESPACE:
            return _hf_resolved(name.namespace, name.model, name.tag)
        return None

    def entries(self) -> dict[str, Resolved]:
        """Every alias, keyed by its display form (``llama3.2:latest``), built-ins first."""
        return {name.display(): resolved for name, resolved in self._table.values()}

    def __len__(self) -> int:
        return len(self._table)


@functools.cache
def default_registry() -> Registry:
    """The registry for this process: built-ins plus ``Config.from_env().registry_file``, read once.

    Cached because every pull and show resolves a name; call ``default_registry.cache_clear()``
    after editing the user file (tests do).
    """
    return Registry.load(Config.from_env().registry_file)


def resolve(name: Name) -> Resolved | None:
    """Resolve ``name`` through :func:`default_registry`."""
    return default_registry().resolve(name)
