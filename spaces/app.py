"""catalog-lora Space: tag, classify and describe products with LoRA adapters on one small base model.

    python spaces/app.py [--port 7860] [--host 127.0.0.1]

One base model is loaded once (4-bit NF4 on CUDA, fp32 on CPU) and every adapter sits on it;
each request picks its adapter. The adapters come from ``adapters.yaml`` beside this file or
from environment variables (``CATALOG_LORA_TAG_ADAPTER``, ``CATALOG_LORA_CATEGORY_ADAPTER``,
``CATALOG_LORA_DESCRIBE_ADAPTER``, ``CATALOG_LORA_BASE_MODEL``…); a missing adapter switches
its tab off with a message, the rest of the app still works.

The handlers below are plain functions (testable without the UI); the UI is the one
``gr.Blocks`` at the bottom. API names for ``gradio_client``: ``/tag``, ``/describe``,
``/classify``, ``/batch`` (and ``/compare``, ``/dataset``).
"""

from __future__ import annotations

# ZeroGPU's package must be imported before torch touches CUDA. Locally it is not installed
# (and this folder, deliberately not a package, must never stand in for it).
try:
    import spaces as zerogpu
except ImportError:
    zerogpu = None

import argparse
import importlib.util
import itertools
import json
import logging
import os
import re
import sys
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
if importlib.util.find_spec("catalog_lora") is None:  # a checkout without `pip install -e .`
    sys.path.insert(0, str(HERE.parent))

import gradio as gr  # noqa: E402
import pandas as pd  # noqa: E402
import yaml  # noqa: E402

from catalog_lora.background import FAILED, QUEUED, BatchJob, find_job  # noqa: E402
from catalog_lora.batch import (  # noqa: E402
    CONFIDENCE_SUFFIX,
    ERROR_COLUMN,
    REVIEW_SUFFIX,
    BatchInputError,
    blank_lines_note,
    escape_formulas,
    predict_table,
    read_table,
)
from catalog_lora.citation import adapter_citation, methods_citation, run_year  # noqa: E402
from catalog_lora.markdown import SYSTEMS, metrics_table  # noqa: E402
from catalog_lora.records import HEADLINE, SPACE_SLOTS  # noqa: E402
from catalog_lora.references import record_answer  # noqa: E402
from catalog_lora.run_files import (  # noqa: E402
    CONFIG_FILE,
    CONFUSION_PLOT,
    INFO_FILE,
    LOSS_PLOT,
    PER_LABEL_PLOT,
    STATS_FILE,
    TAXONOMY_FILE,
    fetch_file,
    is_repo_id,
    read_metrics,
    read_run_info,
)

logger = logging.getLogger("catalog_lora.space")

GPU = getattr(zerogpu, "GPU", None)

# The adapters the Space knows: name → task. The name picks the tab, the env variable and the batch job.
ADAPTERS = {slot: task for task, slot in SPACE_SLOTS.items()}
JOB_LABELS = {"tag": "Tags", "category": "Category", "describe": "Description"}
OUTPUT_COLUMNS = {"tag": "predicted_tags", "category": "predicted_category", "describe": "generated_description"}
ANSWER_NAMES = {"tagging": "tags", "category": "category", "description": "description"}
# A file's text column is taken without asking only when it is named exactly like this (any case).
TEXT_COLUMNS = ("text", "title")
CONFIDENCE_COLUMNS = {"tag": "tags_confidence", "category": "category_confidence"}
REVIEW_COLUMN = "needs_review"
REVIEW_MARK = "Low confidence — review"
LETTER = re.compile(r"[^\W\d_]")

MAX_INPUT_CHARS = 5000  # longer input is cut here (and the model cuts again to its token window)
REFERENCES_K = 5
PREVIEW_ROWS = 20
CHUNK_ROWS = 256  # batch rows per (GPU) call: progress moves, the finished part is saved, a ZeroGPU call stays short
POLL_SECONDS = 1.0  # how often the Batch tab shows a running job's progress
BATCH_ROWS = 16  # rows per model forward pass inside a chunk
DATASET_ROWS = 100
MAX_DATASET_RECORDS = 50_000  # the Dataset tab reads at most this many training examples
REFERENCE_WIDTHS = ["24%", "42%", "34%"]
PLOTS = [(LOSS_PLOT, "Training and validation loss"), (CONFUSION_PLOT, "Confusion matrix (test split)"),
         (PER_LABEL_PLOT, "F1 per tag (test split)")]
CONCURRENCY = 2  # requests at once; the engine itself runs one model call at a time
QUEUE_SIZE = 64
MAX_ROWS = 20_000  # see README, "The Space": what one CPU machine finishes in about an hour per job
CSS = "table th, table th * { white-space: nowrap !important; word-break: normal !important; overflow-wrap: normal !important; }"

TAG_EXAMPLES = [
    "Smells amazing and lathers well, but the bottle is tiny for the price.",
    "My sensitive skin did not react at all, and it rinses off clean.",
    "The pump broke after a week and the scent fades fast.",
]
CATEGORY_EXAMPLES = [
    "Organic Cold-Pressed Virgin Coconut Oil, 500 ml Glass Jar",
    "Brightbite Whitening Toothpaste, 100 g",
    "Clearguard Lemon Floor Cleaner, 1 L",
]
DESCRIBE_EXAMPLES = [
    ["Lavender & Chamomile Calming Body Wash, 400 ml", "brand: Dermaleaf; category: Personal Care"],
    ["Homenest Stainless Steel Water Bottle, 1 L", "brand: Homenest; category: Home & Kitchen"],
    ["Beehaven Wildflower Honey, 500 g", ""],
]

def on_gpu(duration: int = 60):
    """``spaces.GPU(duration=...)`` on a ZeroGPU Space; nothing anywhere else."""

    def wrap(fn):
        return GPU(duration=duration)(fn) if GPU is not None else fn

    return wrap


# --------------------------------------------------------------------------- settings


def env_var(name: str) -> str:
    return f"CATALOG_LORA_{name.upper()}_ADAPTER"


@dataclass
class Settings:
    """What the Space serves: ``adapters`` maps a name of :data:`ADAPTERS` to a run folder or Hub id."""

    adapters: dict[str, str | list[str] | None] = field(default_factory=dict)
    base_model: str | None = None
    quantization: str = "auto"
    max_rows: int = MAX_ROWS
    max_file_size_mb: float = 10.0

    @property
    def max_file_bytes(self) -> int:
        return int(self.max_file_size_mb * 1024 * 1024)


