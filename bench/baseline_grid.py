"""Why the tuned TF-IDF baseline fits each setting from zeros: its category grid fitted both ways on prepared splits.

    .venv/bin/python bench/baseline_grid.py [--data data/bigbasket-split1 …] [--levels 2 …]
        [--output bench/results/baseline_grid.md]

From 2026-12-04 to 12-07, ``TfidfBaseline.tuned`` started each category fit from the previous ``C``'s solution
(lbfgs ``warm_start``) to save time. This fits the ``C`` grid of ``training.baseline`` both ways, for each class
weighting, on each title with its brand where the records carry one (``title [brand]``, as the shipped BigBasket
configs read them): warm, as the grid was then, and from zeros, as it is now (each setting alone, as a script
fitting that one setting would). Per setting: lbfgs iterations, seconds, the largest difference of a weight from
the fit from zeros, validation and test accuracy; per data folder, the setting each way keeps on validation and
its test accuracy. One process, the settings one after another, so the seconds compare.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def grid(x, y, x_validation, y_validation, x_test, y_test, weight: str | None, warm: bool) -> list[dict]:
    """``training.baseline.C_GRID`` fitted with ``class_weight=weight``: from zeros by ``training.baseline``'s own fit,
    or, when ``warm``, each fit started from the one before, as the grid was until 2026-12-07 (the same model
    otherwise)."""
    from training.baseline import C_GRID, TfidfBaseline

    labels = sorted(set(y))
    rows, previous = [], None
    for c in C_GRID:
        started = time.monotonic()
        if warm and previous is not None:  # the old grid: the fit as training.baseline makes it, started from `previous`
            model = type(previous)(**{**previous.get_params(), "C": c, "warm_start": True})
            model.coef_, model.intercept_ = previous.coef_.copy(), previous.intercept_.copy()
            model.fit(x, y)
        else:
            model = TfidfBaseline("category", labels, 42, C=c, class_weight=weight).fit_features(x, y).model
        seconds = time.monotonic() - started
        rows.append({
            "C": c, "class_weight": weight or "none", "start": "warm" if warm else "zeros", "iterations": int(model.n_iter_[0]),
            "seconds": round(seconds, 1), "validation": float(np.mean(model.predict(x_validation) == y_validation)),
            "test": float(np.mean(model.predict(x_test) == y_test)), "model": model,
        })
        previous = model
    return rows


def measure(data: Path, levels: int) -> dict:
    """Both grids on one prepared data folder, each title with its brand where the records carry one."""
    from catalog_lora.records.task_spec import TaskSpec
    from training.baseline import CLASS_WEIGHTS, _features
    from training.data import read_splits, vote_texts

    splits = read_splits(data)
    spec = TaskSpec("category", levels=levels)
    texts = {name: vote_texts(rows, ["brand"]) for name, rows in splits.items()}
    gold = {name: np.array([spec.answer(r) for r in rows]) for name, rows in splits.items()}
    features = _features()
    x = features.fit_transform(texts["train"])
    x_validation, x_test = features.transform(texts["validation"]), features.transform(texts["test"])
    rows = []
    for weight in CLASS_WEIGHTS:
        for warm in (True, False):
            fitted = grid(x, gold["train"], x_validation, gold["validation"], x_test, gold["test"], weight, warm)
            for row in fitted:
                print(data.name, {k: v for k, v in row.items() if k != "model"}, flush=True)
            rows += fitted
    cold = {(r["C"], r["class_weight"]): r["model"] for r in rows if r["start"] == "zeros"}
    for row in rows:
        reference = cold[(row["C"], row["class_weight"])]
        row["largest_weight_difference"] = float(np.abs(row.pop("model").coef_ - reference.coef_).max())
    return {"data": str(data.relative_to(REPO)), "levels": levels, "train_rows": x.shape[0], "features": x.shape[1],
            "labels": len(set(gold["train"])), "rows": rows,
            # the row TfidfBaseline.tuned keeps: the best on validation, a tie keeping the earlier one (as max does)
            "chosen": {start: max((r for r in rows if r["start"] == start), key=lambda r: r["validation"])
                       for start in ("warm", "zeros")}}


def section(result: dict) -> str:
    table = ["| class weight | C | start | lbfgs iterations | seconds | largest weight difference from zeros' fit | "
             "validation accuracy | test accuracy |", "|---|---|---|---|---|---|---|---|"]
    table += [f"| {r['class_weight']} | {r['C']:g} | {r['start']} | {r['iterations']} | {r['seconds']:.0f} | "
              f"{r['largest_weight_difference']:.3f} | {r['validation']:.4f} | {r['test']:.4f} |" for r in result["rows"]]
    return (f"## {result['data']}, {result['levels']} level(s)\n\n{result['train_rows']:,} training rows, "
            f"{result['features']:,} features, {result['labels']} labels.\n\n" + "\n".join(table) + "\n")


def summary(results: list[dict]) -> str:
    """One row per data folder: what each grid keeps on validation and how it scores on test."""
    def kept(result: dict, start: str) -> str:
        row = result["chosen"][start]
        seconds = sum(r["seconds"] for r in result["rows"] if r["start"] == start)
        return f"C={row['C']:g}, {row['class_weight']}: {row['test']:.4f} ({seconds:.0f} s)"

    table = ["| data | levels | kept started warm: test accuracy (grid seconds) | kept from zeros: test accuracy (grid seconds) "
             "| difference (points) |", "|---|---|---|---|---|"]
    table += [f"| {r['data']} | {r['levels']} | {kept(r, 'warm')} | {kept(r, 'zeros')} | "
              f"{(r['chosen']['zeros']['test'] - r['chosen']['warm']['test']) * 100:+.2f} |" for r in results]
    return "\n".join(table) + "\n"


def main() -> None:
    from bench.speed_measure import machine

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", nargs="+", default=["data/bigbasket-split1"], help="prepared category data folders")
    parser.add_argument("--levels", nargs="+", type=int, default=[2],
                        help="levels of the path that make the label, one per --data (2: the BigBasket path config's)")
    parser.add_argument("--output", default=str(REPO / "bench/results/baseline_grid.md"))
    args = parser.parse_args()
    if len(args.levels) != len(args.data):
        sys.exit(f"--levels gives {len(args.levels)} value(s) for {len(args.data)} --data folder(s): give one per folder")
    folders = [REPO / d for d in args.data]
    for folder in folders:
        if not (folder / "train.jsonl").is_file():
            sys.exit(f"{folder} is not a prepared data folder (no train.jsonl): SPLITS=\"1 2 3\" bash scripts/real_results.sh "
                     "prepares the split folders")
    host = machine()
    results = [measure(folder, levels) for folder, levels in zip(folders, args.levels, strict=True)]
    text = (
        "# The tuned baseline's grid, fitted warm and from zeros\n\n"
        f"Machine: {host['cpu']} ({host['arch']}), {host['torch_threads']} thread(s). Date: {host['date']}. "
        f"Made by `bench/baseline_grid.py --data {' '.join(args.data)} --levels {' '.join(map(str, args.levels))}`. "
        "Each title with its brand where the records carry one, as the shipped configs read them. Each grid fitted "
        "in one process, one setting after another, so the seconds compare (the baseline now fits as many settings "
        "at once as torch has threads).\n\n" + summary(results) + "\n" + "\n".join(section(r) for r in results)
    )
    output = Path(args.output)
    output.write_text(text)
    output.with_suffix(".json").write_text(json.dumps({"machine": host, "results": results}, indent=2) + "\n")
    print(text)


if __name__ == "__main__":
    main()
