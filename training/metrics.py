"""Metrics for the three tasks, computed the same way for base, adapter and baseline."""

from __future__ import annotations

import statistics

import numpy as np
from sklearn.metrics import (
    accuracy_score,
    f1_score,
    jaccard_score,
    precision_recall_fscore_support,
)
from sklearn.preprocessing import MultiLabelBinarizer

from catalog_lora.run_files import HEADLINE_METRICS as HEADLINE  # noqa: F401  (re-exported: training/, model_cards/)


def multilabel_metrics(gold: list[list[str]], pred: list[list[str]], labels: list[str], unknown: list[list[str]] | None = None) -> dict:
    """Micro/macro/samples F1, per-label P/R/F1/support, Jaccard, exact match, out-of-taxonomy rate."""
    binarizer = MultiLabelBinarizer(classes=labels)
    known = set(labels)
    y_true = binarizer.fit_transform([[g for g in row if g in known] for row in gold])
    y_pred = binarizer.transform([[p for p in row if p in known] for row in pred])
    precision, recall, f1, support = precision_recall_fscore_support(y_true, y_pred, zero_division=0)
    generated = sum(len(p) for p in pred) + sum(len(u) for u in unknown or [])
    outside = sum(len(u) for u in unknown or [])
    return {
        "micro_f1": float(f1_score(y_true, y_pred, average="micro", zero_division=0)),
        "macro_f1": float(f1_score(y_true, y_pred, average="macro", zero_division=0)),
        "samples_f1": float(f1_score(y_true, y_pred, average="samples", zero_division=0)),
        "jaccard": float(jaccard_score(y_true, y_pred, average="samples", zero_division=0)),
        "exact_match": float(np.mean([set(g) == set(p) for g, p in zip(gold, pred, strict=True)])),
        "out_of_taxonomy_rate": outside / generated if generated else 0.0,
        "n": len(gold),
        "per_label": {
            label: {"precision": float(precision[i]), "recall": float(recall[i]), "f1": float(f1[i]), "support": int(support[i])}
            for i, label in enumerate(labels)
        },
    }


def singlelabel_metrics(gold: list[str], pred: list[str | None], labels: list[str]) -> dict:
    """Accuracy, macro-F1 and the confusion matrix (rows gold, columns predicted; last column: no valid label)."""
    pred = [p if p is not None else "<none>" for p in pred]
    index = {label: i for i, label in enumerate(labels)}
    matrix = np.zeros((len(labels), len(labels) + 1), dtype=int)
    for g, p in zip(gold, pred, strict=True):
        if g in index:
            matrix[index[g], index.get(p, len(labels))] += 1
    present = sorted(set(gold) | (set(pred) - {"<none>"}))
    return {
        "accuracy": float(accuracy_score(gold, pred)),
        "macro_f1": float(f1_score(gold, pred, labels=present, average="macro", zero_division=0)),
        "invalid_rate": float(np.mean([p == "<none>" for p in pred])),
        "n": len(gold),
        "confusion_matrix": {"labels": labels, "matrix": matrix.tolist()},
    }


def description_metrics(references: list[str], predictions: list[str]) -> dict:
    """ROUGE-1/2/L (F), corpus BLEU and chrF, and length statistics in words."""
    import sacrebleu
    from rouge_score import rouge_scorer

    scorer = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL"], use_stemmer=True)
    scores = [scorer.score(r, p) for r, p in zip(references, predictions, strict=True)]
    lengths = [len(p.split()) for p in predictions]
    return {
        "rouge1": float(np.mean([s["rouge1"].fmeasure for s in scores])),
        "rouge2": float(np.mean([s["rouge2"].fmeasure for s in scores])),
        "rougeL": float(np.mean([s["rougeL"].fmeasure for s in scores])),
        "bleu": float(sacrebleu.corpus_bleu(predictions, [references]).score),
        "chrf": float(sacrebleu.corpus_chrf(predictions, [references]).score),
        "length_mean": float(np.mean(lengths)) if lengths else 0.0,
        "length_median": float(statistics.median(lengths)) if lengths else 0.0,
        "reference_length_mean": float(np.mean([len(r.split()) for r in references])) if references else 0.0,
        "empty_rate": float(np.mean([not p.strip() for p in predictions])) if predictions else 0.0,
        "n": len(references),
    }


def summary(metrics: dict) -> dict:
    """The scalar metrics only (no per-label tables or matrices), for tables and cards."""
    return {k: v for k, v in metrics.items() if isinstance(v, int | float)}
