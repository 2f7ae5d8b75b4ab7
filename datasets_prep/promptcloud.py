"""Amazon.com product sample, Jan 2020 (PromptCloud ``marketing_sample … 10k_data``).

- :func:`convert_categories`: ``Product Name`` → ``Category`` split on `` | `` (Amazon names
  keep their commas here, so no rejoining is needed);
- :func:`convert_descriptions`: ``Product Name`` → ``About Product``, the feature bullets
  separated by `` | `` put one a line. Most start with Amazon's fitment prompt ("Make sure this
  fits by entering your model number."), which describes the web page, not the product: it is
  removed wherever it appears.
"""

from __future__ import annotations

import re
from pathlib import Path

from catalog_lora.records.dataset_files import Report
from datasets_prep.clean import clean_path, clean_text, finalize, stable_id, title_key
from datasets_prep.readers import read_table

SOURCE = "promptcloud"
ID, NAME, CATEGORY, ABOUT = "Uniq Id", "Product Name", "Category", "About Product"
BOILERPLATE = re.compile(r"\s*Make sure this fits\s+by entering your model number\.?\s*", re.IGNORECASE)
SEPARATOR = " | "


def about_to_description(about: str) -> str:
    """The ``About Product`` bullets, boilerplate removed, one bullet a line."""
    bullets = (clean_text(BOILERPLATE.sub(" ", bullet)) for bullet in clean_text(about).split("|"))
    return "\n".join(bullet for bullet in bullets if bullet)


def _rows(paths: list[str | Path], report: Report, columns: tuple[str, ...]):
    seen: set[str] = set()
    for path in paths:
        table = read_table(path, report, required=columns)
        id_col = table.find(ID)
        for row in table.rows:
            uid = row[id_col].strip() if id_col else ""
            if uid and uid in seen:
                report.drop("duplicate_id")
                continue
            seen.add(uid)
            yield uid or stable_id(SOURCE, title_key(clean_text(row[NAME]))), row


def convert_categories(paths: list[str | Path], report: Report | None = None) -> list[dict]:
    report = report if report is not None else Report(name=SOURCE)
    records = [
        {"id": f"{SOURCE}-{uid}", "text": row[NAME], "path": clean_path(row[CATEGORY].split("|")), "source": SOURCE}
        for uid, row in _rows(paths, report, (NAME, CATEGORY))
    ]
    return finalize(records, "category", report)


def convert_descriptions(paths: list[str | Path], report: Report | None = None) -> list[dict]:
    report = report if report is not None else Report(name=f"{SOURCE}-descriptions")
    records = []
    for uid, row in _rows(paths, report, (NAME, ABOUT)):
        attributes = {
            "brand": row.get("Brand Name", ""),
            "category": " > ".join(clean_path(row.get(CATEGORY, "").split("|"))),
            "price": row.get("Selling Price", ""),
        }
        records.append(
            {
                "id": f"{SOURCE}-{uid}",
                "text": row[NAME],
                "description": about_to_description(row[ABOUT]),
                "attributes": attributes,
                "source": SOURCE,
            }
        )
    return finalize(records, "description", report)
