"""Copies share bytes; deleting frees exactly the blobs no other name uses (measured on disk)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import ollama


def blob_bytes(models_dir: Path) -> int:
    return sum(p.stat().st_size for p in (models_dir / "blobs").glob("sha256-*"))


def manifest_digests(models_dir: Path) -> dict[str, set[str]]:
    """Blob digests each stored name references."""
    out = {}
    for path in (models_dir / "manifests").glob("*/*/*/*"):
        data = json.loads(path.read_bytes())
        out[f"{path.parent.name}:{path.name}"] = {data["config"]["digest"]} | {
            layer["digest"] for layer in data["layers"]}
    return out


def test_copy_is_free_and_delete_frees_unshared_blobs(make_server: Callable[..., Any]) -> None:
    server = make_server()
    root: Path = server.config.models_dir
    c = ollama.Client(host=server.url)
    before = blob_bytes(root)

    c.copy("tiny-llama:q4", "q4-copy:latest")
    assert blob_bytes(root) == before  # a second name, no second copy of any byte
    c.delete("tiny-llama:q4")
    assert blob_bytes(root) == before  # the copy still uses every blob

    refs = manifest_digests(root)
    others = set().union(*(d for name, d in refs.items() if name != "q4-copy:latest"))
    unique = refs["q4-copy:latest"] - others
    freed = sum((root / "blobs" / d.replace(":", "-")).stat().st_size for d in unique)
    assert unique and freed > 0
    c.delete("q4-copy:latest")
    assert blob_bytes(root) == before - freed  # exactly the unshared blobs went
    live = {hashlib.sha256(m.read_bytes()).hexdigest() for m in (root / "manifests").glob("*/*/*/*")}
    assert {p.name for p in (root / "runs").glob("*")} <= live  # no stale model directories
    # What the other models need is intact: they still answer.
    assert c.generate(model="tiny-llama:latest", prompt="hi", options={"num_predict": 2}).eval_count == 2

