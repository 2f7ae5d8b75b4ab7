"""Text cleaning, the normalized title key, and the last step of every converter (:func:`finalize`).

Scraped catalogs carry HTML entities (``&#8217;``, ``&amp;``), stray whitespace and the same
product under slightly different spellings. :func:`title_key` is the one notion of "the same
text" used for dedup here and for grouping the splits, so a product that is deduplicated
together is also split together.
"""

from __future__ import annotations

import hashlib
import html
import json
import re
import unicodedata
from collections import Counter
from collections.abc import Iterable
from functools import lru_cache

from catalog_lora.records.canonical import REQUIRED_FIELDS, check_task
from catalog_lora.records.dataset_files import Report
from catalog_lora.records.labels import normalize_key

_INVISIBLE = dict.fromkeys(map(ord, "\u200b\u200c\u200d\u2060\ufeff\u00ad"))
_NOT_WORD = re.compile(r"[\W_]+")
_BLANK_LINES = re.compile(r"\n{3,}")
# control characters other than tab, line feed and carriage return (which whitespace handling covers)
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")


def unescape(text: str) -> str:
    """HTML entities decoded, twice-escaped ones too (``&amp;#8217;`` → ``’``)."""
    for _ in range(3):
        if "&" not in text:
            break
        decoded = html.unescape(text)
        if decoded == text:
            break
        text = decoded
    return text


def clean_text(value, keep_newlines: bool = False) -> str:
    """Unescaped, NFC-normalized text with runs of whitespace collapsed to one space.

    ``keep_newlines`` keeps line breaks (at most one blank line in a row): bullet lists and
    paragraphs of a description mean something; in a title or review they do not.
    """
    if value is None:
        return ""
    if not keep_newlines:
        return _clean_line(str(value))
    text = unicodedata.normalize("NFC", unescape(str(value))).translate(_INVISIBLE)
    text = _CONTROL.sub("", text)
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    return _BLANK_LINES.sub("\n\n", "\n".join(" ".join(line.split()) for line in lines)).strip()


# category names, tags and brands repeat on thousands of rows: clean each spelling once
@lru_cache(maxsize=1 << 16)
def _clean_line(text: str) -> str:
    text = _CONTROL.sub("", unicodedata.normalize("NFC", unescape(text)).translate(_INVISIBLE))
    return " ".join(text.split())


@lru_cache(maxsize=1 << 16)
def title_key(text: str) -> str:
    """Lowercase, punctuation and spaces collapsed: ``"Tea-Bags (25 pcs.)"`` → ``"tea bags 25 pcs"``.

    Texts of only punctuation or emoji keep a casefolded key instead of becoming one empty key.
    """
    folded = unicodedata.normalize("NFKC", unescape(text)).casefold()
    key = " ".join(_NOT_WORD.sub(" ", folded).split())
    return key or " ".join(folded.split())


def stable_id(prefix: str, *parts: str) -> str:
    """An id that depends only on the content, so re-running a conversion gives the same ids."""
    digest = hashlib.sha1("\x1f".join(parts).encode("utf-8")).hexdigest()[:12]
    return f"{prefix}-{digest}"


def clean_labels(labels: Iterable) -> list[str]:
    """Cleaned labels, empty ones and repeats (same key, first spelling wins) removed, order kept."""
    out, seen = [], set()
    for label in labels or ():
        label = clean_text(label)
        key = normalize_key(label)
        if label and key not in seen:
            seen.add(key)
            out.append(label)
    return out


def clean_path(levels: Iterable) -> list[str]:
    """Cleaned category levels with empty ones removed (``A >  > B`` is ``A > B``)."""
    return [level for level in (clean_text(level) for level in levels or ()) if level]


def canonical(record: dict, task: str) -> dict:
    """The record with the fields of ``task`` in the order of catalog_lora.records.canonical."""
    out = {"id": str(record["id"]), "text": record["text"]}
    if task == "tagging":
        out["labels"] = record["labels"]
        out["labels_l2"] = record.get("labels_l2") or []
    elif task == "category":
        out["path"] = record["path"]
    else:
        out["description"] = record["description"]
    if task == "description" or record.get("attributes"):  # a tag or category record has them when its source does
        out["attributes"] = record.get("attributes") or {}
    out["source"] = record.get("source", "")
    return out


