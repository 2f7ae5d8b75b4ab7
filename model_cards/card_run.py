"""A finished run folder as its model card sees it: the core's :class:`RunFolder` and the facts derived from it.

``train_stats.json`` keys read (as ``training.train`` writes them; first found, at any depth):
``total_parameters``, ``trainable_parameters``, ``trainable_percent``, ``hardware``, ``precision``,
``train_runtime_seconds``, ``final_train_loss`` / ``final_validation_loss`` (else the last ``loss`` /
``eval_loss`` of ``log_history``), ``quantization`` and ``examples`` (examples per split).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, fields
from pathlib import Path

from catalog_lora.model.base_model import EmbeddedBase, embedded_base, public_model_id
from catalog_lora.records.prompts import PromptTemplate
from catalog_lora.runs.folder import ADAPTER_FILES, INFO_FILE, LEXICAL_FILES, METRICS_FILE, RunFolder, is_repo_id

REQUIRED_FILES = (*ADAPTER_FILES, INFO_FILE, METRICS_FILE)
DATASET_REPORT = "report.json"  # written by datasets_prep into the prepared data folder


class CardError(ValueError):
    """The run folder cannot be turned into a card; the message says what is missing."""


def find(data, *keys):
    """The first non-None value under any of ``keys``, searching nested mappings depth-first."""
    if not isinstance(data, dict):
        return None
    for key in keys:
        if data.get(key) is not None:
            return data[key]
    for value in data.values():
        found = find(value, *keys)
        if found is not None:
            return found
    return None


def _safetensors_values(path: Path) -> int:
    """Number of values stored in a safetensors file, from its header (no tensor is loaded)."""
    with path.open("rb") as f:
        header = json.loads(f.read(int.from_bytes(f.read(8), "little")))
    return sum(math.prod(v["shape"]) for k, v in header.items() if k != "__metadata__")


@dataclass(frozen=True)
class Run(RunFolder):
    """A finished run folder, with the prepared dataset's report and the adapter's size."""

    report: dict | None = None
    adapter_values: int = 0

    @classmethod
    def read(cls, folder: str | Path) -> Run:
        folder = Path(folder)
        if not folder.is_dir():
            raise CardError(f"run folder {folder} does not exist")
        missing = [name for name in REQUIRED_FILES if not (folder / name).is_file()]
        if missing:
            raise CardError(
                f"{folder} is not a finished catalog-lora run: missing {', '.join(missing)} "
                "(a card needs the adapter files, catalog_lora.json and metrics.json from training)"
            )
        files = RunFolder.read(folder)
        if not any(isinstance(split, dict) and split.get("adapter") for split in files.metrics.values()):
            raise CardError(f"{folder / METRICS_FILE} has no adapter results: run `python -m training.evaluate` first")
        data = (files.config or {}).get("data")
        data_path = data.get("path") if isinstance(data, dict) else None
        report = Path(data_path) / DATASET_REPORT if data_path else None
        return cls(
            **{f.name: getattr(files, f.name) for f in fields(RunFolder)},
            report=json.loads(report.read_text(encoding="utf-8")) if report and report.is_file() else None,
            adapter_values=_safetensors_values(folder / "adapter_model.safetensors"),
        )

    @property
    def folder(self) -> Path:
        return Path(self.source)

    @property
    def base_model(self) -> str:
        base = self.info.base_model_hub_id or public_model_id(self.info.base_model)
        if not is_repo_id(base) or Path(base).exists():
            raise CardError(
                f"the base model {base!r} is a local folder, not a Hub id, so readers could not load it; "
                f"set base_model_hub_id in {INFO_FILE} to the Hub id it was downloaded from"
            )
        return base

    @property
    def embedded(self) -> EmbeddedBase | None:
        """The embedded base model the adapter was trained on (its GGUF build); None for a Hub id or folder."""
        return embedded_base(self.info.base_model)

    @property
    def has_labels(self) -> bool:
        return self.info.task != "description" and self.taxonomy is not None

    @property
    def lexical_settings(self) -> str | None:
        """How the TF-IDF model mixed into the head was fitted (``lexical.json``'s ``fitted``); None when not mixed in."""
        if not self.info.lexical_weight:
            return None
        path = self.folder / LEXICAL_FILES[0]
        if not path.is_file():
            raise CardError(f"{self.folder} mixes a TF-IDF model into its head (lexical_weight in {INFO_FILE}) but has no {path.name}")
        return json.loads(path.read_text(encoding="utf-8"))["fitted"]

    @property
    def knn_k(self) -> int:
        """The neighbours mixed into the head's answers (0 when the mix is off)."""
        return self.info.knn_k if self.info.knn_weight else 0

    @property
    def pipeline_tag(self) -> str:
        if self.info.method == "head" and self.info.task == "description":
            return "text-ranking"  # it ranks its candidate descriptions and answers with the first
        return "text-classification" if self.info.method == "head" else "text-generation"

    @property
    def quantization(self) -> str | None:
        """``4bit``/``8bit``/``none`` as trained, or None when the run did not record it."""
        for source in (self.stats, self.config):
            value = find(source or {}, "quantization")
            if value and value != "auto":
                return str(value)
        return None

    @property
    def qlora(self) -> bool:
        return self.quantization == "4bit"

    @property
    def source_name(self) -> str:
        if self.report and self.report.get("name"):
            return str(self.report["name"])
        data_path = find((self.config or {}).get("data") or {}, "path")
        return Path(data_path).name if data_path else f"catalog-{self.info.task}"

    def split_counts(self) -> dict[str, int]:
        counts = find(self.stats or {}, "examples")
        if isinstance(counts, dict) and counts:
            return {k: int(v) for k, v in counts.items() if isinstance(v, int | float)}
        if self.report and self.report.get("splits"):
            return dict(self.report["splits"])
        return {}

    def losses(self) -> tuple[float | None, float | None]:
        """The final training and validation losses."""
        stats = self.stats or {}
        train, val = find(stats, "final_train_loss"), find(stats, "final_validation_loss")
        history = stats.get("log_history") or []
        if train is None:
            train = next((e["loss"] for e in reversed(history) if "loss" in e), None)
        if val is None:
            val = next((e["eval_loss"] for e in reversed(history) if "eval_loss" in e), None)
        return train, val

    @property
    def hardware(self) -> str | None:
        hardware = find(self.stats or {}, "hardware")
        if isinstance(hardware, dict):
            return ", ".join(f"{k}: {v}" for k, v in hardware.items())
        return str(hardware) if hardware else None

    @property
    def runtime(self) -> float | None:
        value = find(self.stats or {}, "train_runtime_seconds")
        return float(value) if isinstance(value, int | float) else None

    @property
    def budget(self) -> dict | None:
        """The run's time budget and whether it cut the run: ``minutes``, ``cut``, ``steps``, ``epochs``."""
        stats = self.stats or {}
        if not stats.get("max_minutes"):
            return None
        return {
            "minutes": float(stats["max_minutes"]),
            "cut": bool(stats.get("cut_by_time")),
            "steps": stats.get("optimizer_steps"),
            "epochs": stats.get("epochs_completed"),
        }

    def template(self) -> PromptTemplate:
        labels = tuple(self.taxonomy.labels) if self.info.prompt_labels and self.taxonomy else ()
        return PromptTemplate(self.info.task, self.info.prompt_template, labels)

    def tokenizer(self):
        from transformers import AutoTokenizer

        return AutoTokenizer.from_pretrained(self.folder)
