"""TF-IDF vectors as scikit-learn makes them, from plain files, and the training products nearest a text by them.

The project's classical model (``training.baseline``: word 1-2-grams and character 2-5-grams inside word
boundaries, sublinear term frequencies, L2-normalized per n-gram kind) is fitted with scikit-learn, then saved as a
JSON file (the n-gram kinds in order, each with its range and vocabulary, n-gram → column) and a safetensors file
(``idf``: one value per column, the kinds' columns one after another; a model adds its own tensors), so that
neither the engine nor the model card's code needs scikit-learn. :func:`analyze` is scikit-learn's
``TfidfVectorizer`` analyzer re-written (lower case, the default token pattern, ``char_wb`` padding), so the vectors
are the fitted vectorizer's.

Two users: a head's lexical vote (:mod:`catalog_lora.inference.lexical`, a logistic regression over the vectors)
and a description head's word search (:class:`LexicalSearch`, ``RunInfo.choice_search == "pooled"``): the
training products whose vectors are most similar, the baseline's own nearest-neighbour answer first, which the
references index's search by meaning misses where a title shares the product line's words but not its sense.
"""

from __future__ import annotations

import json
import math
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

ANALYZERS = ("word", "char_wb")
WORD = re.compile(r"(?u)\b\w\w+\b")  # scikit-learn's default token_pattern
WHITE_SPACES = re.compile(r"\s\s+")
# Texts searched at once: their dense TF-IDF rows (texts x n-grams) and similarities (texts x training products)
# stay tens of megabytes whatever the catalog's size.
QUERY_CHUNK = 256


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


class TfidfVectors:
    """The saved vectorizer: :meth:`matrix` of texts, one unit-length part per n-gram kind."""

    def __init__(self, features: list[Features], idf: torch.Tensor):
        self.features, self.idf = features, idf.float()

    @property
    def columns(self) -> int:
        return sum(len(kind.vocabulary) for kind in self.features)

    def vectors(self, texts: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The TF-IDF rows of ``texts`` as (row, column, value) triples: ``1 + ln(count)`` times the column's
        idf, each n-gram kind's part scaled to unit length."""
        rows, columns, values = [], [], [torch.zeros(0)]
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

    def matrix(self, texts: Sequence[str]) -> torch.Tensor:
        """The TF-IDF rows of ``texts`` as a sparse ``(len(texts), columns)`` tensor."""
        rows, columns, values = self.vectors(texts)
        # built right above: every index is in range
        size = (len(texts), self.columns)
        return torch.sparse_coo_tensor(torch.stack([rows, columns]), values, size, check_invariants=False)

    @staticmethod
    def read(settings_path: str | Path, tensors_path: str | Path) -> tuple[dict, dict[str, torch.Tensor], list[Features]]:
        """The two saved files: the JSON settings, the tensors, and the n-gram kinds."""
        from safetensors.torch import load_file

        settings = json.loads(Path(settings_path).read_text(encoding="utf-8"))
        features = [Features(f["analyzer"], tuple(f["ngram_range"]), f["vocabulary"]) for f in settings["features"]]
        return settings, load_file(str(tensors_path)), features


def save_vectors(paths: Sequence[str | Path], features: list[Features], idf, settings: dict, tensors: dict) -> list[Path]:
    """Write a fitted vectorizer to ``paths`` (the JSON file, the safetensors file): its ``features``, ``idf`` (one value
    per column) and what its user adds: ``settings`` into the JSON, ``tensors`` (numpy or torch arrays) beside ``idf``."""
    from safetensors.torch import save_file

    json_path, tensors_path = (Path(path) for path in paths)
    kinds = [{"analyzer": f.analyzer, "ngram_range": list(f.ngram_range), "vocabulary": f.vocabulary} for f in features]
    json_path.write_text(json.dumps({**settings, "features": kinds}, ensure_ascii=False) + "\n", encoding="utf-8")
    as_tensor = lambda array: torch.as_tensor(array, dtype=torch.float32).contiguous()  # noqa: E731
    save_file({"idf": as_tensor(idf), **{name: as_tensor(array) for name, array in tensors.items()}}, str(tensors_path))
    return [json_path, tensors_path]


class LexicalSearch:
    """The training products nearest a text by TF-IDF cosine similarity (the baseline's search), exact.

    ``keys``: each training product's line as the search reads it (title and attribute values), in the order its
    examples are numbered (the references index's entries). Ties keep that order, so the engine and the card's
    code, which read the same rows, find the same products."""

    def __init__(self, vectors: TfidfVectors, keys: Sequence[str]):
        self.vectors = vectors
        self.rows = vectors.matrix(keys).coalesce() if keys else None

    @classmethod
    def load(cls, settings_path: str | Path, tensors_path: str | Path, keys: Sequence[str]) -> LexicalSearch:
        _, tensors, features = TfidfVectors.read(settings_path, tensors_path)
        return cls(TfidfVectors(features, tensors["idf"]), keys)

    @torch.no_grad()
    def nearest(self, texts: Sequence[str], k: int) -> list[list[int]]:
        """The rows of the ``k`` training products most similar to each text, most similar first."""
        if self.rows is None:
            return [[] for _ in texts]
        found = []
        for start in range(0, len(texts), QUERY_CHUNK):
            queries = self.vectors.matrix(texts[start : start + QUERY_CHUNK]).to_dense()
            similarity = (self.rows @ queries.T).T  # (texts, training products)
            found += torch.sort(similarity, dim=1, descending=True, stable=True).indices[:, :k].tolist()
        return found
