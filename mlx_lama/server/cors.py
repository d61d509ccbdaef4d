"""Cross-origin requests, decided as Ollama decides them (gin-contrib/cors v1.7.2 as Ollama sets it up).

Any web page the user opens can send requests to localhost:11434; the browser only lets the page
read the answer (or send a JSON body at all, after a preflight) when the server names the page's
origin in `Access-Control-Allow-Origin`. Ollama goes further and refuses outright, with an empty
403, any request whose `Origin` it does not allow, so a hostile page cannot even start a pull or
a delete. The allowed origins are OLLAMA_ORIGINS plus Ollama's local defaults; an entry may hold
one `*`, which matches anything between its prefix and its suffix; `*` alone allows every origin.
A request without `Origin` (curl, SDKs, the CLI) is not a cross-origin request and is never refused
here; nor is one whose `Origin` is the server itself (`http://` + its Host header).
"""

from __future__ import annotations

from collections.abc import Iterable

# Ollama's envconfig.AllowedOrigins(): always allowed, after the user's own.
DEFAULT_ORIGINS: tuple[str, ...] = tuple(
    f"{scheme}://{host}{port}" for host in ("localhost", "127.0.0.1", "0.0.0.0")
    for port in ("", ":*") for scheme in ("http", "https")
) + ("app://*", "file://*", "tauri://*", "vscode-webview://*", "vscode-file://*")

# Request headers a page may send (Ollama's list, the OpenAI SDK's `x-stainless-*` among them),
# plus `X-Api-Key`, the header Anthropic's SDK carries its key in (our API key accepts it).
ALLOW_HEADERS = (
    "Authorization", "Content-Type", "User-Agent", "Accept", "X-Requested-With", "OpenAI-Beta",
    "x-stainless-arch", "x-stainless-async", "x-stainless-custom-poll-interval",
    "x-stainless-helper-method", "x-stainless-lang", "x-stainless-os",
    "x-stainless-package-version", "x-stainless-poll-helper", "x-stainless-retry-count",
    "x-stainless-runtime", "x-stainless-runtime-version", "x-stainless-timeout", "X-Api-Key",
)
ALLOW_METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS")  # cors.DefaultConfig
MAX_AGE_SECONDS = 12 * 3600  # cors.DefaultConfig: browsers may cache a preflight for 12 hours

Header = tuple[bytes, bytes]


def canonical_header(name: str) -> str:
    """Go's http.CanonicalHeaderKey: `x-stainless-os` -> `X-Stainless-Os`."""
    return "-".join(part[:1].upper() + part[1:].lower() for part in name.split("-"))


def _joined(values: Iterable[str]) -> bytes:
    # gin-contrib/cors trims, lower-cases and de-duplicates, then re-cases each entry.
    seen: dict[str, None] = {}
    for value in values:
        seen.setdefault(value.strip().lower(), None)
    return ",".join(canonical_header(v) for v in seen).encode()


class OriginPolicy:
    """Which origins may make cross-origin requests, and the CORS headers their answers carry."""

    def __init__(self, origins: Iterable[str] = ()) -> None:
        everything = [*origins, *DEFAULT_ORIGINS]
        self.allow_all = "*" in everything
        # Exact entries are compared trimmed and lower-cased, wildcard ones as written (as gin does).
        self._exact = frozenset(o.strip().lower() for o in everything if "*" not in o)
        self._wildcards = [tuple(o.split("*", 1)) for o in everything if "*" in o]
        star = [(b"access-control-allow-origin", b"*")]
        self._normal: list[Header] = star if self.allow_all else [(b"vary", b"Origin")]
        self._preflight: list[Header] = [
            (b"access-control-allow-methods", ",".join(ALLOW_METHODS).encode()),
            (b"access-control-allow-headers", _joined(ALLOW_HEADERS)),
            (b"access-control-max-age", str(MAX_AGE_SECONDS).encode()),
        ] + (star if self.allow_all else [(b"vary", b"Origin"), (b"vary", b"Access-Control-Request-Method"),
                                          (b"vary", b"Access-Control-Request-Headers")])

    def allows(self, origin: str) -> bool:
        """Whether `origin` may make cross-origin requests."""
        if self.allow_all or origin in self._exact:
            return True
        return any(origin.startswith(prefix) and origin.endswith(suffix)
                   for prefix, suffix in self._wildcards)

    def _echo(self, origin: str) -> list[Header]:
        return [] if self.allow_all else [(b"access-control-allow-origin", origin.encode("latin-1"))]

    def preflight_headers(self, origin: str) -> list[Header]:
        """Headers of the 204 answer to an allowed origin's OPTIONS preflight."""
        return self._preflight + self._echo(origin)

    def response_headers(self, origin: str) -> list[Header]:
        """Headers added to every other answer to an allowed origin."""
        return self._normal + self._echo(origin)


def is_same_origin(origin: str, host: str) -> bool:
    """An `Origin` naming the server itself (e.g. fetch() from its own page): not cross-origin."""
    return origin in (f"http://{host}", f"https://{host}")
