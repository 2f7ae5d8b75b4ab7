"""BigBasket (Indian online grocery) catalogue: categories and descriptions.

- :func:`convert_categories`: the Kaggle v1 schema (``index, product, category, sub_category,
  brand, …, type``): title → ``[category, sub_category, type]``. The 27k copy repeats six
  ``index`` values at its end; the first row of an ``index`` wins.
- :func:`convert_descriptions`: the files of the same schema with a ``description`` column.
  Their descriptions were damaged by hand in one copy (curly quotes, dashes and bullets
  replaced by ``_``); rows flagged ``has_encoding_artifact`` = 1 are dropped as damaged. A file
  with neither that flag nor the raw copy's ``image`` column is taken as pristine, and its
  rows win over the same ``index`` in the other files.
- :func:`convert_v2`: the later 8k scrape (``ProductName``, ``Category``, ``SubCategory``):
  title → ``[Category, SubCategory]``.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

from catalog_lora.records.dataset_files import Report
from datasets_prep.clean import finalize
from datasets_prep.readers import Table, read_table

SOURCE = "bigbasket"
V1_COLUMNS = ("index", "product", "category", "sub_category", "type")
V2_COLUMNS = ("ProductID", "ProductName", "Category", "SubCategory")
FLAG_COLUMN = "has_encoding_artifact"
RAW_IMAGE_COLUMN = "image"
# the raw copy has ",<n>.jpg" pasted where a description had a line break
_JPG_ARTIFACT = re.compile(r",\d+\.jpg")
_URL = re.compile(r"(?:https?://|www\.)\S+")


def _first_rows(paths, report: Report, required: tuple[str, ...], key: str, reason: str) -> Iterator[tuple[str, dict]]:
    """``(key value, row)`` for the first row of each ``key`` across the files; repeats are dropped as ``reason``."""
    seen = set()
    for path in paths:
        for row in read_table(path, report, required=required).rows:
            value = row[key].strip()
            if value in seen:
                report.drop(reason)
                continue
            seen.add(value)
            yield value, row


def convert_categories(paths: list[str | Path], report: Report | None = None) -> list[dict]:
    report = report if report is not None else Report(name=SOURCE)
    records = [
        # the brand rides along as an attribute (cleaned, and left out when empty, by finalize): a category model
        # reads it beside the title, and it is most of what tells "Gourmet & World Food" from the rest
        {"id": f"{SOURCE}-{index}", "text": row["product"], "path": [row["category"], row["sub_category"], row["type"]],
         "attributes": {"brand": row.get("brand") or ""}, "source": SOURCE}
        for index, row in _first_rows(paths, report, V1_COLUMNS, "index", "duplicate_index")
    ]
    return finalize(records, "category", report)


def _damaged(description: str) -> bool:
    """The rule that made ``has_encoding_artifact``: an ``_`` outside URLs (pristine text has none)."""
    return "_" in _URL.sub("", description)


def _priority(table: Table) -> int:
    if table.find(FLAG_COLUMN) is None and table.find(RAW_IMAGE_COLUMN) is None:
        return 0  # pristine
    return 1 if table.find(FLAG_COLUMN) else 2  # cleaned, then raw


def convert_descriptions(paths: list[str | Path], report: Report | None = None) -> list[dict]:
    report = report if report is not None else Report(name=f"{SOURCE}-descriptions")
    tables = [read_table(path, report, required=(*V1_COLUMNS, "description")) for path in paths]
    records, seen = [], {}
    replaced = 0
    for table in sorted(tables, key=_priority):  # stable: files of one kind keep their given order
        flag = table.find(FLAG_COLUMN)
        raw = table.find(RAW_IMAGE_COLUMN) is not None and flag is None
        for row in table.rows:
            index = row["index"].strip()
            if index in seen:
                report.drop("duplicate_index")
                replaced += seen[index] == 0 and _priority(table) > 0
                continue
            seen[index] = _priority(table)
            description = row["description"]
            if raw:
                description = _JPG_ARTIFACT.sub("", description)
            damaged = row[flag].strip() in ("1", "1.0", "True", "true") if flag else _damaged(description)
            if damaged:
                report.drop("encoding_artifact")
                continue
            attributes = {k: row[k] for k in ("brand", "category", "sub_category", "type") if table.find(k)}
            records.append(
                {
                    "id": f"{SOURCE}-{index}",
                    "text": row["product"],
                    "description": description,
                    "attributes": attributes,
                    "source": SOURCE,
                }
            )
    if replaced:
        report.note(f"{replaced:,} rows of a pristine file replaced the same index in a damaged copy")
    return finalize(records, "description", report)


def convert_v2(paths: list[str | Path], report: Report | None = None) -> list[dict]:
    report = report if report is not None else Report(name=f"{SOURCE}-v2")
    records = [
        {"id": f"{SOURCE}-v2-{product_id}", "text": row["ProductName"], "path": [row["Category"], row["SubCategory"]],
         "source": f"{SOURCE}-v2"}
        for product_id, row in _first_rows(paths, report, V2_COLUMNS, "ProductID", "duplicate_id")
    ]
    return finalize(records, "category", report)
