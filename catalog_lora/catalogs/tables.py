"""Catalog tables in, as a stream of chunks: every physical input row comes out exactly once.

CSV, TSV, JSONL and Parquet are streamed (:func:`iter_chunks`), so memory does not grow with
the file; xlsx and JSON arrays are read whole. A row that cannot be read as intended is kept
and named in the ``error`` column, never dropped: rows with too many or too few fields, an
unterminated quote (read to the end of its line, and the lines after it are rows of their own;
:mod:`catalog_lora.catalogs.csv_records` reads a CSV record by record), blank lines, JSONL
lines that are not JSON objects. Cells of any length are read. A file that
cannot be used at all (not in its encoding, unsupported type, no header) raises
:class:`BatchInputError` before any row is processed.

What a file does not say itself is in :class:`ReadOptions`: a text file's encoding (UTF-8 unless
named; a file that does not decode is refused, never guessed), a CSV's delimiter (sniffed from the
header line unless named) and a workbook's sheet (every sheet with rows unless named, as one table
when they share a header). :func:`reading_note` says how a file was read when that is not what its
type implies.
"""

from __future__ import annotations

import codecs
import hashlib
import json
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from catalog_lora.catalogs.csv_records import Lines, next_record

ERROR_COLUMN = "error"
STREAMED = {".csv": "csv", ".tsv": "csv", ".jsonl": "jsonl", ".parquet": "parquet"}
WHOLE_FILE = {".xlsx": "excel", ".xls": "excel", ".json": "json"}
READERS = {**STREAMED, **WHOLE_FILE}
HASH_BLOCK = 1 << 20
# The delimiters a CSV/TSV header line is sniffed for, by the name a person (and --delimiter) uses.
DELIMITERS = {",": "comma", "\t": "tab", ";": "semicolon", "|": "pipe"}


class BatchInputError(ValueError):
    """A catalog file that cannot be used as it is; the message says what is expected."""


@dataclass(frozen=True)
class ReadOptions:
    """How to read what a catalog file does not say itself.

    ``encoding``: of a text file (CSV, TSV, JSONL, JSON), any Python codec name; bytes that do not
    decode are refused, never guessed. ``delimiter``: of a CSV/TSV, one of :data:`DELIMITERS`;
    ``None`` sniffs it from the header line. ``sheet``: of a workbook; ``None`` reads every sheet
    that has rows (they must share one header), a name reads that sheet only.
    """

    encoding: str = "utf-8"
    delimiter: str | None = None
    sheet: str | None = None

    def __post_init__(self):
        try:
            codecs.lookup(self.encoding)
        except LookupError:
            raise BatchInputError(f"unknown encoding {self.encoding!r}; expected a codec name such as utf-8, cp1252, latin-1") from None
        if self.delimiter is not None and self.delimiter not in DELIMITERS:
            raise BatchInputError(
                f"unsupported delimiter {self.delimiter!r}; expected one of {', '.join(DELIMITERS.values())}"
            )

    @property
    def utf8(self) -> bool:
        return codecs.lookup(self.encoding).name == "utf-8"


DEFAULT = ReadOptions()


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


def scan(path: str | Path, options: ReadOptions = DEFAULT) -> Scan:
    """Check the file before any work (type, size, encoding of text files); hash it and count its lines."""
    path = Path(path)
    kind = _kind(path)
    digest, lines, offset, last = hashlib.sha256(), 0, 0, b"\n"
    decoder = None if kind in ("parquet", "excel") else codecs.getincrementaldecoder(options.encoding)()
    with path.open("rb") as file:
        while block := file.read(HASH_BLOCK):
            digest.update(block)
            lines += block.count(b"\n")
            if decoder:
                _decode(decoder, block, offset, path, options)
            offset, last = offset + len(block), block[-1:]
    lines += last != b"\n"  # a last line without its newline
    if decoder:
        _decode(decoder, b"", offset, path, options, final=True)
    if kind == "parquet":
        rows = _parquet(path).metadata.num_rows
    elif kind in WHOLE_FILE.values():
        rows = len(_whole_file(path, kind, options))
    else:
        rows = max(lines - (kind == "csv"), 0)
    return Scan(digest.hexdigest(), rows)


