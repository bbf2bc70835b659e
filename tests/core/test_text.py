"""The one place the tool's shape, number and unit strings come from: expected strings written by hand."""

import pytest

from explorer.core.text import (
    fmt_bytes,
    fmt_count,
    fmt_fraction,
    fmt_hwc,
    fmt_int,
    fmt_kernel,
    fmt_ms,
    fmt_paper_ops,
    fmt_paper_params,
    fmt_range,
    fmt_seconds,
    fmt_shape,
)


@pytest.mark.parametrize("n, text", [
    (None, "—"), (0, "0"), (7, "7"), (999, "999"),
    (1000, "1.00 K"), (1004, "1.00 K"), (1005, "1.00 K"), (1006, "1.01 K"), (9_408, "9.41 K"),
    (9_995, "10.0 K"), (12_345, "12.3 K"), (99_949, "99.9 K"), (99_950, "100 K"), (156_000, "156 K"),
    (999_499, "999 K"), (999_500, "1.00 M"), (999_950, "1.00 M"),
    (1_000_000, "1.00 M"), (6_624_904, "6.62 M"), (23_834_568, "23.8 M"), (999_950_000, "1.00 G"),
    (1_498_000_000, "1.50 G"), (5_731_000_000, "5.73 G"), (12_345_000_000_000, "12.3 T"),
    (-12_345, "-12.3 K"),
])
def test_counts_are_si_with_three_significant_digits(n, text):
    assert fmt_count(n) == text


@pytest.mark.parametrize("n, text", [
    (None, "—"), (0, "0 B"), (999, "999 B"), (1000, "0.98 KiB"), (1024, "1.00 KiB"), (1536, "1.50 KiB"),
    (999_950, "977 KiB"), (1_048_576, "1.00 MiB"), (3 * 2**20, "3.00 MiB"), (12_897_485, "12.3 MiB"),
    (2**30, "1.00 GiB"),
])
def test_bytes_are_binary(n, text):
    assert fmt_bytes(n) == text


def test_exact_counts_shapes_and_kernels():
    assert fmt_int(None) == "—"
    assert fmt_int(0) == "0"
    assert fmt_int(999) == "999"
    assert fmt_int(1000) == "1,000"
    assert fmt_int(6_624_904) == "6,624,904"
    assert fmt_shape(None) == "—"
    assert fmt_shape((256, 28, 28)) == "256×28×28"
    assert fmt_shape((1, 3, 224, 224)) == "1×3×224×224"
    assert fmt_shape((1000,)) == "1000"
    assert fmt_kernel(None) == ""
    assert fmt_kernel((1, 7)) == "1×7"
    assert fmt_hwc((64, 112, 112)) == "112×112×64"
    assert fmt_hwc((1000,)) == "1×1×1000"
    assert fmt_hwc(None) == "—"


def test_paper_style_counts_use_the_same_k():
    """The paper table prints '2.7K' / '34M' as the papers do; K is 1000 there too."""
    assert fmt_paper_params(None) == ""
    assert fmt_paper_params(0) == ""
    assert fmt_paper_params(999) == "999"
    assert fmt_paper_params(1000) == "1.0K"
    assert fmt_paper_params(2_700) == "2.7K"
    assert fmt_paper_params(9_408) == "9.4K"
    assert fmt_paper_params(159_000) == "159K"
    assert fmt_paper_params(999_950) == "1000K"  # the papers stay in K below 10 M
    assert fmt_paper_params(1_072_000) == "1072K"
    assert fmt_paper_params(23_834_568) == "24M"
    assert fmt_paper_ops(0) == ""
    assert fmt_paper_ops(999) == "999"
    assert fmt_paper_ops(1000) == "1K"
    assert fmt_paper_ops(999_950) == "1000K"
    assert fmt_paper_ops(1_024_000) == "1M"
    assert fmt_paper_ops(1_500_000) == "1.5M"
    assert fmt_paper_ops(34_000_000) == "34M"
    assert fmt_paper_ops(5_731_000_000) == "5731M"
    assert fmt_paper_ops(12_340_000_000) == "12.3G"


@pytest.mark.parametrize("s, text", [
    (None, "—"), (0, "0 s"), (2.5, "2.50 s"), (0.9996, "1.00 s"), (0.1, "100 ms"), (0.0123, "12.3 ms"), (0.00123, "1.23 ms"),
    (0.0009996, "1.00 ms"), (4.56e-5, "45.6 µs"), (1e-7, "0.10 µs"),
])
def test_durations_read_with_three_digits(s, text):
    assert fmt_seconds(s) == text


def test_fractions_read_as_percentages():
    assert fmt_fraction(0.1234) == "12.3 %"
    assert fmt_fraction(1) == "100.0 %"
    assert fmt_fraction(None) == "—"
    assert fmt_fraction(0.4, 0) == "40 %"
    assert fmt_fraction(0.123, 0, signed=True) == "+12 %"
    assert fmt_fraction(-0.05, 0, signed=True) == "-5 %"


@pytest.mark.parametrize("low, high, fmt, texts", [
    (0.0, 0.00868, fmt_seconds, ("0", "8.68 ms")),  # the timing legend read "0 s … 8.68 ms"
    (4.5e-5, 0.00868, fmt_seconds, ("0.045", "8.68 ms")),  # one time unit per legend: the high end's
    (0.0012, 0.00868, fmt_seconds, ("1.20", "8.68 ms")),
    (0.0, 3 * 2**20, fmt_bytes, ("0", "3.00 MiB")),
    (12_345, 156_000, fmt_count, ("12.3", "156 K")),
    (9_408, 1_500_000_000, fmt_count, ("9.41 K", "1.50 G")),  # a log scale's ends keep their SI steps
    (0.012, 0.453, fmt_fraction, ("1.2", "45.3 %")),
    (None, None, fmt_count, ("—", "—")),
])
def test_a_range_says_its_unit_once(low, high, fmt, texts):
    assert fmt_range(low, high, fmt) == texts


def test_timings_are_all_in_milliseconds():
    t = {"decode": 12.34, "preprocess": 4.5, "forward": 1234.5, "total": 1251.3}
    assert fmt_ms(t) == "decode 12.3 ms · preprocess 4.5 ms · forward 1234.5 ms · total 1251.3 ms"
    assert fmt_ms(t, ("forward",)) == "forward 1234.5 ms"
