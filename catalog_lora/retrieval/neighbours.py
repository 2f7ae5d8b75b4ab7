"""Labels voted by the nearest training examples, mixed into a classification head's scores.

A head trained for minutes on a CPU generalizes from the wording of a product, but it has
not memorized the catalog's long tail (brands, pack sizes, near-identical variants), which
is exactly what a TF-IDF model or a nearest-neighbour lookup gets right. So the adapter
keeps its training examples in the references index (:mod:`catalog_lora.retrieval.references`) and,
at prediction time, mixes the head's probabilities with the labels of the ``k`` nearest
training examples, each weighted by ``exp(similarity / temperature)``: the kNN
interpolation of kNN-LM (Khandelwal et al., 2020), applied to labels.

The share of the vote (``weight``) is chosen on the validation split at the end of
training and saved in ``catalog_lora.json``; 0 means the head alone.

For code without catalog-lora (the model card's), :func:`save_plain` writes the index's
embeddings and each example's labels to one safetensors file published beside the adapter.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from catalog_lora.records.canonical import PATH_SEPARATOR
from catalog_lora.records.labels import Taxonomy

WEIGHT_GRID = tuple(round(w, 2) for w in np.linspace(0.0, 1.0, 21))
THRESHOLD_GRID = np.linspace(0.05, 0.95, 19)


def _answer_labels(answer: str, multi_label: bool, levels: int | None) -> list[str]:
    """The labels of a reference's stored answer (tags joined by ``", "``, or a category path)."""
    if multi_label:
        return [piece.strip() for piece in answer.split(", ") if piece.strip()]
    path = answer.split(PATH_SEPARATOR)
    return [PATH_SEPARATOR.join(path[:levels] if levels else path)]


def answer_label_indices(answer: str, taxonomy: Taxonomy, levels: int | None) -> list[int]:
    """The taxonomy indices of a reference's labels (labels outside the taxonomy count for nothing)."""
    names = (taxonomy.canonical(label) for label in _answer_labels(answer, taxonomy.multi_label, levels))
    return [taxonomy.index(name) for name in names if name is not None]


def neighbour_votes(
    references: Sequence[Sequence], taxonomy: Taxonomy, levels: int | None, temperature: float
) -> np.ndarray:
    """One row per query: each label's share of the similarity-weighted vote of its neighbours.

    ``references`` is what :meth:`ReferenceIndex.query` returns (objects with ``score`` and
    ``answer``). Rows sum to 1 for single-label tasks; for tags each label's value is the
    weighted share of neighbours that carry it.
    """
    votes = np.zeros((len(references), len(taxonomy)), dtype=np.float32)
    for row, hits in enumerate(references):
        if not hits:
            continue
        scores = np.array([hit.score for hit in hits], dtype=np.float64)
        weights = np.exp((scores - scores.max()) / temperature)
        weights /= weights.sum()
        for weight, hit in zip(weights, hits, strict=True):
            for column in answer_label_indices(hit.answer, taxonomy, levels):
                votes[row, column] += weight
    return votes


def save_plain(index, taxonomy: Taxonomy, levels: int | None, path: str | Path) -> Path:
    """The references ``index`` as plain tensors, for code without catalog-lora or ChromaDB.

    ``embeddings`` (float32, one unit-length row per training example, as the index stores them)
    and ``labels`` (uint8, the same rows, one column per label of ``taxonomy``: how often the
    example's answer holds the label), so that ``softmax(top-k similarity / temperature) @ labels``
    is :func:`neighbour_votes` over an exact nearest-neighbour search.
    """
    from safetensors.numpy import save_file

    embeddings, _, answers, _ = index.entries()
    labels = np.zeros((len(answers), len(taxonomy)), dtype=np.uint8)
    for row, answer in enumerate(answers):
        for column in answer_label_indices(answer, taxonomy, levels):
            labels[row, column] += 1
    path = Path(path)
    save_file({"embeddings": embeddings, "labels": labels}, str(path), metadata={"embedding_model": index.model})
    return path


def mix(head: np.ndarray, votes: np.ndarray, weight: float) -> np.ndarray:
    """``(1 - weight) * head + weight * votes``: still probabilities, row by row."""
    return (1.0 - weight) * head + weight * votes


def best_thresholds(scores: np.ndarray, gold: np.ndarray) -> np.ndarray:
    """Per label, the decision threshold of the grid with the best F1 on ``gold`` (0.5 for absent labels)."""
    thresholds = np.full(scores.shape[1], 0.5)
    for j in range(scores.shape[1]):
        if gold[:, j].any():
            f1 = [_f1(gold[:, j], scores[:, j] >= t) for t in THRESHOLD_GRID]
            thresholds[j] = THRESHOLD_GRID[int(np.argmax(f1))]
    return thresholds


def tune_weight(
    head: np.ndarray, votes: np.ndarray, gold: np.ndarray, multi_label: bool
) -> tuple[float, dict[float, float]]:
    """The vote's share with the best validation score, and the score of every share tried.

    ``gold`` is a label-index vector (single label) or a 0/1 matrix (tags). Single label is
    scored by accuracy; tags by micro-F1 with per-label thresholds tuned at each share.
    Ties go to the smaller share: the head alone unless the neighbours really help.
    """
    scores = {}
    for weight in WEIGHT_GRID:
        mixed = mix(head, votes, weight)
        if multi_label:
            predicted = mixed >= best_thresholds(mixed, gold)
            scores[weight] = _f1(gold, predicted)
        else:
            scores[weight] = float((mixed.argmax(axis=1) == gold).mean())
    best = max(WEIGHT_GRID, key=lambda w: (scores[w], -w))
    return best, scores


def _f1(gold: np.ndarray, predicted: np.ndarray) -> float:
    gold, predicted = gold.astype(bool), predicted.astype(bool)
    tp = float((gold & predicted).sum())
    denominator = float(gold.sum() + predicted.sum())
    return 2 * tp / denominator if denominator else 0.0
