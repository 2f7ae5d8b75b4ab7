"""A canonical record as an entry of the reference index, and back.

Each entry keeps the example id, its text (the document) and, as metadata, its gold answer
(:func:`record_answer`), its task, its source and its attributes (as JSON: ChromaDB metadata holds
scalars only). :mod:`catalog_lora.retrieval.references` stores and searches them.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable

from catalog_lora.records.canonical import REQUIRED_FIELDS, check_task, path_label
from catalog_lora.retrieval.embeddings import ReferenceIndexError

logger = logging.getLogger(__name__)


def infer_task(record: dict) -> str:
    """The task of a canonical record, from its fields (``labels``, ``path`` or ``description``)."""
    for task in ("tagging", "category", "description"):
        if all(field in record for field in REQUIRED_FIELDS[task]):
            return task
    raise ReferenceIndexError(
        f"record {record.get('id', '?')!r} has none of the answer fields labels / path / description"
    )


def record_answer(record: dict, task: str) -> str:
    """The gold answer as text: tags joined by ``", "``, the path joined by ``" > "``, or the description."""
    if task == "tagging":
        return ", ".join(str(label) for label in record["labels"])
    if task == "category":
        path = record["path"]
        return path_label(list(path)) if isinstance(path, list | tuple) else str(path)
    return str(record["description"])


def record_entries(records: Iterable[dict], task: str | None) -> tuple[list[str], list[str], list[dict]]:
    """``(ids, texts, metadatas)`` of ``records``, checked; ``task=None`` infers it from each record's fields.

    A repeated id keeps its last record."""
    if task is not None:
        check_task(task)
    found: dict[str, tuple[str, dict]] = {}
    duplicates = 0
    for number, record in enumerate(records):
        if not isinstance(record, dict):
            raise ReferenceIndexError(f"record #{number} is not a JSON object")
        record_task = task or infer_task(record)
        missing = [field for field in REQUIRED_FIELDS[record_task] if field not in record]
        if missing:
            raise ReferenceIndexError(
                f"record {record.get('id', f'#{number}')!r} lacks {', '.join(missing)} for task {record_task}"
            )
        record_id = str(record["id"])
        if record_id in found:
            duplicates += 1
        metadata = {
            "answer": record_answer(record, record_task),
            "task": record_task,
            "source": str(record.get("source") or ""),
        }
        if record.get("attributes"):  # ChromaDB metadata holds scalars only
            metadata["attributes"] = json.dumps(record["attributes"], ensure_ascii=False)
        found[record_id] = (str(record["text"]), metadata)
    if duplicates:
        logger.warning("%d records repeat an id already seen; the last one of each id is indexed", duplicates)
    ids = list(found)
    return ids, [found[i][0] for i in ids], [found[i][1] for i in ids]


def stored_attributes(metadata: dict | None) -> dict | None:
    """An entry's attributes, stored as JSON (None for an index built before they were kept)."""
    return json.loads((metadata or {}).get("attributes") or "null")
