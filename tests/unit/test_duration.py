"""Go durations and keep_alive, checked against Go's own time_test.go tables and Ollama's rules."""

from __future__ import annotations

import math

import pytest

from mlx_lama.api.duration import (
    DEFAULT_KEEP_ALIVE,
    FOREVER,
    DurationError,
    format_go_duration,
    format_go_duration_ns,
    parse_go_duration,
    parse_go_duration_ns,
    parse_keep_alive,
    parse_keep_alive_env,
)

NS = 1
US = 1_000
MS = 1_000_000
S = 1_000_000_000
M = 60 * S
H = 60 * M
MAX = (1 << 63) - 1
MIN = -(1 << 63)

# Go's parseDurationTests (src/time/time_test.go) plus the forms Ollama users type.
PARSE_OK = [
    ("0", 0, "zero"),
    ("5s", 5 * S, "seconds"),
    ("30s", 30 * S, "thirty-seconds"),
    ("1478s", 1478 * S, "many-seconds"),
    ("-5s", -5 * S, "negative"),
    ("+5s", 5 * S, "plus-sign"),
    ("-0", 0, "minus-zero"),
    ("+0", 0, "plus-zero"),
    ("5.0s", 5 * S, "decimal-zero"),
    ("5.6s", 5 * S + 600 * MS, "decimal"),
    ("5.s", 5 * S, "trailing-point"),
    (".5s", 500 * MS, "leading-point"),
    ("1.0s", 1 * S, "one-point-zero"),
    ("1.00s", 1 * S, "one-point-zero-zero"),
    ("1.004s", 1 * S + 4 * MS, "millis-fraction"),
    ("1.0040s", 1 * S + 4 * MS, "millis-fraction-trailing-zero"),
    ("100.00100s", 100 * S + 1 * MS, "hundred-point"),
    ("10ns", 10 * NS, "ns"),
    ("11us", 11 * US, "us"),
    ("12\u00b5s", 12 * US, "micro-sign"),
    ("12\u03bcs", 12 * US, "greek-mu"),
    ("13ms", 13 * MS, "ms"),
    ("14s", 14 * S, "s"),
    ("15m", 15 * M, "m"),
    ("16h", 16 * H, "h"),
    ("3h30m", 3 * H + 30 * M, "h-m"),
    ("10.5s4m", 4 * M + 10 * S + 500 * MS, "units-any-order"),
    ("-2m3.4s", -(2 * M + 3 * S + 400 * MS), "negative-composite"),
    ("1h2m3s4ms5us6ns", H + 2 * M + 3 * S + 4 * MS + 5 * US + 6 * NS, "every-unit"),
    ("39h9m14.425s", 39 * H + 9 * M + 14 * S + 425 * MS, "composite-fraction"),
    ("52763797000ns", 52763797000 * NS, "large-ns"),
    ("0.3333333333333333333h", 20 * M, "long-fraction"),
    ("9007199254740993ns", (1 << 53) + 1, "beyond-float53"),
    ("9223372036854775807ns", MAX, "max-int64-ns"),
    ("9223372036854775.807us", MAX, "max-int64-us"),
    ("9223372036s854ms775us807ns", MAX, "max-int64-composite"),
    ("-9223372036854775808ns", MIN, "min-int64-ns"),
    ("-9223372036854775.808us", MIN, "min-int64-us"),
    ("-9223372036s854ms775us808ns", MIN, "min-int64-composite"),
    ("-2562047h47m16.854775808s", MIN, "min-round-trip"),
    ("0.100000000000000000000h", 6 * M, "huge-fraction-string"),
    ("0.830103483285477580700h", 49 * M + 48 * S + 372539827 * NS, "fraction-overflow-check"),
    ("300ms", 300 * MS, "ollama-300ms"),
    ("-1.5h", -(H + 30 * M), "ollama-neg-1.5h"),
    ("1h30m", H + 30 * M, "ollama-1h30m"),
    ("2h45m30.5s", 2 * H + 45 * M + 30 * S + 500 * MS, "ollama-2h45m30.5s"),
    ("5m", 5 * M, "ollama-default-5m"),
    ("24h", 24 * H, "ollama-24h"),
    ("-1m", -M, "ollama-neg-1m"),
    ("2562047h47m16.854775807s", MAX, "max-round-trip"),
    # Go sums in uint64: two terms of exactly 2**63 wrap to 0 and are accepted. Kept on purpose.
    ("9223372036854775808ns9223372036854775808ns", 0, "go-uint64-wraparound-quirk"),
]


