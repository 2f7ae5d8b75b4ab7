"""Batch prediction over a catalog table: every row comes out with a result or an error.

Used by ``python -m training.predict`` and by the Space's Batch upload tab.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import pandas as pd

from catalog_lora.catalogs.tables import ERROR_COLUMN, BatchInputError, check_column, check_header, read_table
from catalog_lora.inference.engine import Engine

# A spreadsheet runs a cell that starts with one of these as a formula (OWASP, CSV injection)...
FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")
# ...except a plain number or phone number (-5, +44 20 7946 0000, +1 (555) 010-9999): digits, spaces and
# + - . , ( ) / only, which compute nothing but arithmetic. Kept as they are, so ids still join.
PLAIN_NUMBER = re.compile(r"(?=.*\d)[+-]?[\d.(][\d .,()/+-]*")
# A text without a single letter does not describe a product (a price, a SKU, "=1+1"); the Tag tab
# refuses it and a batch marks it, by this one test.
LETTER = re.compile(r"[^\W\d_]")
# Longer texts are cut before the model sees them (the model's window is far shorter) and flagged.
MODEL_TEXT_CHARS = 50_000
TRUNCATED = "text truncated to the model's limit"
CONFIDENCE_SUFFIX = "_confidence"
REVIEW_SUFFIX = "_needs_review"

__all__ = [
    "ERROR_COLUMN", "BatchInputError", "blank_lines_note", "check_column", "escape_formulas", "predict_table",
    "read_table", "write_table",
]


def has_letters(text: str) -> bool:
    """Whether a text can describe a product at all; one without letters never reaches the model."""
    return bool(LETTER.search(text))


def no_letters(column: str) -> str:
    """The error of a row whose text has no letters."""
    return f"no letters in {column}: not a product text, so nothing was sent to the model"


def blank_lines_note(frame: pd.DataFrame) -> str:
    """``" (N blank lines, marked in the error column)"`` when the file had blank lines, else ``""``."""
    if ERROR_COLUMN not in frame.columns:
        return ""
    blank = int(frame[ERROR_COLUMN].str.contains("blank line (line", regex=False).sum())
    return f" ({blank:,} blank line{'s' if blank != 1 else ''}, marked in the error column)" if blank else ""


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
    batch_tokens: int = 0,
    progress: Callable[[int, int], None] | None = None,
    confidence: bool = False,
) -> pd.DataFrame:
    """Add one column per job (adapter name) and an ``error`` column; never drops a row.

    ``batch_size`` rows at a time go to the engine, which cuts them into batches of at most ``batch_tokens``
    padded tokens when that is set (:meth:`catalog_lora.inference.engine.Engine.predict`). With ``confidence``, a label job also gets ``<job>_confidence`` and ``<job>_needs_review``
    columns (:func:`confidence_cells`).

    Empty texts and texts without letters (:func:`has_letters`) are marked and skipped without a
    model call; a batch that fails is retried row by row, so one bad row cannot take its
    neighbours down with it.
    """
    check_header(frame.columns)
    for column in [text_column, *(attribute_columns or [])]:
        check_column(frame.columns, column)
    out = frame.drop(columns=[ERROR_COLUMN], errors="ignore")
    errors = list(frame[ERROR_COLUMN]) if ERROR_COLUMN in frame.columns else [""] * len(frame)
    texts = [str(t) if t is not None else "" for t in frame[text_column].tolist()]
    for i, text in enumerate(texts):
        if len(text) > MODEL_TEXT_CHARS:
            texts[i] = text[:MODEL_TEXT_CHARS]
            errors[i] = "; ".join(filter(None, [errors[i], TRUNCATED]))
    attributes = [
        {c: str(frame.iloc[i][c]) for c in attribute_columns} if attribute_columns else None for i in range(len(frame))
    ]
    good = [i for i, t in enumerate(texts) if has_letters(t)]
    for i in sorted(set(range(len(frame))) - set(good)):
        problem = no_letters(text_column) if texts[i].strip() else f"empty {text_column}"
        errors[i] = "; ".join(filter(None, [errors[i], problem]))
    done, total = 0, len(good) * len(jobs)
    for job in jobs:
        task = engine.spec(job).info.task
        column = [""] * len(frame)
        scores, review = [""] * len(frame), [""] * len(frame)
        for start in range(0, len(good), batch_size):
            index = good[start : start + batch_size]
            for i, result in zip(index, _predict_rows(engine, job, texts, attributes, index, batch_size, batch_tokens), strict=True):
                if isinstance(result, Exception):
                    errors[i] = "; ".join(filter(None, [errors[i], f"{job}: {result}"]))
                else:
                    column[i] = format_prediction(result, task)
                    scores[i], review[i] = confidence_cells(result)
                    if result.truncated and TRUNCATED not in errors[i]:
                        errors[i] = "; ".join(filter(None, [errors[i], TRUNCATED]))
            done += len(index)
            if progress:
                progress(done, total)
        out[job] = column
        if confidence and task != "description":
            out[job + CONFIDENCE_SUFFIX], out[job + REVIEW_SUFFIX] = scores, review
    out[ERROR_COLUMN] = errors
    return out


def _predict_rows(engine, job, texts, attributes, index, batch_size, batch_tokens) -> list:
    try:
        return engine.predict(
            job, [texts[i] for i in index], [attributes[i] for i in index], batch_size=batch_size, batch_tokens=batch_tokens
        )
    except Exception:  # retried row by row below, so the failure lands on the row that caused it
        pass
    results = []
    for i in index:
        try:
            results.append(engine.predict(job, [texts[i]], [attributes[i]])[0])
        except Exception as error:  # recorded in the row's error column
            results.append(error)
    return results


def escape_cell(value):
    """A cell (or header) safe to open in a spreadsheet (CSV formula injection): ``=1+1`` → ``'=1+1``;
    plain numbers (:data:`PLAIN_NUMBER`) and anything not text stay as they are."""
    if isinstance(value, str) and value.startswith(FORMULA_PREFIXES) and not PLAIN_NUMBER.fullmatch(value):
        return "'" + value
    return value


def escape_formulas(frame: pd.DataFrame) -> pd.DataFrame:
    """Make every cell and every header safe to open in a spreadsheet (:func:`escape_cell`)."""
    escaped = frame.map(escape_cell)
    escaped.columns = [escape_cell(c) for c in frame.columns]
    return escaped


def write_table(frame: pd.DataFrame, path: str | Path) -> Path:
    path = Path(path)
    escape_formulas(frame).to_csv(path, index=False)
    return path