def read_settings(path: str | Path | None = None, environ=None) -> Settings:
    """``adapters.yaml`` (or ``$CATALOG_LORA_ADAPTERS_FILE``), overridden by the environment."""
    environ = os.environ if environ is None else environ
    path = Path(path or environ.get("CATALOG_LORA_ADAPTERS_FILE") or HERE / "adapters.yaml")
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
        max_file_size_mb=float(environ.get("CATALOG_LORA_MAX_FILE_SIZE_MB") or data.get("max_file_size_mb") or 10),
    )


def resolve_source(value: str | list[str], task: str) -> tuple[str | None, str | None]:
    """A configured adapter → ``(source, None)`` or ``(None, why it cannot be used)``.

    ``value`` is one candidate or a list tried in order (e.g. a local run folder, then a Hub id).
    Relative folders are looked up under the repository root, the working directory and this folder;
    anything else of the form ``namespace/name`` that is not a folder is taken as a Hub repo id."""
    problems = []
    for candidate in [value] if isinstance(value, str) else list(value):
        source, problem = _resolve_one(str(candidate), task)
        if source is not None:
            return source, None
        problems.append(problem)
    return None, problems[0] if problems else "no adapter is configured."


def _resolve_one(value: str, task: str) -> tuple[str | None, str | None]:
    path = Path(value).expanduser()
    candidates = [path] if path.is_absolute() else [HERE.parent / path, Path.cwd() / path, HERE / path]
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


# --------------------------------------------------------------------------- models


class AdapterUnavailable(RuntimeError):
    """The adapter a request needs is not configured, not found or failed to load."""


@dataclass
class Slot:
    """One adapter of the Space and, once loaded, the engine that serves it."""

    name: str
    task: str
    configured: str | list[str] | None
    source: str | None = None
    problem: str | None = None
    info: object = None
    engine: object = None


class Models:
    """The adapters of the Space on as few base models as possible, loaded once, on first use."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self.slots: dict[str, Slot] = {}
        for name, task in ADAPTERS.items():
            value = settings.adapters.get(name)
            slot = Slot(name, task, value)
            if not value:
                slot.problem = f"no {name} adapter is configured (set `{env_var(name)}` or edit spaces/adapters.yaml)."
            else:
                slot.source, slot.problem = resolve_source(value, task)
            self.slots[name] = slot
        self.precision = ""
        self._loaded = False
        self._lock = threading.Lock()
        self.records: dict[str, list[dict]] = {}
        self._references: dict[str, tuple[object, str | None]] = {}
        self._references_lock = threading.Lock()

    def available(self, name: str) -> bool:
        return self.slots[name].problem is None

    def use(self, name: str, engine) -> None:
        """Serve ``name`` from an engine that already has it (tests, notebooks)."""
        slot = self.slots[name]
        slot.engine, slot.info, slot.problem = engine, engine.spec(name).info, None
        slot.source = slot.source or getattr(engine.spec(name), "source", name)

    def load(self) -> None:
        """Load every usable adapter: one engine per base model (a head adapter needs its own)."""
        with self._lock:
            if self._loaded:
                return
            self._loaded = True
            from catalog_lora.engine import Engine

            groups: dict[tuple[str, str], list[Slot]] = {}
            for slot in self.slots.values():
                if slot.problem or slot.engine is not None:
                    continue
                try:
                    info = read_run_info(slot.source)
                except Exception as error:  # a broken folder or an unreachable Hub repo
                    slot.problem = f"cannot read `{slot.source}`: {error}"
                    continue
                if info.task != slot.task:
                    slot.problem = f"`{slot.source}` is a {info.task} adapter; this tab needs a {slot.task} adapter."
                    continue
                slot.info = info
                base = self.settings.base_model or info.base_model  # core resolves `embedded` (or its Hub copy)
                groups.setdefault((base, slot.name if info.method == "head" else ""), []).append(slot)
            for (base, _), slots in groups.items():
                engine = None
                for slot in slots:
                    try:
                        if engine is None:
                            engine = Engine.load(
                                {slot.name: slot.source}, base_model=base, quantization=self.settings.quantization
                            )
                            self.precision = engine.precision.describe() if engine.precision else ""
                            logger.info("Base model %s: %s", base, self.precision)
                        else:
                            engine.add_adapter(slot.source, slot.name, slot.info)
                        slot.engine, slot.info = engine, engine.spec(slot.name).info  # one RunInfo per adapter
                        logger.info("Adapter %s: %s", slot.name, slot.source)
                    except Exception as error:
                        logger.exception("loading adapter %s from %s failed", slot.name, slot.source)
                        slot.problem = f"loading `{slot.source}` failed: {error}"

    def engine(self, name: str):
        slot = self.slots[name]
        if slot.engine is None and slot.problem is None:
            self.load()
        if slot.problem or slot.engine is None:
            raise AdapterUnavailable(f"The {name} adapter is not available: {slot.problem or 'it did not load.'}")
        return slot.engine

    def references(self, name: str):
        """``(index, None)`` or ``(None, why there are no references)``; opened once per adapter."""
        with self._references_lock:
            if name not in self._references:
                self._references[name] = self._open_references(name)
            return self._references[name]

    def _open_references(self, name: str):
        slot = self.slots[name]
        if slot.source is None:
            return None, "no adapter, so no training references."
        try:
            from catalog_lora import references
        except Exception as error:  # chromadb or sentence-transformers missing or broken
            return None, f"the reference index cannot be read here ({error})."
        try:
            locate = getattr(references, "locate_index", None)
            folder = locate(slot.source) if locate else Path(slot.source) / "references"
            return references.ReferenceIndex.open(folder), None
        except Exception as error:  # ReferenceIndexError for a missing or corrupt index, anything else too
            return None, str(error)


SETTINGS = read_settings()
MODELS = Models(SETTINGS)


# --------------------------------------------------------------------------- model calls (on the GPU on ZeroGPU)


@on_gpu(60)
def run_predict(name: str, texts: list[str], attributes: list[dict] | None = None, **options):
    return MODELS.engine(name).predict(name, texts, attributes, **options)


@on_gpu(120)
def run_stream(name: str, text: str, attributes: dict | None = None):
    yield from MODELS.engine(name).stream(name, text, attributes)


@on_gpu(180)
def run_chunk(frame: pd.DataFrame, column: str, jobs: list[str], progress=None) -> pd.DataFrame:
    engines = {job: MODELS.engine(job) for job in jobs}
    if len({id(e) for e in engines.values()}) == 1:
        engine = next(iter(engines.values()))
        return predict_table(engine, frame, column, jobs, batch_size=BATCH_ROWS, progress=progress, confidence=True)
    # adapters on different engines (a head adapter has its own model): one pass per engine
    out = None
    for job, engine in engines.items():
        part = predict_table(engine, frame, column, [job], batch_size=BATCH_ROWS, confidence=True)
        added = [c for c in part.columns if c not in frame.columns and c != ERROR_COLUMN]
        out = part if out is None else out.assign(**{c: part[c] for c in added}, **{ERROR_COLUMN: _merge_errors(out, part)})
    return out


def _merge_errors(a: pd.DataFrame, b: pd.DataFrame) -> list[str]:
    merged = []
    for x, y in zip(a[ERROR_COLUMN], b[ERROR_COLUMN], strict=True):
        parts = [p for p in dict.fromkeys(str(x).split("; ") + str(y).split("; ")) if p]
        merged.append("; ".join(parts))
    return merged


# --------------------------------------------------------------------------- helpers of the handlers


def note(text: str) -> str:
    return f"**Note:** {text}"


def clean_text(text) -> tuple[str | None, list[str]]:
    """``(text, notices)``; ``None`` for empty input, which never reaches the model."""
    text = "" if text is None else str(text)
    if not text.strip():
        return None, [note("Type a product first: the text is empty, so nothing was sent to the model.")]
    text = text.strip()
    if not LETTER.search(text):
        return None, [note("The text has no letters, so it does not describe a product: no answer, and nothing was sent to the model.")]
    if len(text) > MAX_INPUT_CHARS:
        return text[:MAX_INPUT_CHARS], [note(f"The text is {len(text):,} characters; only the first {MAX_INPUT_CHARS:,} were used.")]
    return text, []


def truncation_notice(name: str) -> str:
    info = MODELS.slots[name].info
    window = f"{info.max_length}-token" if info is not None else "token"
    return note(f"The text is longer than the model's {window} window, so it was truncated: only its beginning was used.")


def prediction_notices(name: str, prediction) -> list[str]:
    notices = []
    if prediction.truncated:
        notices.append(truncation_notice(name))
    if prediction.error:
        notices.append(note(f"The model reported an error: {prediction.error}"))
    if prediction.unknown:
        notices.append(note(f"The model also wrote labels outside the taxonomy, left out: {', '.join(prediction.unknown)}"))
    if prediction.low_confidence:
        notices.insert(0, review_notice(name, prediction))
    return notices


def review_notice(name: str, prediction) -> str:
    """The review mark of an answer with a label below the adapter's threshold."""
    threshold = MODELS.slots[name].info.review_threshold
    shown = ", ".join(f"**{label}** ({prediction.confidence.get(label, 0.0):.0%})" for label in prediction.low_confidence)
    return (
        f"⚠️ **{REVIEW_MARK}:** {shown}. This adapter marks answers below {threshold:.0%} "
        "(a threshold chosen on its validation split): check them before use."
    )


