"""The nearest training examples shown in a prompt (a run's ``prompt_examples``).

Looked up in the run's references index (:mod:`catalog_lora.retrieval.references`) by sentence-embedding
similarity, at training time and at inference time alike, so the model is trained on the prompts it
will see. A training row must not see itself: its own id and every row with the same text are
skipped, as a product to describe is, by the splits' construction, never in the training split.
A description head's candidates may be pooled (:func:`pooled_examples`): the nearest by TF-IDF
(:mod:`catalog_lora.retrieval.tfidf`) with the nearest in the index, under the same rule.

For code without catalog-lora (the model card's), :func:`save_plain` writes the index's embeddings
and each example's text and answer to plain files published beside the adapter.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from catalog_lora.records.prompts import Example, with_attribute_values

# Extra hits asked for when training rows skip themselves and their same-text twins.
SKIP_MARGIN = 8


def _key(text: str) -> str:
    return " ".join(text.split()).casefold()


def nearest_examples(
    index,
    texts: Sequence[str],
    k: int,
    skip_ids: Sequence[str] | None = None,
    attributes: Sequence[dict | None] | None = None,
) -> list[list[Example]]:
    """The ``k`` nearest training examples of each text, most similar first, as prompt examples.

    ``skip_ids`` (training rows, one id per text) leaves out the row itself and rows with the same text;
    ``attributes`` (one dict or None per text) are searched with the texts by an index keyed on them."""
    if k < 1:
        raise ValueError(f"k={k} must be at least 1")
    if skip_ids is not None and len(skip_ids) != len(texts):
        raise ValueError(f"got {len(texts)} texts but {len(skip_ids)} ids to skip")
    hits = index.query(list(texts), k + (SKIP_MARGIN if skip_ids is not None else 0), attributes) if texts else []
    out = []
    for number, (text, references) in enumerate(zip(texts, hits, strict=True)):
        if skip_ids is not None:
            own = str(skip_ids[number])
            references = [r for r in references if r.id != own and _key(r.text) != _key(text)]
        out.append([Example(r.text, r.answer, r.attributes) for r in references[:k]])
    return out


def from_each_search(k: int) -> int:
    """How many candidates a description head with ``k`` candidates (``prompt_examples``) takes from each search when
    it pools them: ``⌈k/2⌉``."""
    return -(-k // 2)


def pool(by_words: Sequence[Example], by_meaning: Sequence[Example], k: int) -> list[Example]:
    """A description head's pooled candidates (``RunInfo.choice_search == "pooled"``): the first ``⌈k/2⌉`` of the
    TF-IDF search's (:class:`catalog_lora.retrieval.tfidf.LexicalSearch`), then the first ``⌈k/2⌉`` of the references
    index's, each description once (its first place kept). The TF-IDF nearest comes first: it is the baseline's own
    answer, so the nearest candidate's share of the choice (tuned on validation) is the baseline's vote."""
    half = from_each_search(k)
    pooled: dict[str, Example] = {}
    for candidate in [*by_words[:half], *by_meaning[:half]]:
        pooled.setdefault(candidate.answer, candidate)
    return list(pooled.values())


def index_word_search(index, files: Sequence[str | Path], keys: Sequence[str]) -> tuple:
    """A description head's TF-IDF search (``files``: its two saved files) over the references ``index``'s entries,
    each entry's line its title and the ``keys`` attributes' values; returns the search and the entries as examples,
    in the index's order (the order the card's code reads them in), for :func:`pooled_examples`."""
    from catalog_lora.retrieval.tfidf import LexicalSearch

    _, texts, answers, attributes = index.entries()
    rows = [Example(*entry) for entry in zip(texts, answers, attributes, strict=True)]
    lines = [with_attribute_values(row.text, row.attributes, keys) for row in rows]
    return LexicalSearch.load(*files, lines), rows


def pooled_examples(
    index,
    search,
    rows: Sequence[Example],
    texts: Sequence[str],
    k: int,
    keys: Sequence[str],
    attributes: Sequence[dict | None] | None = None,
    skip_ids: Sequence[str] | None = None,
) -> list[list[Example]]:
    """A description head's pooled candidates of each text (:func:`pool`): the nearest of ``rows`` by the TF-IDF
    ``search`` (a :class:`catalog_lora.retrieval.tfidf.LexicalSearch` over their lines, title and the ``keys``
    attributes' values) and the nearest in the references ``index``, :func:`from_each_search` of each.

    ``skip_ids`` (training rows, one id per text): a row's own candidates leave it out, and every row with its text."""
    half = from_each_search(k)
    attributes = attributes or [None] * len(texts)
    by_meaning = nearest_examples(index, texts, half, skip_ids, attributes)
    lines = [with_attribute_values(text, extra, keys) for text, extra in zip(texts, attributes, strict=True)]
    found = search.nearest(lines, half + (SKIP_MARGIN if skip_ids is not None else 0))
    by_words = [
        [rows[j] for j in hits if skip_ids is None or _key(rows[j].text) != _key(text)][:half]
        for text, hits in zip(texts, found, strict=True)
    ]
    return [pool(words, meaning, k) for words, meaning in zip(by_words, by_meaning, strict=True)]


def save_plain(index, embeddings_path: str | Path, rows_path: str | Path) -> None:
    """The references ``index`` as plain files, for code without catalog-lora or ChromaDB.

    ``embeddings_path``: a safetensors file with ``embeddings`` (float32, one unit-length row per
    training example, as the index stores them); ``rows_path``: JSON lines ``{"text", "answer", "attributes"}``,
    the same examples in the same order. The top-k of ``embedding @ embeddings.T`` are then the
    examples :func:`nearest_examples` finds, by an exact search instead of ChromaDB's approximate one.
    """
    from safetensors.numpy import save_file

    embeddings, texts, answers, attributes = index.entries()
    save_file({"embeddings": embeddings}, str(embeddings_path), metadata={"embedding_model": index.model})
    # ASCII JSON: no character in a row can read as a line break
    rows = (
        json.dumps({"text": text, "answer": answer, "attributes": extra})
        for text, answer, extra in zip(texts, answers, attributes, strict=True)
    )
    Path(rows_path).write_text("".join(row + "\n" for row in rows), encoding="utf-8")
