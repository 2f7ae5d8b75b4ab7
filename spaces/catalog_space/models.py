"""The Space's adapters on as few base models as possible, loaded once, on first use, and the model calls.

Creating :class:`Models` only resolves where each adapter is; nothing is loaded before
:meth:`Models.load` (``app.py`` calls it at start, unless ``--lazy``) or the first request.
"""

from __future__ import annotations

import logging
import threading
import weakref
from dataclasses import dataclass
from functools import partial

import pandas as pd

from catalog_lora.catalogs.batch import predict_table
from catalog_lora.catalogs.tables import ERROR_COLUMN
from catalog_lora.inference.micro_batch import MicroBatcher
from catalog_lora.runs.folder import read_run_info
from catalog_space.settings import ADAPTERS, JOB_LABELS, Settings, env_var, resolve_source

try:  # ZeroGPU's package (app.py imports it first, before torch); locally it is not installed
    import spaces as zerogpu
except ImportError:
    zerogpu = None

logger = logging.getLogger("catalog_lora.space")

GPU = getattr(zerogpu, "GPU", None)
BATCH_ROWS = 16  # rows per model forward pass inside a batch chunk
# Single-product requests (Tag, Classify) of concurrent users answered in one model call, at most.
MICRO_BATCH = 32
# A head adapter's micro-batch on a CPU runs as forward passes of at most this many padded tokens, the
# longest texts first: 20 body-wash reviews took 5.3 s as one padded pass and 3.0 s in passes of at most
# 256 tokens (2 threads). Generation keeps its batch whole: each decoding step reads all the weights once,
# whatever the rows, so more rows share that cost.
HEAD_BATCH_TOKENS = 256
_LIVE: weakref.WeakValueDictionary[int, Models] = weakref.WeakValueDictionary()


def on_gpu(duration: int = 60):
    """``spaces.GPU(duration=...)`` on a ZeroGPU Space; nothing anywhere else."""

    def wrap(fn):
        return GPU(duration=duration)(fn) if GPU is not None else fn

    return wrap


class AdapterUnavailable(RuntimeError):
    """The adapter a request needs is not configured, not found or failed to load."""


@dataclass
class Slot:
    """One adapter of the Space and, once loaded, the engine that serves it."""

    name: str
    task: str
    configured: str | list[str] | None
    label: str = ""  # how the page names it: "Tags", "Category", "Description", or a trained adapter's name
    source: str | None = None
    problem: str | None = None
    info: object = None
    engine: object = None
    precision: str = ""  # what the engine computes in, and why (the About tab shows it)

    @property
    def attributes(self) -> list[str]:
        """The attributes its adapter reads beside the text (``RunInfo.attributes``); none before it is loaded."""
        return self.info.attributes if self.info is not None else []


def _live_models(key: int) -> Models:
    return _LIVE[key]