def prompt_truncated(name: str, text: str, attributes: dict | None) -> bool:
    """Whether the prompt for ``text`` is cut to the model's window (the stream does not say so itself)."""
    engine = MODELS.engine(name)
    return engine.prompt_for(engine.spec(name), text, attributes)[1]


def parse_attributes(text: str | None) -> dict[str, str]:
    """``"brand: Dermaleaf; category: Personal Care"`` (or one per line) → a dict."""
    attributes = {}
    for piece in re.split(r"[;\n]", text or ""):
        key, sep, value = piece.partition(":")
        if sep and key.strip() and value.strip():
            attributes[key.strip()] = value.strip()
    return attributes


def reference_frame(task: str, rows: list | None = None) -> pd.DataFrame:
    columns = ["similarity", "training product", ANSWER_NAMES[task]]
    return pd.DataFrame(rows or [], columns=columns)


def find_references(name: str, text: str | None) -> tuple[pd.DataFrame, str]:
    """The training products nearest to ``text`` and a line saying where they come from."""
    task = ADAPTERS[name]
    if text is None:
        return reference_frame(task), ""
    index, problem = MODELS.references(name)
    if index is None:
        return reference_frame(task), note(f"No training references for this adapter: {problem}")
    try:
        found = index.query([text], k=REFERENCES_K)[0]
    except Exception as error:  # a corrupt index must not take the answer down with it
        logger.exception("reference query failed")
        return reference_frame(task), note(f"The reference index could not be searched: {error}")
    rows = [[round(ref.score, 3), ref.text, ref.answer] for ref in found]
    return reference_frame(task, rows), f"The {len(rows)} most similar training examples (cosine similarity)."


def label_value(prediction, task: str):
    """What a ``gr.Label`` shows: each chosen label with its probability (categories: with the top
    alternatives), else a line saying there is no answer."""
    values = dict(prediction.scores) if task == "category" else {}
    for label in prediction.labels:
        values.setdefault(label, prediction.confidence.get(label, 0.0))
    if values:
        return dict(sorted(values.items(), key=lambda kv: -kv[1]))
    return f"(no {ANSWER_NAMES[task]})"


def answer_text(prediction, task: str) -> str:
    if task == "description" or not prediction.labels:
        return prediction.text
    return ", ".join(prediction.labels)


def failure(name: str, error: Exception) -> str:
    """The notice of a failed request: one log line for what a user can fix, a traceback for real faults."""
    if isinstance(error, AdapterUnavailable):
        logger.warning("%s: %s", name, error)
        return f"**{error}**"
    logger.exception("%s failed", name, exc_info=error)
    return f"**Something went wrong:** {type(error).__name__}: {error}"


def file_path(file) -> str | None:
    """The path of an uploaded file, whatever form Gradio or a test hands it in."""
    if file is None:
        return None
    if isinstance(file, dict):
        return file.get("path") or file.get("name")
    return str(getattr(file, "path", None) or getattr(file, "name", None) or file)


def text_column_of(columns: list[str]) -> str | None:
    """The file's text column when one is named exactly as expected (``text`` or ``title``), else
    ``None``: the user chooses it; a column is never guessed from its contents."""
    lowered = {str(c).strip().lower(): c for c in columns}
    return next((lowered[name] for name in TEXT_COLUMNS if name in lowered), None)


