"""The Batch tab: an uploaded catalog checked, run in the background (:mod:`catalog_lora.catalogs.background`),
its progress and the finished rows shown; ``/batch`` in the API waits for the whole file.
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path

import gradio as gr
import pandas as pd

from catalog_lora.catalogs.background import FAILED, QUEUED, BatchJob, find_job
from catalog_lora.catalogs.batch import (
    CONFIDENCE_SUFFIX,
    ERROR_COLUMN,
    REVIEW_SUFFIX,
    BatchInputError,
    blank_lines_note,
    escape_formulas,
    read_table,
)
from catalog_lora.catalogs.tables import columns_of, reading_note, repeated_names
from catalog_space.models import GPU, Models, run_chunk
from catalog_space.settings import ANSWER_NAMES

logger = logging.getLogger("catalog_lora.space")

OUTPUT_COLUMNS = {"tagging": "predicted_tags", "category": "predicted_category", "description": "generated_description"}
CONFIDENCE_COLUMNS = {"tagging": "tags_confidence", "category": "category_confidence"}
REVIEW_COLUMN = "needs_review"
# A file's text column is taken without asking only when it is named exactly like this (any case).
TEXT_COLUMNS = ("text", "title")
PREVIEW_ROWS = 20
CHUNK_ROWS = 256  # batch rows per (GPU) call: progress moves, the finished part is saved, a ZeroGPU call stays short
POLL_SECONDS = 1.0  # how often the Batch tab shows a running job's progress


def file_path(file) -> str | None:
    """The path of an uploaded file, whatever form Gradio or a test hands it in."""
    if file is None:
        return None
    if isinstance(file, dict):
        return file.get("path") or file.get("name")
    return str(getattr(file, "path", None) or getattr(file, "name", None) or file)


def text_column_of(columns: list[str]) -> str | None:
    """The file's text column when one is named exactly as expected (``text`` or ``title``), else
    ``None``: the user chooses it; a column is never guessed from its contents."""
    lowered = {str(c).strip().lower(): c for c in columns}
    return next((lowered[name] for name in TEXT_COLUMNS if name in lowered), None)


def read_upload(models: Models, file) -> pd.DataFrame:
    """The uploaded table, or :class:`BatchInputError` with a message a person can act on."""
    settings = models.settings
    path = file_path(file)
    if not path:
        raise BatchInputError("Upload a CSV or xlsx file first.")
    size = Path(path).stat().st_size if Path(path).is_file() else 0
    if size > settings.max_file_bytes:
        raise BatchInputError(
            f"The file is {size / 1024 / 1024:.1f} MB; uploads are limited to {settings.max_file_size_mb:g} MB. "
            "Split it into smaller files."
        )
    frame = read_table(path)
    names: list[str] = []
    for column in map(str, frame.columns):  # xlsx headers may be numbers; a header may repeat a name
        name, n = column, 2
        while name in names:
            name, n = f"{column}_{n}", n + 1
        names.append(name)
    frame.columns = names
    if len(frame) > settings.max_rows:
        raise BatchInputError(
            f"The file has {len(frame):,} rows; this Space processes at most {settings.max_rows:,} rows per upload. "
            "Split it into smaller files, or run `python -m training.predict` on your own machine."
        )
    return frame


def reading_notes(file) -> str:
    """How the upload was read where its type does not say it (a sniffed delimiter, the sheets of a
    workbook) and the header names it repeats, which this tab numbers (``title``, ``title_2``)."""
    path = file_path(file)
    notes = [reading_note(path)]
    if repeated := repeated_names(columns_of(path)):
        notes.append(f"the header repeats a column name: {repeated}; this tab numbers the later ones (_2, _3, …)")
    return " ".join(f"**Note:** {n[0].upper()}{n[1:]}." for n in notes if n)


def unique_column(frame: pd.DataFrame, name: str) -> str:
    column, n = name, 2
    while column in frame.columns:
        column, n = f"{name}_{n}", n + 1
    return column


def job_label(models: Models, name: str) -> str:
    return models.slots[name].label


def available_jobs(models: Models) -> list[tuple[str, str]]:
    return [(job_label(models, name), name) for name in models.slots if models.available(name)]


def check_batch(models: Models, file, text_column: str | None, jobs: list[str] | None):
    """``(table, text column, jobs)`` of the upload, or :class:`BatchInputError` saying what to fix.

    Nothing runs before this passes: a file whose text column is missing is refused."""
    frame = read_upload(models, file)
    columns = [c for c in frame.columns if c != ERROR_COLUMN]
    column = text_column or text_column_of(columns)
    if column is None:
        raise BatchInputError(
            f"choose the text column: the file has no column named {' or '.join(TEXT_COLUMNS)}; "
            f"its columns are: {', '.join(columns)}."
        )
    if column not in columns:
        raise BatchInputError(f"column {column!r} is not in the file; its columns are: {', '.join(columns)}.")
    jobs = list(jobs or [])
    unknown = [job for job in jobs if job not in models.slots]
    if unknown or not jobs:
        raise BatchInputError(
            f"choose at least one job from {', '.join(models.slots)} (got {', '.join(unknown) or 'none'})."
        )
    for job in jobs:
        if not models.available(job):
            raise BatchInputError(f"the {job} adapter is not available: {models.slots[job].problem}")
    return frame, column, jobs


def batch_output(models: Models, frame: pd.DataFrame, result: pd.DataFrame, jobs: list[str]) -> pd.DataFrame:
    """The output table: the input columns, then per job its answer (and its confidence), then
    ``needs_review`` (the jobs whose answer is below its adapter's review threshold) and ``error``."""
    out = frame.drop(columns=[ERROR_COLUMN], errors="ignore").copy()
    tasks = {job: models.slots[job].task for job in jobs}
    for job in jobs:
        out[unique_column(out, OUTPUT_COLUMNS[tasks[job]])] = result[job].tolist()
        if tasks[job] in CONFIDENCE_COLUMNS:
            out[unique_column(out, CONFIDENCE_COLUMNS[tasks[job]])] = result[job + CONFIDENCE_SUFFIX].tolist()
    labelled = [job for job in jobs if tasks[job] in CONFIDENCE_COLUMNS]
    if labelled:
        flags = zip(*[result[job + REVIEW_SUFFIX] for job in labelled], strict=True)
        out[unique_column(out, REVIEW_COLUMN)] = [
            "; ".join(ANSWER_NAMES[tasks[job]] for job, flag in zip(labelled, row, strict=True) if flag)
            for row in flags
        ]
    out[unique_column(out, ERROR_COLUMN)] = result[ERROR_COLUMN].tolist()
    return out


def preview_frame(out: pd.DataFrame, frame: pd.DataFrame) -> pd.DataFrame:
    """The first rows of the output with the prediction columns first, then the input columns."""
    inputs = [c for c in frame.columns if c != ERROR_COLUMN]
    ordered = [c for c in out.columns if c not in inputs] + inputs
    return escape_formulas(out[ordered].head(PREVIEW_ROWS))


def launch_batch(models: Models, file, text_column: str | None, jobs: list[str] | None) -> BatchJob:
    """Check the upload, then start its run in the background (see :mod:`catalog_lora.catalogs.background`)."""
    frame, column, jobs = check_batch(models, file, text_column, jobs)
    work = pd.DataFrame({column: frame[column].astype(str).tolist()})
    if ERROR_COLUMN in frame.columns:
        work[ERROR_COLUMN] = frame[ERROR_COLUMN].tolist()

    def predict(chunk: pd.DataFrame, report) -> pd.DataFrame:
        return run_chunk(models, chunk, column, jobs, (lambda done, _total: report(done)) if GPU is None else None)

    target = Path(tempfile.mkdtemp(prefix="catalog-lora-")) / f"{Path(file_path(file)).stem}-predictions.csv"
    job = BatchJob(
        work,
        predict,
        lambda rows, result: batch_output(models, frame.iloc[: len(rows)], result, jobs),
        target,
        chunk_rows=CHUNK_ROWS,
        units_per_row=len(jobs),
        upload=frame,
    )
    return job.start()


def batch_summary(job: BatchJob) -> str:
    frame = job.upload
    if job.status == FAILED:
        return (
            f"**The batch stopped after {job.rows_done:,} of {job.rows:,} rows:** {job.error}. "
            "The finished rows are in the file below."
        )
    if not job.over:
        state = "Waiting for the batch before it" if job.status == QUEUED else "Running"
        return (
            f"{state}: {job.rows_done:,} of {job.rows:,} rows saved; the file below holds them (download it any time)."
        )
    out = job.result
    errors = out[ERROR_COLUMN] if ERROR_COLUMN in out.columns else pd.Series([""] * len(out))
    flagged = int((errors != "").sum())
    summary = f"Done: {len(out):,} rows{blank_lines_note(frame)}, {len(out) - flagged:,} without errors"
    if flagged:
        reasons = sorted({r for e in errors for r in str(e).split("; ") if r})
        shown = "; ".join(reasons[:5]) + (" …" if len(reasons) > 5 else "")
        summary += f", {flagged:,} marked in the `error` column ({shown})"
    if REVIEW_COLUMN in out.columns:
        summary += f"; {int((out[REVIEW_COLUMN] != '').sum()):,} marked `{REVIEW_COLUMN}` (low confidence)"
    return summary + ". Download the full CSV below."


def progress_html(job: BatchJob | None) -> str:
    """The Batch tab's one progress bar."""
    if job is None:
        return ""
    return (
        f'<progress value="{job.units_done}" max="{max(1, job.units)}" style="width:100%"></progress>'
        f"<div>{job.units_done:,} of {job.units:,} predictions ({job.rows_done:,} of {job.rows:,} rows saved)</div>"
    )


def inspect_upload(models: Models, file):
    """On upload: ``(column dropdown, first rows, notice, Run button)``.

    The dropdown lists the file's header; a column is chosen only when one is named ``text`` or
    ``title``. No job is pre-checked. Run stays off while the file is refused or a choice is missing."""
    off = gr.Button(interactive=False)
    if file is None:
        return gr.Dropdown(choices=[], value=None), None, "", off
    try:
        frame = read_upload(models, file)
    except (BatchInputError, OSError) as error:
        logger.info("upload refused: %s", error)
        return gr.Dropdown(choices=[], value=None), None, f"**This file cannot be used:** {error}", off
    columns = [str(c) for c in frame.columns if c != ERROR_COLUMN]
    column = text_column_of(columns)
    notice, button = batch_readiness(models, file, column, [])
    return gr.Dropdown(choices=columns, value=column), escape_formulas(frame.head(PREVIEW_ROWS)), notice, button


def batch_readiness(models: Models, file, text_column: str | None, jobs: list[str] | None):
    """``(notice, Run button)`` for the current file, column and jobs: what was found, what is missing."""
    off = gr.Button(interactive=False)
    if file is None:
        return "", off
    try:
        frame = read_upload(models, file)
    except (BatchInputError, OSError) as error:
        return f"**This file cannot be used:** {error}", off
    columns = [c for c in frame.columns if c != ERROR_COLUMN]
    found = f"{len(frame):,} rows and {len(columns)} columns{blank_lines_note(frame)}."
    if notes := reading_notes(file):
        found += f" {notes}"
    if ERROR_COLUMN in frame.columns:
        found += (
            f" {int((frame[ERROR_COLUMN] != '').sum())} malformed row(s) will be kept and marked in the `error` column."
        )
    try:
        _, column, jobs = check_batch(models, file, text_column, jobs)
    except BatchInputError as error:
        return f"{found} **Before running:** {error}", off
    chosen = ", ".join(job_label(models, j) for j in jobs)
    return f"{found} Text column `{column}`; jobs: {chosen}.{missing_columns_note(models, jobs, columns)} Press **Run**.", gr.Button(interactive=True)


def missing_columns_note(models: Models, jobs: list[str], columns: list[str]) -> str:
    """A sentence naming the chosen adapters trained with attributes (BigBasket's brand) of which the file has no
    column: they answer from the text alone, which they do less well (their ``without_attributes`` row)."""
    missing = []
    for job in jobs:
        reads = models.slots[job].attributes
        if reads and not any(name in columns for name in reads):
            missing.append(f"{job_label(models, job)} was trained with {' and '.join(f'`{a}`' for a in reads)}")
    if not missing:
        return ""
    they = "it answers" if len(missing) == 1 else "they answer"
    return (f" **Note:** {'; '.join(missing)} beside the text, and the file has no such column: {they} from the "
            "text alone, less well (add the column for the best answers).")


def start_batch(models: Models, file, text_column: str | None, jobs: list[str] | None):
    """The Run button: ``(job id, timer, notice)``; the timer then shows the job (:func:`batch_status`)."""
    try:
        job = launch_batch(models, file, text_column, jobs)
    except (BatchInputError, OSError) as error:
        logger.info("batch refused: %s", error)
        return None, gr.Timer(active=False), f"**This file cannot be used:** {error}"
    return job.id, gr.Timer(active=True), batch_summary(job)


def batch_status(job_id: str | None):
    """A job's ``(progress bar, preview, file, notice, timer)``; the timer stops once the job is over."""
    job = find_job(job_id)
    if job is None:
        return "", gr.skip(), gr.skip(), gr.skip(), gr.Timer(active=False)
    preview = preview_frame(job.result, job.upload) if job.result is not None else None
    path = str(job.partial) if job.partial.is_file() else None
    return progress_html(job), preview, path, batch_summary(job), gr.Timer(active=not job.over)


def batch(models: Models, file, text_column: str | None = None, jobs: list[str] | None = None, progress=gr.Progress()):  # noqa: B008
    """Run the chosen jobs over every row of an uploaded CSV/xlsx and wait for the result (the API).

    Returns ``(preview, CSV path, summary)``; the CSV has every input row, one column per job (with
    its confidence), ``needs_review`` and an ``error`` column. A file that cannot be used at all
    raises ``gr.Error`` with the reason."""
    try:
        job = launch_batch(models, file, text_column, jobs)
    except (BatchInputError, OSError) as error:
        logger.info("batch refused: %s", error)
        raise gr.Error(str(error), duration=None, print_exception=False) from None
    job.wait(lambda j: progress((j.units_done, j.units), desc="Predicting", unit="predictions"))
    progress((job.units_done, job.units), desc="Predicting", unit="predictions")
    if job.status == FAILED:
        raise gr.Error(batch_summary(job), duration=None, print_exception=False)
    return preview_frame(job.result, job.upload), str(job.target), batch_summary(job)
