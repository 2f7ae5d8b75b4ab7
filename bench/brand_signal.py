"""How much does a BigBasket product's brand tell about its category? The classical baseline (training/baseline.py:
word and character n-gram TF-IDF with a logistic regression) on the title alone, as every shipped BigBasket config
reads it, against the title with its brand appended (``Title [Brand]``, the form a description head's input takes:
catalog_lora.records.prompts.with_attribute_values), on the prepared grouped splits.

    .venv/bin/python bench/brand_signal.py [--splits 1 2 3] [--output bench/results/brand_signal.md]

Top level: ``C`` and class weights chosen on validation (TfidfBaseline.tuned), as the evaluation does. The
``category > sub_category`` path (95 labels, each tuned fit costs minutes): the untuned defaults (C=10, unweighted).
The brands come from the raw catalog (``brand`` column) by the records' ids: ``datasets_prep`` does not keep them.
"""

from __future__ import annotations

import argparse
import csv
import json
import statistics
import sys
from pathlib import Path

from sklearn.metrics import f1_score

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
RAW = REPO.parent / "shared/data/raw/bigbasket/bigbasket_products_27k_no_description.csv"


def brands(path: Path) -> dict[str, str]:
    """Each record id's brand; the first row of a repeated ``index`` wins, as in datasets_prep/bigbasket.py."""
    found = {}
    with path.open(newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            found.setdefault(f"bigbasket-{row['index'].strip()}", row["brand"])
    return found


def read(folder: Path, split: str) -> list[dict]:
    with (folder / f"{split}.jsonl").open(encoding="utf-8") as f:
        return [json.loads(line) for line in f]


def scores(rows: dict[str, list[dict]], levels: int, text, tuned: bool) -> tuple[float, float]:
    """Test accuracy and macro-F1 of the baseline on ``text(record)`` at ``levels`` of the path."""
    from training.baseline import TfidfBaseline

    def part(split):
        return [text(r) for r in rows[split]], [" > ".join(r["path"][:levels]) for r in rows[split]]

    train, validation, (texts, gold) = part("train"), part("validation"), part("test")
    labels = sorted(set(train[1]))
    if tuned:
        model = TfidfBaseline.tuned(
            "category", labels, 42, train, validation,
            lambda predicted: sum(p == g for p, g in zip(predicted, validation[1], strict=True)) / len(predicted),
        )
    else:
        model = TfidfBaseline("category", labels).fit(*train)
    predicted = model.predict(texts)
    accuracy = sum(p == g for p, g in zip(predicted, gold, strict=True)) / len(gold)
    return accuracy, f1_score(gold, predicted, average="macro", labels=sorted(set(gold)), zero_division=0)


def main() -> None:
    from bench.speed_measure import machine
    from catalog_lora.records.prompts import with_attribute_values

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--splits", nargs="+", type=int, default=[1, 2, 3], help="seeds of data/bigbasket-split<seed>")
    parser.add_argument("--output", default=str(REPO / "bench/results/brand_signal.md"))
    args = parser.parse_args()
    host = machine()
    brand = brands(RAW)
    inputs = {"title": lambda r: r["text"], "title + brand": lambda r: with_attribute_values(r["text"], {"brand": brand[r["id"]]})}
    results = {}
    for seed in args.splits:
        rows = {split: read(REPO / f"data/bigbasket-split{seed}", split) for split in ("train", "validation", "test")}
        for levels, tuned in ((1, True), (2, False)):
            for name, text in inputs.items():
                results.setdefault((levels, name), []).append(scores(rows, levels, text, tuned))
                print(seed, levels, name, results[(levels, name)][-1], flush=True)
    table = ["| level | input | test accuracy (mean ± sd) | macro-F1 (mean) | per split (accuracy) |", "|---|---|---|---|---|"]
    for (levels, name), values in results.items():
        accuracy = [a for a, _ in values]
        spread = f" ± {statistics.stdev(accuracy):.3f}" if len(accuracy) > 1 else ""
        level = "top level (11), C and weights tuned on validation" if levels == 1 else "category > sub_category (95), C=10"
        table.append(f"| {level} | {name} | {statistics.fmean(accuracy):.3f}{spread} | "
                     f"{statistics.fmean(f for _, f in values):.3f} | {', '.join(f'{a:.3f}' for a in accuracy)} |")
    text = (
        "# The brand as a signal for BigBasket's categories\n\n"
        f"Machine: {host['cpu']} ({host['arch']}), {host['torch_threads']} thread(s). Date: {host['date']}. "
        f"Splits: data/bigbasket-split{{{','.join(map(str, args.splits))}}}. Made by `bench/brand_signal.py`.\n\n"
        + "\n".join(table) + "\n"
    )
    Path(args.output).write_text(text)
    print(text)


if __name__ == "__main__":
    main()
