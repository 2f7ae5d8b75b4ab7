"""What a conversion did with every source row, so that nothing is lost silently.

Every source row ends in exactly one of three places: it became an example (``kept``),
it was folded into another example (``merged``: the same text on several rows, one row per
tag, several reviews of one product…), or it was dropped for a named reason (``dropped``).
:attr:`Report.unaccounted` is the rows that are in none of them; it is 0 after a correct
conversion and the tests hold every converter to it.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

REPORT_FILE = "report.json"


@dataclass
class Report:
    name: str = ""
    task: str = ""
    inputs: dict[str, int] = field(default_factory=dict)
    rows_read: int = 0
    kept: int = 0
    merged: Counter = field(default_factory=Counter)
    dropped: Counter = field(default_factory=Counter)
    splits: dict[str, int] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    # how the dataset was made (format, seed, fractions…), so a folder can be remade and described
    settings: dict = field(default_factory=dict)

    def read(self, source: str | Path, rows: int) -> None:
        """Count ``rows`` source rows (malformed ones included) read from ``source``."""
        key = str(source)
        self.inputs[key] = self.inputs.get(key, 0) + rows
        self.rows_read += rows

    def drop(self, reason: str, count: int = 1) -> None:
        if count:
            self.dropped[reason] += count

    def merge(self, reason: str, count: int = 1) -> None:
        if count:
            self.merged[reason] += count

    def note(self, message: str) -> None:
        if message not in self.notes:
            self.notes.append(message)

    @property
    def dropped_total(self) -> int:
        return sum(self.dropped.values())

    @property
    def merged_total(self) -> int:
        return sum(self.merged.values())

    @property
    def unaccounted(self) -> int:
        return self.rows_read - self.kept - self.merged_total - self.dropped_total

    def to_dict(self) -> dict:
        return {
            "name": self.name,
            "task": self.task,
            "inputs": dict(self.inputs),
            "rows_read": self.rows_read,
            "kept": self.kept,
            "merged": dict(self.merged.most_common()),
            "dropped": dict(self.dropped.most_common()),
            "unaccounted": self.unaccounted,
            "splits": dict(self.splits),
            "notes": list(self.notes),
            "settings": dict(self.settings),
        }

    @classmethod
    def from_dict(cls, data: dict) -> Report:
        return cls(
            name=data.get("name", ""),
            task=data.get("task", ""),
            inputs=dict(data.get("inputs", {})),
            rows_read=data.get("rows_read", 0),
            kept=data.get("kept", 0),
            merged=Counter(data.get("merged", {})),
            dropped=Counter(data.get("dropped", {})),
            splits=dict(data.get("splits", {})),
            notes=list(data.get("notes", [])),
            settings=dict(data.get("settings", {})),
        )

    def summary(self) -> str:
        files = "file" if len(self.inputs) == 1 else "files"
        lines = [
            f"{self.name or 'dataset'} ({self.task or 'no task'}): {self.rows_read:,} rows read from "
            f"{len(self.inputs)} {files} -> {self.kept:,} examples kept"
        ]
        if self.merged:
            lines.append("  merged into another example: " + _counts(self.merged))
        if self.dropped:
            lines.append("  dropped: " + _counts(self.dropped))
        if self.unaccounted:
            lines.append(f"  UNACCOUNTED rows: {self.unaccounted:,}")
        if self.splits:
            lines.append("  splits: " + ", ".join(f"{name} {count:,}" for name, count in self.splits.items()))
        lines.extend(f"  note: {note}" for note in self.notes)
        return "\n".join(lines)

    def print_summary(self) -> None:
        print(self.summary())

    def save(self, path: str | Path) -> Path:
        """Write ``report.json``; ``path`` may be the file or the folder that gets it."""
        path = Path(path)
        if path.is_dir():
            path = path / REPORT_FILE
        path.write_text(json.dumps(self.to_dict(), indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        return path

    @classmethod
    def load(cls, path: str | Path) -> Report:
        path = Path(path)
        if path.is_dir():
            path = path / REPORT_FILE
        return cls.from_dict(json.loads(path.read_text(encoding="utf-8")))


def _counts(counter: Counter) -> str:
    return ", ".join(f"{reason} {count:,}" for reason, count in counter.most_common())
