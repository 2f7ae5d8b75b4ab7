"""Catalog tables in, as a stream of chunks: every physical input row comes out exactly once.

CSV, TSV, JSONL and Parquet are streamed (:func:`iter_chunks`), so memory does not grow with
the file; xlsx and JSON arrays are read whole. A row that cannot be read as intended is kept
and named in the ``error`` column, never dropped: rows with too many or too few fields, an
unterminated quote (read to the end of its line, and the lines after it are rows of their own),
blank lines, JSONL lines that are not JSON objects. Cells of any length are read. A file that
cannot be used at all (not UTF-8, unsupported type, no header) raises :class:`BatchInputError`
before any row is processed.
"""

from __future__ import annotations

import codecs
import csv
import hashlib
import json
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

ERROR_COLUMN = "error"
STREAMED = {".csv": "csv", ".tsv": "csv", ".jsonl": "jsonl", ".parquet": "parquet"}
WHOLE_FILE = {".xlsx": "excel", ".xls": "excel", ".json": "json"}
READERS = {**STREAMED, **WHOLE_FILE}
# A quoted cell may span lines; one still open after this many lines is taken as a stray quote.
MAX_QUOTED_LINES = 10_000
HASH_BLOCK = 1 << 20

csv.field_size_limit(min(sys.maxsize, 2**31 - 1))  # a cell of any length is a cell, not a refused file


class BatchInputError(ValueError):
    """A catalog file that cannot be used as it is; the message says what is expected."""


@dataclass
class Scan:
    """One pass over the raw bytes: the content hash (resume fingerprint) and an estimate of the rows."""

    sha256: str
    rows: int


def _kind(path: Path) -> str:
    kind = READERS.get(path.suffix.lower())
    if kind is None:
        raise BatchInputError(f"{path.name}: unsupported file type {path.suffix!r}; expected one of {', '.join(READERS)}")
    if not path.is_file() or path.stat().st_size == 0:
        raise BatchInputError(f"{path.name} is empty; expected a header row and at least one product row")
    return kind


def scan(path: str | Path) -> Scan:
    """Check the file before any work (type, size, UTF-8 for text files); hash it and count its lines."""
    path = Path(path)
    kind = _kind(path)
    digest, lines, offset, last = hashlib.sha256(), 0, 0, b"\n"
    decoder = None if kind in ("parquet", "excel") else codecs.getincrementaldecoder("utf-8")()
    with path.open("rb") as file:
        while block := file.read(HASH_BLOCK):
            digest.update(block)
            lines += block.count(b"\n")
            if decoder:
                _decode(decoder, block, offset, path)
            offset, last = offset + len(block), block[-1:]
    lines += last != b"\n"  # a last line without its newline
    if decoder:
        _decode(decoder, b"", offset, path, final=True)
    if kind == "parquet":
        rows = _parquet(path).metadata.num_rows
    elif kind in WHOLE_FILE.values():
        rows = len(_whole_file(path, kind))
    else:
        rows = max(lines - (kind == "csv"), 0)
    return Scan(digest.hexdigest(), rows)


def _decode(decoder, block: bytes, offset: int, path: Path, final: bool = False) -> None:
    try:
        decoder.decode(block, final)
    except UnicodeDecodeError as error:
        raise BatchInputError(
            f"{path.name} is not UTF-8 (bad byte at offset {offset + error.start}); save it as UTF-8 and upload again"
        ) from None


def columns_of(path: str | Path) -> list[str]:
    """The file's columns (header, first JSON object, Parquet schema) without reading its rows."""
    path = Path(path)
    kind = _kind(path)
    if kind == "csv":
        with _open_text(path) as file:
            return _header(_Lines(file), _delimiter(path))
    if kind == "jsonl":
        with _open_text(path) as file:
            return next((list(row) for _, row, _ in _json_lines(file) if row), [])
    if kind == "parquet":
        return list(_parquet(path).schema_arrow.names)
    return [str(c) for c in _whole_file(path, kind).columns]


