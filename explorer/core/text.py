"""Every shape, size and number string the tool shows, made in one place.

One convention everywhere (graph, Details, presentation, exports, compare, factorisation, paper
table): counts of parameters and multiply-adds are SI, K = 10³, M = 10⁶, G = 10⁹, printed with three
significant digits ('9.41 K', '156 K', '6.62 M', '1.50 G'); memory is binary, KiB = 2¹⁰ bytes,
MiB = 2²⁰, GiB = 2³⁰. A share or a probability is a percentage with a space before the sign, '12.3 %'
(`fmt_fraction`). Multiply-accumulates are "multiply-adds" in prose and "mult-adds" as a short label
(`MULTIPLY_ADDS`, `MULT_ADDS`); "ops" only in the papers' own table. A range (a legend's two ends) names
its unit once (`fmt_range`: '0 … 8.68 ms'). A branch is a 0-based `branch_index` in code and its 1-based
`branch_number` wherever a person reads it ('branch 2', `fmt_branch`). A value that is not known (a shape
the input is too small for) reads '—'.
"""

from __future__ import annotations

#: The text of a value that does not exist (a node that cannot run at this input size).
MISSING = "—"
#: How the tool's own count units read, said once where a table or export states its units.
COUNT_UNITS = "K = 10³, M = 10⁶, G = 10⁹, T = 10¹²"
#: The one word for multiply-accumulates where a person reads a sentence.
MULTIPLY_ADDS = "multiply-adds"
#: Its short form, for a column label or a total beside "params".
MULT_ADDS = "mult-adds"

_SI = ("K", "M", "G", "T")
_BINARY = ("KiB", "MiB", "GiB", "TiB")


def fmt_shape(shape: tuple[int, ...] | None) -> str:
    """(256, 28, 28) → '256×28×28'; None → '—' (cannot run at this size)."""
    return MISSING if shape is None else "×".join(str(d) for d in shape)


def fmt_kernel(k: tuple[int, int] | None) -> str:
    """(3, 3) → '3×3', (1, 7) → '1×7'; None → ''."""
    return "" if k is None else f"{k[0]}×{k[1]}"


def fmt_hwc(shape: tuple[int, ...] | None) -> str:
    """The papers' H×W×C from a trace's (C, H, W); a flat (C,) is 1×1×C; None → '—'."""
    if shape is None:
        return MISSING
    if len(shape) == 3:
        c, h, w = shape
        return f"{h}×{w}×{c}"
    if len(shape) == 1:
        return f"1×1×{shape[0]}"
    return fmt_shape(shape)


def _three_digits(value: float, base: int, units: tuple[str, ...]) -> tuple[str, str] | None:
    """value scaled into the first unit where it prints with three significant digits below `base`'s
    next step, as (number, unit); None when it is below one unit."""
    for i, unit in enumerate(units):
        v = value / base ** (i + 1)
        if v >= 1000 and i + 1 < len(units):
            continue
        if v >= 99.95:
            text = f"{v:.0f}"
        elif v >= 9.995:
            text = f"{v:.1f}"
        else:
            text = f"{v:.2f}"
        if float(text) >= 1000 and i + 1 < len(units):  # 999 950 rounds to '1000 K': say '1.00 M'
            continue
        return text, unit
    return None


def fmt_count(n: int | float | None) -> str:
    """A parameter or multiply-add count in SI units: 999 → '999', 1000 → '1.00 K', 12 345 → '12.3 K',
    999 950 → '1.00 M', 1.5e9 → '1.50 G'; 0 → '0'; None → '—'."""
    if n is None:
        return MISSING
    sign, x = ("-" if n < 0 else ""), abs(n)
    if round(x) < 1000:
        return f"{sign}{round(x)}"
    number, unit = _three_digits(x, 1000, _SI)
    return f"{sign}{number} {unit}"


def fmt_int(n: int | None) -> str:
    """An exact count, digits grouped by commas: 1234567 → '1,234,567'; None → '—'."""
    return MISSING if n is None else f"{n:,}"


def fmt_bytes(n: int | float | None) -> str:
    """Memory in binary units: 512 → '512 B', 1536 → '1.50 KiB', 3 · 2²⁰ → '3.00 MiB'; None → '—'."""
    if n is None:
        return MISSING
    if round(n) < 1000:
        return f"{round(n)} B"
    number, unit = _three_digits(n, 1024, _BINARY)
    return f"{number} {unit}"


def fmt_paper_params(n: int | None) -> str:
    """Parameters as the papers' tables print them, in K = 1000 and without a space: '2.7K', '159K',
    '1072K' (the table stays in K below 10 M), '24M'; '' for none."""
    if not n:
        return ""
    if n < 1000:
        return str(n)
    if n < 10_000:
        return f"{n / 1e3:.1f}K"
    if n < 10_000_000:
        return f"{round(n / 1e3)}K"
    return f"{round(n / 1e6)}M"


