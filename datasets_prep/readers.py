"""Robust readers for the table formats catalogs come in: CSV, JSON lines, JSON array, xlsx.

Each reader returns a :class:`Table` of string-keyed rows and counts what it read into a
:class:`~datasets_prep.report.Report`. Problems with the whole file (empty, not UTF-8, not a
workbook, a missing column) raise :class:`DataError` naming the file and what was expected;
problems with single rows (wrong number of fields, a line that is not JSON) skip the row and
count it, because one bad line should not cost a whole catalog.
"""

from __future__ import annotations

import csv
import difflib
import io
import json
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path

from tqdm.auto import tqdm

from catalog_lora.records.dataset_files import Report
from catalog_lora.records.labels import normalize_key

CSV_SUFFIXES = {".csv", ".tsv", ".txt"}
JSONL_SUFFIXES = {".jsonl", ".ndjson"}
JSON_SUFFIXES = {".json"}
XLSX_SUFFIXES = {".xlsx", ".xlsm"}
SUPPORTED = sorted(CSV_SUFFIXES | JSONL_SUFFIXES | JSON_SUFFIXES | XLSX_SUFFIXES)
UTF8_BOM = b"\xef\xbb\xbf"
# how many bad lines are listed by number in the report notes; the rest are only counted
MAX_LISTED = 5

# product descriptions can be far longer than csv's default 128 KiB field limit
csv.field_size_limit(min(sys.maxsize, 2**31 - 1))


class DataError(ValueError):
    """A source file that cannot be used as given; the message names the file and what is expected."""


@dataclass
class Table:
    path: Path
    columns: list[str]
    rows: list[dict] = field(default_factory=list)

    def find(self, name: str) -> str | None:
        """The column called ``name``, forgiving case and surrounding spaces; ``None`` if absent."""
        if name in self.columns:
            return name
        wanted = normalize_key(name)
        return next((column for column in self.columns if normalize_key(column) == wanted), None)

    def column(self, *names: str, what: str = "") -> str:
        """The first of ``names`` that the table has, else a :class:`DataError` naming them."""
        for name in names:
            found = self.find(name)
            if found is not None:
                return found
        raise missing_column_error(self.path, names, self.columns, what)

    def require(self, *names: str) -> list[str]:
        return [self.column(name) for name in names]


def missing_column_error(path: Path | str, names: Iterable[str], found: list[str], what: str = "") -> DataError:
    names = list(names)
    wanted = " or ".join(repr(name) for name in names)
    role = f" ({what})" if what else ""
    message = f"{path}: missing column {wanted}{role}; columns found: {', '.join(map(repr, found)) or 'none'}"
    close = difflib.get_close_matches(names[0], found, n=1, cutoff=0.6)
    if close:
        message += f"; did you mean {close[0]!r}?"
    return DataError(message)


def progress(iterable: Iterable, desc: str, total: int | None = None) -> Iterator:
    """A progress bar that only shows when the work takes more than two seconds on a terminal."""
    return iter(tqdm(iterable, desc=desc, total=total, delay=2, leave=False, disable=None, unit=" rows"))


