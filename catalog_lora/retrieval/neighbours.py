"""Labels voted by the nearest training examples, mixed into a classification head's scores.

A head trained for minutes on a CPU generalizes from the wording of a product, but it has
not memorized the catalog's long tail (brands, pack sizes, near-identical variants), which
is exactly what a TF-IDF model or a nearest-neighbour lookup gets right. So the adapter
keeps its training examples in the references index (:mod:`catalog_lora.retrieval.references`) and,
at prediction time, mixes the head's probabilities with the labels of the ``k`` nearest
training examples, each weighted by ``exp(similarity / temperature)``: the kNN
interpolation of kNN-LM (Khandelwal et al., 2020), applied to labels.

The share of the vote (``knn_weight``) is chosen on the validation split at the end of
training, beside the classical model's (:mod:`catalog_lora.inference.votes`), and saved in
``catalog_lora.json``; 0 leaves the neighbours out.

For code without catalog-lora (the model card's), :func:`save_plain` writes the index's
embeddings and each example's labels to one safetensors file published beside the adapter.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from catalog_lora.records.canonical import PATH_SEPARATOR
from catalog_lora.records.labels import Taxonomy


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
