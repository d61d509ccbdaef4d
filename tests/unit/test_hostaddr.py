"""OLLAMA_HOST parsing, checked against Ollama's envconfig TestHost / TestConnectableHost tables."""

from __future__ import annotations

import logging

import pytest

from mlx_lama.hostaddr import HostAddr, parse_host

# Ollama's TestHost (envconfig/config_test.go), verbatim, plus our additions below the marker.
HOST_URL = [
    ("", "http://127.0.0.1:11434", "empty"),
    ("1.2.3.4", "http://1.2.3.4:11434", "only-address"),
    (":1234", "http://:1234", "only-port"),
    ("1.2.3.4:1234", "http://1.2.3.4:1234", "address-and-port"),
    ("example.com", "http://example.com:11434", "hostname"),
    ("example.com:1234", "http://example.com:1234", "hostname-and-port"),
    (":0", "http://:0", "zero-port"),
    (":66000", "http://:11434", "too-large-port"),
    (":-1", "http://:11434", "too-small-port"),
    ("[::1]", "http://[::1]:11434", "ipv6-localhost"),
    ("[::]", "http://[::]:11434", "ipv6-world-open"),
    ("::1", "http://[::1]:11434", "ipv6-no-brackets"),
    ("[::1]:1337", "http://[::1]:1337", "ipv6-and-port"),
    (" 1.2.3.4 ", "http://1.2.3.4:11434", "extra-space"),
    ('"1.2.3.4"', "http://1.2.3.4:11434", "extra-quotes"),
    (' " 1.2.3.4 " ', "http://1.2.3.4:11434", "extra-space-and-quotes"),
    ("'1.2.3.4'", "http://1.2.3.4:11434", "extra-single-quotes"),
    ("http://1.2.3.4", "http://1.2.3.4:80", "http"),
    ("http://1.2.3.4:4321", "http://1.2.3.4:4321", "http-port"),
    ("https://1.2.3.4", "https://1.2.3.4:443", "https"),
    ("https://1.2.3.4:4321", "https://1.2.3.4:4321", "https-port"),
    ("https://example.com/ollama", "https://example.com:443/ollama", "proxy-path"),
    ("ollama.com", "https://ollama.com:443", "ollama-com"),
    # --- additions ---
    ("0.0.0.0", "http://0.0.0.0:11434", "bind-all-v4"),
    ("0.0.0.0:8080", "http://0.0.0.0:8080", "bind-all-v4-port"),
    ("localhost", "http://localhost:11434", "localhost"),
    ("localhost:11435", "http://localhost:11435", "localhost-port"),
    ("http://example.com", "http://example.com:80", "http-hostname-port-80"),
    ("http://example.com/", "http://example.com:80", "trailing-slash"),
    ("http://example.com:8080/a/b/", "http://example.com:8080/a/b/", "nested-path"),
    ("example.com/ollama", "http://example.com:11434/ollama", "path-without-scheme"),
    ("http://", "http://127.0.0.1:80", "scheme-only"),
    ("http://[::1]", "http://[::1]:80", "http-ipv6"),
    ("https://[::1]:8443/x", "https://[::1]:8443/x", "https-ipv6-port-path"),
    ("[::ffff:1.2.3.4]", "http://1.2.3.4:11434", "ipv4-mapped-printed-as-ipv4"),
    ("0:0:0:0:0:0:0:1", "http://[::1]:11434", "ipv6-normalised"),
    ("[2001:DB8::1]", "http://[2001:db8::1]:11434", "ipv6-lower-cased"),
    ("example.com:http", "http://example.com:11434", "named-port-refused"),
    ("example.com:", "http://example.com:11434", "empty-port"),
    ("example.com:+80", "http://example.com:80", "plus-signed-port"),
    ("example.com:1_000", "http://example.com:11434", "underscore-port"),
    ("example.com:99999999999", "http://example.com:11434", "huge-port"),
    ("http://example.com:abc", "http://example.com:80", "bad-port-http-default"),
    ("https://example.com:70000", "https://example.com:443", "bad-port-https-default"),
    ("ftp://example.com", "ftp://example.com:11434", "other-scheme-default-port"),
    ("HTTP://example.com", "http://example.com:11434", "scheme-case-ollama-port-rule"),
    ("OLLAMA.com", "http://OLLAMA.com:11434", "ollama-com-case-sensitive"),
    ("http://ollama.com", "http://ollama.com:80", "ollama-com-with-scheme"),
    ("\t127.0.0.1:9000\n", "http://127.0.0.1:9000", "tabs-newlines"),
]