@pytest.mark.parametrize(("text", "want"), [(t, w) for t, w, _ in PARSE_OK], ids=[i for *_, i in PARSE_OK])
def test_parse_go_duration_ok(text: str, want: int) -> None:
    assert parse_go_duration_ns(text) == want
    assert parse_go_duration(text) == want / S


PARSE_ERR = [
    ("", 'time: invalid duration ""', "empty"),
    ("3", 'time: missing unit in duration "3"', "bare-number"),
    ("-1", 'time: missing unit in duration "-1"', "ollama-minus-one"),
    ("3600", 'time: missing unit in duration "3600"', "bare-seconds"),
    ("00", 'time: missing unit in duration "00"', "double-zero"),
    ("0.0", 'time: missing unit in duration "0.0"', "zero-point-zero"),
    ("1h30", 'time: missing unit in duration "1h30"', "missing-trailing-unit"),
    ("1..5s", 'time: missing unit in duration "1..5s"', "double-point"),
    ("-", 'time: invalid duration "-"', "only-minus"),
    ("+", 'time: invalid duration "+"', "only-plus"),
    ("s", 'time: invalid duration "s"', "only-unit"),
    (".", 'time: invalid duration "."', "only-point"),
    ("-.", 'time: invalid duration "-."', "minus-point"),
    (".s", 'time: invalid duration ".s"', "point-unit"),
    ("+.s", 'time: invalid duration "+.s"', "plus-point-unit"),
    ("abc", 'time: invalid duration "abc"', "letters"),
    ("--1s", 'time: invalid duration "--1s"', "double-sign"),
    (" 5m", 'time: invalid duration " 5m"', "leading-space"),
    ("\u0663s", 'time: invalid duration "\\xd9\\xa3s"', "arabic-digit"),
    ("\ufffd", 'time: invalid duration "\\xef\\xbf\\xbd"', "replacement-char"),
    (
        "\ufffd hello \ufffd world",
        'time: invalid duration "\\xef\\xbf\\xbd hello \\xef\\xbf\\xbd world"',
        "replacement-chars",
    ),
    ('"5m"', 'time: invalid duration "\\"5m\\""', "quotes-escaped"),
    ("1d", 'time: unknown unit "d" in duration "1d"', "days"),
    ("1x", 'time: unknown unit "x" in duration "1x"', "unknown-x"),
    ("5m ", 'time: unknown unit "m " in duration "5m "', "trailing-space-in-unit"),
    ("1h 30m", 'time: unknown unit "h " in duration "1h 30m"', "inner-space"),
    ("1e3s", 'time: unknown unit "e" in duration "1e3s"', "exponent"),
    ("1S", 'time: unknown unit "S" in duration "1S"', "upper-case-unit"),
    ("1sec", 'time: unknown unit "sec" in duration "1sec"', "long-unit"),
    ("5\u00b5x", 'time: unknown unit "\\xc2\\xb5x" in duration "5\\xc2\\xb5x"', "non-ascii-unit"),
    ("1s\n", 'time: unknown unit "s\\x0a" in duration "1s\\x0a"', "control-char"),
    ("1\\s", 'time: unknown unit "\\\\s" in duration "1\\\\s"', "backslash"),
    ("9223372036854775810ns", 'time: invalid duration "9223372036854775810ns"', "overflow-ns"),
    ("9223372036854775808ns", 'time: invalid duration "9223372036854775808ns"', "overflow-by-one"),
    ("-9223372036854775809ns", 'time: invalid duration "-9223372036854775809ns"', "negative-overflow"),
    ("9223372036854776us", 'time: invalid duration "9223372036854776us"', "overflow-us"),
    ("3000000h", 'time: invalid duration "3000000h"', "overflow-h"),
    ("9223372036854775.808us", 'time: invalid duration "9223372036854775.808us"', "overflow-fraction"),
    ("9223372036854ms775us808ns", 'time: invalid duration "9223372036854ms775us808ns"', "overflow-sum"),
    ("99999999999999999999s", 'time: invalid duration "99999999999999999999s"', "leading-int-overflow"),
]


@pytest.mark.parametrize(
    ("text", "message"), [(t, m) for t, m, _ in PARSE_ERR], ids=[i for *_, i in PARSE_ERR]
)
def test_parse_go_duration_error(text: str, message: str) -> None:
    with pytest.raises(DurationError) as info:
        parse_go_duration(text)
    assert str(info.value) == message
    assert isinstance(info.value, ValueError)


