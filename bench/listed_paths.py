"""How much of the classical baseline's BigBasket error is the catalog's own doing? The raw file lists some titles
under more than one ``category > sub_category`` path (the same product shelved twice); ``datasets_prep`` keeps
one record per title, with its most frequent path (the first on ties), so a model that answers the other path
is scored wrong. On each prepared grouped split, the tuned TF-IDF baseline (training/baseline.py, C and class
weights chosen on validation, reading ``Title [Brand]`` as the evaluation's baseline does) is scored on the test
split, and its mistakes are sorted: an answer the catalog also lists for that title, an answer in the right top
level (a sibling shelf), or neither. The last column is what a +3-point target asks of a model: the share of
the baseline's remaining mistakes (those not another listed path) it must put right.

    .venv/bin/python bench/listed_paths.py [--splits 1 2 3] [--output bench/results/listed_paths.md]

Needs the raw file (../shared/data/raw/bigbasket) and data/bigbasket-split<seed> (datasets_prep.prepare
--format bigbasket --seed <seed>). Reads only the training, validation and test rows of those splits.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
RAW = REPO.parent / "shared/data/raw/bigbasket/bigbasket_products_27k_no_description.csv"
LEVELS = {1: "top level", 2: "category > sub_category"}


def listed_paths(raw: Path) -> dict[str, set[tuple[str, str]]]:
    """Every ``(category, sub_category)`` the raw file lists for each title, read and cleaned as datasets_prep reads
    and cleans them, keyed by its title key."""
    from catalog_lora.records.dataset_files import Report
    from datasets_prep.bigbasket import SOURCE, V1_COLUMNS
    from datasets_prep.clean import clean_path, title_key
    from datasets_prep.readers import read_table

    listed = defaultdict(set)
    for row in read_table(raw, Report(name=SOURCE), required=V1_COLUMNS).rows:
        listed[title_key(row["product"])].add(tuple(clean_path([row["category"], row["sub_category"]])))
    return listed


def sort_mistakes(rows: dict[str, list[dict]], seed: int, levels: int, listed: dict) -> dict:
    """The tuned baseline's test answers at ``levels`` of the path on split ``seed`` (its ``rows`` by split), its
    mistakes sorted."""
    from bench.brand_signal import column, fit
    from catalog_lora.records.prompts import vote_text
    from datasets_prep.clean import title_key

    branded = lambda r: vote_text(r["text"], r.get("attributes"))  # noqa: E731
    model = fit(rows, levels, [branded], tuned=True)
    test = rows["test"]
    texts, gold = column(test, branded, levels)
    predicted = model.predict(texts)
    also = [{" > ".join(p[:levels]) for p in listed.get(title_key(r["text"]), ())} for r in test]
    wrong = [i for i in range(len(test)) if predicted[i] != gold[i]]
    another_listed = [i for i in wrong if predicted[i] in also[i]]
    sibling = [i for i in wrong if i not in set(another_listed) and levels > 1 and predicted[i].split(" > ")[0] == gold[i].split(" > ")[0]]
    n = len(test)
    rest = len(wrong) - len(another_listed)
    return {
        "split": seed, "levels": levels, "test_rows": n,
        "several_paths": sum(len(a) > 1 for a in also) / n,
        "accuracy": 1 - len(wrong) / n,
        "mistakes": len(wrong), "another_listed": len(another_listed), "sibling_shelf": len(sibling),
        "accuracy_any_listed": 1 - rest / n,
        "share_of_rest_for_3_points": min(1.0, 0.03 * n / rest) if rest else None,
    }


def report(results: list[dict], host: dict, splits: list[int]) -> str:
    from bench.split_cells import mean_sd

    def cell(level: int, key: str, scale: float = 1.0, digits: int = 3) -> str:
        return mean_sd([scale * r[key] for r in results if r["levels"] == level], digits)

    lines = [
        "# BigBasket: the baseline's mistakes that the catalog itself lists",
        "",
        f"Machine: {host['cpu']} ({host['arch']}), {host['torch_threads']} thread(s). Date: {host['date']}. "
        f"Splits: data/bigbasket-split{{{','.join(map(str, splits))}}}. Made by `bench/listed_paths.py`. "
        "Means ± sd over the splits; the baseline is the tuned TF-IDF model reading title and brand.",
        "",
        "| level | test titles the catalog lists under several paths | baseline accuracy | its mistakes | of them, another path the catalog lists | of them, a sibling shelf (right top level) | accuracy counting any listed path | share of the other mistakes a +3-point gain must put right |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for level, name in LEVELS.items():
        sibling = cell(level, "sibling_shelf", digits=1) if level > 1 else "—"
        lines.append(
            f"| {name} | {cell(level, 'several_paths', 100, 1)}% | {cell(level, 'accuracy')} | {cell(level, 'mistakes', digits=1)} | "
            f"{cell(level, 'another_listed', digits=1)} | {sibling} | {cell(level, 'accuracy_any_listed')} | "
            f"{cell(level, 'share_of_rest_for_3_points', 100, 0)}% |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    from tqdm import tqdm

    from bench.speed_measure import machine
    from catalog_lora.records.dataset_files import load_split

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--splits", nargs="+", type=int, default=[1, 2, 3], help="seeds of data/bigbasket-split<seed>")
    parser.add_argument("--raw", type=Path, default=RAW)
    parser.add_argument("--output", type=Path, default=REPO / "bench/results/listed_paths.md")
    args = parser.parse_args()
    if not args.raw.is_file():
        raise SystemExit(f"{args.raw} not found: this bench reads the raw BigBasket file (see ../shared/data/raw/SOURCES.md)")
    host = machine()
    listed = listed_paths(args.raw)
    results = []
    for seed in tqdm(args.splits, desc="splits", unit="split"):
        rows = {split: load_split(REPO / f"data/bigbasket-split{seed}", split) for split in ("train", "validation", "test")}
        results += [sort_mistakes(rows, seed, levels, listed) for levels in LEVELS]
    args.output.write_text(report(results, host, args.splits))
    args.output.with_suffix(".json").write_text(json.dumps({"machine": host, "results": results}, indent=1) + "\n")
    print(args.output.read_text())


if __name__ == "__main__":
    main()