def read_upload(file) -> pd.DataFrame:
    """The uploaded table, or :class:`BatchInputError` with a message a person can act on."""
    path = file_path(file)
    if not path:
        raise BatchInputError("Upload a CSV or xlsx file first.")
    size = Path(path).stat().st_size if Path(path).is_file() else 0
    if size > SETTINGS.max_file_bytes:
        raise BatchInputError(
            f"The file is {size / 1024 / 1024:.1f} MB; uploads are limited to {SETTINGS.max_file_size_mb:g} MB. "
            "Split it into smaller files."
        )
    frame = read_table(path)
    names: list[str] = []
    for column in map(str, frame.columns):  # xlsx headers may be numbers; a header may repeat a name
        name, n = column, 2
        while name in names:
            name, n = f"{column}_{n}", n + 1
        names.append(name)
    frame.columns = names
    if len(frame) > SETTINGS.max_rows:
        raise BatchInputError(
            f"The file has {len(frame):,} rows; this Space processes at most {SETTINGS.max_rows:,} rows per upload. "
            "Split it into smaller files, or run `python -m training.predict` on your own machine."
        )
    return frame


def unique_column(frame: pd.DataFrame, name: str) -> str:
    column, n = name, 2
    while column in frame.columns:
        column, n = f"{name}_{n}", n + 1
    return column


def available_jobs() -> list[tuple[str, str]]:
    return [(JOB_LABELS[name], name) for name in ADAPTERS if MODELS.available(name)]


# --------------------------------------------------------------------------- handlers (one per UI action)


def tag(text: str):
    """Tags of a product text. Returns ``(tags, notice, references note, references)``."""
    text, notices = clean_text(text)
    references, references_note = find_references("tag", text)
    if text is None:
        return None, "\n\n".join(notices), references_note, references
    try:
        prediction = run_predict("tag", [text])[0]
    except Exception as error:
        return None, failure("tag", error), references_note, references
    notices += prediction_notices("tag", prediction)
    if not prediction.labels:
        notices.append(note("No tag: the adapter found none of its tags in this text."))
    return label_value(prediction, "tagging"), "\n\n".join(notices), references_note, references


def describe(title: str, attributes: str = ""):
    """A product description, streamed. Yields ``(description, notice, references note, references)``."""
    title, notices = clean_text(title)
    references, references_note = find_references("describe", title)
    if title is None:
        yield "", "\n\n".join(notices), references_note, references
        return
    attrs = parse_attributes(attributes) or None
    try:
        if prompt_truncated("describe", title, attrs):
            notices.append(truncation_notice("describe"))
        answer = ""
        yield answer, "\n\n".join(notices), references_note, references
        for answer in run_stream("describe", title, attrs):
            yield answer, "\n\n".join(notices), references_note, references
        if not answer.strip():
            notices.append(note("The model returned an empty description."))
        yield answer, "\n\n".join(notices), references_note, references
    except Exception as error:
        yield "", failure("describe", error), references_note, references


def classify(text: str):
    """The category path of a product with its top alternatives. Returns ``(category, notice)``."""
    text, notices = clean_text(text)
    if text is None:
        return None, "\n\n".join(notices)
    try:
        prediction = run_predict("category", [text], top_k=5)[0]
    except Exception as error:
        return None, failure("category", error)
    notices += prediction_notices("category", prediction)
    if prediction.scores and prediction.labels:
        ranked_first = max(prediction.scores, key=prediction.scores.get)
        if ranked_first != prediction.labels[0]:
            notices.append(
                f"Greedy decoding answered **{prediction.labels[0]}**; the constrained beam search behind the bars "
                f"ranks **{ranked_first}** first."
            )
    return label_value(prediction, "category"), "\n\n".join(notices)


def compare(name: str, text: str):
    """The same input through the bare base model and through the adapter.

    Returns ``(base labels, adapter labels, base answer, adapter answer, notice)``; the labels
    (with their probabilities) are ``None`` for descriptions."""
    if name not in ADAPTERS:
        return None, None, "", "", f"**Unknown adapter {name!r}**; choose one of {', '.join(ADAPTERS)}."
    text, notices = clean_text(text)
    if text is None:
        return None, None, "", "", "\n\n".join(notices)
    task = ADAPTERS[name]
    try:
        base = run_predict(name, [text], use_adapter=False)[0]
        tuned = run_predict(name, [text], use_adapter=True)[0]
    except Exception as error:
        return None, None, "", "", failure(name, error)
    notices += prediction_notices(name, tuned)
    labels = (None, None) if task == "description" else (label_value(base, task), label_value(tuned, task))
    return *labels, answer_text(base, task), answer_text(tuned, task), "\n\n".join(notices)


def check_batch(file, text_column: str | None, jobs: list[str] | None) -> tuple[pd.DataFrame, str, list[str]]:
    """The upload, its text column and the jobs, or :class:`BatchInputError` saying what to fix.

    Nothing runs before this passes: a file whose text column is missing is refused."""
    frame = read_upload(file)
    columns = [c for c in frame.columns if c != ERROR_COLUMN]
    column = text_column or text_column_of(columns)
    if column is None:
        raise BatchInputError(
            f"choose the text column: the file has no column named {' or '.join(TEXT_COLUMNS)}; "
            f"its columns are: {', '.join(columns)}."
        )
    if column not in columns:
        raise BatchInputError(f"column {column!r} is not in the file; its columns are: {', '.join(columns)}.")
    jobs = list(jobs or [])
    unknown = [job for job in jobs if job not in ADAPTERS]
    if unknown or not jobs:
        raise BatchInputError(f"choose at least one job from {', '.join(ADAPTERS)} (got {', '.join(unknown) or 'none'}).")
    for job in jobs:
        if not MODELS.available(job):
            raise BatchInputError(f"the {job} adapter is not available: {MODELS.slots[job].problem}")
    return frame, column, jobs


def batch_output(frame: pd.DataFrame, result: pd.DataFrame, jobs: list[str]) -> pd.DataFrame:
    """The output table: the input columns, then per job its answer (and its confidence), then
    ``needs_review`` (the jobs whose answer is below its adapter's review threshold) and ``error``."""
    out = frame.drop(columns=[ERROR_COLUMN], errors="ignore").copy()
    for job in jobs:
        out[unique_column(out, OUTPUT_COLUMNS[job])] = result[job].tolist()
        if job in CONFIDENCE_COLUMNS:
            out[unique_column(out, CONFIDENCE_COLUMNS[job])] = result[job + CONFIDENCE_SUFFIX].tolist()
    labelled = [job for job in jobs if job in CONFIDENCE_COLUMNS]
    if labelled:
        flags = zip(*[result[job + REVIEW_SUFFIX] for job in labelled], strict=True)
        out[unique_column(out, REVIEW_COLUMN)] = [
            "; ".join(ANSWER_NAMES[ADAPTERS[job]] for job, flag in zip(labelled, row, strict=True) if flag) for row in flags
        ]
    out[unique_column(out, ERROR_COLUMN)] = result[ERROR_COLUMN].tolist()
    return out