def _clean_record(record: dict, task: str) -> tuple[dict, str | None]:
    """The cleaned record and, if it cannot be used, the reason to drop it."""
    record = dict(record)
    record["text"] = clean_text(record.get("text"))
    if task == "tagging":
        record["labels"] = clean_labels(record.get("labels"))
        record["labels_l2"] = clean_labels(record.get("labels_l2"))
        missing = None if record["labels"] else "no_labels"
    elif task == "category":
        record["path"] = clean_path(record.get("path"))
        missing = None if record["path"] else "no_category"
    else:
        record["description"] = clean_text(record.get("description"), keep_newlines=True)
        missing = None if record["description"] else "empty_description"
    attributes = {str(k): clean_text(v) for k, v in (record.get("attributes") or {}).items()}
    record["attributes"] = {k: v for k, v in attributes.items() if v}
    if not record["text"]:
        return record, "empty_text"
    return record, missing


def _target(record: dict, task: str):
    if task == "tagging":
        return (tuple(record["labels"]), tuple(record["labels_l2"]))
    if task == "category":
        return tuple(record["path"])
    return record["description"]


def _new_labels(labels: list[str], present: list[str]) -> list[str]:
    keys = {normalize_key(label) for label in present}
    return [label for label in labels if normalize_key(label) not in keys]


def finalize(records: list[dict], task: str, report: Report) -> list[dict]:
    """Clean every record, drop unusable ones and duplicates, and make ids unique; fills ``report``.

    - empty text or target → dropped (``empty_text``, ``no_labels``, ``no_category``, ``empty_description``);
    - the same text and target twice → dropped (``exact_duplicate``);
    - the same :func:`title_key` twice:
      - tagging: the labels are merged into the first example (``merged: same_normalized_text``),
        or the row is dropped when it adds none (``normalized_duplicate``);
      - category: the most frequent path is kept; the others are dropped (``normalized_duplicate``
        for the same path, ``conflicting_path`` for another, since one text with two gold
        answers cannot be scored);
      - description: dropped only when the description is also the same (``normalized_duplicate``);
        different descriptions of one title are kept and split together.
    """
    check_task(task)
    report.task = task
    cleaned: list[dict] = []
    seen_exact: set[str] = set()
    for record in records:
        record, reason = _clean_record(record, task)
        if reason:
            report.drop(reason)
            continue
        exact = json.dumps([record["text"], _target(record, task)], ensure_ascii=False)
        if exact in seen_exact:
            report.drop("exact_duplicate")
            continue
        seen_exact.add(exact)
        cleaned.append(record)

    groups: dict[str, list[dict]] = {}
    for record in cleaned:
        groups.setdefault(title_key(record["text"]), []).append(record)

    out: list[dict] = []
    conflicts = 0
    for group in groups.values():
        if task == "tagging":
            first = group[0]
            for other in group[1:]:
                added = _new_labels(other["labels"], first["labels"])
                added_l2 = _new_labels(other["labels_l2"], first["labels_l2"])
                if added or added_l2:
                    first["labels"] = clean_labels(first["labels"] + added)
                    first["labels_l2"] = clean_labels(first["labels_l2"] + added_l2)
                    report.merge("same_normalized_text")
                else:
                    report.drop("normalized_duplicate")
            out.append(first)
        elif task == "category":
            if len(group) == 1:
                out.append(group[0])
                continue
            path_keys = [tuple(title_key(level) for level in r["path"]) for r in group]
            paths = Counter(path_keys)
            best = max(paths, key=lambda p: paths[p])  # max keeps the first of equals: ties go to the first seen
            keep = group[path_keys.index(best)]
            report.drop("normalized_duplicate", paths[best] - 1)
            report.drop("conflicting_path", len(group) - paths[best])
            conflicts += len(paths) > 1
            out.append(keep)
        else:
            seen: set[str] = set()
            for record in group:
                key = title_key(record["description"])
                if key in seen:
                    report.drop("normalized_duplicate")
                    continue
                seen.add(key)
                out.append(record)
    if conflicts:
        report.note(
            f"{conflicts:,} texts had more than one category path; the most frequent one (the first on ties) was kept"
        )
    order = {id(record): i for i, record in enumerate(cleaned)}
    out.sort(key=lambda record: order[id(record)])  # back to source order

    used: set[str] = set()
    renamed = 0
    for record in out:
        record["id"] = base = str(record["id"])
        n = 1
        while record["id"] in used:
            n += 1
            record["id"] = f"{base}-{n}"
        renamed += n > 1
        used.add(record["id"])
    if renamed:
        report.note(f"{renamed:,} examples shared an id with another; a -2, -3… suffix keeps ids unique")

    result = [canonical(record, task) for record in out]
    for record in result[:1]:
        missing = [f for f in REQUIRED_FIELDS[task] if f not in record]
        assert not missing, f"canonical record lacks {missing}"
    report.kept = len(result)
    return result