KEEP_ALIVE = [
    (None, None, "unset"),
    (0, 0.0, "int-zero"),
    (0.0, 0.0, "float-zero"),
    (300, 300.0, "int-seconds"),
    (1.5, 1.5, "float-seconds"),
    (3600, 3600.0, "hour-in-seconds"),
    (-1, FOREVER, "int-minus-one"),
    (-0.5, FOREVER, "negative-float"),
    (-1e300, FOREVER, "huge-negative"),
    (1e-10, 0.0, "truncated-to-whole-ns"),
    (1e10, FOREVER, "beyond-int64-ns"),
    (10**400, FOREVER, "beyond-float"),
    (-(10**400), FOREVER, "negative-beyond-float"),
    (math.inf, FOREVER, "inf"),
    (-math.inf, FOREVER, "neg-inf"),
    ("5m", 300.0, "str-5m"),
    ("0", 0.0, "str-zero"),
    ("0s", 0.0, "str-0s"),
    ("300ms", 0.3, "str-ms"),
    ("24h", 86400.0, "str-24h"),
    ("-1m", FOREVER, "str-negative"),
    ("-1ns", FOREVER, "str-negative-ns"),
    ("-0", 0.0, "str-minus-zero-is-zero"),
    ("1h30m", 5400.0, "str-composite"),
]


@pytest.mark.parametrize(
    ("value", "want"), [(v, w) for v, w, _ in KEEP_ALIVE], ids=[i for *_, i in KEEP_ALIVE]
)
def test_parse_keep_alive(value: object, want: float | None) -> None:
    assert parse_keep_alive(value) == want


KEEP_ALIVE_ERR = [
    ("-1", 'time: missing unit in duration "-1"', "str-minus-one"),
    ("3600", 'time: missing unit in duration "3600"', "str-bare-seconds"),
    ("", 'time: invalid duration ""', "str-empty"),
    ("abc", 'time: invalid duration "abc"', "str-letters"),
    ("1x", 'time: unknown unit "x" in duration "1x"', "str-unknown-unit"),
    ("forever", 'time: invalid duration "forever"', "str-forever"),
    (True, "Unsupported type: 'bool'", "bool-true"),
    (False, "Unsupported type: 'bool'", "bool-false"),
    ([], "Unsupported type: '[]interface {}'", "list"),
    (["5m"], "Unsupported type: '[]interface {}'", "list-of-str"),
    ({}, "Unsupported type: 'map[string]interface {}'", "dict"),
    ({"seconds": 5}, "Unsupported type: 'map[string]interface {}'", "dict-with-key"),
    (math.nan, "invalid duration: NaN", "nan"),
]


@pytest.mark.parametrize(
    ("value", "message"), [(v, m) for v, m, _ in KEEP_ALIVE_ERR], ids=[i for *_, i in KEEP_ALIVE_ERR]
)
def test_parse_keep_alive_error(value: object, message: str) -> None:
    with pytest.raises(DurationError) as info:
        parse_keep_alive(value)
    assert str(info.value) == message


KEEP_ALIVE_ENV = [
    ("5m", 300.0, "duration"),
    ("10m", 600.0, "duration-10m"),
    ("0", 0.0, "zero"),
    ("0s", 0.0, "zero-seconds"),
    ("3600", 3600.0, "integer-seconds"),
    ("+60", 60.0, "plus-integer"),
    ("-1", FOREVER, "minus-one"),
    ("-1h", FOREVER, "negative-duration"),
    ("1.5h", 5400.0, "fraction"),
    (" 24h ", 86400.0, "spaces"),
    ('"24h"', 86400.0, "double-quotes"),
    ("'30s'", 30.0, "single-quotes"),
    (" \"-1\" ", FOREVER, "spaces-and-quotes"),
    ("9223372036", 9223372036.0, "largest-exact-seconds"),
    ("9223372037", FOREVER, "seconds-beyond-int64-ns"),
    ("-9223372036854775808", FOREVER, "min-int64-seconds"),
]


@pytest.mark.parametrize(
    ("value", "want"), [(v, w) for v, w, _ in KEEP_ALIVE_ENV], ids=[i for *_, i in KEEP_ALIVE_ENV]
)
def test_parse_keep_alive_env(value: str, want: float) -> None:
    assert parse_keep_alive_env(value) == want


KEEP_ALIVE_ENV_ERR = [
    ("", 'time: invalid duration ""', "empty"),
    ("   ", 'time: invalid duration ""', "blank"),
    ("abc", 'time: invalid duration "abc"', "letters"),
    ("5x", 'time: unknown unit "x" in duration "5x"', "unknown-unit"),
    ("1.5", 'time: missing unit in duration "1.5"', "float-seconds-not-accepted"),
    ("1_000", 'time: unknown unit "_" in duration "1_000"', "underscore-not-go-int"),
    ("\u0663", 'time: invalid duration "\\xd9\\xa3"', "non-ascii-digit"),
    ("9223372036854775808", 'time: missing unit in duration "9223372036854775808"', "beyond-int64"),
]


