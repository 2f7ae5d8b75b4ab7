"""The files of a prepared dataset folder, as ``datasets_prep.prepare`` writes them and others read them.

A prepared folder holds ``train.jsonl``, ``validation.jsonl``, ``test.jsonl`` (records as in
:mod:`catalog_lora.records.canonical`), ``taxonomy.json`` (labels with train counts; ``taxonomy_l2.json``
for Level 2 tags, ``taxonomy_level<k>.json`` for category paths cut to ``k`` levels),
``report.json`` (:class:`Report`: what happened to every source row) and ``README.md`` (the dataset card).

Every source row ends in exactly one of three places: it became an example (``kept``),
it was folded into another example (``merged``: the same text on several rows, one row per
tag, several reviews of one product…), or it was dropped for a named reason (``dropped``).
:attr:`Report.unaccounted` is the rows that are in none of them; it is 0 after a correct
conversion and the tests hold every converter to it.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from catalog_lora.records.canonical import SPLITS
from catalog_lora.records.labels import Taxonomy

TAXONOMY_FILE = "taxonomy.json"  # a run folder's taxonomy has the same name (catalog_lora.runs.folder)
REPORT_FILE = "report.json"
TAXONOMY_L2_FILE = "taxonomy_l2.json"
CARD_FILE = "README.md"


@dataclass
class Report:
    """What a conversion did with every source row; saved as ``report.json`` in the prepared folder."""

    name: str = ""
    task: str = ""
    inputs: dict[str, int] = field(default_factory=dict)
    rows_read: int = 0
    kept: int = 0
    merged: Counter = field(default_factory=Counter)
    dropped: Counter = field(default_factory=Counter)
    splits: dict[str, int] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    # how the dataset was made (format, seed, fractions…), so a folder can be remade and described
    settings: dict = field(default_factory=dict)

    def read(self, source: str | Path, rows: int) -> None:
        """Count ``rows`` source rows (malformed ones included) read from ``source``."""
        key = str(source)
        self.inputs[key] = self.inputs.get(key, 0) + rows
        self.rows_read += rows

    def drop(self, reason: str, count: int = 1) -> None:
        if count:
            self.dropped[reason] += count

    def merge(self, reason: str, count: int = 1) -> None:
        if count:
            self.merged[reason] += count

    def note(self, message: str) -> None:
        if message not in self.notes:
            self.notes.append(message)

    @property
    def dropped_total(self) -> int:
        return sum(self.dropped.values())

    @property
    def merged_total(self) -> int:
        return sum(self.merged.values())

    @property
    def unaccounted(self) -> int:
        return self.rows_read - self.kept - self.merged_total - self.dropped_total

    def to_dict(self) -> dict:
        return {
            "name": self.name,
            "task": self.task,
            "inputs": dict(self.inputs),
            "rows_read": self.rows_read,
            "kept": self.kept,
            "merged": dict(self.merged.most_common()),
            "dropped": dict(self.dropped.most_common()),
            "unaccounted": self.unaccounted,
            "splits": dict(self.splits),
            "notes": list(self.notes),
            "settings": dict(self.settings),
        }

    @classmethod
    def from_dict(cls, data: dict) -> Report:
        return cls(
            name=data.get("name", ""),
            task=data.get("task", ""),
            inputs=dict(data.get("inputs", {})),
            rows_read=data.get("rows_read", 0),
            kept=data.get("kept", 0),
            merged=Counter(data.get("merged", {})),
            dropped=Counter(data.get("dropped", {})),
            splits=dict(data.get("splits", {})),
            notes=list(data.get("notes", [])),
            settings=dict(data.get("settings", {})),
        )

    def summary(self) -> str:
        files = "file" if len(self.inputs) == 1 else "files"
        lines = [
            f"{self.name or 'dataset'} ({self.task or 'no task'}): {self.rows_read:,} rows read from "
            f"{len(self.inputs)} {files} -> {self.kept:,} examples kept"
        ]
        if self.merged:
            lines.append("  merged into another example: " + _counts(self.merged))
        if self.dropped:
            lines.append("  dropped: " + _counts(self.dropped))
        if self.unaccounted:
            lines.append(f"  UNACCOUNTED rows: {self.unaccounted:,}")
        if self.splits:
            lines.append("  splits: " + ", ".join(f"{name} {count:,}" for name, count in self.splits.items()))
        lines.extend(f"  note: {note}" for note in self.notes)
        return "\n".join(lines)

    def print_summary(self) -> None:
        print(self.summary())

    def save(self, path: str | Path) -> Path:
        """Write ``report.json``; ``path`` may be the file or the folder that gets it."""
        path = Path(path)
        if path.is_dir():
            path = path / REPORT_FILE
        path.write_text(json.dumps(self.to_dict(), indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        return path

    @classmethod
    def load(cls, path: str | Path) -> Report:
        path = Path(path)
        if path.is_dir():
            path = path / REPORT_FILE
        return cls.from_dict(json.loads(path.read_text(encoding="utf-8")))


def _counts(counter: Counter) -> str:
    return ", ".join(f"{reason} {count:,}" for reason, count in counter.most_common())


def split_path(folder: str | Path, split: str) -> Path:
    """The JSON lines file of one split of a prepared folder."""
    if split not in SPLITS:
        raise ValueError(f"split={split!r} is not one of {', '.join(SPLITS)}")
    return Path(folder) / f"{split}.jsonl"


def load_split(folder: str | Path, split: str) -> list[dict]:
    """The records of one split of a prepared folder: the project's one reader of a split."""
    path = split_path(folder, split)
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist; is {folder} a folder made by datasets_prep.prepare?")
    with open(path, encoding="utf-8") as file:
        return [json.loads(line) for line in file if line.strip()]


