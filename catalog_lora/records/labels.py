"""The label taxonomy and the one parser of model answers into labels."""

from __future__ import annotations

import json
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from catalog_lora.records.canonical import PATH_SEPARATOR

TAG_SEPARATORS = re.compile(r"[,;\n]|\s\|\s")
PATH_SEPARATORS = re.compile(r"\s*(?:>>|>|/|\|)\s*")
# Trimmed from both ends of each piece of an answer (list markers, quotes, a closing full stop).
PIECE_PUNCTUATION = ".*-\"'"


def normalize_key(label: str) -> str:
    """Case- and space-insensitive key, so ``skin feel`` and ``Skin  Feel`` are one label."""
    return " ".join(label.lower().split())


def split_labels(value, separator: str | None) -> list[str]:
    """The labels of one cell of a label column: split on ``separator`` (spaces around it dropped; None: the
    whole cell is one label), a JSON list as it is. The one parser of label cells: datasets_prep's generic
    format trains on its labels and the Space's Train tab previews them."""
    value = "" if value is None else value
    if isinstance(value, list):  # JSON inputs may hold real lists
        return [str(v) for v in value]
    value = str(value)
    if separator is None:
        return [value]
    return re.split(r"\s*" + re.escape(separator.strip() or separator) + r"\s*", value)


@dataclass
class Taxonomy:
    """The labels of a task with their training counts, most frequent first."""

    labels: list[str]
    counts: dict[str, int] = field(default_factory=dict)
    multi_label: bool = False

    def __post_init__(self):
        self._canonical = {normalize_key(label): label for label in self.labels}

    @classmethod
    def from_examples(cls, label_lists: list[list[str]], multi_label: bool) -> Taxonomy:
        counts = Counter(label for labels in label_lists for label in labels)
        labels = [label for label, _ in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))]
        return cls(labels=labels, counts=dict(counts), multi_label=multi_label)

    def __len__(self) -> int:
        return len(self.labels)

    def __contains__(self, label: str) -> bool:
        return normalize_key(label) in self._canonical

    def canonical(self, label: str) -> str | None:
        return self._canonical.get(normalize_key(label))

    def index(self, label: str) -> int:
        return self.labels.index(label)

    def to_dict(self) -> dict:
        return {
            "multi_label": self.multi_label,
            "labels": [{"label": label, "count": self.counts.get(label, 0)} for label in self.labels],
        }

    @classmethod
    def from_dict(cls, data: dict) -> Taxonomy:
        labels = [item["label"] for item in data["labels"]]
        counts = {item["label"]: item["count"] for item in data["labels"]}
        return cls(labels=labels, counts=counts, multi_label=data["multi_label"])

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2, ensure_ascii=False) + "\n", encoding="utf-8")

    @classmethod
    def load(cls, path: str | Path) -> Taxonomy:
        return cls.from_dict(json.loads(Path(path).read_text(encoding="utf-8")))


@dataclass
class ParsedLabels:
    labels: list[str]
    unknown: list[str]


def _clean_piece(piece: str) -> str:
    return piece.strip().strip(PIECE_PUNCTUATION).strip()


def parse_tags(answer: str, taxonomy: Taxonomy) -> ParsedLabels:
    """``" fragrance, Price ,price, Foo."`` → labels ``[Fragrance, Price]``, unknown ``[Foo]``.

    Trims, maps each tag to its canonical case in the taxonomy, drops duplicates
    (first occurrence wins) and keeps tags outside the taxonomy apart so they can be counted.
    """
    labels: list[str] = []
    unknown: list[str] = []
    for piece in TAG_SEPARATORS.split(answer):
        piece = _clean_piece(piece)
        if not piece:
            continue
        label = taxonomy.canonical(piece)
        if label is None:
            if piece not in unknown:
                unknown.append(piece)
        elif label not in labels:
            labels.append(label)
    return ParsedLabels(labels, unknown)


def parse_category(answer: str, taxonomy: Taxonomy) -> ParsedLabels:
    """The first line of the answer as one category path, separators normalized to `` > ``."""
    first = answer.strip().split("\n", 1)[0]
    path = PATH_SEPARATOR.join(p for p in (_clean_piece(x) for x in PATH_SEPARATORS.split(first)) if p)
    if not path:
        return ParsedLabels([], [])
    label = taxonomy.canonical(path)
    return ParsedLabels([label], []) if label else ParsedLabels([], [path])


def parse_answer(answer: str, taxonomy: Taxonomy) -> ParsedLabels:
    return parse_tags(answer, taxonomy) if taxonomy.multi_label else parse_category(answer, taxonomy)