def preview_frame(out: pd.DataFrame, frame: pd.DataFrame) -> pd.DataFrame:
    """The first rows of the output with the prediction columns first, then the input columns."""
    inputs = [c for c in frame.columns if c != ERROR_COLUMN]
    ordered = [c for c in out.columns if c not in inputs] + inputs
    return escape_formulas(out[ordered].head(PREVIEW_ROWS))


def launch_batch(file, text_column: str | None, jobs: list[str] | None) -> BatchJob:
    """Check the upload, then start its run in the background (see :mod:`catalog_lora.background`)."""
    frame, column, jobs = check_batch(file, text_column, jobs)
    work = pd.DataFrame({column: frame[column].astype(str).tolist()})
    if ERROR_COLUMN in frame.columns:
        work[ERROR_COLUMN] = frame[ERROR_COLUMN].tolist()

    def predict(chunk: pd.DataFrame, report) -> pd.DataFrame:
        return run_chunk(chunk, column, jobs, (lambda done, _total: report(done)) if GPU is None else None)

    target = Path(tempfile.mkdtemp(prefix="catalog-lora-")) / f"{Path(file_path(file)).stem}-predictions.csv"
    job = BatchJob(
        work, predict, lambda rows, result: batch_output(frame.iloc[: len(rows)], result, jobs), target,
        chunk_rows=CHUNK_ROWS, units_per_row=len(jobs), upload=frame,
    )
    return job.start()


def batch_summary(job: BatchJob) -> str:
    frame = job.upload
    if job.status == FAILED:
        return (
            f"**The batch stopped after {job.rows_done:,} of {job.rows:,} rows:** {job.error}. "
            "The finished rows are in the file below."
        )
    if not job.over:
        state = "Waiting for the batch before it" if job.status == QUEUED else "Running"
        return f"{state}: {job.rows_done:,} of {job.rows:,} rows saved; the file below holds them (download it any time)."
    out = job.result
    errors = out[ERROR_COLUMN] if ERROR_COLUMN in out.columns else pd.Series([""] * len(out))
    flagged = int((errors != "").sum())
    summary = f"Done: {len(out):,} rows{blank_lines_note(frame)}, {len(out) - flagged:,} without errors"
    if flagged:
        reasons = sorted({r for e in errors for r in str(e).split("; ") if r})
        shown = "; ".join(reasons[:5]) + (" …" if len(reasons) > 5 else "")
        summary += f", {flagged:,} marked in the `error` column ({shown})"
    if REVIEW_COLUMN in out.columns:
        summary += f"; {int((out[REVIEW_COLUMN] != '').sum()):,} marked `{REVIEW_COLUMN}` (low confidence)"
    return summary + ". Download the full CSV below."


def progress_html(job: BatchJob | None) -> str:
    """The Batch tab's one progress bar."""
    if job is None:
        return ""
    return (
        f'<progress value="{job.units_done}" max="{max(1, job.units)}" style="width:100%"></progress>'
        f"<div>{job.units_done:,} of {job.units:,} predictions ({job.rows_done:,} of {job.rows:,} rows saved)</div>"
    )


def inspect_upload(file):
    """On upload: ``(column dropdown, first rows, notice, Run button)``.

    The dropdown lists the file's header; a column is chosen only when one is named ``text`` or
    ``title``. No job is pre-checked. Run stays off while the file is refused or a choice is missing."""
    off = gr.Button(interactive=False)
    if file is None:
        return gr.Dropdown(choices=[], value=None), None, "", off
    try:
        frame = read_upload(file)
    except (BatchInputError, OSError) as error:
        logger.info("upload refused: %s", error)
        return gr.Dropdown(choices=[], value=None), None, f"**This file cannot be used:** {error}", off
    columns = [str(c) for c in frame.columns if c != ERROR_COLUMN]
    column = text_column_of(columns)
    notice, button = batch_readiness(file, column, [])
    return gr.Dropdown(choices=columns, value=column), escape_formulas(frame.head(PREVIEW_ROWS)), notice, button


def batch_readiness(file, text_column: str | None, jobs: list[str] | None):
    """``(notice, Run button)`` for the current file, column and jobs: what was found, what is missing."""
    off = gr.Button(interactive=False)
    if file is None:
        return "", off
    try:
        frame = read_upload(file)
    except (BatchInputError, OSError) as error:
        return f"**This file cannot be used:** {error}", off
    columns = [c for c in frame.columns if c != ERROR_COLUMN]
    found = f"{len(frame):,} rows and {len(columns)} columns{blank_lines_note(frame)}."
    if ERROR_COLUMN in frame.columns:
        found += f" {int((frame[ERROR_COLUMN] != '').sum())} malformed row(s) will be kept and marked in the `error` column."
    try:
        _, column, jobs = check_batch(file, text_column, jobs)
    except BatchInputError as error:
        return f"{found} **Before running:** {error}", off
    return f"{found} Text column `{column}`; jobs: {', '.join(JOB_LABELS[j] for j in jobs)}. Press **Run**.", gr.Button(interactive=True)


def start_batch(file, text_column: str | None, jobs: list[str] | None):
    """The Run button: ``(job id, timer, notice)``; the timer then shows the job (:func:`batch_status`)."""
    try:
        job = launch_batch(file, text_column, jobs)
    except (BatchInputError, OSError) as error:
        logger.info("batch refused: %s", error)
        return None, gr.Timer(active=False), f"**This file cannot be used:** {error}"
    return job.id, gr.Timer(active=True), batch_summary(job)


def batch_status(job_id: str | None):
    """A job's ``(progress bar, preview, file, notice, timer)``; the timer stops once the job is over."""
    job = find_job(job_id)
    if job is None:
        return "", gr.skip(), gr.skip(), gr.skip(), gr.Timer(active=False)
    preview = preview_frame(job.result, job.upload) if job.result is not None else None
    path = str(job.partial) if job.partial.is_file() else None
    return progress_html(job), preview, path, batch_summary(job), gr.Timer(active=not job.over)


def batch(file, text_column: str | None = None, jobs: list[str] | None = None, progress=gr.Progress()):  # noqa: B008
    """Run the chosen jobs over every row of an uploaded CSV/xlsx and wait for the result (the API).

    Returns ``(preview, CSV path, summary)``; the CSV has every input row, one column per job (with
    its confidence), ``needs_review`` and an ``error`` column. A file that cannot be used at all
    raises ``gr.Error`` with the reason."""
    try:
        job = launch_batch(file, text_column, jobs)
    except (BatchInputError, OSError) as error:
        logger.info("batch refused: %s", error)
        raise gr.Error(str(error), duration=None, print_exception=False) from None
    job.wait(lambda j: progress((j.units_done, j.units), desc="Predicting", unit="predictions"))
    progress((job.units_done, job.units), desc="Predicting", unit="predictions")
    if job.status == FAILED:
        raise gr.Error(batch_summary(job), duration=None, print_exception=False)
    return preview_frame(job.result, job.upload), str(job.target), batch_summary(job)


