"""Amazon Reviews '23 (McAuley Lab) subsets: product ``name`` → ``category`` path.

Each row is a review; the product name and its category path repeat on every review of the
product, so rows are grouped by product name into one example (``merged: same_product``).

The path is one comma-separated string, but Amazon category names can hold commas themselves
("Arts, Crafts & Sewing" is one top-level category), so a plain split on ``", "`` cuts them
in two. :func:`split_paths` puts them back together:

1. a piece starting with ``& `` continues the previous one;
2. the comma-holding top-level categories below are known and joined;
3. deeper down, a piece with no ``&`` is joined to the ``X & Y`` piece after it when, under the
   same parent, it is never followed by anything else, at least twice, and never ends a path.
   A real category has several children or ends some paths; half of one name has exactly one
   continuation. Names seen only once stay split: there is no evidence either way.

A path of only a main-category id (``Office_Products``) is spelled as the category it names.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from pathlib import Path

from catalog_lora.records.dataset_files import Report
from datasets_prep.clean import clean_text, finalize, stable_id, title_key
from datasets_prep.readers import read_table

SOURCE = "amazon-reviews23"
# Amazon's top-level departments whose names contain a comma
KNOWN_COMMA_CATEGORIES = ("Arts, Crafts & Sewing", "Clothing, Shoes & Jewelry", "Patio, Lawn & Garden")
MIN_EVIDENCE = 2


def _loose(name: str) -> str:
    """``Arts_Crafts_and_Sewing`` and ``Arts, Crafts & Sewing`` → ``arts crafts sewing``."""
    words = title_key(name.replace("_", " ").replace("&", " and ")).split()
    return " ".join(word for word in words if word != "and")


def _join_known(pieces: list[str]) -> list[str]:
    out: list[str] = []
    i = 0
    while i < len(pieces):
        for name in KNOWN_COMMA_CATEGORIES:
            parts = name.split(", ")
            if pieces[i : i + len(parts)] == parts:
                out.append(name)
                i += len(parts)
                break
        else:
            if pieces[i].startswith("& ") and out:
                out[-1] = f"{out[-1]}, {pieces[i]}"  # "Buttons, Accessories, & Notions": a serial comma
            else:
                out.append(pieces[i])
            i += 1
    return out


def split_paths(categories: list[str]) -> list[list[str]]:
    """The category path of each comma-separated string, with comma-holding names rejoined."""
    known = {_loose(name): name for name in KNOWN_COMMA_CATEGORIES}
    paths = []
    for category in categories:
        pieces = [piece.strip() for piece in clean_text(category).split(", ") if piece.strip()]
        if len(pieces) == 1 and "_" in pieces[0]:
            pieces = [known.get(_loose(pieces[0]), pieces[0].replace("_", " "))]
        paths.append(_join_known(pieces))

    depth = 1
    while any(len(path) > depth for path in paths):
        followers: dict[tuple, Counter] = defaultdict(Counter)
        ends: Counter = Counter()
        for path in paths:
            if len(path) > depth:
                key = (*path[:depth], path[depth])
                if len(path) > depth + 1:
                    followers[key][path[depth + 1]] += 1
                else:
                    ends[key] += 1
        for path in paths:
            if len(path) > depth + 1:
                piece, following = path[depth], path[depth + 1]
                key = (*path[:depth], piece)
                after = followers[key]
                if (
                    "&" not in piece
                    and " & " in following
                    and len(after) == 1
                    and after[following] >= MIN_EVIDENCE
                    and not ends[key]
                ):
                    path[depth : depth + 2] = [f"{piece}, {following}"]
        depth += 1
    return paths


def convert(paths: list[str | Path], report: Report | None = None) -> list[dict]:
    report = report if report is not None else Report(name=SOURCE)
    products: dict[str, dict] = {}
    for path in paths:
        table = read_table(path, report, required=("name", "category"))
        for row in table.rows:
            name = clean_text(row["name"])
            key = title_key(name)
            if key in products and name:
                report.merge("same_product")  # another review of a product already taken
                continue
            products[key] = {"id": stable_id(SOURCE, key), "text": name, "category": row["category"]}
    records = list(products.values())
    for record, path_ in zip(records, split_paths([r.pop("category") for r in records]), strict=True):
        record["path"] = path_
        record["source"] = SOURCE
    return finalize(records, "category", report)
