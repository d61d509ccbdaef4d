"""A real mlx-lama server on a free 127.0.0.1 port, in a background thread, for tests."""

from __future__ import annotations

import socket
import threading
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import httpx
import uvicorn

from mlx_lama.config import Config
from mlx_lama.hostaddr import parse_host
from mlx_lama.names import parse_name
from mlx_lama.server.app import _Server, build
from mlx_lama.store.create import CreateSpec, create
from mlx_lama.store.store import Store


def free_port() -> int:
    """A port nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def import_model(models_dir: Path, name: str, model_dir: Path) -> None:
    """Store a local MLX model directory under `name`, through the same code as /api/create."""
    store = Store(models_dir)
    files = {}
    for path in sorted(model_dir.rglob("*")):
        if path.is_file() and not path.name.startswith("."):
            files[path.relative_to(model_dir).as_posix()] = store.put_file(path).digest
    for _ in create(store, CreateSpec(name=parse_name(name), files=files)):
        pass


@dataclass
class LiveServer:
    """A running server; `url` is its base URL, `models` maps roles to model names."""

    config: Config
    models: dict[str, str] = field(default_factory=dict)
    url: str = ""
    backends: dict[str, Any] | None = None  # replaces the production backends of these names

    def start(self) -> LiveServer:
        """Bind a free port and wait until `/` answers."""
        port = free_port()
        self.config = replace(self.config, host=parse_host(f"127.0.0.1:{port}"))
        self.app, self.scheduler = build(self.config, self.backends)
        self._server = _Server(uvicorn.Config(self.app, host="127.0.0.1", port=port, log_level="warning",
                                              timeout_graceful_shutdown=10),
                               self.scheduler, self.config.shutdown_grace)
        self._thread = threading.Thread(target=self._server.run, name="uvicorn", daemon=True)
        self._thread.start()
        self.url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if httpx.get(self.url + "/", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                time.sleep(0.05)
        raise RuntimeError("test server did not start")

    def stop(self) -> None:
        """Shut down gracefully (unloading models) and join the thread."""
        self._server.should_exit = True
        self._thread.join(timeout=60)