def fmt_paper_ops(n: int | None) -> str:
    """Multiply-adds as the papers' tables print them (M = 10⁶): '34M', '1.5M', '128M', '5.7G'; ''
    for none."""
    if not n:
        return ""
    if n < 1e6:
        return f"{round(n / 1e3)}K" if n >= 1000 else str(n)
    if n < 10e6:
        return f"{n / 1e6:.1f}".rstrip("0").rstrip(".") + "M"
    if n < 10e9:
        return f"{round(n / 1e6)}M"
    return f"{n / 1e9:.1f}G"


def fmt_seconds(s: float | None) -> str:
    """A duration with three significant digits: 0.00123 → '1.23 ms', 4.56e-5 → '45.6 µs', 2.5 → '2.50 s';
    0 → '0 s'; None → '—'."""
    if s is None:
        return MISSING
    if s == 0:
        return "0 s"
    for scale, unit in ((1.0, "s"), (1e-3, "ms"), (1e-6, "µs")):
        if abs(s) >= scale * 0.9995 or unit == "µs":
            v = s / scale
            text = f"{v:.0f}" if abs(v) >= 99.95 else f"{v:.1f}" if abs(v) >= 9.995 else f"{v:.2f}"
            return f"{text} {unit}"
    return MISSING  # not reached


_SECONDS = {"s": 1.0, "ms": 1e-3, "µs": 1e-6}


def fmt_fraction(f: float | None, digits: int = 1, *, signed: bool = False) -> str:
    """A share or a probability as a percentage, the one style of every percent the tool shows: 0.1234 →
    '12.3 %'; `digits` decimals (0: '40 %', for a scale's ticks and the papers' round rates); `signed`: a
    change, '+12 %' / '-5 %'; None → '—'."""
    if f is None:
        return MISSING
    return f"{100 * f:{'+' if signed else ''}.{digits}f} %"


def fmt_range(low: float | None, high: float | None, fmt=fmt_count) -> tuple[str, str]:
    """The two ends of a scale (a legend) as `fmt` writes them, its unit said once, at the high end: 0 and
    8.68 ms → ('0', '8.68 ms'); 45 µs and 8.68 ms → ('0.045', '8.68 ms'); 1.2 % and 45.3 % → ('1.2',
    '45.3 %'). Ends in different SI or binary steps keep theirs ('9.41 K', '1.50 G': the same unit, a
    count); a missing end reads '—'."""
    high_text = fmt(high)
    if low is None or high is None:
        return fmt(low), high_text
    number, _, unit = high_text.rpartition(" ")
    if low == 0:
        return "0", high_text
    low_text = fmt(low)
    if fmt is fmt_seconds and number and unit != fmt_seconds(low).rpartition(" ")[2]:
        return f"{low / _SECONDS[unit]:.3g}", high_text  # one time unit: the high end's
    low_number, _, low_unit = low_text.rpartition(" ")
    return (low_number if low_number and low_unit == unit else low_text), high_text


def fmt_ms(t: dict[str, float], keys=("decode", "preprocess", "forward", "total")) -> str:
    """A classification's timings, all in milliseconds (one unit, however short or long each is): 'decode
    12.3 ms · preprocess 4.5 ms · forward 80.1 ms · total 97.0 ms' (`keys` in that order, those present)."""
    return " · ".join(f"{key} {t[key]:.1f} ms" for key in keys if key in t)


def branch_number(branch_index: int) -> int:
    """The number a person reads for the branch at 0-based `branch_index`: 1-based, in concatenation order."""
    return branch_index + 1


def fmt_branch(branch_index: int, label: str | None = None) -> str:
    """'branch 2', or with its label 'branch 2 (#3×3 reduce → #3×3)', for the 0-based `branch_index` 1."""
    text = f"branch {branch_number(branch_index)}"
    return f"{text} ({label})" if label else text


#: What a switched-off branch becomes, for people, by knock-out mode.
KNOCKOUT_MODE_WORDS = {"zero": "zeros", "mean": "per-channel mean"}


def fmt_branches_off(branches, mode: str | None = None) -> str:
    """'inception4a branch 2 off', 'inception4a branches 2 and 3, inception5b branch 1 off' for (block,
    branch_index) pairs (blocks in name order); with `mode`, what they became: '… off (zeros)'. '' for none."""
    by_block: dict[str, list[int]] = {}
    for block, k in sorted(branches):
        by_block.setdefault(block, []).append(branch_number(k))
    if not by_block:
        return ""
    parts = []
    for block, numbers in by_block.items():
        if len(numbers) == 1:
            parts.append(f"{block} branch {numbers[0]}")
        else:
            parts.append(f"{block} branches {', '.join(map(str, numbers[:-1]))} and {numbers[-1]}")
    text = ", ".join(parts) + " off"
    return f"{text} ({KNOCKOUT_MODE_WORDS.get(mode, mode)})" if mode else text


def first_line(e: BaseException) -> str:
    """The first line of an error's message (its type's name when it has none), for one-line messages."""
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__