@pytest.mark.parametrize(("value", "want"), [(v, w) for v, w, _ in HOST_URL], ids=[i for *_, i in HOST_URL])
def test_url(value: str, want: str) -> None:
    assert parse_host(value).url() == want


def test_none_is_default() -> None:
    addr = parse_host(None)
    assert addr == HostAddr(scheme="http", host="127.0.0.1", port=11434, path="")
    assert addr.url() == "http://127.0.0.1:11434"
    assert addr.connect_url() == "http://127.0.0.1:11434"


# Ollama's TestConnectableHost, verbatim, plus our additions below the marker.
CONNECT_URL = [
    ("", "http://127.0.0.1:11434", "empty"),
    ("127.0.0.1", "http://127.0.0.1:11434", "localhost"),
    ("127.0.0.1:1234", "http://127.0.0.1:1234", "localhost-and-port"),
    ("0.0.0.0", "http://127.0.0.1:11434", "ipv4-unspecified"),
    ("0.0.0.0:1234", "http://127.0.0.1:1234", "ipv4-unspecified-port"),
    ("[::]", "http://[::1]:11434", "ipv6-unspecified"),
    ("[::]:1234", "http://[::1]:1234", "ipv6-unspecified-port"),
    ("[::1]", "http://[::1]:11434", "ipv6-localhost"),
    ("[::1]:1234", "http://[::1]:1234", "ipv6-localhost-port"),
    ("192.168.1.5", "http://192.168.1.5:11434", "specific-address"),
    ("192.168.1.5:8080", "http://192.168.1.5:8080", "specific-address-port"),
    ("example.com", "http://example.com:11434", "hostname"),
    ("example.com:1234", "http://example.com:1234", "hostname-and-port"),
    ("https://0.0.0.0:4321", "https://127.0.0.1:4321", "https-unspecified-port"),
    # --- additions ---
    (":1234", "http://127.0.0.1:1234", "empty-host-is-loopback"),
    ("::", "http://[::1]:11434", "ipv6-unspecified-unbracketed"),
    ("[::ffff:0.0.0.0]:80", "http://127.0.0.1:80", "ipv4-mapped-unspecified"),
    ("http://0.0.0.0/proxy", "http://127.0.0.1:80/proxy", "path-kept"),
]


@pytest.mark.parametrize(
    ("value", "want"), [(v, w) for v, w, _ in CONNECT_URL], ids=[i for *_, i in CONNECT_URL]
)
def test_connect_url(value: str, want: str) -> None:
    assert parse_host(value).connect_url() == want


FIELDS = [
    ("", ("http", "127.0.0.1", 11434, ""), "default"),
    (":1234", ("http", "", 1234, ""), "empty-host-binds-all"),
    ("[::1]:1337", ("http", "::1", 1337, ""), "ipv6-unbracketed-field"),
    ("https://example.com/ollama", ("https", "example.com", 443, "/ollama"), "path-with-slash"),
    ("0.0.0.0:11434", ("http", "0.0.0.0", 11434, ""), "bind-all"),
]


@pytest.mark.parametrize(("value", "want"), [(v, w) for v, w, _ in FIELDS], ids=[i for *_, i in FIELDS])
def test_fields(value: str, want: tuple[str, str, int, str]) -> None:
    addr = parse_host(value)
    assert (addr.scheme, addr.host, addr.port, addr.path) == want


@pytest.mark.parametrize(
    ("value", "want"),
    [("[::1]:1337", "[::1]:1337"), ("1.2.3.4", "1.2.3.4:11434"), (":80", ":80")],
    ids=["ipv6", "ipv4", "empty-host"],
)
def test_hostport(value: str, want: str) -> None:
    assert parse_host(value).hostport() == want


@pytest.mark.parametrize(
    ("value", "warns"),
    [(":66000", True), ("example.com:abc", True), (":-1", True), ("example.com:80", False), ("", False)],
    ids=["too-large", "not-a-number", "negative", "good-port", "default"],
)
def test_invalid_port_warns(value: str, warns: bool, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="mlx_lama.hostaddr"):
        parse_host(value)
    assert any("invalid port" in r.getMessage() for r in caplog.records) is warns


def test_frozen() -> None:
    addr = parse_host(None)
    with pytest.raises(AttributeError):
        addr.port = 1  # type: ignore[misc]
