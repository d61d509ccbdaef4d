"""Manifests and layers: the on-disk format of a stored model (Ollama's, plus one media type).

A model is a manifest (JSON, Docker v2 schema as Ollama writes it) listing content-addressed
blobs. Ollama's own layer types carry the Modelfile parts (template, system, params, messages,
license); each file of the MLX model directory is a layer of type `FILE` whose `name` is its
path inside the directory.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
CONFIG = "application/vnd.docker.container.image.v1+json"
FILE = "application/vnd.mlx-lama.file"
TEMPLATE = "application/vnd.ollama.image.template"
SYSTEM = "application/vnd.ollama.image.system"
PARAMS = "application/vnd.ollama.image.params"
MESSAGES = "application/vnd.ollama.image.messages"
LICENSE = "application/vnd.ollama.image.license"

DIGEST_RE = re.compile(r"^sha256[:-]([0-9a-fA-F]{64})$")


def normalize_digest(digest: str) -> str | None:
    """`sha256:<hex>` (lower case) for either of Ollama's spellings; None if malformed."""
    m = DIGEST_RE.match(digest)
    return f"sha256:{m.group(1).lower()}" if m else None


@dataclass(frozen=True)
class Layer:
    """One blob of a model."""

    media_type: str
    digest: str  # sha256:<hex>
    size: int
    name: str = ""  # FILE layers: the path inside the model directory

    def to_json(self) -> dict[str, Any]:
        """The manifest entry."""
        out: dict[str, Any] = {"mediaType": self.media_type, "digest": self.digest, "size": self.size}
        if self.name:
            out["name"] = self.name
        return out

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Layer:
        """Parse a manifest entry."""
        return cls(data["mediaType"], data["digest"], int(data["size"]), data.get("name", ""))


@dataclass
class Manifest:
    """A model's manifest: its config blob and its layers."""

    config: Layer
    layers: list[Layer] = field(default_factory=list)

    def to_bytes(self) -> bytes:
        """Serialised form; its sha256 is the model's digest (the ID `ollama list` shows)."""
        return json.dumps({
            "schemaVersion": 2, "mediaType": MANIFEST, "config": self.config.to_json(),
            "layers": [layer.to_json() for layer in self.layers],
        }, indent=None, separators=(",", ":")).encode()

    @classmethod
    def from_bytes(cls, raw: bytes) -> Manifest:
        """Parse a manifest file."""
        data = json.loads(raw)
        return cls(Layer.from_json(data["config"]), [Layer.from_json(x) for x in data.get("layers", [])])

    def files(self) -> dict[str, Layer]:
        """Model-directory files by relative path."""
        return {layer.name: layer for layer in self.layers if layer.media_type == FILE}

    def layer(self, media_type: str) -> Layer | None:
        """The (single) layer of a Modelfile part, if present."""
        return next((x for x in self.layers if x.media_type == media_type), None)

    def digests(self) -> set[str]:
        """Every blob this manifest references."""
        return {self.config.digest, *(x.digest for x in self.layers)}

    @property
    def size(self) -> int:
        """Bytes of all blobs, as `ollama list` reports it."""
        return self.config.size + sum(x.size for x in self.layers)