def read_text(path: str | Path, encoding: str = "utf-8") -> str:
    """The whole file as text, with a clear error when it is empty or not in ``encoding``."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    data = path.read_bytes()
    if not data.strip():
        raise DataError(f"{path} is empty; expected a header row and data rows")
    offset = 0
    if encoding.lower().replace("_", "-") in ("utf-8", "utf8", "utf-8-sig") and data.startswith(UTF8_BOM):
        offset = len(UTF8_BOM)  # Excel writes a BOM before UTF-8 CSVs
    try:
        text = data[offset:].decode(encoding)
    except UnicodeDecodeError as error:
        at = offset + error.start
        line = data[:at].count(b"\n") + 1
        raise DataError(
            f"{path} is not valid {encoding}: byte 0x{data[at]:02x} at byte offset {at} (line {line}) cannot be "
            f"decoded; expected {encoding} text. Re-save the file as UTF-8 (in Excel: 'CSV UTF-8'), or pass the "
            f"encoding it was written in (for example encoding='cp1252')"
        ) from None
    except LookupError:
        raise DataError(f"encoding={encoding!r} is not a text encoding Python knows") from None
    return text


def read_table(
    path: str | Path,
    report: Report | None = None,
    *,
    fieldnames: list[str] | None = None,
    sheet: str | int | None = None,
    encoding: str = "utf-8",
    required: Iterable[str] = (),
) -> Table:
    """Read a CSV / TSV / JSON lines / JSON array / xlsx file by its suffix.

    ``fieldnames`` names the columns of a header-less CSV. ``required`` columns are checked
    at once so a wrong file fails before any work is done.
    """
    path = Path(path)
    report = report if report is not None else Report()
    suffix = path.suffix.lower()
    if suffix in CSV_SUFFIXES:
        table = read_csv(path, report, fieldnames=fieldnames, encoding=encoding)
    elif suffix in JSONL_SUFFIXES:
        table = read_jsonl(path, report, encoding=encoding)
    elif suffix in JSON_SUFFIXES:
        table = read_json(path, report, encoding=encoding)
    elif suffix in XLSX_SUFFIXES:
        table = read_xlsx(path, report, sheet=sheet)
    elif suffix == ".xls":
        raise DataError(f"{path}: the old binary .xls format is not supported; save it as .xlsx or CSV (UTF-8)")
    else:
        raise DataError(
            f"{path}: unknown file type {suffix or '(no suffix)'!r}; expected one of {', '.join(SUPPORTED)}"
        )
    table.require(*required)
    return table


def _header(names: list[str], path: Path) -> list[str]:
    columns = []
    for i, name in enumerate(names):
        name = (name or "").strip().lstrip("\ufeff")
        columns.append(name or f"unnamed_{i}")  # pandas writes an unnamed index column
    duplicates = sorted({c for c in columns if columns.count(c) > 1})
    if duplicates:
        raise DataError(f"{path}: column names must be unique; repeated: {', '.join(map(repr, duplicates))}")
    return columns


def _bad_row(report: Report, path: Path, reason: str, where: str, listed: dict) -> None:
    report.drop(reason)
    listed[reason] = listed.get(reason, 0) + 1
    if listed[reason] <= MAX_LISTED:
        report.note(f"{path.name}: {where}")


def read_csv(path: Path, report: Report, *, fieldnames: list[str] | None = None, encoding: str = "utf-8") -> Table:
    """CSV (TSV for ``.tsv``) through the csv module; rows with the wrong field count are skipped and counted."""
    text = read_text(path, encoding)
    delimiter = "\t" if path.suffix.lower() == ".tsv" else ","
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    try:
        columns = _header(fieldnames if fieldnames else next(reader), path)
    except csv.Error as error:
        raise DataError(f"{path}: the header row is not valid CSV ({error})") from None
    table = Table(path, columns)
    read, listed = 0, {}
    # the csv reader (not a generator) goes on after a csv.Error; a wrapping generator would stop
    bar = tqdm(desc=f"reading {path.name}", delay=2, leave=False, disable=None, unit=" rows")
    while True:
        try:
            row = next(reader)
        except StopIteration:
            break
        except csv.Error as error:
            read += 1
            _bad_row(report, path, "malformed_row", f"line {reader.line_num}: not valid CSV ({error})", listed)
            continue
        finally:
            bar.update(1)
        if not row:
            continue  # a blank line is no row at all
        read += 1
        if not any(cell.strip() for cell in row):
            report.drop("empty_row")  # counted, not listed: some exports end in thousands of them
            continue
        if len(row) != len(columns):
            where = f"line {reader.line_num}: {len(row)} fields, expected {len(columns)} (broken quoting?)"
            _bad_row(report, path, "malformed_row", where, listed)
            continue
        table.rows.append(dict(zip(columns, row, strict=True)))
    bar.close()
    report.read(path, read)
    return table


def _objects_table(path: Path, report: Report, items: Iterable[tuple[str, object]], listed: dict) -> Table:
    """The JSON objects among ``items`` (``(where, item)`` pairs) as a table; any other item is a malformed row."""
    table = Table(path, [])
    seen: dict[str, None] = {}
    for where, item in items:
        if not isinstance(item, dict):
            _bad_row(report, path, "malformed_row", f"{where}: a JSON {type(item).__name__}, expected an object", listed)
            continue
        seen.update(dict.fromkeys(item))
        table.rows.append(item)
    table.columns = list(seen)
    return table


def read_jsonl(path: Path, report: Report, *, encoding: str = "utf-8", text: str | None = None) -> Table:
    """One JSON object per line; lines that are not a JSON object are skipped and counted."""
    text = read_text(path, encoding) if text is None else text
    lines = [(n, line) for n, line in enumerate(progress(text.splitlines(), desc=f"reading {path.name}"), 1) if line.strip()]
    listed: dict = {}

    def parsed() -> Iterator[tuple[str, object]]:
        for number, line in lines:
            try:
                yield f"line {number}", json.loads(line)
            except json.JSONDecodeError as error:
                _bad_row(report, path, "malformed_row", f"line {number}: not valid JSON ({error.msg})", listed)

    table = _objects_table(path, report, parsed(), listed)
    report.read(path, len(lines))
    return table


def read_json(path: Path, report: Report, *, encoding: str = "utf-8") -> Table:
    """A JSON array of objects; a ``.json`` file holding JSON lines (like ``trn.json``) is read as such."""
    text = read_text(path, encoding)
    stripped = text.lstrip()
    if not stripped.startswith("["):
        if stripped.startswith("{"):
            try:
                json.loads(text)
            except json.JSONDecodeError:
                return read_jsonl(path, report, text=text)  # several objects: JSON lines
            raise DataError(f"{path} holds a single JSON object; expected an array of objects or one object a line")
        raise DataError(f"{path}: expected a JSON array of objects or JSON lines, found {stripped[:20]!r}")
    try:
        items = json.loads(text)
    except json.JSONDecodeError as error:
        raise DataError(f"{path} is not valid JSON: {error.msg} at line {error.lineno} column {error.colno}") from None
    table = _objects_table(path, report, ((f"item {n}", item) for n, item in enumerate(items)), {})
    report.read(path, len(items))
    return table


def _cell(value) -> str:
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))  # Excel stores every number as a float: 3 not 3.0
    if isinstance(value, datetime | date):
        return value.isoformat()
    return str(value)


def read_xlsx(path: Path, report: Report, *, sheet: str | int | None = None) -> Table:
    """One sheet of a workbook (the first unless ``sheet`` names or numbers another)."""
    import zipfile

    from openpyxl import load_workbook
    from openpyxl.utils.exceptions import InvalidFileException

    if not path.is_file():
        raise DataError(f"{path}: no such file")
    if path.stat().st_size == 0:
        raise DataError(f"{path} is empty; expected an .xlsx workbook")
    try:
        workbook = load_workbook(path, read_only=True, data_only=True)
    except (zipfile.BadZipFile, InvalidFileException, KeyError, OSError, ValueError) as error:
        raise DataError(f"{path} cannot be read as an .xlsx workbook ({type(error).__name__}: {error})") from None
    try:
        names = workbook.sheetnames
        if sheet is None:
            sheet_name = names[0]
        elif isinstance(sheet, int) or str(sheet).isdigit():
            if not 0 <= int(sheet) < len(names):
                raise DataError(f"{path}: sheet number {sheet} does not exist; sheets (from 0): {names}")
            sheet_name = names[int(sheet)]
        elif sheet in names:
            sheet_name = sheet
        else:
            raise DataError(f"{path}: no sheet named {sheet!r}; sheets: {', '.join(map(repr, names))}")
        try:
            rows = [[_cell(v) for v in row] for row in workbook[sheet_name].iter_rows(values_only=True)]
        except (KeyError, ValueError, zipfile.BadZipFile) as error:
            raise DataError(f"{path}: sheet {sheet_name!r} cannot be read ({type(error).__name__}: {error})") from None
    finally:
        workbook.close()
    rows = [row for row in rows if any(cell.strip() for cell in row)]  # Excel keeps formatted empty rows
    if not rows:
        raise DataError(f"{path}: sheet {sheet_name!r} is empty; expected a header row and data rows")
    header = list(rows[0])
    while header and not header[-1].strip():
        header.pop()  # trailing formatted-but-empty header cells
    columns = _header(header, path)
    table = Table(path, columns)
    listed: dict = {}
    for number, row in enumerate(rows[1:], start=2):
        extra = [cell for cell in row[len(columns) :] if cell.strip()]
        if extra:
            where = f"sheet {sheet_name!r} row {number}: values beyond the {len(columns)} named columns"
            _bad_row(report, path, "malformed_row", where, listed)
            continue
        row = list(row[: len(columns)]) + [""] * (len(columns) - len(row))
        table.rows.append(dict(zip(columns, row, strict=True)))
    report.read(path, len(rows) - 1)
    return table