def load_taxonomy(folder: str | Path, name: str = TAXONOMY_FILE) -> Taxonomy:
    """The taxonomy of a prepared folder (``name="taxonomy_l2.json"`` for Level 2 tags)."""
    path = Path(folder) / name
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist; descriptions have no taxonomy, labels have {TAXONOMY_FILE}")
    return Taxonomy.load(path)


def features(task: str, attribute_keys: list[str] | None = None):
    """The ``datasets`` features of a prepared split (``attributes`` only when some record has one)."""
    from datasets import Features, List, Value

    spec: dict = {"id": Value("string"), "text": Value("string")}
    if task == "tagging":
        spec |= {"labels": List(Value("string")), "labels_l2": List(Value("string"))}
    elif task == "category":
        spec["path"] = List(Value("string"))
    else:
        spec["description"] = Value("string")
    if attribute_keys:
        spec["attributes"] = {key: Value("string") for key in attribute_keys}
    spec["source"] = Value("string")
    return Features(spec)


def attribute_keys(splits: dict[str, list[dict]]) -> list[str]:
    """Every attribute name in the records, in order of first appearance."""
    return list(dict.fromkeys(k for rows in splits.values() for r in rows for k in r.get("attributes") or {}))


def to_dataset_dict(folder: str | Path):
    """The splits of a prepared folder as a ``datasets.DatasetDict`` with explicit features.

    Explicit features keep empty tag lists typed as strings; ``attributes`` becomes a struct of
    every attribute name in the folder (missing values are null). A split with no examples is
    left out: there is no parquet file to hold it.
    """
    from datasets import Dataset, DatasetDict

    folder = Path(folder)
    task = Report.load(folder).task
    splits = {split: load_split(folder, split) for split in SPLITS}
    keys = attribute_keys(splits)
    feats = features(task, keys)

    def arrow_row(record: dict) -> dict:
        row = {name: record.get(name) for name in feats if name != "attributes"}
        if "attributes" in feats:
            row["attributes"] = {k: (record.get("attributes") or {}).get(k) for k in keys}
        return row

    return DatasetDict(
        {
            split: Dataset.from_list([arrow_row(r) for r in rows], features=feats)
            for split, rows in splits.items()
            if rows
        }
    )
