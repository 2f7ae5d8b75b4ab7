"""What the Space serves and its limits: ``adapters.yaml`` beside ``app.py``, overridden by the environment.

Nothing here loads a model or reads the Hub; :func:`read_settings` reads one YAML file.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from catalog_lora.records.canonical import SPACE_SLOTS
from catalog_lora.runs.folder import INFO_FILE, is_repo_id

SPACE_DIR = Path(__file__).resolve().parent.parent  # spaces/ here, the repo root of a published Space
REPO_DIR = SPACE_DIR.parent

# The adapters the Space knows: name → task. The name picks the tab, the env variable and the batch job.
ADAPTERS = {slot: task for task, slot in SPACE_SLOTS.items()}
JOB_LABELS = {"tag": "Tags", "category": "Category", "describe": "Description"}
ANSWER_NAMES = {"tagging": "tags", "category": "category", "description": "description"}

MAX_ROWS = 20_000  # see README, "The Space": how long one label job of this many rows takes on a 2-core CPU
MAX_FILE_SIZE_MB = 10.0
MAX_TRAIN_ROWS = 5_000  # a catalog to train on from the app (the budget's max samples cut it further)
TRUE, FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off")


def env_var(name: str) -> str:
    return f"CATALOG_LORA_{name.upper()}_ADAPTER"


@dataclass
class Settings:
    """What the Space serves: ``adapters`` maps a name of :data:`ADAPTERS` to a run folder or Hub id."""

    adapters: dict[str, str | list[str] | None] = field(default_factory=dict)
    base_model: str | None = None
    quantization: str = "auto"
    max_rows: int = MAX_ROWS
    max_file_size_mb: float = MAX_FILE_SIZE_MB
    train_tab: bool = True  # the Train tab: on locally, off on a public Space unless turned on
    max_train_rows: int = MAX_TRAIN_ROWS
    train_dir: str = ""  # where the training jobs' folders go (default: the system's temporary folder)
    train_eval_examples: int = 100  # validation and test rows of a job at most: evaluation is part of its time
    train_eval_every: int = 10  # steps between a job's validations (each keeps the best checkpoint)

    @property
    def jobs_root(self) -> Path:
        return Path(self.train_dir) if self.train_dir else Path(tempfile.gettempdir()) / "catalog-lora-train"

    @property
    def max_file_bytes(self) -> int:
        return int(self.max_file_size_mb * 1024 * 1024)


def flag(value, name: str) -> bool:
    """A yes/no setting: true/false, yes/no, on/off or 1/0."""
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text not in TRUE + FALSE:
        raise ValueError(f"{name}={value!r} is not a yes/no value; use one of {', '.join(TRUE + FALSE)}")
    return text in TRUE


def read_settings(path: str | Path | None = None, environ=None) -> Settings:
    """``adapters.yaml`` (or ``$CATALOG_LORA_ADAPTERS_FILE``), overridden by the environment.

    The Train tab is on unless the app runs on a Hugging Face Space (``SPACE_ID`` is set there);
    ``train_tab`` in the file or ``CATALOG_LORA_TRAIN_TAB`` decide it either way."""
    environ = os.environ if environ is None else environ
    path = Path(path or environ.get("CATALOG_LORA_ADAPTERS_FILE") or SPACE_DIR / "adapters.yaml")
    data = (yaml.safe_load(path.read_text(encoding="utf-8")) if path.is_file() else None) or {}
    configured = data.get("adapters") or {}
    adapters = {name: configured.get(name) for name in ADAPTERS}
    for name in ADAPTERS:
        if env_var(name) in environ:
            adapters[name] = environ[env_var(name)].strip() or None
    return Settings(
        adapters=adapters,
        base_model=environ.get("CATALOG_LORA_BASE_MODEL") or data.get("base_model") or None,
        quantization=environ.get("CATALOG_LORA_QUANTIZATION") or data.get("quantization") or "auto",
        max_rows=int(environ.get("CATALOG_LORA_MAX_ROWS") or data.get("max_rows") or MAX_ROWS),
        max_file_size_mb=float(
            environ.get("CATALOG_LORA_MAX_FILE_SIZE_MB") or data.get("max_file_size_mb") or MAX_FILE_SIZE_MB
        ),
        train_tab=flag(
            environ.get("CATALOG_LORA_TRAIN_TAB", data.get("train_tab", "SPACE_ID" not in environ)), "train_tab"
        ),
        max_train_rows=int(environ.get("CATALOG_LORA_MAX_TRAIN_ROWS") or data.get("max_train_rows") or MAX_TRAIN_ROWS),
        train_dir=environ.get("CATALOG_LORA_TRAIN_DIR") or data.get("train_dir") or "",
    )


def resolve_source(value: str | list[str], task: str) -> tuple[str | None, str | None]:
    """A configured adapter → ``(source, None)`` or ``(None, why it cannot be used)``.

    ``value`` is one candidate or a list tried in order (e.g. a local run folder, then a Hub id).
    Relative folders are looked up under the repository root, the working directory and the Space's
    folder; anything else of the form ``namespace/name`` that is not a folder is taken as a Hub repo id."""
    problems = []
    for candidate in [value] if isinstance(value, str) else list(value):
        source, problem = _resolve_one(str(candidate), task)
        if source is not None:
            return source, None
        problems.append(problem)
    return None, problems[0] if problems else "no adapter is configured."


def _resolve_one(value: str, task: str) -> tuple[str | None, str | None]:
    path = Path(value).expanduser()
    candidates = [path] if path.is_absolute() else [REPO_DIR / path, Path.cwd() / path, SPACE_DIR / path]
    for folder in candidates:
        if folder.is_dir():
            if not (folder / INFO_FILE).is_file():
                return None, f"`{value}` is not a finished catalog-lora run folder (it has no {INFO_FILE})."
            return str(folder.resolve()), None
    if not value.startswith((".", "/", "~")) and is_repo_id(value):
        return value, None
    return None, (
        f"the adapter folder `{value}` does not exist. Train it with "
        f"`python -m training.train --config training/configs/sample_{task}.yaml`, or point "
        f"`{env_var(next(n for n, t in ADAPTERS.items() if t == task))}` at a run folder or a Hub repo id."
    )
