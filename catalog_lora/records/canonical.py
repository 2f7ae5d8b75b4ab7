"""The canonical record of each task: what every converter writes and every trainer reads.

A prepared dataset is a folder of ``train.jsonl``, ``validation.jsonl`` and ``test.jsonl``,
one JSON object per line with these fields:

- every task: ``id`` (str, stable), ``text`` (the product text or review), ``source``
  (the format it came from, e.g. ``bodywash``);
- ``tagging``: ``labels`` (list of tags, the primary level), ``labels_l2`` (list, may be empty);
- ``category``: ``path`` (list of category levels, most general first);
- ``description``: ``description`` (the target text);
- any task, optional: ``attributes`` (dict of str → str, may be empty: brand, price, category…
  shown to the model beside the text; a tag or category adapter reads those of its training
  split, ``RunInfo.attributes``).
"""

from __future__ import annotations

TASKS = ("tagging", "category", "description")
SPLITS = ("train", "validation", "test")
PATH_SEPARATOR = " > "
# the metric each task is judged by (bold in tables, the card's summary, the README)
HEADLINE = {"tagging": "micro_f1", "category": "accuracy", "description": "rougeL"}
# the Space's name of each task's adapter: its tab, its CATALOG_LORA_<NAME>_ADAPTER variable, its adapters.yaml key
SPACE_SLOTS = {"tagging": "tag", "category": "category", "description": "describe"}

REQUIRED_FIELDS = {
    "tagging": ("id", "text", "labels"),
    "category": ("id", "text", "path"),
    "description": ("id", "text", "description"),
}


def check_task(task: str) -> str:
    if task not in TASKS:
        raise ValueError(f"task={task!r} is not one of {', '.join(TASKS)}")
    return task


def path_label(path: list[str], levels: int | None = None) -> str:
    """``["Beauty", "Hair Care", "Oil"]`` with levels=2 → ``"Beauty > Hair Care"``."""
    return PATH_SEPARATOR.join(path[:levels] if levels else path)
