"""Evaluate an adapter against the base model and the classical baseline, side by side.

    python -m training.evaluate --adapter runs/sample-tagging [--data data/sample/tagging] [--split test]

Writes ``metrics.json`` and the plots into the run folder (when it is a local folder) and
prints a table. Training calls :func:`evaluate_all` at its end with the model in memory.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from catalog_lora.inference.engine import Engine
from catalog_lora.records.canonical import HEADLINE
from catalog_lora.records.dataset_files import attribute_keys
from catalog_lora.records.task_spec import TaskSpec
from catalog_lora.runs.folder import (
    CONFIG_FILE,
    CONFUSION_PLOT,
    METRICS_FILE,
    PER_LABEL_PLOT,
    SYSTEMS_PLOT,
    RunInfo,
    fetch_file,
)
from catalog_lora.runs.markdown import SYSTEMS, metrics_table, system_names
from training import plots
from training.baseline import TfidfBaseline
from training.config import load_config
from training.data import read_config_splits, vote_texts
from training.metrics import description_metrics, multilabel_metrics, singlelabel_metrics


def score(task_spec: TaskSpec, records: list[dict], predictions: list, labels: list[str] | None) -> dict:
    """Metrics of predictions (``Prediction`` objects, or plain targets from the baseline) on records."""
    as_labels = lambda p: p.labels if hasattr(p, "labels") else p  # noqa: E731
    if task_spec.task == "tagging":
        gold = [task_spec.labels(r) for r in records]
        unknown = [p.unknown if hasattr(p, "unknown") else [] for p in predictions]
        return multilabel_metrics(gold, [as_labels(p) for p in predictions], labels, unknown)
    if task_spec.task == "category":
        gold = [task_spec.labels(r)[0] for r in records]
        pred = [p.labels[0] if p.labels else None for p in predictions] if predictions and hasattr(predictions[0], "labels") else predictions
        return singlelabel_metrics(gold, pred, labels)
    texts = [p.text if hasattr(p, "text") else p for p in predictions]
    return description_metrics([r["description"] for r in records], texts)


def evaluate_engine(
    engine: Engine, name: str, records: list[dict], use_adapter: bool, batch_size: int, constrained: bool, batch_tokens: int = 0
) -> dict:
    spec = engine.spec(name)
    predictions = engine.predict(
        name,
        [r["text"] for r in records],
        [r.get("attributes") for r in records],
        use_adapter=use_adapter,
        batch_size=batch_size,
        batch_tokens=batch_tokens,
        constrained=constrained,
        progress=True,
    )
    labels = spec.taxonomy.labels if spec.taxonomy else None
    metrics = score(spec.info.spec, records, predictions, labels)
    metrics["truncated"] = sum(p.truncated for p in predictions)
    return metrics


def fit_baseline(
    train: list[dict], task_spec: TaskSpec, labels: list[str] | None, seed: int, validation: list[dict] | None = None,
    attributes: list[str] = (),
) -> TfidfBaseline:
    """The TF-IDF baseline fitted on ``train``; with ``validation`` its ``C`` and class weights are chosen
    there first (training.baseline.TfidfBaseline.tuned) by the task's headline metric, as many settings fitted at
    once as torch has threads. It reads each text with the values of the ``attributes`` the adapter reads
    (training.data.vote_texts): the same input as the adapter."""
    rows = lambda records: (vote_texts(records, attributes), [task_spec.answer(r) for r in records])  # noqa: E731
    if not validation:
        return TfidfBaseline(task_spec.task, labels, seed).fit(*rows(train))
    headline = HEADLINE[task_spec.task]
    return TfidfBaseline.tuned(
        task_spec.task, labels, seed, rows(train), rows(validation),
        lambda predictions: score(task_spec, validation, predictions, labels)[headline], jobs=torch.get_num_threads(),
    )


def baseline_attributes(info: RunInfo, train: list[dict]) -> list[str]:
    """The attributes the classical baseline reads beside each text: those the adapter reads, so that the two
    see the same input. A tag or category adapter's ``attributes``; a description head's ``choice_attributes``
    (every one the training records carry when empty, as its input then shows them all); a generating
    description adapter's prompt shows every one too."""
    if info.task != "description":
        return info.attributes
    if info.method == "head" and info.choice_attributes:
        return info.choice_attributes
    return attribute_keys({"train": train})


def evaluate_baseline(
    train: list[dict], test: list[dict], task_spec: TaskSpec, labels: list[str] | None, seed: int,
    validation: list[dict] | None = None, fitted: TfidfBaseline | None = None, attributes: list[str] = (),
) -> dict:
    """The TF-IDF baseline fitted on ``train`` (:func:`fit_baseline`; ``fitted``: one already fitted so, e.g. a
    head's lexical vote) and scored on ``test``, its settings named in ``settings``."""
    baseline = fitted or fit_baseline(train, task_spec, labels, seed, validation, attributes)
    metrics = score(task_spec, test, baseline.predict(vote_texts(test, attributes)), labels)
    if task_spec.task != "description":
        metrics["settings"] = baseline.settings
    return metrics


