"""The classical model's vote: TF-IDF n-grams and a logistic regression, as plain files, mixed into a head.

Product titles are largely a lookup problem (pack sizes, flavours and brands recur), and a TF-IDF
model gets that long tail right where a head trained for minutes does not; the two make different
mistakes, so their probabilities mixed beat either. The vote is the project's classical baseline
(``training.baseline``: its TF-IDF vectors as :mod:`catalog_lora.retrieval.tfidf` reads them, a logistic
regression whose ``C`` and class weights are chosen on validation), fitted on the adapter's training split and
saved beside it as plain files, so that neither the engine nor the model card's code needs scikit-learn:

- ``lexical.json``: the n-gram kinds in order, each with its range and vocabulary (n-gram → column),
  and whether the labels are exclusive (softmax) or each its own yes/no (sigmoid);
- ``lexical.safetensors``: ``idf`` (one value per column, the kinds' columns one after another),
  ``coef`` (one row per label of the adapter's taxonomy, one column per n-gram) and ``intercept``.
  A label the training split never showed gets ``-inf`` (tags seen on every row: ``+inf``).

Its share of the answer (``RunInfo.lexical_weight``) is chosen on validation beside the neighbours'
(:mod:`catalog_lora.inference.votes`); 0 leaves it out.
"""

from __future__ import annotations

from pathlib import Path

import torch

from catalog_lora.retrieval.tfidf import Features, TfidfVectors, save_vectors
from catalog_lora.runs.folder import LEXICAL_FILES


class LexicalModel(TfidfVectors):
    """The saved classical model: :meth:`probabilities` of every label of the adapter's taxonomy."""

    def __init__(self, features: list[Features], idf: torch.Tensor, coef: torch.Tensor, intercept: torch.Tensor, multi_label: bool):
        super().__init__(features, idf)
        self.multi_label = multi_label
        self.coef_t, self.intercept = coef.float().T.contiguous(), intercept.float()

    @torch.no_grad()
    def probabilities(self, texts: list[str]) -> torch.Tensor:
        """One row per text, one column per label: softmax over the labels, or each tag's sigmoid."""
        logits = torch.sparse.mm(self.matrix(texts), self.coef_t) + self.intercept
        return torch.sigmoid(logits) if self.multi_label else torch.softmax(logits, dim=-1)

    @classmethod
    def load(cls, settings_path: str | Path, tensors_path: str | Path) -> LexicalModel:
        settings, tensors, features = cls.read(settings_path, tensors_path)
        return cls(features, tensors["idf"], tensors["coef"], tensors["intercept"], settings["multi_label"])


def save(
    folder: str | Path, features: list[Features], idf, coef, intercept, multi_label: bool, settings: str
) -> list[Path]:
    """Write the two files of a fitted model into ``folder``: ``coef`` (labels x columns), ``intercept``
    (labels) and ``idf`` (columns) as numpy or torch arrays in the taxonomy's label order; ``settings``
    says how it was fitted (e.g. ``"C=10, class_weight=balanced"``)."""
    paths = [Path(folder) / name for name in LEXICAL_FILES]
    described = {"multi_label": multi_label, "fitted": settings}
    return save_vectors(paths, features, idf, described, {"coef": coef, "intercept": intercept})