class Models:
    """The adapters of the Space: one :class:`Slot` per adapter, named as in :data:`ADAPTERS`.

    With ``batching`` (the default except on ZeroGPU) the single-product requests of concurrent users
    are gathered into batches (:meth:`predict_one`). On ZeroGPU each request keeps its own GPU call,
    so a user's quota pays for that user's products only."""

    def __init__(self, settings: Settings, batching: bool | None = None):
        self.settings = settings
        self.batching = GPU is None if batching is None else batching
        self._batcher: MicroBatcher | None = None
        self._batcher_lock = threading.Lock()
        self.slots: dict[str, Slot] = {}
        for name, task in ADAPTERS.items():
            value = settings.adapters.get(name)
            slot = Slot(name, task, value, JOB_LABELS[name])
            if not value:
                slot.problem = f"no {name} adapter is configured (set `{env_var(name)}` or edit spaces/adapters.yaml)."
            else:
                slot.source, slot.problem = resolve_source(value, task)
            self.slots[name] = slot
        self._loaded = False
        self._lock = threading.Lock()
        self.records: dict[str, list[dict]] = {}
        self._references: dict[str, tuple[object, str | None]] = {}
        self._references_lock = threading.Lock()
        _LIVE[id(self)] = self

    def __reduce__(self):
        """ZeroGPU hands a GPU call's arguments to its worker by pickling; the worker is a fork of this
        process, so the pool travels as its key and is found there again."""
        return _live_models, (id(self),)

    def predict_one(self, name: str, text: str, attributes: dict | None = None, **options):
        """One product's :class:`~catalog_lora.inference.engine.Prediction` by adapter ``name``: batched with the
        requests of other users that arrive meanwhile (``batching``), else a model call of its own."""
        options.setdefault("batch_tokens", self.batch_tokens(name))
        if not self.batching:
            return run_predict(self, name, [text], [attributes], **options)[0]
        with self._batcher_lock:
            if self._batcher is None:
                self._batcher = MicroBatcher(partial(run_predict, self), max_batch=MICRO_BATCH)
        return self._batcher.predict(name, text, attributes, **options)

    def batch_tokens(self, name: str) -> int:
        """The token budget of a forward pass for ``name``'s micro-batches (0: the whole batch at once)."""
        engine = self.engine(name)
        on_cpu = engine.device.type == "cpu"
        return HEAD_BATCH_TOKENS if on_cpu and engine.spec(name).info.method == "head" else 0

    @property
    def batches(self) -> int:
        """Model calls made for :meth:`predict_one` so far (with ``batching``)."""
        return self._batcher.batches if self._batcher else 0

    def available(self, name: str) -> bool:
        return name in self.slots and self.slots[name].problem is None

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
                engine, precision = None, ""
                for slot in slots:
                    try:
                        if engine is None:
                            engine, precision = self._new_engine(slot.name, slot.source, slot.info, base)
                            logger.info("Base model %s: %s", base, precision)
                        else:
                            engine.add_adapter(slot.source, slot.name, slot.info)
                        slot.engine, slot.info = engine, engine.spec(slot.name).info  # one RunInfo per adapter
                        slot.precision = precision  # the engine's, shared by the adapters on it
                        logger.info("Adapter %s: %s", slot.name, slot.source)
                    except Exception as error:
                        logger.exception("loading adapter %s from %s failed", slot.name, slot.source)
                        slot.problem = f"loading `{slot.source}` failed: {error}"

    def add(self, name: str, source: str, label: str) -> Slot:
        """A finished run folder as one more adapter, usable at once beside those loaded at start
        (on the engine of its base model when one is loaded, else on a new one)."""
        info = read_run_info(source)
        slot = Slot(name, info.task, source, label, source=source, info=info)
        base = self.settings.base_model or info.base_model
        with self._lock:
            shared = next(
                (
                    s.engine
                    for s in self.slots.values()
                    if s.engine is not None
                    and info.method != "head"
                    and s.info.method != "head"
                    and (self.settings.base_model or s.info.base_model) == base
                ),
                None,
            )
            if shared is not None:
                shared.add_adapter(source, name, info)
                slot.engine = shared
                slot.precision = shared.precision.describe() if shared.precision else ""
            else:
                slot.engine, slot.precision = self._new_engine(name, source, info, base)
            slot.info = slot.engine.spec(name).info
            self.slots[name] = slot
        logger.info("Adapter %s: %s", name, source)
        return slot

    def _new_engine(self, name: str, source: str, info, base: str):
        """An engine for adapter ``name`` in the precision the settings ask for (for a head adapter on the CPU,
        ``auto`` weighs its recorded bf16 agreement: catalog_lora.inference.bf16_check), and that precision with why."""
        import torch

        from catalog_lora.inference.bf16_check import serving_quantization
        from catalog_lora.inference.engine import Engine

        device = "cuda" if torch.cuda.is_available() else "cpu"
        quantization, why = serving_quantization(self.settings.quantization, info, device)
        engine = Engine.load({name: source}, base_model=base, quantization=quantization)
        if engine.precision is None:
            return engine, ""
        return engine, f"{engine.precision.label}: {why}" if why else engine.precision.describe()

    def remove(self, name: str) -> None:
        """Forget an adapter added by :meth:`add` (its engine frees it when other adapters share it)."""
        with self._lock:
            slot = self.slots.pop(name, None)
            self._references.pop(name, None)
            self.records.pop(name, None)
        if slot is not None and slot.engine is not None and len(slot.engine.adapters) > 1:
            slot.engine.remove_adapter(name)

    def engine(self, name: str):
        if name not in self.slots:
            raise AdapterUnavailable(f"There is no adapter named {name!r}; the Space has: {', '.join(self.slots)}.")
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
            from catalog_lora.retrieval import references
        except Exception as error:  # chromadb or sentence-transformers missing or broken
            return None, f"the reference index cannot be read here ({error})."
        try:
            return references.ReferenceIndex.open(references.locate_index(slot.source)), None
        except Exception as error:  # ReferenceIndexError for a missing or corrupt index, anything else too
            return None, str(error)


# --------------------------------------------------------------------------- model calls (on the GPU on ZeroGPU)


@on_gpu(60)
def run_predict(models: Models, name: str, texts: list[str], attributes: list[dict] | None = None, **options):
    return models.engine(name).predict(name, texts, attributes, **options)


@on_gpu(120)
def run_stream(models: Models, name: str, text: str, attributes: dict | None = None):
    yield from models.engine(name).stream(name, text, attributes)


@on_gpu(180)
def run_chunk(models: Models, frame: pd.DataFrame, column: str, jobs: list[str], progress=None) -> pd.DataFrame:
    engines = {job: models.engine(job) for job in jobs}
    # the file's columns named like an attribute an adapter reads (BigBasket's `brand`) go with the text
    read = {name for job, engine in engines.items() for name in engine.spec(job).info.attributes}
    options = dict(attribute_columns=[c for c in frame.columns if c in read], batch_size=BATCH_ROWS, confidence=True)
    if len({id(e) for e in engines.values()}) == 1:
        engine = next(iter(engines.values()))
        return predict_table(engine, frame, column, jobs, progress=progress, **options)
    # adapters on different engines (a head adapter has its own model): one pass per engine
    out = None
    for job, engine in engines.items():
        part = predict_table(engine, frame, column, [job], **options)
        added = [c for c in part.columns if c not in frame.columns and c != ERROR_COLUMN]
        out = (
            part
            if out is None
            else out.assign(**{c: part[c] for c in added}, **{ERROR_COLUMN: _merge_errors(out, part)})
        )
    return out


def _merge_errors(a: pd.DataFrame, b: pd.DataFrame) -> list[str]:
    merged = []
    for x, y in zip(a[ERROR_COLUMN], b[ERROR_COLUMN], strict=True):
        parts = [p for p in dict.fromkeys(str(x).split("; ") + str(y).split("; ")) if p]
        merged.append("; ".join(parts))
    return merged
