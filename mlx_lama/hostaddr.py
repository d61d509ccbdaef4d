"""``OLLAMA_HOST``: where the server binds and where the CLI connects.

Reproduces Ollama's ``envconfig.Host()`` (and ``ConnectableHost()``) rule for rule, because users
carry their existing ``OLLAMA_HOST`` over unchanged:

* surrounding spaces and quotes are trimmed;
* ``scheme://`` is optional (default ``http``); an explicit ``http://`` without a port means port 80
  and ``https://`` means 443, anything else 11434 — so ``http://example.com`` is *not* port 11434;
* the bare value ``ollama.com`` means ``https://ollama.com:443``;
* ``host``, ``host:port``, ``:port``, ``[v6]``, ``[v6]:port`` and unbracketed IPv6 are accepted;
  anything after the first ``/`` is a path prefix (for servers behind a reverse proxy);
* an unusable port (not a number, negative, above 65535) falls back to the default port with a
  warning, as Ollama does, instead of failing.
"""

from __future__ import annotations

import ipaddress
import logging
from dataclasses import dataclass

__all__ = ["DEFAULT_HOST", "DEFAULT_PORT", "HostAddr", "parse_host"]

log = logging.getLogger(__name__)

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 11434


@dataclass(frozen=True)
class HostAddr:
    """A parsed ``OLLAMA_HOST``.

    ``host`` is unbracketed (``::1``, not ``[::1]``) and may be ``""`` for ``:port`` (bind to every
    interface, as Go's ``net.Listen`` does); ``path`` is ``""`` or starts with ``/``.
    """

    scheme: str
    host: str
    port: int
    path: str = ""

    def hostport(self) -> str:
        """``host:port`` with IPv6 bracketed (Go's ``net.JoinHostPort``)."""
        return _join_host_port(self.host, self.port)

    def url(self) -> str:
        """Base URL exactly as Ollama's ``Host().String()``, e.g. ``http://127.0.0.1:11434``."""
        return f"{self.scheme}://{self.hostport()}{self.path}"

    def connect_url(self) -> str:
        """Base URL a client can connect to: unspecified bind addresses become loopback.

        Ollama's ``ConnectableHost`` maps ``0.0.0.0`` to ``127.0.0.1`` and ``::`` to ``::1``. We
        also map the empty host of ``:port`` to ``127.0.0.1``: Go's dialer treats an empty host as
        the local machine, but Python HTTP clients reject ``http://:1234``.
        """
        host = self.host
        if host == "":
            host = DEFAULT_HOST
        else:
            ip = _parse_ip(host)
            if ip is not None and ip.is_unspecified:
                host = "127.0.0.1" if ip.version == 4 else "::1"
        return f"{self.scheme}://{_join_host_port(host, self.port)}{self.path}"


def _join_host_port(host: str, port: int) -> str:
    # Go brackets any host containing a colon, IPv6 literal or not.
    if ":" in host:
        return f"[{host}]:{port}"
    return f"{host}:{port}"


def _parse_ip(s: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """Go's ``net.ParseIP``, normalised like ``IP.String()``; ``None`` if ``s`` is no IP literal.

    An IPv4-mapped IPv6 address is an IPv4 address to Go (``::ffff:1.2.3.4`` prints as ``1.2.3.4``).
    """
    # ParseIP takes no zone ("fe80::1%en0"), which Python's ipaddress does accept.
    if "%" in s:
        return None
    try:
        ip = ipaddress.ip_address(s)
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


def _split_host_port(hostport: str) -> tuple[str, str] | None:
    """Go's ``net.SplitHostPort``; ``None`` where Go returns an error."""
    i = hostport.rfind(":")
    if i < 0:
        return None  # missing port
    j = k = 0
    if hostport[0] == "[":
        end = hostport.find("]")
        if end < 0:
            return None  # missing ']'
        if end + 1 != i:
            return None  # missing port, or too many colons after ']'
        host = hostport[1:end]
        j, k = 1, end + 1
    else:
        host = hostport[:i]
        if ":" in host:
            return None  # too many colons (an unbracketed IPv6 address)
    if "[" in hostport[j:] or "]" in hostport[k:]:
        return None
    return host, hostport[i + 1 :]


def _parse_port(port: str) -> int | None:
    """Ollama's check: ``strconv.ParseInt(port, 10, 32)`` and ``0 <= n <= 65535``."""
    body = port[1:] if port[:1] in ("+", "-") else port
    # Python's int() would also take "1_000", " 80" and non-ASCII digits; Go takes none of them.
    if not body or not body.isascii() or not body.isdigit():
        return None
    n = int(port)
    if not 0 <= n <= 65535:
        return None
    return n


def parse_host(value: str | None) -> HostAddr:
    """Parse an ``OLLAMA_HOST`` value; ``None`` or ``""`` gives ``http://127.0.0.1:11434``."""
    # envconfig.Var trims spaces, then quotes; Host() trims spaces once more.
    s = (value or "").strip().strip("\"'").strip()
    default_port = DEFAULT_PORT

    scheme, sep, hostport = s.partition("://")
    if not sep:
        scheme, hostport = "http", s
        if s == "ollama.com":
            # Ollama's one special case: the bare hosted service means its HTTPS endpoint.
            scheme, hostport = "https", "ollama.com:443"
    elif scheme == "http":
        default_port = 80
    elif scheme == "https":
        default_port = 443
    # Ollama compares the scheme case-sensitively ("HTTP://h" keeps port 11434, as above); the
    # scheme itself is case-insensitive, so it is stored lower-cased. Go would print "//h:11434"
    # for an empty scheme; we say http, the only scheme a bare address can mean.
    scheme = scheme.lower() or "http"

    hostport, slash, path = hostport.partition("/")
    split = _split_host_port(hostport)
    if split is None:
        host, port_text = DEFAULT_HOST, str(default_port)
        ip = _parse_ip(hostport.strip("[]"))
        if ip is not None:
            host = str(ip)
        elif hostport:
            host = hostport
    else:
        host, port_text = split

    port = _parse_port(port_text)
    if port is None:
        log.warning("invalid port %r in OLLAMA_HOST, using default %d", port_text, default_port)
        port = default_port

    # Go keeps the path without its leading '/' and url.URL.String() adds one back; "/" alone and a
    # missing path both print nothing.
    return HostAddr(scheme=scheme, host=host, port=port, path=f"/{path}" if path else "")
