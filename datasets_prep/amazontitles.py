"""AmazonTitles-1.3MM (Extreme Classification Repository): product title → content (description task).

Two layouts:

- the original ``trn.json``: JSON lines ``{"uid", "title", "content", "target_ind", "target_rel"}``;
  the label ids are indices into a 1.3M-label file that is not part of this task, so they are not kept;
- the instruction-tuning copy: a JSON array of ``{"instruction": title, "input": "", "output": content}``.

Both keep HTML entities (``&#8217;``, ``&amp;``) in the text; cleaning unescapes them. Most
``trn.json`` records have empty content: they are dropped as ``empty_description``.
"""

from __future__ import annotations

from pathlib import Path

from catalog_lora.records.dataset_files import Report
from datasets_prep.clean import finalize, stable_id, title_key
from datasets_prep.readers import DataError, read_table

SOURCE = "amazontitles"
LAYOUTS = {"trn.json": ("title", "content"), "instruction": ("instruction", "output")}


def convert(paths: list[str | Path], report: Report | None = None) -> list[dict]:
    report = report if report is not None else Report(name=SOURCE)
    records = []
    for path in paths:
        table = read_table(path, report)
        layout = next((cols for cols in LAYOUTS.values() if all(table.find(c) for c in cols)), None)
        if layout is None:
            raise DataError(
                f"{path}: expected the trn.json fields 'title' and 'content' or the fields 'instruction' and "
                f"'output'; fields found: {', '.join(map(repr, table.columns)) or 'none'}"
            )
        title_col, content_col = (table.find(c) for c in layout)
        uid_col = table.find("uid")
        extra = 0
        for row in table.rows:
            title, content = row.get(title_col) or "", row.get(content_col) or ""
            if not isinstance(title, str) or not isinstance(content, str):
                report.drop("malformed_row")  # e.g. a number or list where text belongs
                continue
            extra += bool(str(row.get("input") or "").strip())
            uid = str(row.get(uid_col) or "").strip() if uid_col else ""
            records.append(
                {
                    "id": f"{SOURCE}-{uid}" if uid else stable_id(SOURCE, title_key(title)),
                    "text": title,
                    "description": content,
                    "attributes": {},
                    "source": SOURCE,
                }
            )
        if extra:
            report.note(f"{Path(path).name}: {extra} rows have a non-empty 'input', which is not used")
    return finalize(records, "description", report)