def training_records(name: str) -> list[dict]:
    """The adapter's training examples, when its run folder names a prepared dataset that is here (read once)."""
    if name not in MODELS.records:
        MODELS.records[name] = _read_training_records(MODELS.slots[name])
    return MODELS.records[name]


def _read_training_records(slot: Slot) -> list[dict]:
    if slot.source is None or not Path(slot.source).is_dir():
        return []
    try:
        config = yaml.safe_load((Path(slot.source) / CONFIG_FILE).read_text(encoding="utf-8")) or {}
        data = Path(str((config.get("data") or {}).get("path") or ""))
    except Exception:
        return []
    if not str(data) or str(data) == ".":
        return []
    for folder in [data] if data.is_absolute() else [HERE.parent / data, Path.cwd() / data]:
        path = folder / "train.jsonl"
        if path.is_file():
            try:
                with path.open(encoding="utf-8") as handle:
                    lines = (line for line in handle if line.strip())
                    return [json.loads(line) for line in itertools.islice(lines, MAX_DATASET_RECORDS)]
            except (OSError, ValueError) as error:
                logger.warning("cannot read %s: %s", path, error)
    return []


def browse_dataset(name: str, query: str = ""):
    """The adapter's training data: nearest examples to ``query`` (reference index) or a text filter."""
    if name not in ADAPTERS:
        return pd.DataFrame(), f"**Unknown adapter {name!r}.**"
    task = ADAPTERS[name]
    query = (query or "").strip()[:MAX_INPUT_CHARS]
    columns = ["id", "training product", ANSWER_NAMES[task]]
    if query:
        index, problem = MODELS.references(name)
        if index is not None:
            try:
                found = index.query([query], k=25)[0]
                rows = [[round(r.score, 3), r.id, r.text, r.answer] for r in found]
                return pd.DataFrame(rows, columns=["similarity", *columns]), (
                    f"The {len(rows)} training examples nearest to your search, from the reference index."
                )
            except Exception as error:
                problem = f"the reference index could not be searched: {error}"
    records = training_records(name)
    if not records:
        index, problem = MODELS.references(name)
        if index is not None:
            return pd.DataFrame(columns=columns), f"Type a search: the reference index holds {index.count:,} training examples."
        return pd.DataFrame(columns=columns), note(f"No training data to show for the {name} adapter: {problem}")
    rows = [[str(r.get("id", "")), str(r.get("text", "")), record_answer(r, task)] for r in records]
    frame = pd.DataFrame(rows, columns=columns)
    if query:
        hit = frame["training product"].str.contains(query, case=False, regex=False)
        hit |= frame[ANSWER_NAMES[task]].str.contains(query, case=False, regex=False)
        frame = frame[hit]
        return frame.head(DATASET_ROWS), f"{len(frame):,} of {len(records):,} training examples contain “{query}”."
    return frame.head(DATASET_ROWS), f"The first {min(DATASET_ROWS, len(frame))} of {len(records):,} training examples."


# --------------------------------------------------------------------------- About


def display_source(slot: Slot) -> str:
    """The adapter as a reader may name it: a Hub id, or a run folder relative to the repository (never a server path)."""
    if slot.source is None:
        return str(slot.configured or "not configured")
    path = Path(slot.source)
    if not path.is_dir():
        return slot.source
    try:
        return str(path.resolve().relative_to(HERE.parent.resolve()))
    except ValueError:
        return path.name


def test_metrics(slot: Slot) -> dict[str, dict]:
    """``{system: metrics}`` of the run's test split (base, adapter, baseline… when present)."""
    metrics = read_metrics(slot.source)
    test = (metrics.get("test") or {}) if isinstance(metrics, dict) else {}
    return {s: test[s] for s in SYSTEMS if isinstance(test.get(s), dict)}


def adapter_summary(slot: Slot) -> tuple[str, str]:
    """The About tab's text for an adapter: ``(summary with its headline metric, every test metric)``."""
    title = f"## {JOB_LABELS[slot.name]}: `{display_source(slot)}`"
    if slot.source is None:
        return f"{title}\n\nNot available: {slot.problem}", ""
    try:
        info = read_run_info(slot.source)
        threshold = f"{info.review_threshold:.0%}" if info.review_threshold is not None else "none (an older run)"
        lines = [
            title,
            "",
            f"- task: **{info.task}**, method: {info.method}, prompt template: {info.prompt_template}",
            f"- base model: `{info.base_model_hub_id or info.base_model}`",
            f"- context window: {info.max_length} tokens, answers up to {info.max_new_tokens} tokens",
        ]
        if info.task != "description":
            lines.append(f"- review threshold (answers below it are marked for review): {threshold}")
        values = test_metrics(slot)
        headline = HEADLINE[info.task]
        if "adapter" in values:
            lines += ["", f"**Test split, headline metric ({headline})**", "", metrics_table(values, info.task, keys=[headline])]
        taxonomy = fetch_file(slot.source, TAXONOMY_FILE, required=False)
        if taxonomy is not None:
            labels = json.loads(taxonomy.read_text(encoding="utf-8")).get("labels", [])
            shown = ", ".join(f"{item['label']} ({item.get('count', 0)})" for item in labels[:60])
            more = f" … and {len(labels) - 60} more" if len(labels) > 60 else ""
            lines += ["", f"**Label taxonomy** ({len(labels)} labels, training counts): {shown}{more}"]
        return "\n".join(lines), metrics_table(values, info.task) if "adapter" in values else "No test metrics in this run."
    except Exception as error:  # the About tab must render even when a run cannot be read
        logger.warning("About: %s cannot be read: %s", slot.source, error)
        return f"{title}\n\nIts run files could not be read: {error}", ""


def adapter_plots(slot: Slot) -> list[tuple[str, str]]:
    """``(image path, caption)`` of the run's plots: loss curve, confusion matrix or per-label F1."""
    if slot.source is None:
        return []
    plots = []
    for name, caption in PLOTS:
        try:
            path = fetch_file(slot.source, name, required=False)
        except Exception as error:  # an unreachable Hub repo: no picture, the rest of the tab renders
            logger.warning("About: %s of %s: %s", name, slot.source, error)
            path = None
        if path is not None:
            plots.append((str(path), caption))
    return plots


