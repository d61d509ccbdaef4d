"""The gate every request passes first: cross-origin rules, the Host check, the optional API key.

In Ollama's order: CORS (server/cors.py) refuses disallowed origins and answers preflights; then,
only while the server listens on a loopback address, the Host header must name this machine
(Ollama's allowedHostsMiddleware, against DNS rebinding: a hostile page whose own domain resolves
to 127.0.0.1 is same-origin to the browser, but its requests carry its domain as Host); then,
beyond Ollama, a bearer key when one is configured. Refusals are answered here, before routing.
"""

from __future__ import annotations

import functools
import hmac
import ipaddress
import socket
from collections.abc import Callable
from typing import Any

import orjson
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from mlx_lama.server.cors import Header, OriginPolicy, is_same_origin

# Ollama's allowedHost(): names that always mean this machine.
LOCAL_SUFFIXES = (".localhost", ".local", ".internal")
# Reachable without the key: the health check and version probe clients make before anything else.
OPEN_PATHS = frozenset({"/", "/api/version"})

IP = ipaddress.IPv4Address | ipaddress.IPv6Address
# Go's netip.Addr.IsPrivate: RFC 1918 and RFC 4193 only (Python's is_private is much wider).
_PRIVATE = {4: [ipaddress.ip_network(n) for n in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16")],
            6: [ipaddress.ip_network("fc00::/7")]}


def _parse_ip(text: str) -> IP | None:
    try:
        ip = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


def _go_private(ip: IP) -> bool:
    return any(ip in net for net in _PRIVATE[ip.version])


@functools.lru_cache(maxsize=256)
def _is_local_address(ip: IP) -> bool:
    """Whether `ip` belongs to one of this machine's interfaces (binding to it only works if so)."""
    family = socket.AF_INET if ip.version == 4 else socket.AF_INET6
    try:
        with socket.socket(family, socket.SOCK_DGRAM) as s:
            s.bind((str(ip), 0))
        return True
    except OSError:
        return False


def _split_host(host: str) -> str:
    """Go's net.SplitHostPort host part, or the whole value when it has no port."""
    if host.startswith("["):
        end = host.find("]")
        if end > 0 and host[end + 1:].startswith(":") and ":" not in host[end + 2:]:
            return host[1:end]
        return host
    name, sep, _ = host.rpartition(":")
    return name if sep and ":" not in name else host


def allowed_name(name: str) -> bool:
    """Ollama's allowedHost: localhost, this machine's hostname, or a local-only TLD."""
    name = name.lower()
    if name in ("", "localhost") or name == socket.gethostname().lower():
        return True
    return name.endswith(LOCAL_SUFFIXES)


def host_verdict(host_header: str) -> str:
    """`ip` or `name` for a Host that names this machine (how it did matters for OPTIONS), else ``."""
    host = _split_host(host_header)
    ip = _parse_ip(host)
    if ip is not None and (ip.is_loopback or _go_private(ip) or ip.is_unspecified or _is_local_address(ip)):
        return "ip"
    return "name" if allowed_name(host) else ""


def listens_on_loopback(bind_host: str) -> bool:
    """Whether the server's listening address is a loopback one (the Host check applies then)."""
    if not bind_host:
        return False  # `:port` listens on every interface
    ip = _parse_ip(bind_host)
    if ip is None:
        try:  # a name binds to the first address it resolves to, as Go's net.Listen does
            ip = _parse_ip(str(socket.getaddrinfo(bind_host, None)[0][4][0]))
        except (OSError, IndexError):
            return False
    return ip is not None and ip.is_loopback


def _header(scope: Scope, name: bytes) -> bytes | None:
    for key, value in scope["headers"]:
        if key == name:
            return bytes(value)
    return None


def _key_of(scope: Scope) -> bytes | None:
    """The key a request presents: `Authorization: Bearer <key>`, or Anthropic's `x-api-key`."""
    auth = _header(scope, b"authorization")
    if auth is not None:
        scheme, _, token = auth.strip().partition(b" ")
        if scheme.lower() == b"bearer":
            return token.strip()
    return _header(scope, b"x-api-key")


def unauthorized_body(path: str, message: str) -> dict[str, Any]:
    """The 401 body in the dialect of `path`: Anthropic's, OpenAI's envelope, or Ollama's."""
    if path.startswith("/v1/messages"):
        return {"type": "error", "error": {"type": "authentication_error", "message": message}}
    if path.startswith("/v1/"):
        return {"error": {"message": message, "type": "invalid_request_error", "param": None,
                          "code": "invalid_api_key"}}
    return {"error": message}


class Secret:
    """A key that never shows in a repr (Starlette prints middleware arguments in its reprs)."""

    __slots__ = ("value",)

    def __init__(self, value: str) -> None:
        self.value = value.encode()

    def __repr__(self) -> str:
        return "Secret(***)"


class Guard:
    """ASGI middleware: CORS, the Host check (when `check_host`) and the API key (when set)."""

    def __init__(self, app: ASGIApp, *, origins: OriginPolicy, check_host: bool,
                 api_key: Secret | None) -> None:
        self.app = app
        self.origins = origins
        self.check_host = check_host
        self.api_key = api_key.value if api_key is not None else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        method = scope["method"]
        host = (_header(scope, b"host") or b"").decode("latin-1")
        added: list[Header] = []
        raw_origin = _header(scope, b"origin")
        origin = raw_origin.decode("latin-1") if raw_origin else ""
        if origin and not is_same_origin(origin, host):
            if not self.origins.allows(origin):
                return await _answer(send, 403)
            if method == "OPTIONS":
                return await _answer(send, 204, self.origins.preflight_headers(origin))
            added = self.origins.response_headers(origin)
        if self.check_host:
            verdict = host_verdict(host)
            if not verdict:
                return await _answer(send, 403, added)
            if verdict == "name" and method == "OPTIONS":
                return await _answer(send, 204, added)
        if self.api_key is not None and method != "OPTIONS" and not (
                method in ("GET", "HEAD") and scope["path"] in OPEN_PATHS):
            presented = _key_of(scope)
            if presented is None or not hmac.compare_digest(presented, self.api_key):
                message = ("unauthorized: this server requires an API key (Authorization: Bearer <key>)"
                           if presented is None else "unauthorized: invalid API key")
                body = orjson.dumps(unauthorized_body(scope["path"], message))
                return await _answer(send, 401, added + [
                    (b"content-type", b"application/json; charset=utf-8"),
                    (b"www-authenticate", b"Bearer")], body)
        await self.app(scope, receive, _adding(send, added) if added else send)


async def _answer(send: Send, status: int, headers: list[Header] | None = None, body: bytes = b"") -> None:
    await send({"type": "http.response.start", "status": status,
                "headers": [*(headers or []), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


def _adding(send: Send, headers: list[Header]) -> Callable[[Message], Any]:
    async def wrapped(message: Message) -> None:
        if message["type"] == "http.response.start":
            message = {**message, "headers": [*message.get("headers", []), *headers]}
        await send(message)
    return wrapped
