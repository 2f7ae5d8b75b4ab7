"""The Dataset tab: an adapter's training examples, searched through its reference index or filtered by text."""

from __future__ import annotations

import itertools
import json
import logging
from pathlib import Path

import pandas as pd
import yaml

from catalog_lora.retrieval.entries import record_answer
from catalog_lora.runs.folder import CONFIG_FILE
from catalog_space.handlers import MAX_INPUT_CHARS, note
from catalog_space.models import Models, Slot
from catalog_space.settings import ANSWER_NAMES, REPO_DIR

logger = logging.getLogger("catalog_lora.space")

DATASET_ROWS = 100
MAX_DATASET_RECORDS = 50_000  # the Dataset tab reads at most this many training examples


def training_records(models: Models, name: str) -> list[dict]:
    """The adapter's training examples, when its run folder names a prepared dataset that is here (read once)."""
    if name not in models.records:
        models.records[name] = _read_training_records(models.slots[name])
    return models.records[name]


def _read_training_records(slot: Slot) -> list[dict]:
    if slot.source is None or not Path(slot.source).is_dir():
        return []
    try:
        config = yaml.safe_load((Path(slot.source) / CONFIG_FILE).read_text(encoding="utf-8")) or {}
        data = Path(str((config.get("data") or {}).get("path") or ""))
    except Exception:
        return []
    if not str(data) or str(data) == ".":
        return []
    for folder in [data] if data.is_absolute() else [REPO_DIR / data, Path.cwd() / data]:
        path = folder / "train.jsonl"
        if path.is_file():
            try:
                with path.open(encoding="utf-8") as handle:
                    lines = (line for line in handle if line.strip())
                    return [json.loads(line) for line in itertools.islice(lines, MAX_DATASET_RECORDS)]
            except (OSError, ValueError) as error:
                logger.warning("cannot read %s: %s", path, error)
    return []


def browse_dataset(models: Models, name: str, query: str = ""):
    """The adapter's training data: nearest examples to ``query`` (reference index) or a text filter."""
    if name not in models.slots:
        return pd.DataFrame(), f"**Unknown adapter {name!r}.**"
    task = models.slots[name].task
    query = (query or "").strip()[:MAX_INPUT_CHARS]
    columns = ["id", "training product", ANSWER_NAMES[task]]
    if query:
        index, problem = models.references(name)
        if index is not None:
            try:
                found = index.query([query], k=25)[0]
                rows = [[round(r.score, 3), r.id, r.text, r.answer] for r in found]
                return pd.DataFrame(rows, columns=["similarity", *columns]), (
                    f"The {len(rows)} training examples nearest to your search, from the reference index."
                )
            except Exception as error:
                problem = f"the reference index could not be searched: {error}"
    records = training_records(models, name)
    if not records:
        index, problem = models.references(name)
        if index is not None:
            return pd.DataFrame(columns=columns), (
                f"Type a search: the reference index holds {index.count:,} training examples."
            )
        return pd.DataFrame(columns=columns), note(f"No training data to show for the {name} adapter: {problem}")
    rows = [[str(r.get("id", "")), str(r.get("text", "")), record_answer(r, task)] for r in records]
    frame = pd.DataFrame(rows, columns=columns)
    if query:
        hit = frame["training product"].str.contains(query, case=False, regex=False)
        hit |= frame[ANSWER_NAMES[task]].str.contains(query, case=False, regex=False)
        frame = frame[hit]
        return frame.head(DATASET_ROWS), f"{len(frame):,} of {len(records):,} training examples contain “{query}”."
    return frame.head(DATASET_ROWS), f"The first {min(DATASET_ROWS, len(frame))} of {len(records):,} training examples."
