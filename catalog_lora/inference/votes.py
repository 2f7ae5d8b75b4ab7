"""A head's answer as a mix: the head's probabilities and the votes beside it, each vote's share chosen on validation.

Two votes can join a tag or category head: the labels of the nearest training examples
(:mod:`catalog_lora.retrieval.neighbours`) and the classical model's probabilities
(:mod:`catalog_lora.inference.lexical`). The answer is ``(1 - Σ shares) * head + Σ share * vote``,
still probabilities row by row. The shares (``RunInfo.knn_weight``, ``RunInfo.lexical_weight``) are
chosen together on the validation split at the end of training (:func:`tune_shares`) from
``WEIGHT_GRID``, summing to at most 1; 0 leaves a vote out, and a vote whose share is 1 answers alone.
"""

from __future__ import annotations

import itertools

import numpy as np

WEIGHT_GRID = tuple(round(w, 2) for w in np.linspace(0.0, 1.0, 21))
THRESHOLD_GRID = np.linspace(0.05, 0.95, 19)


def mix(head: np.ndarray, votes: list[tuple[float, np.ndarray]]) -> np.ndarray:
    """``(1 - Σ share) * head + Σ share * vote`` over ``votes`` given as ``(share, probabilities)`` pairs."""
    mixed = (1.0 - sum(share for share, _ in votes)) * head
    for share, vote in votes:
        mixed = mixed + share * vote
    return mixed


THRESHOLD_SCOPES = ("per_label", "shared")


def best_thresholds(scores: np.ndarray, gold: np.ndarray, scope: str = "per_label") -> np.ndarray:
    """A decision threshold per label from the grid, chosen on ``gold``.

    ``per_label``: each label's own, the one with the best F1 for that label (0.5 for labels ``gold`` never has):
    what macro-F1 rewards, and what a small validation split overfits, a label with three validation rows
    getting a threshold fitted to those three. ``shared``: one threshold for every label, the one with the best
    micro-F1 over all of them: one number chosen on every row, what micro-F1 rewards."""
    if scope == "shared":
        f1 = [micro_f1(gold, scores >= t) for t in THRESHOLD_GRID]
        return np.full(scores.shape[1], THRESHOLD_GRID[int(np.argmax(f1))])
    thresholds = np.full(scores.shape[1], 0.5)
    for j in range(scores.shape[1]):
        if gold[:, j].any():
            f1 = [micro_f1(gold[:, j], scores[:, j] >= t) for t in THRESHOLD_GRID]
            thresholds[j] = THRESHOLD_GRID[int(np.argmax(f1))]
    return thresholds


def validation_score(mixed: np.ndarray, gold: np.ndarray, multi_label: bool, scope: str = "per_label") -> float:
    """Single label: accuracy of the argmax (``gold`` a label-index vector, -1 never right). Tags: micro-F1
    with thresholds of ``scope`` (:func:`best_thresholds`) tuned on the same rows (``gold`` a 0/1 matrix), as
    they will be at the end."""
    if multi_label:
        return micro_f1(gold, mixed >= best_thresholds(mixed, gold, scope))
    return float((mixed.argmax(axis=1) == gold).mean())


def tune_shares(
    head: np.ndarray, votes: dict[str, np.ndarray], gold: np.ndarray, multi_label: bool, scope: str = "per_label",
    combine=mix,
) -> tuple[dict[str, float], dict[tuple[float, ...], float]]:
    """Each vote's share with the best validation score (:func:`validation_score`, tags with thresholds of
    ``scope``), and the score of every combination tried (keyed by the shares in ``votes``' order).
    ``combine(head, [(share, vote), ...])`` makes the answer (:func:`mix`; ``bench/mix_forms.py`` tries others).

    Every combination of ``WEIGHT_GRID`` values summing to at most 1 is tried. Ties go to the smaller total
    share (the head alone unless a vote really helps), then to the first combination tried.
    """
    names = list(votes)
    scores = {}
    for shares in itertools.product(WEIGHT_GRID, repeat=len(names)):
        if sum(shares) <= 1.0 + 1e-9:
            mixed = combine(head, [(share, votes[name]) for share, name in zip(shares, names, strict=True)])
            scores[shares] = validation_score(mixed, gold, multi_label, scope)
    best = max(scores, key=lambda shares: (scores[shares], -sum(shares)))
    return dict(zip(names, best, strict=True)), scores


def micro_f1(gold: np.ndarray, predicted: np.ndarray) -> float:
    """F1 over every decision of 0/1 arrays ``gold`` and ``predicted``: micro-F1 of matrices, one label's F1 of
    columns."""
    gold, predicted = gold.astype(bool), predicted.astype(bool)
    tp = float((gold & predicted).sum())
    denominator = float(gold.sum() + predicted.sum())
    return 2 * tp / denominator if denominator else 0.0
