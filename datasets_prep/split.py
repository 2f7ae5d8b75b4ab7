"""Deterministic, grouped, stratified train/validation/test splits.

- **Grouped**: all examples with one :func:`~datasets_prep.clean.title_key` go to one split,
  so a product title (or review) seen in training is never scored in test.
- **Stratified**: groups are ordered by stratum (the category path; for tags, the rarest tag of
  the example, so rare tags are spread rather than lost among frequent ones) and each one is
  given a split by a low-discrepancy sequence. Every run of consecutive groups, and so every
  stratum, gets close to the requested fractions, and the rounding left over by one small
  stratum is carried to the next instead of always favouring train.
- **Rare labels**: a stratum with no group in train after that gets one moved there, so every
  label that is scored has been seen in training.
- **Deterministic**: the order inside a stratum comes from ``random.Random`` seeded with the
  seed and the stratum name (string seeds hash the same on every run and machine).
"""

from __future__ import annotations

import math
import random
from collections import Counter

from catalog_lora.records.canonical import SPLITS, path_label
from catalog_lora.records.dataset_files import Report
from datasets_prep.clean import title_key
from datasets_prep.readers import DataError

# the fractional part of the golden ratio: multiples of it fill [0, 1) as evenly as any sequence can
GOLDEN = (math.sqrt(5) - 1) / 2


def check_fractions(val_frac: float, test_frac: float) -> None:
    for name, value in (("val_frac", val_frac), ("test_frac", test_frac)):
        if not 0 <= value < 1:
            raise ValueError(f"{name}={value} must be at least 0 and below 1")
    if val_frac + test_frac >= 1:
        raise ValueError(
            f"val_frac + test_frac = {val_frac + test_frac:g} leaves nothing to train on; it must be below 1"
        )


def group_key(record: dict) -> str:
    return title_key(record["text"])


def _strata(groups: dict[str, list[dict]], task: str) -> dict[str, str]:
    """The stratum of each group."""
    if task == "tagging":
        counts = Counter(label for group in groups.values() for r in group for label in r["labels"])
        out = {}
        for key, group in groups.items():
            labels = {label for r in group for label in r["labels"]}
            out[key] = min(labels, key=lambda label: (counts[label], label)) if labels else ""
        return out
    if task == "category":
        return {key: path_label(group[0]["path"]) for key, group in groups.items()}
    # descriptions have no labels; their category attribute, when there is one, spreads the catalog evenly
    return {key: (group[0].get("attributes") or {}).get("category", "") for key, group in groups.items()}


def split_records(
    records: list[dict],
    task: str,
    *,
    seed: int = 42,
    val_frac: float = 0.1,
    test_frac: float = 0.1,
    report: Report | None = None,
) -> dict[str, list[dict]]:
    """``{"train": [...], "validation": [...], "test": [...]}``; records keep their source order inside a split."""
    check_fractions(val_frac, test_frac)
    groups: dict[str, list[dict]] = {}
    for record in records:
        groups.setdefault(group_key(record), []).append(record)
    strata = _strata(groups, task)
    by_stratum: dict[str, list[str]] = {}
    for key in groups:
        by_stratum.setdefault(strata[key], []).append(key)

    phase = random.Random(f"{seed}").random()
    assignment: dict[str, str] = {}
    moved = 0
    i = 0
    order: list[str] = []
    for stratum in sorted(by_stratum):
        keys = sorted(by_stratum[stratum])
        random.Random(f"{seed}|{stratum}").shuffle(keys)
        order += keys
        for key in keys:
            x = (phase + i * GOLDEN) % 1.0
            assignment[key] = "test" if x < test_frac else "validation" if x < test_frac + val_frac else "train"
            i += 1
        if task != "description" and not any(assignment[k] == "train" for k in keys):
            assignment[keys[0]] = "train"  # a label never trained on cannot be fairly scored
            moved += 1

    # a small dataset can leave a requested split empty; trainers need one example in each
    filled = 0
    for name, frac in (("validation", val_frac), ("test", test_frac)):
        if frac > 0 and name not in assignment.values():
            train_count = Counter(strata[k] for k, split in assignment.items() if split == "train")
            spare = next((k for k in order if assignment[k] == "train" and train_count[strata[k]] > 1), None)
            if spare is not None:
                assignment[spare] = name
                filled += 1

    splits: dict[str, list[dict]] = {name: [] for name in SPLITS}
    for record in records:
        splits[assignment[group_key(record)]].append(record)
    check_no_leakage(splits)

    if report is not None:
        report.splits = {name: len(rows) for name, rows in splits.items()}
        if filled:
            report.note(f"{filled} empty validation/test split(s) got one example from train")
        if moved:
            report.note(f"{moved:,} rare labels had no example in train; one example of each was moved to train")
        if task in ("tagging", "category"):
            unseen = _labels_not_in_train(splits, task)
            if unseen:
                report.note(f"{unseen:,} labels of validation/test examples are not in train")
    return splits


def _labels(record: dict, task: str) -> list[str]:
    return list(record["labels"]) if task == "tagging" else [path_label(record["path"])]


def _labels_not_in_train(splits: dict[str, list[dict]], task: str) -> int:
    train = {label for r in splits["train"] for label in _labels(r, task)}
    held = {label for name in ("validation", "test") for r in splits[name] for label in _labels(r, task)}
    return len(held - train)


def check_no_leakage(splits: dict[str, list[dict]]) -> None:
    """Raise :class:`DataError` if one normalized text occurs in more than one split."""
    where: dict[str, str] = {}
    leaks: list[tuple[str, str, str]] = []
    for name, rows in splits.items():
        for record in rows:
            key = group_key(record)
            first = where.setdefault(key, name)
            if first != name:
                leaks.append((key, first, name))
    if leaks:
        examples = "; ".join(f"{key!r} in {a} and {b}" for key, a, b in leaks[:3])
        raise DataError(f"{len(leaks)} normalized texts occur in more than one split, e.g. {examples}")
