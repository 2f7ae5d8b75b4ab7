"""The classical model's vote: TF-IDF n-grams and a logistic regression, as plain files, mixed into a head.

Product titles are largely a lookup problem (pack sizes, flavours and brands recur), and a TF-IDF
model gets that long tail right where a head trained for minutes does not; the two make different
mistakes, so their probabilities mixed beat either. The vote is the project's classical baseline
(``training.baseline``: word 1-2-grams and character 2-5-grams inside word boundaries, sublinear term
frequencies, L2-normalized per n-gram kind, a logistic regression whose ``C`` and class weights are
chosen on validation), fitted on the adapter's training split and saved beside it as plain files, so
that neither the engine nor the model card's code needs scikit-learn:

- ``lexical.json``: the n-gram kinds in order, each with its range and vocabulary (n-gram → column),
  and whether the labels are exclusive (softmax) or each its own yes/no (sigmoid);
- ``lexical.safetensors``: ``idf`` (one value per column, the kinds' columns one after another),
  ``coef`` (one row per label of the adapter's taxonomy, one column per n-gram) and ``intercept``.
  A label the training split never showed gets ``-inf`` (tags seen on every row: ``+inf``).

:func:`analyze` is scikit-learn's ``TfidfVectorizer`` analyzer re-written (lower case, the default
token pattern, ``char_wb`` padding), so the probabilities are the fitted model's. Its share of the
answer (``RunInfo.lexical_weight``) is chosen on validation beside the neighbours'
(:mod:`catalog_lora.inference.votes`); 0 leaves it out.
"""

from __future__ import annotations

import json
import math
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import torch

from catalog_lora.runs.folder import LEXICAL_FILES

ANALYZERS = ("word", "char_wb")
WORD = re.compile(r"(?u)\b\w\w+\b")  # scikit-learn's default token_pattern
WHITE_SPACES = re.compile(r"\s\s+")


def analyze(text: str, analyzer: str, ngram_range: tuple[int, int]) -> list[str]:
    """``text``'s n-grams as scikit-learn's ``TfidfVectorizer(analyzer=..., ngram_range=...)`` makes them."""
    low, high = ngram_range
    text = text.lower()
    grams = []
    if analyzer == "word":
        tokens = WORD.findall(text)
        for n in range(low, min(high, len(tokens)) + 1):
            grams += [" ".join(tokens[i : i + n]) for i in range(len(tokens) - n + 1)]
        return grams
    if analyzer != "char_wb":
        raise ValueError(f"analyzer={analyzer!r} is not one of {', '.join(ANALYZERS)}")
    for word in WHITE_SPACES.sub(" ", text).split():
        word = f" {word} "
        for n in range(low, high + 1):
            grams += [word[i : i + n] for i in range(max(1, len(word) - n + 1))]
            if len(word) <= n:  # a word shorter than n counts once, as itself
                break
    return grams


@dataclass
class Features:
    """One n-gram kind: its analyzer, range, and the column of each n-gram it keeps."""

    analyzer: str
    ngram_range: tuple[int, int]
    vocabulary: dict[str, int]


class LexicalModel:
    """The saved classical model: :meth:`probabilities` of every label of the adapter's taxonomy."""

    def __init__(self, features: list[Features], idf: torch.Tensor, coef: torch.Tensor, intercept: torch.Tensor, multi_label: bool):
        self.features, self.multi_label = features, multi_label
        self.idf, self.coef_t, self.intercept = idf.float(), coef.float().T.contiguous(), intercept.float()

    def vectors(self, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The TF-IDF rows of ``texts`` as (row, column, value) triples: ``1 + ln(count)`` times the column's
        idf, each n-gram kind's part scaled to unit length."""
        rows, columns, values = [], [], []
        offset = 0
        for kind in self.features:
            for row, text in enumerate(texts):
                counts = Counter(g for g in analyze(text, kind.analyzer, kind.ngram_range) if g in kind.vocabulary)
                cols = [offset + kind.vocabulary[g] for g in counts]
                tf = torch.tensor([1.0 + math.log(c) for c in counts.values()], dtype=torch.float32)
                weights = tf * self.idf[cols] if cols else tf
                weights = weights / weights.norm() if cols else weights
                rows += [row] * len(cols)
                columns += cols
                values.append(weights)
            offset += len(kind.vocabulary)
        return torch.tensor(rows, dtype=torch.long), torch.tensor(columns, dtype=torch.long), torch.cat(values)

    @torch.no_grad()
    def probabilities(self, texts: list[str]) -> torch.Tensor:
        """One row per text, one column per label: softmax over the labels, or each tag's sigmoid."""
        rows, columns, values = self.vectors(texts)
        x = torch.sparse_coo_tensor(
            torch.stack([rows, columns]), values, (len(texts), self.coef_t.shape[0]), check_invariants=False  # built right above
        )
        logits = torch.sparse.mm(x, self.coef_t) + self.intercept
        return torch.sigmoid(logits) if self.multi_label else torch.softmax(logits, dim=-1)

    @classmethod
    def load(cls, settings_path: str | Path, tensors_path: str | Path) -> LexicalModel:
        from safetensors.torch import load_file

        settings = json.loads(Path(settings_path).read_text(encoding="utf-8"))
        tensors = load_file(str(tensors_path))
        features = [Features(f["analyzer"], tuple(f["ngram_range"]), f["vocabulary"]) for f in settings["features"]]
        return cls(features, tensors["idf"], tensors["coef"], tensors["intercept"], settings["multi_label"])


def save(
    folder: str | Path, features: list[Features], idf, coef, intercept, multi_label: bool, settings: str
) -> list[Path]:
    """Write the two files of a fitted model into ``folder``: ``coef`` (labels x columns), ``intercept``
    (labels) and ``idf`` (columns) as numpy or torch arrays in the taxonomy's label order; ``settings``
    says how it was fitted (e.g. ``"C=10, class_weight=balanced"``)."""
    from safetensors.torch import save_file

    folder = Path(folder)
    json_path, tensors_path = (folder / name for name in LEXICAL_FILES)
    described = {
        "multi_label": multi_label,
        "fitted": settings,
        "features": [{"analyzer": f.analyzer, "ngram_range": list(f.ngram_range), "vocabulary": f.vocabulary} for f in features],
    }
    json_path.write_text(json.dumps(described, ensure_ascii=False) + "\n", encoding="utf-8")
    as_tensor = lambda array: torch.as_tensor(array, dtype=torch.float32).contiguous()  # noqa: E731
    save_file({"idf": as_tensor(idf), "coef": as_tensor(coef), "intercept": as_tensor(intercept)}, str(tensors_path))
    return [json_path, tensors_path]