def check_column(columns: Iterable, column: str) -> None:
    """Refuse a missing column, naming the columns the file does have (no guessing)."""
    columns = [str(c) for c in columns if c != ERROR_COLUMN]
    if column not in columns:
        raise BatchInputError(f"column {column!r} not found; the file has: {', '.join(columns)}")


def read_table(path: str | Path) -> pd.DataFrame:
    """The whole table as text columns; an ``error`` column is there when a row had a problem."""
    path = Path(path)
    if _kind(path) in STREAMED.values():
        scan(path)  # refuses a text file that is not UTF-8
    chunks = list(iter_chunks(path, 10_000))
    if not chunks:
        raise BatchInputError(f"{path.name} has a header but no rows")
    frame = pd.concat(chunks, ignore_index=True)
    if not (frame[ERROR_COLUMN] != "").any():
        frame = frame.drop(columns=[ERROR_COLUMN])
    return frame


def iter_chunks(path: str | Path, chunk_rows: int) -> Iterator[pd.DataFrame]:
    """Frames of at most ``chunk_rows`` rows in input order, each with an ``error`` column (``""`` when fine).

    The index counts rows from 0 across the whole file. Call :func:`scan` first: it refuses
    files that are not UTF-8 before any row is read.
    """
    path = Path(path)
    kind = _kind(path)
    try:
        if kind == "csv":
            yield from _chunked(_csv_rows(path), chunk_rows)
        elif kind == "jsonl":
            yield from _chunked(_jsonl_rows(path), chunk_rows)
        elif kind == "parquet":
            yield from _parquet_chunks(path, chunk_rows)
        else:
            frame = _whole_file(path, kind)
            frame[ERROR_COLUMN] = ""
            for start in range(0, len(frame), chunk_rows):
                yield frame.iloc[start : start + chunk_rows]
    except (BatchInputError, GeneratorExit):
        raise
    except Exception as error:  # the readers raise many types for unreadable files
        raise BatchInputError(f"{path.name} could not be read as {kind}: {error}") from None


def _chunked(rows: Iterator[tuple[list[str], list[str], str]], chunk_rows: int) -> Iterator[pd.DataFrame]:
    """``rows`` yields ``(columns, values, error)``; the columns come with the first row."""
    start, records, errors, columns = 0, [], [], []
    for columns, values, error in rows:
        records.append(values)
        errors.append(error)
        if len(records) == chunk_rows:
            yield _frame(columns, records, errors, start)
            start, records, errors = start + len(records), [], []
    if records:
        yield _frame(columns, records, errors, start)


def _frame(columns: list[str], records: list[list[str]], errors: list[str], start: int) -> pd.DataFrame:
    frame = pd.DataFrame(records, columns=columns, dtype=str, index=pd.RangeIndex(start, start + len(records)))
    frame[ERROR_COLUMN] = errors
    return frame


# --------------------------------------------------------------------------- CSV / TSV


def _open_text(path: Path):
    return path.open("r", encoding="utf-8-sig", newline="")


def _delimiter(path: Path) -> str:
    return "\t" if path.suffix.lower() == ".tsv" else ","


class _Lines:
    """Physical lines with their numbers (1-based), and a way to put lines back after a wrong guess."""

    def __init__(self, file):
        self.file = file
        self.number = 0
        self.pending: list[tuple[int, str]] = []

    def next(self) -> tuple[int, str] | None:
        if self.pending:
            return self.pending.pop()
        line = self.file.readline()
        if not line:
            return None
        self.number += 1
        return self.number, line

    def put_back(self, lines: list[tuple[int, str]]) -> None:
        self.pending.extend(reversed(lines))


def _parse(text: str, delimiter: str) -> list[str] | None:
    """The fields of one CSV record, or ``None`` while a quoted cell is still open."""
    try:
        return next(csv.reader([text], delimiter=delimiter, strict=True), [])
    except csv.Error as error:
        if "unexpected end of data" in str(error):
            return None
        return next(csv.reader([text], delimiter=delimiter), [])  # e.g. "ab"c: read leniently, as spreadsheets do