def _decode(decoder, block: bytes, offset: int, path: Path, options: ReadOptions, final: bool = False) -> None:
    try:
        decoder.decode(block, final)
    except UnicodeDecodeError as error:
        bad = f"bad byte 0x{error.object[error.start]:02x} at offset {offset + error.start}" if error.start < len(
            error.object) else f"a character cut off at the end (offset {offset + error.start})"
        if options.utf8:  # the usual other one is named, never assumed: the user decides
            raise BatchInputError(
                f"{path.name} is not UTF-8 ({bad}). If it was saved in another encoding, name it: re-run with "
                "--encoding cp1252 (what Excel on Windows writes) or the file's own encoding; or save it as UTF-8"
            ) from None
        raise BatchInputError(
            f"{path.name} is not {options.encoding} ({bad}); name the encoding it was saved in (--encoding), "
            "or save it as UTF-8"
        ) from None


def columns_of(path: str | Path, options: ReadOptions = DEFAULT) -> list[str]:
    """The file's columns (header, first JSON object, Parquet schema) without reading its rows."""
    path = Path(path)
    kind = _kind(path)
    if kind == "csv":
        with _open_text(path, options) as file:
            return _header(Lines(file), _delimiter(path, options))
    if kind == "jsonl":
        with _open_text(path, options) as file:
            return next((list(row) for _, row, _ in _json_lines(file) if row), [])
    if kind == "parquet":
        return list(_parquet(path).schema_arrow.names)
    return [str(c) for c in _whole_file(path, kind, options).columns]


def reading_note(path: str | Path, options: ReadOptions = DEFAULT) -> str:
    """How the file was read where its type does not say it (a sniffed delimiter, the sheets of a
    workbook), as a sentence for the user; ``""`` when it was read as its type implies."""
    path = Path(path)
    kind = _kind(path)
    if kind == "csv" and options.delimiter is None:
        delimiter, usual = _delimiter(path, options), _usual_delimiter(path)
        if delimiter != usual:
            name = DELIMITERS[delimiter]
            return (
                f"{path.name} was read as {name}-separated: its header line is split by {name}s, not "
                f"{DELIMITERS[usual]}s (--delimiter names another)"
            )
    if kind == "excel":
        return _workbook(path, options)[1]
    return ""


def repeated_names(columns: Iterable) -> str:
    """The names a header repeats, with their places (``"'text' (columns 1, 2)"``); ``""`` when none."""
    names = [str(c) for c in columns]
    repeated = [n for i, n in enumerate(names) if names.index(n) == i and names.count(n) > 1]
    return "; ".join(
        f"{name!r} (columns {', '.join(str(i + 1) for i, n in enumerate(names) if n == name)})" for name in repeated
    )


def check_header(columns: Iterable) -> None:
    """Refuse a header that repeats a name: a column is chosen by its name, so each name must be one column."""
    if repeated := repeated_names(columns):
        raise BatchInputError(
            f"the header repeats a column name: {repeated}; rename them so each column has its own name"
        )


def check_column(columns: Iterable, column: str) -> None:
    """Refuse a missing column, naming the columns the file does have (no guessing)."""
    columns = [str(c) for c in columns if c != ERROR_COLUMN]
    if column not in columns:
        raise BatchInputError(f"column {column!r} not found; the file has: {', '.join(columns)}")


def read_table(path: str | Path, options: ReadOptions = DEFAULT) -> pd.DataFrame:
    """The whole table as text columns; an ``error`` column is there when a row had a problem."""
    path = Path(path)
    if _kind(path) in STREAMED.values():
        scan(path, options)  # refuses a text file that is not in its encoding
    chunks = list(iter_chunks(path, 10_000, options))
    if not chunks:
        raise BatchInputError(f"{path.name} has a header but no rows")
    frame = pd.concat(chunks, ignore_index=True)
    if not (frame[ERROR_COLUMN] != "").any():
        frame = frame.drop(columns=[ERROR_COLUMN])
    return frame


def iter_chunks(path: str | Path, chunk_rows: int, options: ReadOptions = DEFAULT) -> Iterator[pd.DataFrame]:
    """Frames of at most ``chunk_rows`` rows in input order, each with an ``error`` column (``""`` when fine).

    The index counts rows from 0 across the whole file. Call :func:`scan` first: it refuses
    files that are not in their encoding before any row is read.
    """
    path = Path(path)
    kind = _kind(path)
    try:
        if kind == "csv":
            yield from _chunked(_csv_rows(path, options), chunk_rows)
        elif kind == "jsonl":
            yield from _chunked(_jsonl_rows(path, options), chunk_rows)
        elif kind == "parquet":
            yield from _parquet_chunks(path, chunk_rows)
        else:
            frame = _whole_file(path, kind, options)
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


