"""Human formats of the CLI against Ollama's own expectations (format/*_test.go, api.Metrics)."""

from __future__ import annotations

import pytest

from mlx_lama.cli.fmt import go_f, go_g, human_bytes, human_number, human_time, parse_time, stats_summary

NOW = 1_700_000_000.0


@pytest.mark.parametrize(("value", "expected"), [
    (0, "0 B"), (999, "999 B"), (1000, "1 KB"), (1024, "1.0 KB"), (1500, "1.5 KB"), (10_500, "10 KB"),
    (2_000_000, "2 MB"), (12_500_000, "12 MB"), (4_683_075_271, "4.7 GB"), (2_000_000_000, "2 GB"),
    (1_000_000_000_000, "1 TB"), (1_500_000_000_000, "1.5 TB"),
], ids=str)
def test_human_bytes(value: int, expected: str) -> None:
    assert human_bytes(value) == expected


@pytest.mark.parametrize(("value", "expected"), [
    (0, "0"), (999, "999"), (1000, "1K"), (1_234, "1K"), (1_000_000, "1M"), (1_310_000, "1.31M"),
    (133_700_000, "133.70M"), (7_000_000_000, "7B"), (8_030_261_248, "8.0B"), (1_500_000_000, "1.5B"),
], ids=str)
def test_human_number(value: int, expected: str) -> None:
    assert human_number(value) == expected


@pytest.mark.parametrize(("delta", "expected"), [
    (0.2, "Less than a second ago"), (1, "1 second ago"), (30, "30 seconds ago"),
    (61, "About a minute ago"), (59 * 60, "59 minutes ago"), (3600, "About an hour ago"),
    (24 * 3600, "24 hours ago"), (48 * 3600, "2 days ago"), (20 * 86400, "2 weeks ago"),
    (70 * 86400, "2 months ago"), (800 * 86400, "2 years ago"),
    (-240, "4 minutes from now"), (-3600 * 3, "3 hours from now"),
    (-292 * 365 * 86400, "Forever"),
], ids=str)
def test_human_time(delta: float, expected: str) -> None:
    assert human_time(NOW - delta, now=NOW) == expected


def test_human_time_zero_value() -> None:
    assert human_time(None, "Never") == "Never"
    assert human_time(parse_time("0001-01-01T00:00:00Z"), "Never") == "Never"


@pytest.mark.parametrize(("stamp", "expected"), [
    ("2023-11-14T22:13:20Z", NOW),
    ("2023-11-14T14:13:20.123456789-08:00", NOW + 0.123456),
    ("2318-01-01T00:00:00+00:00", 10_981_785_600.0),
    ("", None), ("garbage", None),
], ids=str)
def test_parse_time(stamp: str, expected: float | None) -> None:
    got = parse_time(stamp)
    assert got == pytest.approx(expected) if expected is not None else got is None


@pytest.mark.parametrize(("value", "g", "f"), [
    (8e9, "8e+09", "8000000000"), (1000, "1000", "1000"), (11434, "11434", "11434"),
    (1e-5, "1e-05", "0.00001"), (500000, "500000", "500000"), (1e6, "1e+06", "1000000"),
    (1234567.0, "1.234567e+06", "1234567"), (0.7, "0.7", "0.7"), (0, "0", "0"), (-2.5, "-2.5", "-2.5"),
], ids=str)
def test_go_float_formats(value: float, g: str, f: str) -> None:
    assert go_g(value) == g
    assert go_f(value) == f


def test_stats_summary_matches_ollama() -> None:
    text = stats_summary({"total_duration": 1_234_000_000, "load_duration": 12_300_000,
                          "prompt_eval_count": 26, "prompt_eval_duration": 325_950_000,
                          "eval_count": 290, "eval_duration": 4_709_000_000})
    assert text == (
        "total duration:       1.234s\n"
        "load duration:        12.3ms\n"
        "prompt eval count:    26 token(s)\n"
        "prompt eval duration: 325.95ms\n"
        "prompt eval rate:     79.77 tokens/s\n"
        "eval count:           290 token(s)\n"
        "eval duration:        4.709s\n"
        "eval rate:            61.58 tokens/s\n")


def test_stats_summary_skips_zero_lines() -> None:
    assert stats_summary({"total_duration": 5_000, "eval_count": 0}) == "total duration:       5µs\n"
