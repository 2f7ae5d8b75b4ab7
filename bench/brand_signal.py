"""How much does a BigBasket product's brand tell about its category? The classical baseline (training/baseline.py:
word and character n-gram TF-IDF with a logistic regression) on the title alone, against the title with its brand
appended (``Title [Brand]``, what the baseline and the TF-IDF vote of an adapter reading the brand see:
catalog_lora.records.prompts.vote_text), on the prepared grouped splits. Also: the brand-trained model given
the title alone (what a vote trained with brands meets when a user gives none), and one model trained on both
forms of every training title (``Title [Brand]`` and ``Title``), given either: would a vote trained so serve
products with and without their brand?

    .venv/bin/python bench/brand_signal.py [--splits 1 2 3] [--output bench/results/brand_signal.md]

Top level: ``C`` and class weights chosen on validation (TfidfBaseline.tuned), as the evaluation does (the
both-forms model on validation in both forms). The ``category > sub_category`` path (95 labels, each tuned fit
costs minutes): the untuned defaults (C=10, unweighted). The brands are the prepared records' ``brand``
attribute (datasets_prep keeps BigBasket's).
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

from sklearn.metrics import f1_score

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
def column(records: list[dict], text, levels: int) -> tuple[list[str], list[str]]:
    return [text(r) for r in records], [" > ".join(r["path"][:levels]) for r in records]


def joined(*parts: tuple[list[str], list[str]]) -> tuple[list[str], list[str]]:
    return [t for texts, _ in parts for t in texts], [g for _, gold in parts for g in gold]


def fit(rows: dict[str, list[dict]], levels: int, texts: list, tuned: bool):
    """The baseline fitted on the training titles in each form of ``texts`` (one or both), its settings chosen
    on the validation titles in the same forms when ``tuned``."""
    from training.baseline import TfidfBaseline

    train = joined(*(column(rows["train"], text, levels) for text in texts))
    validation = joined(*(column(rows["validation"], text, levels) for text in texts))
    labels = sorted(set(train[1]))
    if not tuned:
        return TfidfBaseline("category", labels).fit(*train)
    return TfidfBaseline.tuned(
        "category", labels, 42, train, validation,
        lambda predicted: sum(p == g for p, g in zip(predicted, validation[1], strict=True)) / len(predicted),
    )


def scores(model, records: list[dict], levels: int, text) -> tuple[float, float]:
    """Test accuracy and macro-F1 of ``model`` on ``text(record)`` at ``levels`` of the path."""
    texts, gold = column(records, text, levels)
    predicted = model.predict(texts)
    accuracy = sum(p == g for p, g in zip(predicted, gold, strict=True)) / len(gold)
    return accuracy, f1_score(gold, predicted, average="macro", labels=sorted(set(gold)), zero_division=0)


def main() -> None:
    from bench.speed_measure import machine
    from catalog_lora.records.dataset_files import load_split
    from catalog_lora.records.prompts import vote_text

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--splits", nargs="+", type=int, default=[1, 2, 3], help="seeds of data/bigbasket-split<seed>")
    parser.add_argument("--output", default=str(REPO / "bench/results/brand_signal.md"))
    args = parser.parse_args()
    host = machine()
    title = lambda r: r["text"]  # noqa: E731
    branded = lambda r: vote_text(r["text"], r.get("attributes"))  # noqa: E731
    # (name, the forms the model is trained on, the form it is given on the test split)
    arms = (
        ("title", (title,), title),
        ("title + brand", (branded,), branded),
        ("title + brand, given the title alone", (branded,), title),
        ("both forms, given title + brand", (branded, title), branded),
        ("both forms, given the title alone", (branded, title), title),
    )
    results = {}
    for seed in args.splits:
        rows = {split: load_split(REPO / f"data/bigbasket-split{seed}", split) for split in ("train", "validation", "test")}
        for levels, tuned in ((1, True), (2, False)):
            models = {}
            for name, trained_on, given in arms:
                if trained_on not in models:
                    models[trained_on] = fit(rows, levels, list(trained_on), tuned)
                results.setdefault((levels, name), []).append(scores(models[trained_on], rows["test"], levels, given))
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
