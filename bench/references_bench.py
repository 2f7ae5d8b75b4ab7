"""Benchmark of the training-references index on the real BigBasket catalog.

    python bench/references_bench.py [--csv PATH] [--queries 200]

Reads ``../shared/data/raw/bigbasket/bigbasket_products_27k_no_description.csv`` (relative to the
repository root; the data is never copied into the repository) and skips with a message when absent.

1. Retrieval quality on held-in duplicates. A *variant group* is the set of rows that share a
   normalized product title: the ``product`` title case-folded, with pack-size tokens stripped
   (``500 g``, ``1 L``, ``4 pcs``, ``12 Tablets``…), punctuation runs at the ends trimmed and spaces
   collapsed — "the same product title in another pack size (or from another brand)". In this dump
   the pack size is mostly not part of the title, so most groups share the exact title; the
   normalization adds the variants whose title carries the pack size or differs in casing.
   Every row is indexed (as a category record: text → ``category > sub_category > type``). Each row
   of a group of ≥ 2 is queried with its own text; it is a hit when another row of its group
   (different row id) is among the top 5 results, the row itself excluded.
   Two texts are measured: the title alone (the converter's ``text``; identical titles embed
   identically, so the interesting subset is the variants whose texts differ) and ``brand + title``
   (same-title rows of different brands then have different texts: a harder check).
2. Speed: indexing time of all rows (2-core CPU here), median / p95 latency of a single query
   (embedding + search), and the throughput of batched queries.

Prints a markdown table and writes it to ``bench/results/references.md``.
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

DEFAULT_CSV = REPO / ".." / "shared" / "data" / "raw" / "bigbasket" / "bigbasket_products_27k_no_description.csv"
RESULTS = REPO / "bench" / "results" / "references.md"
K = 5

_UNITS = (
    "kg|kgs|g|gm|gms|gram|grams|mg|ml|l|ltr|litre|litres|liter|liters|pcs|pc|pieces|piece|nos|pack|packs|"
    "sachets|tablets|capsules|caps|tabs|sheets|rolls|cm|mm|inch|in|oz|lb"
)
PACK_SIZE = re.compile(rf"\b\d+(?:[.,]\d+)?\s*(?:x\s*\d+(?:[.,]\d+)?\s*)?(?:{_UNITS})\b\.?", re.IGNORECASE)


def normalize_title(title: str) -> str:
    """Case-folded title without pack-size tokens: ``"Chia Seeds 250 g"`` → ``"chia seeds"``."""
    text = PACK_SIZE.sub(" ", title.casefold())
    text = re.sub(r"\(\s*\)|\[\s*\]", " ", text)
    text = re.sub(r"\s+", " ", text)
    return text.strip(" -,/|+")


def load_rows(csv_path: Path) -> list[dict]:
    import pandas as pd

    frame = pd.read_csv(csv_path, dtype=str, keep_default_na=False)
    rows = []
    for position, record in enumerate(frame.to_dict("records")):
        title = record["product"].strip()
        if not title:
            continue
        rows.append(
            {
                "id": f"bigbasket-{position}",  # the file's own index column repeats 6 values
                "title": title,
                "brand": record["brand"].strip(),
                "path": [p.strip() for p in (record["category"], record["sub_category"], record["type"]) if p.strip()],
            }
        )
    return rows


def variant_groups(rows: list[dict]) -> dict[str, list[str]]:
    groups: dict[str, list[str]] = defaultdict(list)
    for row in rows:
        groups[normalize_title(row["title"])].append(row["id"])
    return {key: ids for key, ids in groups.items() if len(ids) > 1}


def evaluate(index, rows: list[dict], texts: dict[str, str], groups: dict[str, list[str]]) -> dict:
    group_of = {row_id: key for key, ids in groups.items() for row_id in ids}
    query_ids = [row["id"] for row in rows if row["id"] in group_of]
    start = time.perf_counter()
    results = index.query([texts[i] for i in query_ids], k=K + 1)
    batch_seconds = time.perf_counter() - start
    hits = hard_hits = hard_total = 0
    for row_id, references in zip(query_ids, results, strict=True):
        others = set(groups[group_of[row_id]]) - {row_id}
        top = [r.id for r in references if r.id != row_id][:K]
        hit = bool(others.intersection(top))
        hits += hit
        if all(texts[o] != texts[row_id] for o in others):  # no other variant has the very same text
            hard_total += 1
            hard_hits += hit
    return {
        "queries": len(query_ids),
        "hit_rate": hits / len(query_ids),
        "hard_queries": hard_total,
        "hard_hit_rate": hard_hits / hard_total if hard_total else float("nan"),
        "batch_qps": len(query_ids) / batch_seconds,
    }


def single_query_latency(index, texts: list[str], n: int) -> tuple[float, float]:
    index.query([texts[0]], k=K)  # warm-up
    times = []
    for text in texts[:n]:
        start = time.perf_counter()
        index.query([text.lower()], k=K)
        times.append((time.perf_counter() - start) * 1000)
    times.sort()
    return statistics.median(times), times[int(0.95 * (len(times) - 1))]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--csv", type=Path, default=DEFAULT_CSV)
    parser.add_argument("--queries", type=int, default=200, help="single queries timed for the latency")
    parser.add_argument("--output", type=Path, default=RESULTS)
    parser.add_argument(
        "--texts", nargs="+", default=["title", "brand+title"], choices=["title", "brand+title"], help="texts indexed"
    )
    args = parser.parse_args(argv)

    if not args.csv.is_file():
        print(f"SKIPPED: the BigBasket data is not at {args.csv.resolve()} (it is never copied into the repository).")
        return 0

    import torch

    from catalog_lora.retrieval.embeddings import load_model
    from catalog_lora.retrieval.references import build_index

    rows = load_rows(args.csv)
    groups = variant_groups(rows)
    title_of = {row["id"]: row["title"] for row in rows}
    mixed_groups = sum(1 for ids in groups.values() if len({title_of[i] for i in ids}) > 1)
    n_variants = sum(len(ids) for ids in groups.values())
    print(f"{len(rows)} rows, {len(groups)} variant groups ({n_variants} rows) by normalized title")
    print(f"{mixed_groups} groups hold titles that differ (pack size in the title, casing); the rest repeat one title")

    start = time.perf_counter()
    load_model()
    load_seconds = time.perf_counter() - start

    settings = {"title": lambda r: r["title"], "brand+title": lambda r: f"{r['brand']} {r['title']}".strip()}
    table = []
    for name in args.texts:
        make_text = settings[name]
        texts = {row["id"]: make_text(row) for row in rows}
        records = [
            {"id": row["id"], "text": texts[row["id"]], "source": "bigbasket", "path": row["path"]} for row in rows
        ]
        with tempfile.TemporaryDirectory(prefix="references-bench-") as folder:
            start, cpu_start = time.perf_counter(), time.process_time()
            index = build_index(records, Path(folder) / "references", task="category", progress=True)
            index_seconds, index_cpu = time.perf_counter() - start, time.process_time() - cpu_start
            load = os.getloadavg()[0]
            quality = evaluate(index, rows, texts, groups)
            median_ms, p95_ms = single_query_latency(
                index, [r["title"] for r in rows[:: max(1, len(rows) // args.queries)]], args.queries
            )
            table.append((name, index.count, index_seconds, index_cpu, load, quality, median_ms, p95_ms))
            print(f"[{name}] indexed {index.count} in {index_seconds:.1f} s; hit@5 {quality['hit_rate']:.2%}")
            index.close()

    lines = [
        "# Training references benchmark (BigBasket 27k, all-MiniLM-L6-v2 + ChromaDB, cosine)",
        "",
        f"Rows indexed: {len(rows)}. Variant groups (same normalized title: case-folded, pack size stripped): "
        f"{len(groups)} groups ({mixed_groups} of them with differing titles), {n_variants} rows queried. "
        f"Hit = another row of the group (different id) in the top {K}, the query row excluded. "
        "*Differing text* = queries whose group has no other row with the very same indexed text. "
        f"Date: {time.strftime('%Y-%m-%d')}. CPU: {platform.machine()}, {os.cpu_count()} cores, "
        f"{torch.get_num_threads()} torch threads; model load {load_seconds:.1f} s. "
        "Wall times depend on what else runs: the 1-minute load average after indexing is given.",
        "",
        "| indexed text | entries | index wall (s) | index CPU (s) | entries/s | load avg | variant queries | hit@5 "
        "| differing-text queries | hit@5 (differing text) | single query median (ms) | p95 (ms) | batched queries/s |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, count, seconds, cpu, load, q, median_ms, p95_ms in table:
        lines.append(
            f"| {name} | {count} | {seconds:.1f} | {cpu:.1f} | {count / seconds:.0f} | {load:.1f} | {q['queries']} "
            f"| {q['hit_rate']:.1%} | {q['hard_queries']} | {q['hard_hit_rate']:.1%} | {median_ms:.1f} | {p95_ms:.1f} "
            f"| {q['batch_qps']:.0f} |"
        )
    report = "\n".join(lines) + "\n"
    print()
    print(report)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(report, encoding="utf-8")
    print(f"written to {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
