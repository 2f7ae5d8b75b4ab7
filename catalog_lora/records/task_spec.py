"""The task spec: what an adapter answers, and how its labels and answer are read from a canonical record.

    spec = TaskSpec("category", levels=2)
    spec.labels(record)     # ["Beauty > Hair Care"]
    spec.answer(record)     # "Beauty > Hair Care": what the model is taught to write
    spec.taxonomy(records)  # the labels of the training split

Training builds it from the config (``TrainConfig.spec``); a run folder's ``catalog_lora.json``
holds its three fields (``task``, ``label_levels``, ``label_field``; ``RunInfo.spec``).
"""

from __future__ import annotations

from dataclasses import dataclass

from catalog_lora.records.canonical import check_task, path_label
from catalog_lora.records.labels import Taxonomy

LABEL_FIELDS = ("labels", "labels_l2")


@dataclass(frozen=True)
class TaskSpec:
    """One task and the labels it is trained on."""

    task: str
    """``tagging`` (a list of tags), ``category`` (one category path) or ``description`` (free text)."""
    levels: int | None = None
    """Category paths: how many levels, most general first, make the label (None: the whole path)."""
    label_field: str = "labels"
    """Tagging: the record field holding the tags, ``labels`` (Level 1) or ``labels_l2`` (Level 2)."""

    def __post_init__(self) -> None:
        check_task(self.task)
        if self.levels is not None and (isinstance(self.levels, bool) or not isinstance(self.levels, int) or self.levels < 1):
            raise ValueError(f"levels={self.levels!r} is not allowed; choose None (the whole path) or a whole number from 1")
        if self.label_field not in LABEL_FIELDS:
            raise ValueError(f"label_field={self.label_field!r} is not allowed; choose one of: {', '.join(LABEL_FIELDS)}")

    @property
    def multi_label(self) -> bool:
        """Tagging: any number of labels per record; a category is one."""
        return self.task == "tagging"

    def labels(self, record: dict) -> list[str]:
        """The gold labels of a record as a list (one item for a category)."""
        if self.task == "tagging":
            return list(record[self.label_field])
        if self.task == "category":
            return [path_label(record["path"], self.levels)]
        raise ValueError(f"task={self.task!r} has no labels; labels exist for tagging and category")

    def answer(self, record: dict) -> list[str] | str:
        """What the model must answer for a record: a tag list, a category path string or a description."""
        if self.task == "tagging":
            return self.labels(record)
        if self.task == "category":
            return path_label(record["path"], self.levels)
        return record["description"]

    def taxonomy(self, records: list[dict]) -> Taxonomy | None:
        """The labels of ``records`` (the training split); None for descriptions."""
        if self.task == "description":
            return None
        return Taxonomy.from_examples([self.labels(r) for r in records], multi_label=self.multi_label)
