"""Batch prediction over a catalog table: every row comes out with a result or an error.

Used by ``python -m training.predict`` and by the Space's Batch upload tab.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable
from pathlib import Path

import pandas as pd
from tqdm.auto import tqdm

from catalog_lora.engine import Engine

ERROR_COLUMN = "error"
BLANK_LINES = "blank_lines"
FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")
CONFIDENCE_SUFFIX = "_confidence"
REVIEW_SUFFIX = "_needs_review"
READERS = {".csv": "csv", ".tsv": "csv", ".xlsx": "excel", ".xls": "excel", ".jsonl": "jsonl", ".json": "json"}


class BatchInputError(ValueError):
    """A catalog file that cannot be used as it is; the message says what is expected."""


def read_table(path: str | Path) -> pd.DataFrame:
    """Read a CSV/TSV, xlsx or JSON(L) catalog as text columns, with errors a person can act on."""
    path = Path(path)
    kind = READERS.get(path.suffix.lower())
    if kind is None:
        raise BatchInputError(f"{path.name}: unsupported file type {path.suffix!r}; expected one of {', '.join(READERS)}")
    if not path.is_file() or path.stat().st_size == 0:
        raise BatchInputError(f"{path.name} is empty; expected a header row and at least one product row")
    try:
        if kind == "csv":
            raw = path.read_bytes()
            try:
                raw.decode("utf-8-sig")
            except UnicodeDecodeError as error:
                raise BatchInputError(
                    f"{path.name} is not UTF-8 (bad byte at offset {error.start}); save it as UTF-8 CSV and upload again"
                ) from None
            frame = _read_csv(raw.decode("utf-8-sig"), "\t" if path.suffix.lower() == ".tsv" else ",")
        elif kind == "excel":
            frame = pd.read_excel(path, dtype=str, keep_default_na=False)
        else:
            frame = pd.read_json(path, lines=kind == "jsonl", dtype=str)
    except BatchInputError:
        raise
    except Exception as error:  # pandas raises many types for unreadable files
        raise BatchInputError(f"{path.name} could not be read as {kind}: {error}") from None
    if frame.empty:
        raise BatchInputError(f"{path.name} has a header but no rows")
    return frame


def _read_csv(text: str, delimiter: str) -> pd.DataFrame:
    """CSV rows with the wrong number of fields are kept and marked in the error column, not dropped.

    Empty lines hold no product, so they are not rows; their count is kept in ``frame.attrs[BLANK_LINES]``
    for the summary. A line of empty fields (``,,``) is a row, and comes out with an error.
    """
    reader = csv.reader(io.StringIO(text), delimiter=delimiter)
    header = next(reader, None)
    if header is None:
        raise BatchInputError("the file has no header row")
    records, errors, blank = [], [], 0
    for row in reader:
        if not row:
            blank += 1
            continue
        problem = ""
        if len(row) != len(header):
            problem = f"malformed row (line {reader.line_num}): {len(row)} fields, expected {len(header)}"
            row = (row + [""] * len(header))[: len(header)]
        records.append(row)
        errors.append(problem)
    frame = pd.DataFrame(records, columns=header, dtype=str)
    if any(errors):
        frame[ERROR_COLUMN] = errors
    frame.attrs[BLANK_LINES] = blank
    return frame


def blank_lines_note(frame: pd.DataFrame) -> str:
    """``" (N blank lines skipped)"`` when the file had blank lines, else ``""``."""
    blank = frame.attrs.get(BLANK_LINES, 0)
    return f" ({blank:,} blank line{'s' if blank != 1 else ''} skipped)" if blank else ""


def check_column(frame: pd.DataFrame, column: str) -> None:
    if column not in frame.columns:
        raise BatchInputError(f"column {column!r} not found; the file has: {', '.join(map(str, frame.columns))}")


def format_prediction(prediction, task: str) -> str:
    if task == "description":
        return prediction.text
    return ", ".join(prediction.labels)


def confidence_cells(prediction) -> tuple[str, str]:
    """A prediction's confidence as CSV cells: each chosen label's probability, in the order of the
    labels, and ``"yes"`` when a label is below the adapter's review threshold."""
    scores = ", ".join(f"{prediction.confidence[label]:.3f}" for label in prediction.labels if label in prediction.confidence)
    return scores, "yes" if prediction.needs_review else ""