def _record(lines: _Lines, delimiter: str, width: int | None) -> tuple[int, list[str], str] | None:
    """The next record: ``(line, fields, problem)``. A quote that is never closed is read to the end of its line."""
    first = lines.next()
    if first is None:
        return None
    number, line = first
    if not line.strip("\r\n"):
        return number, [], f"blank line (line {number})"
    taken = [first]
    fields = _parse(line, delimiter)
    while fields is None and len(taken) < MAX_QUOTED_LINES:
        more = lines.next()
        if more is None:
            break
        taken.append(more)
        fields = _parse("".join(text for _, text in taken), delimiter)
    if fields is not None and (width is None or len(fields) == width or len(taken) == 1):
        return number, _strip_end(fields), ""
    lines.put_back(taken[1:])  # a stray quote: the lines it swallowed are rows of their own
    fields = next(csv.reader([line.rstrip("\r\n")], delimiter=delimiter), [])
    return number, fields, f"unterminated quote (line {number}): read to the end of the line"


def _strip_end(fields: list[str]) -> list[str]:
    if fields:
        fields[-1] = fields[-1].rstrip("\r\n")
    return fields


def _header(lines: _Lines, delimiter: str) -> list[str]:
    record = _record(lines, delimiter, None)
    if record is None or not record[1] or record[2]:
        raise BatchInputError("the file has no header row; expected column names on line 1")
    return record[1]


def _csv_rows(path: Path) -> Iterator[tuple[list[str], list[str], str]]:
    delimiter = _delimiter(path)
    with _open_text(path) as file:
        lines = _Lines(file)
        header = _header(lines, delimiter)
        while (record := _record(lines, delimiter, len(header))) is not None:
            number, fields, problem = record
            if fields and len(fields) != len(header):
                count = f"malformed row (line {number}): {len(fields)} fields, expected {len(header)}"
                problem = f"{problem}; {count}" if problem else count
            yield header, (fields + [""] * len(header))[: len(header)], problem


# --------------------------------------------------------------------------- JSONL, Parquet, whole files


def _json_lines(file) -> Iterator[tuple[int, dict | None, str]]:
    for number, line in enumerate(file, start=1):
        if not line.strip():
            yield number, None, f"blank line (line {number})"
            continue
        try:
            value = json.loads(line)
        except json.JSONDecodeError as error:
            yield number, None, f"not valid JSON (line {number}): {error.msg}"
            continue
        if not isinstance(value, dict):
            yield number, None, f"not a JSON object (line {number}); expected {{\"column\": \"value\", ...}}"
            continue
        yield number, value, ""


def _cell(value) -> str:
    if value is None:
        return ""
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)


def _jsonl_rows(path: Path) -> Iterator[tuple[list[str], list[str], str]]:
    columns = columns_of(path)
    if not columns:
        raise BatchInputError(f"{path.name} has no JSON object line; expected one object per line")
    with _open_text(path) as file:
        for number, row, problem in _json_lines(file):
            row = row or {}
            extra = [key for key in row if key not in columns]
            if extra:
                problem = f"keys not in the first line's columns (line {number}), not kept: {', '.join(extra)}"
            yield columns, [_cell(row.get(c)) for c in columns], problem


def _parquet(path: Path):
    import pyarrow.parquet as pq

    try:
        return pq.ParquetFile(path)
    except Exception as error:  # pyarrow raises ArrowInvalid, OSError...
        raise BatchInputError(f"{path.name} could not be read as parquet: {error}") from None


def _parquet_chunks(path: Path, chunk_rows: int) -> Iterator[pd.DataFrame]:
    start = 0
    for batch in _parquet(path).iter_batches(batch_size=chunk_rows):
        columns = batch.schema.names
        records = [[_cell(v) for v in row] for row in zip(*(c.to_pylist() for c in batch.columns), strict=True)]
        yield _frame(columns, records, [""] * len(records), start)
        start += len(records)


def _whole_file(path: Path, kind: str) -> pd.DataFrame:
    try:
        if kind == "excel":
            return pd.read_excel(path, dtype=str, keep_default_na=False)
        return pd.read_json(path, dtype=str).fillna("")
    except Exception as error:  # pandas raises many types for unreadable files
        raise BatchInputError(f"{path.name} could not be read as {kind}: {error}") from None
