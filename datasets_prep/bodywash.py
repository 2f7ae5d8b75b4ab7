"""Body-wash review tagging (the "Level 1 / Level 2 factors" assignment data).

The sheets hold one row per (review, tag): a review with three factors is three rows. This
groups the rows by ``Core Item`` into one multi-label example per review, Level 1 tags in
``labels`` and Level 2 sub-factors in ``labels_l2``. Two layouts exist:

- ``Level 1 (PARENT)`` + ``Level 2 (CHILD)`` (25 / ~108 tags);
- ``Level 1 Factors`` only (16 tags, a partly different set of reviews).

The ``.xlsx`` sheets and their ``.DERIVED.csv`` conversions read the same. The unlabeled test
sheets have the columns but no tags: every row is dropped as ``no_labels``.
"""

from __future__ import annotations

from pathlib import Path

from catalog_lora.records.dataset_files import Report
from datasets_prep.clean import clean_text, finalize, stable_id, title_key
from datasets_prep.readers import read_table

SOURCE = "bodywash"
TEXT_COLUMN = "Core Item"
L1_COLUMNS = ("Level 1 (PARENT)", "Level 1 Factors", "Level 1")
L2_COLUMNS = ("Level 2 (CHILD)", "Level 2")


def convert(paths: list[str | Path], report: Report | None = None, *, sheet: str | int | None = None) -> list[dict]:
    """Tagging records, one per distinct review, from one or more body-wash sheets."""
    report = report if report is not None else Report(name=SOURCE)
    groups: dict[str, dict] = {}
    layouts = set()
    for path in paths:
        table = read_table(path, report, sheet=sheet)
        text_col = table.column(TEXT_COLUMN, what="the review text")
        l1_col = table.column(*L1_COLUMNS, what="the Level 1 tag of the row")
        l2_col = next((c for c in (table.find(name) for name in L2_COLUMNS) if c), None)
        layouts.add("L1+L2" if l2_col else "L1 only")
        for row in table.rows:
            text = clean_text(row[text_col])
            # grouping on the exact (whitespace-normalized) text; finalize then merges texts
            # that differ only in case or punctuation
            group = groups.get(text)
            if group is None:
                group = groups[text] = {
                    "id": stable_id(SOURCE, title_key(text)),
                    "text": text,
                    "labels": [],
                    "labels_l2": [],
                    "source": SOURCE,
                }
            else:
                report.merge("same_text")  # one row per (text, tag): the row adds a tag to its review
            group["labels"].append(row[l1_col])
            if l2_col:
                group["labels_l2"].append(row[l2_col])
    if len(layouts) > 1:
        report.note("files with and without Level 2 tags were combined; Level 1 tag sets differ between them")
    return finalize(list(groups.values()), "tagging", report)
