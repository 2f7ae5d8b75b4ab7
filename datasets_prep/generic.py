"""A retailer's own catalog in CSV, JSON lines, JSON or xlsx, described by a :class:`ColumnMapping`.

The mapping says which column holds the text and where the targets are:

- tags: one or more ``labels`` columns, each optionally holding several tags joined by
  ``label_separator`` (``"Fragrance|Price"``); rows repeating a text are merged, so the
  "one row per (text, tag)" layout works too. ``labels_l2`` columns do the same for a second level;
- a category: several ``path`` columns, most general first (``category, sub_category``), or one
  column holding the whole path split on ``path_separator`` (``"Beauty > Hair Care"``);
- a description: the ``description`` column.

Any task may map ``attributes`` columns (brand, price…): kept beside the text, shown to the model
with it (a description's facts; the brand that a category model reads with the title).

The task follows from what is mapped unless given.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from catalog_lora.records.canonical import check_task
from catalog_lora.records.dataset_files import Report
from catalog_lora.records.labels import split_labels
from datasets_prep.clean import clean_text, finalize, stable_id, title_key
from datasets_prep.readers import Table, read_table

SOURCE = "generic"


@dataclass
class ColumnMapping:
    text: str
    labels: list[str] = field(default_factory=list)
    label_separator: str | None = None
    labels_l2: list[str] = field(default_factory=list)
    path: list[str] = field(default_factory=list)
    path_separator: str | None = None
    description: str | None = None
    attributes: list[str] = field(default_factory=list)
    id: str | None = None

    def infer_task(self) -> str:
        mapped = [
            task
            for task, present in (("tagging", self.labels), ("category", self.path), ("description", self.description))
            if present
        ]
        if len(mapped) != 1:
            found = ", ".join(mapped) or "none"
            raise ValueError(
                f"cannot tell the task from the column mapping (targets mapped: {found}); map exactly one of "
                "labels (tagging), path (category) or description, or give the task"
            )
        return mapped[0]

    def check(self, task: str) -> None:
        needed = {"tagging": self.labels, "category": self.path, "description": self.description}[task]
        if not needed:
            what = {"tagging": "label column", "category": "path column", "description": "description column"}[task]
            raise ValueError(f"task={task!r} needs a {what} in the column mapping; none was given")
        if task == "category" and len(self.path) > 1 and self.path_separator:
            raise ValueError("give several path columns or one path column with a path_separator, not both")

    def columns(self, task: str) -> list[str]:
        names = [self.text, *self.attributes, *([self.id] if self.id else [])]
        names += {"tagging": [*self.labels, *self.labels_l2], "category": self.path, "description": [self.description]}[
            task
        ]
        return names


def convert(
    paths: list[str | Path],
    mapping: ColumnMapping,
    report: Report | None = None,
    *,
    task: str | None = None,
    sheet: str | int | None = None,
    source: str = SOURCE,
) -> list[dict]:
    report = report if report is not None else Report(name=source)
    task = check_task(task) if task else mapping.infer_task()
    mapping.check(task)
    records = []
    for path in paths:
        table: Table = read_table(path, report, sheet=sheet)
        col = {name: table.column(name) for name in mapping.columns(task)}
        for row in table.rows:
            text = clean_text(row.get(col[mapping.text]))
            record = {"text": text, "source": source}
            given_id = str(row.get(col[mapping.id]) or "").strip() if mapping.id else ""
            record["id"] = f"{source}-{given_id}" if given_id else stable_id(source, title_key(text))
            if task == "tagging":
                record["labels"] = [x for c in mapping.labels for x in split_labels(row.get(col[c]), mapping.label_separator)]
                record["labels_l2"] = [
                    x for c in mapping.labels_l2 for x in split_labels(row.get(col[c]), mapping.label_separator)
                ]
            elif task == "category":
                if mapping.path_separator:
                    record["path"] = split_labels(row.get(col[mapping.path[0]]), mapping.path_separator)
                else:
                    levels = [clean_text(row.get(col[c])) for c in mapping.path]
                    # a path stops at its first empty level: skipping it would shift the later levels up
                    record["path"] = levels[: levels.index("")] if "" in levels else levels
            else:
                record["description"] = row.get(col[mapping.description])
            if mapping.attributes:  # shown beside the text: a description's facts, a tag or category model's brand
                record["attributes"] = {name: str(row.get(col[name]) or "") for name in mapping.attributes}
            records.append(record)
    return finalize(records, task, report)
