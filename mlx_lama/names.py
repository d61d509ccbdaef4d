"""Model names, as Ollama spells them: ``[host/][namespace/]model[:tag]``.

The grammar and defaults follow Ollama's ``types/model/name.go`` (``ParseName``/``ParseNameBare``,
``IsValid``, ``DisplayShortest``):

* host       ``[A-Za-z0-9_][A-Za-z0-9_.:-]*``  1..350 bytes (may carry a port; an ``http://`` or
  ``https://`` prefix is accepted and dropped)
* namespace  ``[A-Za-z0-9_][A-Za-z0-9_-]*``    1..80 (no dots)
* model      ``[A-Za-z0-9_][A-Za-z0-9_.-]*``   1..80
* tag        ``[A-Za-z0-9_][A-Za-z0-9_.-]*``   1..80
* defaults   host ``registry.ollama.ai``, namespace ``library``, tag ``latest``

A name doubles as a relative path (``manifests/<host>/<namespace>/<model>/<tag>``), so the grammar is
also our path-traversal defence: no part can be empty, start with a dot, or hold a separator, a
``%``, whitespace or a control character. :func:`manifest_path` checks the joined path once more.

Hugging Face names (``hf.co/<org>/<repo>[:tag]``, also spelled ``huggingface.co/...``) parse under
the same grammar, with the host normalised to ``hf.co`` and two relaxations Hugging Face itself
allows: the org may contain dots and the repo may be up to 96 characters long.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "DEFAULT_HOST",
    "DEFAULT_NAMESPACE",
    "DEFAULT_TAG",
    "HF_HOST",
    "InvalidName",
    "Name",
    "is_valid",
    "manifest_path",
    "parse_name",
]

DEFAULT_HOST = "registry.ollama.ai"
DEFAULT_NAMESPACE = "library"
DEFAULT_TAG = "latest"
HF_HOST = "hf.co"

# Hosts that mean Hugging Face; compared lower-cased because host names are case-insensitive.
_HF_ALIASES = frozenset({"hf.co", "huggingface.co"})

# Explicit ASCII ranges (never \w, which matches any Unicode letter) and fullmatch (never `$`,
# which also matches before a trailing newline).
_HOST_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.:-]*")
_NAMESPACE_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_-]*")
_MODEL_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")
_TAG_RE = _MODEL_RE
# Hugging Face orgs may contain dots (HF's repo-id rule is `[\w.-]` for both halves).
_HF_NAMESPACE_RE = _MODEL_RE

_MAX_HOST = 350
_MAX_PART = 80
_MAX_HF_REPO = 96  # Hugging Face's own limit on a repo name

# Schemes Ollama strips from the host part; any other "scheme://" is refused rather than guessed at.
_SCHEMES = ("http", "https")

# What Ollama answers (errtypes.InvalidModelNameErrMsg), so servers can pass str(exc) through as is.
_INVALID = "invalid model name"


class InvalidName(ValueError):
    """A string that is not a valid model name.

    ``str(exc)`` is Ollama's message (``invalid model name``); ``exc.name`` holds the rejected input
    and ``exc.reason`` says which rule it broke, for logs.
    """

    def __init__(self, name: object, reason: str) -> None:
        super().__init__(_INVALID)
        self.name = name
        self.reason = reason

    def __repr__(self) -> str:
        return f"InvalidName({self.name!r}, {self.reason!r})"

    def __reduce__(self) -> tuple[type[InvalidName], tuple[object, str]]:
        # The default reduce would call InvalidName("invalid model name") and lose the details.
        return (type(self), (self.name, self.reason))


def _check_part(kind: str, value: str, pattern: re.Pattern[str], max_len: int, original: object) -> None:
    if not value:
        raise InvalidName(original, f"empty {kind}")
    if len(value) > max_len:
        raise InvalidName(original, f"{kind} longer than {max_len} characters")
    if pattern.fullmatch(value) is None:
        raise InvalidName(original, f"invalid character in {kind} {value!r}")


def _validate(host: str, namespace: str, model: str, tag: str, original: object) -> None:
    """Raise InvalidName unless every part is valid (HF relaxations applied when host is hf.co)."""
    if not all(isinstance(p, str) for p in (host, namespace, model, tag)):
        raise InvalidName(original, "name parts must be strings")
    hf = host.lower() in _HF_ALIASES
    _check_part("host", host, _HOST_RE, _MAX_HOST, original)
    _check_part("namespace", namespace, _HF_NAMESPACE_RE if hf else _NAMESPACE_RE, _MAX_PART, original)
    _check_part("model", model, _MODEL_RE, _MAX_HF_REPO if hf else _MAX_PART, original)
    _check_part("tag", tag, _TAG_RE, _MAX_PART, original)


@dataclass(frozen=True)
class Name:
    """A fully qualified, validated model name; parts keep the casing the user typed.

    Build one with :func:`parse_name`; constructing it directly validates the parts too, so a
    ``Name`` can always be used as a path (e.g. one rebuilt from a manifest directory listing).
    Equality is case-sensitive like the fields; use :meth:`key` to compare or look up names the way
    Ollama does (case-insensitively).
    """

    host: str
    namespace: str
    model: str
    tag: str

    def __post_init__(self) -> None:
        _validate(self.host, self.namespace, self.model, self.tag, self)

    def __str__(self) -> str:
        """Fully qualified form, e.g. ``registry.ollama.ai/library/llama3.2:latest``."""
        return f"{self.host}/{self.namespace}/{self.model}:{self.tag}"

    def display(self) -> str:
        """Shortest form Ollama shows (``DisplayShortest``); the tag is always included.

        Default host and ``library`` namespace are dropped together; a non-default namespace on the
        default host keeps just the namespace; any other host shows everything.
        """
        if self.host.lower() != DEFAULT_HOST:
            return str(self)
        if self.namespace.lower() != DEFAULT_NAMESPACE:
            return f"{self.namespace}/{self.model}:{self.tag}"
        return f"{self.model}:{self.tag}"

    def parts(self) -> tuple[str, str, str, str]:
        """``(host, namespace, model, tag)``: the path components under ``manifests/``."""
        return (self.host, self.namespace, self.model, self.tag)

    def key(self) -> tuple[str, ...]:
        """Case-insensitive identity: Ollama treats ``Llama3`` and ``llama3`` as one model."""
        # Parts are ASCII-only (validated), so str.lower() is exactly Go's ASCII case folding.
        return tuple(p.lower() for p in self.parts())


def _cut_last(s: str, sep: str, original: str) -> tuple[str, str] | None:
    """Split at the last ``sep``; ``None`` if absent. A separator with an empty side is invalid.

    Ollama marks such sides ``!MISSING!`` so the name fails validation; we fail straight away.
    """
    i = s.rfind(sep)
    if i < 0:
        return None
    before, after = s[:i], s[i + len(sep) :]
    if not before or not after:
        raise InvalidName(original, f"empty part around {sep!r}")
    return before, after


def parse_name(s: str) -> Name:
    """Parse ``[host/][namespace/]model[:tag]`` and fill in Ollama's defaults.

    Raises :class:`InvalidName` for anything outside the grammar; no trimming or other repair is
    done (Ollama does none either), so ``" llama3"`` is invalid.
    """
    if not isinstance(s, str):
        raise InvalidName(s, f"expected a string, got {type(s).__name__}")
    if not s:
        raise InvalidName(s, "empty name")
    original = s
    host = namespace = ""
    tag = DEFAULT_TAG

    # '/' can never be in a tag, so a ':' after the last '/' separates the tag; an earlier ':' is a
    # host port ("example.com:5000/ns/model").
    if s.rfind(":") > s.rfind("/"):
        cut = _cut_last(s, ":", original)
        assert cut is not None  # rfind(":") >= 0 here
        s, tag = cut

    cut = _cut_last(s, "/", original)
    if cut is None:
        model = s
    else:
        s, model = cut
        cut = _cut_last(s, "/", original)
        if cut is None:
            namespace = s
        else:
            host, namespace = cut
            # Ollama accepts a URL-ish "http(s)://host/..." and keeps only the host; the scheme can
            # only sit here because "//" elsewhere would leave an empty part.
            scheme, sep, rest = host.partition("://")
            if sep:
                if scheme not in _SCHEMES:
                    raise InvalidName(original, f"unsupported scheme {scheme!r}")
                if not rest:
                    # Ollama would silently fill the default host into "http:///ns/m"; refuse it.
                    raise InvalidName(original, "empty host after scheme")
                host = rest

    if host.lower() in _HF_ALIASES:
        host = HF_HOST
    name_host = host or DEFAULT_HOST
    name_namespace = namespace or DEFAULT_NAMESPACE
    # Validate before constructing so the error carries the caller's string, not a half-built Name.
    _validate(name_host, name_namespace, model, tag, original)
    return Name(name_host, name_namespace, model, tag)


def is_valid(s: str) -> bool:
    """Whether :func:`parse_name` would accept ``s``."""
    try:
        parse_name(s)
    except InvalidName:
        return False
    return True


def manifest_path(root: Path, name: Name) -> Path:
    """``root/<host>/<namespace>/<model>/<tag>``, guaranteed to stay inside ``root``.

    The grammar already rules out traversal; this re-checks after resolving symlinks, because a
    link planted inside the store could still point elsewhere. Raises :class:`InvalidName` (not an
    ``assert``, which ``python -O`` would strip) when the result escapes.
    """
    if not isinstance(name, Name):
        raise TypeError(f"expected Name, got {type(name).__name__}")
    parts = name.parts()
    # Re-validate: a Name is validated on construction, but object.__setattr__ can bypass frozen.
    _validate(*parts, name)
    base = Path(root).resolve()
    path = base.joinpath(*parts)
    resolved = path.resolve()
    if resolved == base or not resolved.is_relative_to(base):
        raise InvalidName(name, f"manifest path {resolved} escapes {base}")
    return path
