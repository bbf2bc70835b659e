"""Records written as they complete, in the formats every command and export offers: JSON Lines, one JSON
document (an array) and CSV.

A record is a dict of plain data (JSON's types); its CSV rows come from the caller's `rows(record)`, under
the caller's `columns`. Each writer flushes after every record, so that a killed run keeps what it finished:
JSON Lines and CSV lose at most the record being written; the JSON array is closed by `close()`, which the
command line calls on Ctrl-C too, and each record is written with Ctrl-C held back
(`outputs.interrupts_deferred`), so an interrupted run still leaves one valid JSON document.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Callable, Iterable, Sequence
from typing import Any, TextIO

from explorer.core.outputs import interrupts_deferred

#: The formats, as `--format` names them: jsonl streams an object a line, json writes one array.
FORMATS = ("jsonl", "json", "csv")


def finite(value: Any) -> Any:
    """JSON has no NaN or infinity: they become null (None), in nested dicts and lists too."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite(v) for v in value]
    return value


def _json(record: dict) -> str:
    return json.dumps(finite(record), ensure_ascii=False, allow_nan=False)


class RecordWriter:
    """write(record) as each completes, flushed; close() once at the end (the JSON array's closing bracket)."""

    def __init__(self, out: TextIO):
        self.out = out
        self.count = 0
        self.closed = False

    def write(self, record: dict) -> None:
        with interrupts_deferred():  # a record is written whole, or not begun
            self._write(record)
            self.count += 1
            self.out.flush()

    def _write(self, record: dict) -> None:
        raise NotImplementedError

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            with interrupts_deferred():
                self._close()
                self.out.flush()

    def _close(self) -> None:
        pass


class JsonLinesWriter(RecordWriter):
    """One JSON object a line (JSON Lines, https://jsonlines.org): each line parses on its own."""

    def _write(self, record: dict) -> None:
        self.out.write(_json(record) + "\n")


class JsonArrayWriter(RecordWriter):
    """One JSON document: '[' now, the records one a line separated by commas, ']' at close()."""

    def __init__(self, out: TextIO):
        super().__init__(out)
        with interrupts_deferred():
            out.write("[")
            out.flush()

    def _write(self, record: dict) -> None:
        self.out.write(("\n" if self.count == 0 else ",\n") + _json(record))

    def _close(self) -> None:
        self.out.write("\n]\n" if self.count else "]\n")


class CsvWriter(RecordWriter):
    """A header of `columns` now, then the rows `rows(record)` gives for each record."""

    def __init__(self, out: TextIO, columns: Sequence[str], rows: Callable[[dict], Iterable[Sequence]]):
        super().__init__(out)
        self.rows = rows
        self._csv = csv.writer(out, lineterminator="\n")
        with interrupts_deferred():
            self._csv.writerow(columns)
            out.flush()

    def _write(self, record: dict) -> None:
        self._csv.writerows(self.rows(record))


def record_writer(fmt: str, out: TextIO, columns: Sequence[str] = (),
                  rows: Callable[[dict], Iterable[Sequence]] | None = None) -> RecordWriter:
    """The writer of `fmt` (one of FORMATS) on `out`; csv needs `columns` and `rows`."""
    if fmt == "jsonl":
        return JsonLinesWriter(out)
    if fmt == "json":
        return JsonArrayWriter(out)
    if fmt == "csv":
        if rows is None:
            raise ValueError("CSV records need their rows")
        return CsvWriter(out, columns, rows)
    raise ValueError(f"unknown format {fmt!r}; one of {', '.join(FORMATS)}")


def records_text(fmt: str, records: Iterable[dict], columns: Sequence[str] = (),
                 rows: Callable[[dict], Iterable[Sequence]] | None = None) -> str:
    """Every record in `fmt` as one text (for a file written whole: outputs.write_file)."""
    buf = io.StringIO()
    writer = record_writer(fmt, buf, columns, rows)
    for r in records:
        writer.write(r)
    writer.close()
    return buf.getvalue()