def headline_bars(slot: Slot) -> pd.DataFrame | None:
    """Base vs adapter vs baseline on the headline metric, as rows for a bar chart."""
    if slot.source is None:
        return None
    try:
        values = test_metrics(slot)
        headline = HEADLINE[read_run_info(slot.source).task]
    except Exception:  # already reported by adapter_summary
        return None
    rows = [[system, values[system][headline]] for system in values if headline in values[system]]
    return pd.DataFrame(rows, columns=["system", headline]) if rows else None


def citations() -> str:
    """How to cite the adapters: each published one by its Hub repo (the same entry as its model card),
    the local runs named as such, then the methods once."""
    parts, local = [], []
    for slot in MODELS.slots.values():
        if slot.source is None:
            continue
        if Path(slot.source).is_dir():
            local.append(f"`{display_source(slot)}`")
            continue
        info = read_run_info(slot.source)
        entry = adapter_citation(slot.source, info.base_model_hub_id or info.base_model, info.task,
                                 run_year(slot.source), trained_in_4bit(slot.source), methods=False)
        parts.append(f"**{JOB_LABELS[slot.name]}** (`{slot.source}`):\n\n{entry}")
    if local:
        parts.append(
            f"{', '.join(local)}: local run(s), not published on the Hub, so without a URL to cite yet; publish "
            "with `python -m model_cards.publish` and cite the repo."
        )
    return "\n\n".join([*parts, "**Methods:**", methods_citation()])


def trained_in_4bit(source: str) -> bool:
    """Whether the run trained with QLoRA, as its ``train_stats.json`` records."""
    stats = fetch_file(source, STATS_FILE, required=False)
    return stats is not None and json.loads(stats.read_text()).get("quantization") == "4bit"


def about_intro() -> str:
    return (
        "# About\n\nOne base model with a LoRA adapter per task, trained by catalog-lora (LoRA; QLoRA on CUDA). "
        f"Batch uploads: at most {SETTINGS.max_rows:,} rows and {SETTINGS.max_file_size_mb:g} MB per file."
    )


def about_markdown() -> str:
    """The About tab's text in one piece (what the UI shows, less the pictures)."""
    parts = [about_intro()]
    for slot in MODELS.slots.values():
        summary, details = adapter_summary(slot)
        parts += [summary, details]
    return "\n\n".join([*parts, "## How to cite", citations()])


def availability(name: str) -> str:
    slot = MODELS.slots[name]
    return "" if slot.problem is None else f"⚠️ **This tab is switched off:** {slot.problem}"


# --------------------------------------------------------------------------- the UI