@pytest.mark.parametrize(
    ("value", "message"), [(v, m) for v, m, _ in KEEP_ALIVE_ENV_ERR], ids=[i for *_, i in KEEP_ALIVE_ENV_ERR]
)
def test_parse_keep_alive_env_error(value: str, message: str) -> None:
    # Ollama silently keeps the default here; the caller decides, so we must say it failed.
    with pytest.raises(DurationError) as info:
        parse_keep_alive_env(value)
    assert str(info.value) == message


def test_default_keep_alive_is_five_minutes() -> None:
    assert DEFAULT_KEEP_ALIVE == parse_keep_alive_env("5m") == 300.0
    assert FOREVER == math.inf


# Go's durationTests (src/time/time_test.go) plus a few more.
FORMAT_NS = [
    (0, "0s", "zero"),
    (1, "1ns", "one-ns"),
    (999, "999ns", "ns-max"),
    (1_000, "1\u00b5s", "one-us"),
    (1_100, "1.1\u00b5s", "us-fraction"),
    (2_200 * US, "2.2ms", "ms-fraction"),
    (300 * MS, "300ms", "ollama-300ms"),
    (3_300 * MS, "3.3s", "s-fraction"),
    (1_500 * MS, "1.5s", "one-and-a-half"),
    (4 * M + 5 * S, "4m5s", "m-s"),
    (4 * M + 5_001 * MS, "4m5.001s", "m-s-fraction"),
    (5 * H + 6 * M + 7_001 * MS, "5h6m7.001s", "h-m-s"),
    (8 * M + 1, "8m0.000000001s", "m-ns"),
    (5 * M, "5m0s", "five-minutes"),
    (H, "1h0m0s", "one-hour"),
    (24 * H, "24h0m0s", "one-day-stays-hours"),
    (MAX, "2562047h47m16.854775807s", "max-int64"),
    (MIN, "-2562047h47m16.854775808s", "min-int64"),
    (-1_500 * MS, "-1.5s", "negative"),
    (-1, "-1ns", "negative-ns"),
    (MAX + 1, "2562047h47m16.854775807s", "clamped-high"),
    (MIN - 1, "-2562047h47m16.854775808s", "clamped-low"),
]


@pytest.mark.parametrize(("ns", "want"), [(n, w) for n, w, _ in FORMAT_NS], ids=[i for *_, i in FORMAT_NS])
def test_format_go_duration_ns(ns: int, want: str) -> None:
    assert format_go_duration_ns(ns) == want


FORMAT_SECONDS = [
    (0, "0s", "zero"),
    (300, "5m0s", "five-minutes"),
    (1.5, "1.5s", "one-and-a-half"),
    (0.3, "300ms", "float-rounding-300ms"),
    (0.1 + 0.2, "300ms", "float-noise-rounded"),
    (3600, "1h0m0s", "one-hour"),
    (1.234567891, "1.234567891s", "full-ns-precision"),
    (1e-9, "1ns", "one-ns"),
    (4e-10, "0s", "below-half-ns"),
    (-1.5, "-1.5s", "negative"),
    (FOREVER, "2562047h47m16.854775807s", "forever-is-max-int64"),
    (-math.inf, "-2562047h47m16.854775808s", "neg-inf"),
    (1e300, "2562047h47m16.854775807s", "huge-clamped"),
]


@pytest.mark.parametrize(
    ("seconds", "want"), [(s, w) for s, w, _ in FORMAT_SECONDS], ids=[i for *_, i in FORMAT_SECONDS]
)
def test_format_go_duration(seconds: float, want: str) -> None:
    assert format_go_duration(seconds) == want


def test_format_nan_refused() -> None:
    with pytest.raises(DurationError):
        format_go_duration(math.nan)


@pytest.mark.parametrize(
    "ns",
    [0, 1, 999, 1_000, 1_234_567, 5 * M, H + 1, 39 * H + 9 * M + 14 * S + 425 * MS, MAX, MIN, -7 * S],
    ids=["zero", "ns", "ns-max", "us", "ms", "5m", "h-plus-ns", "composite", "max", "min", "negative"],
)
def test_round_trip(ns: int) -> None:
    # Go guarantees ParseDuration(d.String()) == d (golang.org/issue/48629).
    assert parse_go_duration_ns(format_go_duration_ns(ns)) == ns
