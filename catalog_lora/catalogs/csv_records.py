"""One CSV/TSV text, record by record: every physical line in exactly one record, a stray quote named.

A quoted cell may span lines. :func:`next_record` reads one, and takes a quote that never closes
properly as a stray quote: the record is read to the end of its line and the lines after it are
records of their own. :mod:`catalog_lora.catalogs.tables` reads catalog files with it.
"""

from __future__ import annotations

import csv
import re
import sys

# A quoted cell may span lines; one still open after this many lines is taken as a stray quote.
MAX_QUOTED_LINES = 10_000

csv.field_size_limit(min(sys.maxsize, 2**31 - 1))  # a cell of any length is a cell, not a refused file


class Lines:
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


def _parse(text: str, delimiter: str) -> tuple[list[str] | None, bool]:
    """``(fields, well_formed)`` of one CSV record; the fields are ``None`` while a quoted cell is still open."""
    try:
        return next(csv.reader([text], delimiter=delimiter, strict=True), []), True
    except csv.Error as error:
        if "unexpected end of data" in str(error):
            return None, True
        return next(csv.reader([text], delimiter=delimiter), []), False  # e.g. "ab"c: read leniently, as spreadsheets do


def _id_shape(line: str, delimiter: str) -> str | None:
    """The shape of a line's first field when it looks like an id (a digit in it, no quote): ``a14-3`` → ``a9-9``.

    A line inside a quoted cell that starts with a field of the same shape as its record's first
    field starts a new row: the quote before it was never closed."""
    first, found, _ = line.partition(delimiter)
    first = first.strip()
    if not found or '"' in first or not any(c.isdigit() for c in first):
        return None
    return re.sub(r"(.)\1+", r"\1", re.sub(r"\d", "9", re.sub(r"[^\W\d_]", "a", first)))


def next_record(lines: Lines, delimiter: str, width: int | None) -> tuple[int, list[str], str] | None:
    """The next record: ``(line, fields, problem)``. A quote that is never closed is read to the end of its line.

    A quoted cell may span lines; it is taken as a stray quote (and the lines after it as rows of
    their own) when it stays open to the end of the file, when a line in it starts like a new row
    (:func:`_id_shape`), or when what it closes into is not a well-formed record of the header's width."""
    first = lines.next()
    if first is None:
        return None
    number, line = first
    if not line.strip("\r\n"):
        return number, [], f"blank line (line {number})"
    fields, _ = _parse(line, delimiter)
    if fields is not None:  # one line: read as it is, leniently if need be
        return number, _strip_end(fields), ""
    taken, shape = [first], _id_shape(line, delimiter)
    while len(taken) < MAX_QUOTED_LINES and (more := lines.next()) is not None:
        taken.append(more)
        if shape and _id_shape(more[1], delimiter) == shape:
            break
        fields, well_formed = _parse("".join(text for _, text in taken), delimiter)
        if fields is not None:
            if well_formed and (width is None or len(fields) == width):
                return number, _strip_end(fields), ""
            break
    lines.put_back(taken[1:])  # a stray quote: the lines it swallowed are rows of their own
    fields = next(csv.reader([line.rstrip("\r\n")], delimiter=delimiter), [])
    return number, fields, f"unterminated quote (line {number}): read to the end of the line"


def _strip_end(fields: list[str]) -> list[str]:
    if fields:
        fields[-1] = fields[-1].rstrip("\r\n")
    return fields