with gr.Blocks(title="catalog-lora: product tags, categories and descriptions") as demo:
    gr.Markdown(
        "# catalog-lora\nA small language model taught a retailer's catalog with LoRA: "
        "tag products, classify them into the category tree, write descriptions, or run a whole file."
    )
    with gr.Tabs():
        with gr.Tab("Tag a product", id="tag"):
            gr.Markdown(availability("tag"))
            with gr.Row():
                with gr.Column(scale=3):
                    tag_text = gr.Textbox(label="Product text or review", lines=3, max_length=MAX_INPUT_CHARS,
                                          placeholder="e.g. Smells great but the bottle leaked in my bag")
                    tag_button = gr.Button("Tag", variant="primary")
                    tag_output = gr.Label(label="Tags", num_top_classes=10, elem_id="tag-output")
                    tag_notice = gr.Markdown(elem_id="tag-notice")
                    gr.Examples(TAG_EXAMPLES, inputs=tag_text)
                with gr.Column(scale=2):
                    gr.Markdown("### Most similar training products")
                    tag_refs_note = gr.Markdown()
                    tag_refs = gr.Dataframe(reference_frame("tagging"), interactive=False, wrap=True,
                                            column_widths=REFERENCE_WIDTHS, elem_id="tag-references")
            gr.on([tag_button.click, tag_text.submit], tag, inputs=tag_text,
                  outputs=[tag_output, tag_notice, tag_refs_note, tag_refs], api_name="tag")

        with gr.Tab("Describe a product", id="describe"):
            gr.Markdown(availability("describe"))
            with gr.Row():
                with gr.Column(scale=3):
                    describe_title = gr.Textbox(label="Product title", max_length=MAX_INPUT_CHARS,
                                                placeholder="e.g. Lavender Body Wash, 400 ml")
                    describe_attributes = gr.Textbox(label="Attributes (optional)",
                                                     placeholder="brand: Dermaleaf; category: Personal Care")
                    describe_button = gr.Button("Describe", variant="primary")
                    describe_output = gr.Textbox(label="Description", lines=5, interactive=False,
                                                 elem_id="describe-output")
                    describe_notice = gr.Markdown()
                    gr.Examples(DESCRIBE_EXAMPLES, inputs=[describe_title, describe_attributes])
                with gr.Column(scale=2):
                    gr.Markdown("### Most similar training products")
                    describe_refs_note = gr.Markdown()
                    describe_refs = gr.Dataframe(reference_frame("description"), interactive=False, wrap=True,
                                                 column_widths=REFERENCE_WIDTHS)
            gr.on([describe_button.click, describe_title.submit], describe,
                  inputs=[describe_title, describe_attributes],
                  outputs=[describe_output, describe_notice, describe_refs_note, describe_refs], api_name="describe")

        with gr.Tab("Classify", id="classify"):
            gr.Markdown(availability("category"))
            classify_text = gr.Textbox(label="Product name", max_length=MAX_INPUT_CHARS,
                                       placeholder="e.g. Organic Virgin Coconut Oil, 500 ml")
            classify_button = gr.Button("Classify", variant="primary")
            classify_output = gr.Label(label="Category path (top 5)", num_top_classes=5, elem_id="classify-output")
            classify_notice = gr.Markdown()
            gr.Examples(CATEGORY_EXAMPLES, inputs=classify_text)
            gr.on([classify_button.click, classify_text.submit], classify, inputs=classify_text,
                  outputs=[classify_output, classify_notice], api_name="classify")

        with gr.Tab("Batch upload", id="batch"):
            gr.Markdown(
                f"Upload a CSV (UTF-8) or xlsx catalog, up to {SETTINGS.max_rows:,} rows and "
                f"{SETTINGS.max_file_size_mb:g} MB. Every row comes back, with one column per job, its confidence, "
                "`needs_review` for answers below the adapter's review threshold and an `error` column saying what "
                "went wrong in a row. The run goes on in the background: the rows finished so far can be downloaded "
                "at any time, and closing this page loses nothing (open it again to see the run)."
            )
            with gr.Row():
                batch_file = gr.File(label="Catalog file", file_types=[".csv", ".tsv", ".xlsx"], elem_id="batch-file")
                with gr.Column():
                    batch_column = gr.Dropdown(label="Text column", choices=[], value=None, allow_custom_value=True,
                                               elem_id="batch-column")
                    batch_jobs = gr.CheckboxGroup(available_jobs(), label="Jobs (choose the ones that fit your file)",
                                                  value=[], elem_id="batch-jobs")
                    batch_button = gr.Button("Run", variant="primary", interactive=False, elem_id="batch-run")
            batch_notice = gr.Markdown(elem_id="batch-notice")
            batch_progress = gr.HTML(elem_id="batch-progress")
            batch_download = gr.File(label="Predictions (CSV)", interactive=False, elem_id="batch-download")
            batch_preview = gr.Dataframe(label=f"First {PREVIEW_ROWS} rows", interactive=False, wrap=True,
                                         elem_id="batch-preview")
            batch_job = gr.BrowserState(None, storage_key="catalog-lora-batch-job")
            batch_timer = gr.Timer(POLL_SECONDS, active=False)
            batch_file.change(inspect_upload, batch_file, [batch_column, batch_preview, batch_notice, batch_button],
                              api_visibility="private", show_progress="hidden")
            gr.on([batch_column.change, batch_jobs.change], batch_readiness, [batch_file, batch_column, batch_jobs],
                  [batch_notice, batch_button], api_visibility="private", show_progress="hidden")
            batch_button.click(start_batch, [batch_file, batch_column, batch_jobs], [batch_job, batch_timer, batch_notice],
                               api_visibility="private", show_progress="hidden")
            batch_status_outputs = [batch_progress, batch_preview, batch_download, batch_notice, batch_timer]
            batch_timer.tick(batch_status, batch_job, batch_status_outputs, api_visibility="private",
                             show_progress="hidden")
            # The API's /batch: the same job, waited for, so a gradio_client call returns the finished file.
            gr.Button("Run (API)", visible=False).click(
                batch, [batch_file, batch_column, batch_jobs], [batch_preview, batch_download, batch_notice],
                api_name="batch", concurrency_limit=1, concurrency_id="batch",
            )

        with gr.Tab("Compare", id="compare"):
            gr.Markdown("The same input through the base model alone and through the fine-tuned adapter.")
            compare_adapter = gr.Radio([(JOB_LABELS[n], n) for n in ADAPTERS], value="tag", label="Adapter")
            compare_text = gr.Textbox(label="Product text", max_length=MAX_INPUT_CHARS)
            compare_button = gr.Button("Compare", variant="primary")
            with gr.Row():
                compare_base_labels = gr.Label(label="Base model (adapter off)", elem_id="compare-base")
                compare_tuned_labels = gr.Label(label="Fine-tuned adapter", elem_id="compare-adapter")
            with gr.Row():
                compare_base = gr.Textbox(label="Base model's answer", lines=3, interactive=False)
                compare_tuned = gr.Textbox(label="Adapter's answer", lines=3, interactive=False)
            compare_notice = gr.Markdown()
            gr.on([compare_button.click, compare_text.submit], compare, inputs=[compare_adapter, compare_text],
                  outputs=[compare_base_labels, compare_tuned_labels, compare_base, compare_tuned, compare_notice],
                  api_name="compare")
            compare_adapter.change(lambda name: [gr.Label(visible=name != "describe")] * 2, compare_adapter,
                                   [compare_base_labels, compare_tuned_labels], api_visibility="private")

        with gr.Tab("Dataset", id="dataset"):
            gr.Markdown("The examples the adapters were trained on; search finds the nearest ones.")
            with gr.Row(equal_height=True):
                dataset_adapter = gr.Radio([(JOB_LABELS[n], n) for n in ADAPTERS], value="tag", label="Adapter")
                dataset_query = gr.Textbox(label="Search", placeholder="e.g. bottle leaked", scale=2)
                dataset_button = gr.Button("Search", scale=0)
            dataset_notice = gr.Markdown()
            dataset_table = gr.Dataframe(interactive=False, wrap=True)
            gr.on([dataset_adapter.change, dataset_query.submit, dataset_button.click], browse_dataset,
                  inputs=[dataset_adapter, dataset_query], outputs=[dataset_table, dataset_notice], api_name="dataset")

        with gr.Tab("About", id="about", elem_id="about-tab"):
            gr.Markdown(about_intro())
            for about_slot in MODELS.slots.values():
                about_text, about_details = adapter_summary(about_slot)
                gr.Markdown(about_text)
                with gr.Row(elem_id=f"about-plots-{about_slot.name}"):
                    for plot_path, caption in adapter_plots(about_slot):
                        gr.Image(plot_path, label=caption, interactive=False, elem_classes="about-plot", height=260)
                    bars = headline_bars(about_slot)
                    if bars is not None:
                        gr.BarPlot(bars, x="system", y=bars.columns[1], label="Base vs adapter vs baseline (test)",
                                   sort=bars["system"].tolist(), y_lim=[0, 1], elem_classes="about-bars", height=260)
                if about_details:
                    with gr.Accordion("All test metrics", open=False):
                        gr.Markdown(about_details)
            gr.Markdown("## How to cite\n\n" + citations())

    demo.load(browse_dataset, [dataset_adapter, dataset_query], [dataset_table, dataset_notice],
              api_visibility="private")
    # A job started earlier in this browser (the page was closed or reloaded): show it again.
    batch_job.change(batch_status, batch_job, batch_status_outputs, api_visibility="private", show_progress="hidden")


def launch(app: gr.Blocks = demo, port: int | None = None, host: str | None = None, **kwargs):
    """Queue with a concurrency limit, the upload size limit, then Gradio's own launch."""
    app.queue(default_concurrency_limit=CONCURRENCY, max_size=QUEUE_SIZE)
    return app.launch(
        server_name=host, server_port=port, max_file_size=SETTINGS.max_file_bytes, theme=gr.themes.Soft(), css=CSS,
        **kwargs,
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="The catalog-lora Space.")
    parser.add_argument("--port", type=int, default=None, help="default: $GRADIO_SERVER_PORT or 7860")
    parser.add_argument("--host", default=None, help="default: $GRADIO_SERVER_NAME or 127.0.0.1")
    parser.add_argument("--lazy", action="store_true", help="load the model on the first request, not at start")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)
    for slot in MODELS.slots.values():
        if slot.problem:
            logger.warning("%s adapter: %s", slot.name, slot.problem)
    if not args.lazy:
        MODELS.load()
    launch(demo, port=args.port, host=args.host)


if __name__ == "__main__":
    main()
