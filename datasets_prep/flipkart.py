"""Flipkart products (PromptCloud crawl, 2016): category trees and descriptions.

``product_category_tree`` is a JSON-ish list holding one path,
``["Top >> Second >> Third >> Brand Third >> Product name"]``. Only the category part of it
is a label, so a tree is cut at the first node that is one of:

- truncated by the crawler (ends in ``...``): a partial name is no class;
- the product itself (the product name, or the name with a variant suffix);
- a brand shelf: the parent node prefixed with the product's brand ("Acme Wrist Watches"
  under "Wrist Watches"), one class per brand otherwise;

and levels 1–3 of what remains are the path. A tree that is only the product name has no
category and is dropped (``no_category``).

Two layouts are read: the header-less 20k file (``uniq_id, product_name,
product_category_tree``) and the full 15-column schema (the 1050 sample, the first-1000 file,
whose thousands of empty lines are counted as ``empty_row``). Descriptions come from the full
schema only; so does a category record's ``brand`` attribute, which a category model reads beside the title.
"""

from __future__ import annotations

import csv
import io
import json
import re
from pathlib import Path

from catalog_lora.records.dataset_files import Report
from datasets_prep.clean import clean_text, finalize, title_key
from datasets_prep.readers import DataError, Table, read_table

SOURCE = "flipkart"
NOHEADER_COLUMNS = ["uniq_id", "product_name", "product_category_tree"]
LEVELS = 3
_TRUNCATED = re.compile(r"(\.\.\.|…)\s*$")


def parse_tree(tree: str) -> list[str]:
    """``'["A >> B >> C"]'`` → ``["A", "B", "C"]`` (all nodes, uncut)."""
    tree = tree.strip()
    value: object = tree
    if tree.startswith("["):
        try:
            value = json.loads(tree)
        except json.JSONDecodeError:
            value = tree.strip("[]").strip().strip('"')  # a tree cut short by the crawler
        if isinstance(value, list):
            value = value[0] if value else ""
    return [node.strip() for node in str(value).split(">>") if node.strip()]


def _is_product(node: str, name_key: str) -> bool:
    key = title_key(node)
    return bool(name_key) and (key == name_key or key.startswith(name_key + " ") or name_key.startswith(key + " "))


def _is_brand_shelf(node: str, parent: str, name_key: str, brand_key: str) -> bool:
    key, parent_key = title_key(node), title_key(parent)
    if not key.endswith(" " + parent_key):
        return False
    prefix = key[: -len(parent_key)].strip()
    return (brand_key and prefix == brand_key) or name_key.startswith(prefix + " ")


def category_path(tree: str, product_name: str, brand: str = "", levels: int = LEVELS) -> list[str]:
    """The category levels of a Flipkart tree, cut before the product, brand-shelf and truncated nodes."""
    name_key, brand_key = title_key(clean_text(product_name)), title_key(clean_text(brand))
    path: list[str] = []
    for node in parse_tree(tree):
        node = clean_text(node)
        if _TRUNCATED.search(node) or _is_product(node, name_key):
            break
        if path and _is_brand_shelf(node, path[-1], name_key, brand_key):
            break
        path.append(node)
    return path[:levels]


def _is_header(path: Path) -> bool:
    """True when the file starts with a header row naming ``product_category_tree``."""
    with open(path, encoding="utf-8-sig", errors="replace", newline="") as file:
        first = next(csv.reader(io.StringIO(file.readline())), [])
    return "product_category_tree" in [cell.strip() for cell in first]


def read_flipkart(path: str | Path, report: Report) -> Table:
    path = Path(path)
    if path.suffix.lower() == ".csv" and not _is_header(path):
        table = read_table(path, report, fieldnames=NOHEADER_COLUMNS)
    else:
        table = read_table(path, report)
    table.require(*NOHEADER_COLUMNS)
    return table


def _rows(paths: list[str | Path], report: Report, need: tuple[str, ...] = ()):
    seen: set[str] = set()
    for path in paths:
        table = read_flipkart(path, report)
        table.require(*need)
        for row in table.rows:
            uid = row["uniq_id"].strip()
            if not uid:
                report.drop("missing_id")
                continue
            if uid in seen:
                report.drop("duplicate_id")  # the 1050 sample and the first-1000 file share products
                continue
            seen.add(uid)
            yield uid, row


def convert_categories(paths: list[str | Path], report: Report | None = None, *, levels: int = LEVELS) -> list[dict]:
    report = report if report is not None else Report(name=SOURCE)
    records = []
    for uid, row in _rows(paths, report):
        path_ = category_path(row["product_category_tree"], row["product_name"], row.get("brand", ""), levels)
        # the full schema's brand rides along as an attribute, as BigBasket's does (the 20k file has none)
        records.append({"id": f"{SOURCE}-{uid}", "text": row["product_name"], "path": path_,
                        "attributes": {"brand": row.get("brand", "")}, "source": SOURCE})
    return finalize(records, "category", report)


def convert_descriptions(paths: list[str | Path], report: Report | None = None) -> list[dict]:
    report = report if report is not None else Report(name=f"{SOURCE}-descriptions")
    records = []
    try:
        rows = list(_rows(paths, report, need=("description",)))
    except DataError as error:
        raise DataError(f"{error}. Descriptions need the full-schema files (the 20k file has none)") from None
    for uid, row in rows:
        path_ = category_path(row["product_category_tree"], row["product_name"], row.get("brand", ""))
        attributes = {"brand": row.get("brand", ""), "category": " > ".join(path_)}
        if row.get("retail_price", "").strip():
            attributes["price"] = row["retail_price"].strip().removesuffix(".0")
        records.append(
            {
                "id": f"{SOURCE}-{uid}",
                "text": row["product_name"],
                "description": row["description"],
                "attributes": attributes,
                "source": SOURCE,
            }
        )
    return finalize(records, "description", report)