def evaluate_all(
    engine: Engine,
    name: str,
    train: list[dict],
    test: list[dict],
    *,
    base: bool = True,
    baseline: bool = True,
    batch_size: int = 16,
    batch_tokens: int = 0,
    constrained: bool = True,
    seed: int = 42,
    validation: list[dict] | None = None,
    fitted_baseline: TfidfBaseline | None = None,
) -> dict:
    """``{"base": …, "adapter": …, "baseline": …}`` on ``test``: the comparison every card shows; the
    baseline's settings are chosen on ``validation`` when it is given (``fitted_baseline``: a baseline already
    fitted that way, e.g. the model of a head's lexical vote, scored as it is).

    A head whose answers mix in votes (catalog_lora.inference.votes) is also scored on each part alone, with
    the same thresholds: ``head_alone``, ``neighbours_alone`` (a description head: the nearest candidate's
    description, the search without the head), ``lexical_alone``. An adapter that reads attributes beside the
    text (a category's brand) is also scored given the text alone, ``without_attributes``: what a user who
    does not pass them gets."""
    spec = engine.spec(name)
    info = spec.info
    with engine.reusing_passes():  # the head alone reuses the adapter's pass; the votes alone need none
        results = {"adapter": evaluate_engine(engine, name, test, True, batch_size, constrained, batch_tokens)}
        alone = {}
        if info.knn_weight or info.lexical_weight or (info.method == "head" and info.task == "description"):
            alone["head_alone"] = (0.0, 0.0)
        if info.knn_weight or (info.method == "head" and info.task == "description"):
            alone["neighbours_alone"] = (1.0, 0.0)
        if info.lexical_weight:
            alone["lexical_alone"] = (0.0, 1.0)
        shares = info.knn_weight, info.lexical_weight
        try:
            for system, (info.knn_weight, info.lexical_weight) in alone.items():
                results[system] = evaluate_engine(engine, name, test, True, batch_size, constrained, batch_tokens)
        finally:
            info.knn_weight, info.lexical_weight = shares
        if base:
            results["base"] = evaluate_engine(engine, name, test, False, batch_size, constrained, batch_tokens)
    if info.attributes:
        bare = [{key: value for key, value in r.items() if key != "attributes"} for r in test]
        results["without_attributes"] = evaluate_engine(engine, name, bare, True, batch_size, constrained, batch_tokens)
    if baseline:
        labels = spec.taxonomy.labels if spec.taxonomy else None
        attributes = baseline_attributes(info, train)
        results["baseline"] = evaluate_baseline(train, test, info.spec, labels, seed, validation, fitted_baseline, attributes)
        results["baseline"]["reads"] = list(attributes)  # the attributes beside each text; the card names them
    return results


def save_plots(results: dict, task: str, folder: Path) -> None:
    adapter = results["adapter"]
    if task == "category":
        cm = adapter["confusion_matrix"]
        plots.confusion_matrix(cm["matrix"], cm["labels"], folder / CONFUSION_PLOT, "Adapter on the test split")
    elif task == "tagging":
        plots.multilabel_f1_bars(adapter["per_label"], folder / PER_LABEL_PLOT, "Adapter: F1 per tag (test split)")
    headline = HEADLINE[task]
    values = {s: results[s][headline] for s in SYSTEMS if isinstance(results.get(s, {}).get(headline), float)}
    plots.system_bars(values, headline, folder / SYSTEMS_PLOT, f"Test split: {headline}", system_names(task))


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--adapter", required=True, help="run folder or Hub id of an adapter")
    parser.add_argument("--data", help="prepared dataset folder (default: the one the run was trained on)")
    parser.add_argument("--split", default="test", choices=["validation", "test"])
    parser.add_argument("--no-base", action="store_true", help="skip the base model (its earlier row is kept)")
    parser.add_argument("--no-baseline", action="store_true", help="skip the TF-IDF baseline (its earlier row is kept)")
    parser.add_argument("--batch-size", type=int, help="rows per batch, the most with --batch-tokens (default: the run's eval.batch_size)")
    parser.add_argument("--batch-tokens", type=int, help="batches of as many rows as fit in N padded tokens (0: off; default: the run's)")
    parser.add_argument("--max-examples", type=int, help="evaluate on the first N examples only (default: as many as the run's "
                        "training did, its data.max_eval_examples; 0: all)")
    parser.add_argument("--quantization", default="auto")
    args = parser.parse_args(argv)

    # The run's own splits, read as its training read them (capped, its attributes kept or dropped), unless asked.
    config_file = fetch_file(args.adapter, CONFIG_FILE)
    own = load_config(config_file)
    overrides = [f"data.path={args.data}"] if args.data else []
    for key, value in (("data.max_eval_examples", args.max_examples), ("eval.batch_size", args.batch_size), ("eval.batch_tokens", args.batch_tokens)):
        overrides += [f"{key}={value}"] if value is not None else []
    config = load_config(config_file, overrides) if overrides else own
    splits = read_config_splits(config)
    engine = Engine.load({"adapter": args.adapter}, quantization=args.quantization)
    print(f"Model: {engine.precision.describe()}")
    results = evaluate_all(
        engine, "adapter", splits["train"], splits[args.split],
        base=not args.no_base, baseline=not args.no_baseline, batch_size=config.eval.batch_size,
        batch_tokens=config.eval.batch_tokens, constrained=config.eval.constrained, seed=config.train.seed,
        validation=splits["validation"],
    )
    task = engine.spec("adapter").info.task
    print(metrics_table(results, task))
    folder = Path(args.adapter)
    if folder.is_dir():
        metrics_path = folder / METRICS_FILE
        metrics = json.loads(metrics_path.read_text()) if metrics_path.is_file() else {}
        # A row skipped (--no-base, --no-baseline) keeps its earlier value when the rows scored are the same ones.
        same_rows = (config.data.path, config.data.max_eval_examples) == (own.data.path, own.data.max_eval_examples)
        earlier = metrics.get(args.split, {}) if same_rows else {}
        metrics[args.split] = {**{s: earlier[s] for s in ("base", "baseline") if s in earlier and s not in results}, **results}
        metrics_path.write_text(json.dumps(metrics, indent=2) + "\n")
        save_plots(metrics[args.split], task, folder)
        print(f"Saved {metrics_path}")
    return results


if __name__ == "__main__":
    main()