def _open_text(path: Path, options: ReadOptions):
    return path.open("r", encoding="utf-8-sig" if options.utf8 else options.encoding, newline="")


def _usual_delimiter(path: Path) -> str:
    return "\t" if path.suffix.lower() == ".tsv" else ","


def _delimiter(path: Path, options: ReadOptions) -> str:
    """The named delimiter, else the one of :data:`DELIMITERS` that splits the header line most
    (quoted names aside); the file type's own one on a tie or a header of one column."""
    if options.delimiter is not None:
        return options.delimiter
    usual = _usual_delimiter(path)
    with _open_text(path, options) as file:
        header = re.sub(r'"[^"]*"', "", file.readline())
    best = max(DELIMITERS, key=lambda d: (header.count(d), d == usual))
    return best if header.count(best) else usual


def _header(lines: Lines, delimiter: str) -> list[str]:
    record = next_record(lines, delimiter, None)
    if record is None or not record[1] or record[2]:
        raise BatchInputError("the file has no header row; expected column names on line 1")
    return record[1]


def _csv_rows(path: Path, options: ReadOptions) -> Iterator[tuple[list[str], list[str], str]]:
    delimiter = _delimiter(path, options)
    with _open_text(path, options) as file:
        lines = Lines(file)
        header = _header(lines, delimiter)
        while (record := next_record(lines, delimiter, len(header))) is not None:
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


def _jsonl_rows(path: Path, options: ReadOptions) -> Iterator[tuple[list[str], list[str], str]]:
    columns = columns_of(path, options)
    if not columns:
        raise BatchInputError(f"{path.name} has no JSON object line; expected one object per line")
    with _open_text(path, options) as file:
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


def _whole_file(path: Path, kind: str, options: ReadOptions) -> pd.DataFrame:
    if kind == "excel":
        return _workbook(path, options)[0]
    try:
        return pd.read_json(path, dtype=str, encoding=options.encoding).fillna("")
    except Exception as error:  # pandas raises many types for unreadable files
        raise BatchInputError(f"{path.name} could not be read as {kind}: {error}") from None


def _workbook(path: Path, options: ReadOptions) -> tuple[pd.DataFrame, str]:
    """``(table, note)``: the named sheet, or every sheet with rows as one table when they share a
    header (a workbook split into sheets is one catalog); sheets of different headers are refused
    unless one is named, so no sheet's rows are left out unsaid."""
    try:
        sheets = pd.read_excel(path, sheet_name=None, dtype=str, keep_default_na=False)
    except Exception as error:  # pandas and openpyxl raise many types for unreadable files
        raise BatchInputError(f"{path.name} could not be read as excel: {error}") from None
    names = list(sheets)
    listed = ", ".join(f"{name!r} ({len(frame):,} rows)" for name, frame in sheets.items())
    if options.sheet is not None:
        if options.sheet not in sheets:
            raise BatchInputError(f"{path.name} has no sheet {options.sheet!r}; its sheets: {listed}")
        note = f"read sheet {options.sheet!r} of {path.name} only (its sheets: {listed})" if len(names) > 1 else ""
        return sheets[options.sheet], note
    filled = {name: frame for name, frame in sheets.items() if len(frame)}
    if len(names) == 1 or not filled:
        return sheets[names[0]], ""
    if len(filled) == 1:
        (name, frame), = filled.items()
        return frame, f"read sheet {name!r} of {path.name}, the only one with rows (sheets: {listed})"
    header = list(next(iter(filled.values())).columns)
    if any(list(frame.columns) != header for frame in filled.values()):
        headers = "; ".join(f"{name!r}: {', '.join(map(str, frame.columns))}" for name, frame in filled.items())
        raise BatchInputError(
            f"{path.name} has {len(filled)} sheets with rows and different columns ({headers}); name the sheet "
            "to read (--sheet NAME)"
        )
    note = f"read the {len(filled)} sheets of {path.name} that have rows, in order, as one table: {listed}"
    return pd.concat(filled.values(), ignore_index=True), note