def predict_table(
    engine: Engine,
    frame: pd.DataFrame,
    text_column: str,
    jobs: list[str],
    *,
    attribute_columns: list[str] | None = None,
    batch_size: int = 16,
    progress: Callable[[int, int], None] | None = None,
    show_progress: bool = False,
    confidence: bool = False,
) -> pd.DataFrame:
    """Add one column per job (adapter name) and an ``error`` column; never drops a row.

    With ``confidence``, a label job also gets ``<job>_confidence`` and ``<job>_needs_review``
    columns (:func:`confidence_cells`).

    Empty texts are marked and skipped without a model call; a batch that fails is retried
    row by row, so one bad row cannot take its neighbours down with it.
    """
    check_column(frame, text_column)
    for column in attribute_columns or []:
        check_column(frame, column)
    out = frame.drop(columns=[ERROR_COLUMN], errors="ignore")
    errors = list(frame[ERROR_COLUMN]) if ERROR_COLUMN in frame.columns else [""] * len(frame)
    texts = [str(t) if t is not None else "" for t in frame[text_column].tolist()]
    attributes = [
        {c: str(frame.iloc[i][c]) for c in attribute_columns} if attribute_columns else None for i in range(len(frame))
    ]
    good = [i for i, t in enumerate(texts) if t.strip()]
    for i in set(range(len(frame))) - set(good):
        errors[i] = "; ".join(filter(None, [errors[i], f"empty {text_column}"]))
    done, total = 0, len(good) * len(jobs)
    bar = tqdm(total=total, desc="batch", unit="row", disable=not show_progress)
    for job in jobs:
        task = engine.spec(job).info.task
        column = [""] * len(frame)
        scores, review = [""] * len(frame), [""] * len(frame)
        for start in range(0, len(good), batch_size):
            index = good[start : start + batch_size]
            for i, result in zip(index, _predict_rows(engine, job, texts, attributes, index, batch_size), strict=True):
                if isinstance(result, Exception):
                    errors[i] = "; ".join(filter(None, [errors[i], f"{job}: {result}"]))
                else:
                    column[i] = format_prediction(result, task)
                    scores[i], review[i] = confidence_cells(result)
                    if result.truncated and "truncated" not in errors[i]:
                        errors[i] = "; ".join(filter(None, [errors[i], "text truncated to the model's limit"]))
            done += len(index)
            bar.update(len(index))
            if progress:
                progress(done, total)
        out[job] = column
        if confidence and task != "description":
            out[job + CONFIDENCE_SUFFIX], out[job + REVIEW_SUFFIX] = scores, review
    bar.close()
    out[ERROR_COLUMN] = errors
    return out


def _predict_rows(engine, job, texts, attributes, index, batch_size) -> list:
    try:
        return engine.predict(job, [texts[i] for i in index], [attributes[i] for i in index], batch_size=batch_size)
    except Exception:  # retried row by row below, so the failure lands on the row that caused it
        pass
    results = []
    for i in index:
        try:
            results.append(engine.predict(job, [texts[i]], [attributes[i]])[0])
        except Exception as error:  # recorded in the row's error column
            results.append(error)
    return results


def escape_formulas(frame: pd.DataFrame) -> pd.DataFrame:
    """Make every cell safe to open in a spreadsheet (CSV formula injection): ``=1+1`` → ``'=1+1``."""

    def escape(value):
        if isinstance(value, str) and value.startswith(FORMULA_PREFIXES):
            return "'" + value
        return value

    return frame.map(escape)


def write_table(frame: pd.DataFrame, path: str | Path) -> Path:
    path = Path(path)
    escape_formulas(frame).to_csv(path, index=False)
    return path
