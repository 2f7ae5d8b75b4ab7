"""What the Train tab may train: a :class:`TrainRequest` (task, column mapping, method, budget) and the
checks that refuse an unusable one before anything runs, with what would work; the preview's parsed
answers and label counts. Nothing here starts a process (:mod:`training_jobs` does).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from catalog_lora.catalogs.tables import ERROR_COLUMN, BatchInputError, read_table
from catalog_lora.records.dataset_files import REPORT_FILE
from catalog_lora.records.labels import normalize_key, split_labels
from catalog_space.settings import REPO_DIR

TASKS = ("tagging", "category", "description")
TARGETS = {
    "tagging": "label column(s)",
    "category": "category column(s), most general first",
    "description": "description column",
}
METHODS = ("generate", "head")
MIN_ROWS = 30  # 10% validation and 10% test must hold a few rows each
MIN_MINUTES = 0.5  # loading the model and one step take about this long on a 2-core CPU
BATCH_SIZE = 8


class TrainInputError(ValueError):
    """A request that cannot train: the message says what is wrong and what would work."""


@dataclass
class TrainRequest:
    """What to train: the task, the column mapping of an uploaded file (or a prepared dataset), method and budget."""

    task: str = "tagging"
    text_column: str = ""
    target_columns: list[str] = field(default_factory=list)
    label_separator: str = "|"
    attribute_columns: list[str] = field(default_factory=list)
    dataset: str = ""  # a prepared dataset folder (instead of an upload)
    method: str = "generate"
    max_minutes: float = 6.0
    epochs: float = 2.0
    max_samples: int = 400
    name: str = ""


def prepared_datasets(root: Path | None = None) -> list[str]:
    """The prepared dataset folders under ``data/`` (those with a ``train.jsonl``), as relative names."""
    root = root or REPO_DIR / "data"
    if not root.is_dir():
        return []
    return sorted(
        str(p.parent.relative_to(root)) for p in root.glob("**/train.jsonl") if (p.parent / REPORT_FILE).is_file()
    )


def dataset_folder(name: str) -> Path:
    folder = (REPO_DIR / "data" / name).resolve()
    if not (folder / "train.jsonl").is_file() or (REPO_DIR / "data").resolve() not in folder.parents:
        raise TrainInputError(
            f"dataset {name!r} is not a prepared dataset folder under data/; choose one of: "
            f"{', '.join(prepared_datasets()) or 'none (prepare one first)'}"
        )
    return folder


def dataset_task(name: str) -> str:
    """The task of a prepared dataset, from its ``report.json``."""
    report = json.loads((dataset_folder(name) / REPORT_FILE).read_text(encoding="utf-8"))
    return report.get("task") or report.get("settings", {}).get("task", "")


def row_tags(frame: pd.DataFrame, request: TrainRequest) -> pd.Series:
    """Each row's tags as training will have them: the label cells split by the one parser the generic format's
    preparation uses (``split_labels`` with the request's separator; no separator: a cell is one tag), spaces
    collapsed, empty tags and repeats (case and spaces aside, the first spelling kept) dropped."""
    separator = request.label_separator or None

    def tags(row) -> list[str]:
        found = {}
        for value in row:
            for tag in (" ".join(part.split()) for part in split_labels(value, separator)):
                if tag:
                    found.setdefault(normalize_key(tag), tag)
        return list(found.values())

    return frame[request.target_columns].fillna("").astype(str).apply(tags, axis=1)


def targets_of(frame: pd.DataFrame, request: TrainRequest) -> pd.Series:
    """Each row's answer as the preview shows it: tags joined by ', ', a path joined by ' > ', or the description."""
    columns = request.target_columns
    if request.task == "tagging":
        return row_tags(frame, request).apply(", ".join)
    if request.task == "category":
        return (
            frame[columns]
            .fillna("")
            .astype(str)
            .apply(lambda row: " > ".join(v.strip() for v in row if v.strip()), axis=1)
        )
    return frame[columns[0]].fillna("").astype(str).str.strip()


def label_counts(frame: pd.DataFrame, request: TrainRequest) -> pd.DataFrame:
    """``label, rows`` of the mapped target, most frequent first (for tags, each tag of a row counts)."""
    if request.task == "tagging":  # each row's tags, not its preview text re-split: a tag may hold a comma
        labels = [tag for tags in row_tags(frame, request) for tag in tags]
    else:
        labels = [a for a in targets_of(frame, request) if a]
    counts = pd.Series(labels, dtype=str).value_counts()
    return pd.DataFrame({"label": counts.index, "rows": counts.to_numpy()})


def check_request(request: TrainRequest, frame: pd.DataFrame | None, max_rows: int) -> None:
    """Refuse what cannot train, before anything runs: :class:`TrainInputError` says what to change."""
    if request.task not in TASKS:
        raise TrainInputError(f"task {request.task!r} is not one of {', '.join(TASKS)}")
    if request.method not in METHODS:
        raise TrainInputError(f"method {request.method!r} is not one of {', '.join(METHODS)}")
    if not request.max_minutes or request.max_minutes < MIN_MINUTES:
        raise TrainInputError(
            f"a time budget of {request.max_minutes or 0:g} minutes is too small to train one step; "
            f"give at least {MIN_MINUTES:g} (about 10 minutes trains a useful first adapter on 2 CPU cores)"
        )
    if request.epochs <= 0:
        raise TrainInputError(f"epochs={request.epochs:g}: give a positive number of passes over the data (e.g. 2)")
    if request.max_samples < BATCH_SIZE:
        raise TrainInputError(
            f"max samples={request.max_samples}: one training step needs {BATCH_SIZE} rows; give at least {BATCH_SIZE}"
        )
    if frame is None:
        if not request.dataset:
            raise TrainInputError("upload a catalog file or choose a prepared dataset")
        task = dataset_task(request.dataset)
        if task != request.task:
            raise TrainInputError(
                f"dataset {request.dataset!r} is a {task} dataset; choose task {task!r} or another dataset"
            )
        return
    columns = [str(c) for c in frame.columns]
    if not request.text_column or request.text_column not in columns:
        raise TrainInputError(f"choose the text column; the file's columns are: {', '.join(columns)}")
    missing = [c for c in request.target_columns if c not in columns]
    if not request.target_columns or missing:
        raise TrainInputError(
            f"choose the {TARGETS[request.task]} for task {request.task!r}"
            + (f" ({', '.join(missing)} is not in the file)" if missing else "")
            + f"; the file's columns are: {', '.join(columns)}"
        )
    if len(frame) > max_rows:
        raise TrainInputError(f"the file has {len(frame):,} rows; training from this app takes at most {max_rows:,}")
    answers = targets_of(frame, request)
    usable = int(((answers != "") & (frame[request.text_column].fillna("").astype(str).str.strip() != "")).sum())
    if usable == 0:
        raise TrainInputError(
            f"no row has both a text in {request.text_column!r} and a value in {', '.join(request.target_columns)}: "
            "there is no usable label column; map the column that holds the answers"
        )
    if usable < MIN_ROWS:
        raise TrainInputError(
            f"only {usable} rows have both a text and an answer; the train, validation and test splits need at "
            f"least {MIN_ROWS}"
        )
    if request.task != "description":
        counts = label_counts(frame, request)
        if len(counts) < 2:
            only = counts["label"].iloc[0] if len(counts) else "none"
            raise TrainInputError(
                f"the label column has one class ({only}): a model learns to tell labels apart, so it needs at "
                "least 2 (check the column and the separator)"
            )


def read_catalog(path: str) -> pd.DataFrame:
    """The uploaded catalog as text cells (CSV, TSV, JSONL, Parquet, xlsx), or :class:`TrainInputError`."""
    try:
        frame = read_table(path)
    except (BatchInputError, OSError, ValueError) as error:
        raise TrainInputError(str(error)) from None
    return frame.drop(columns=[ERROR_COLUMN], errors="ignore")
