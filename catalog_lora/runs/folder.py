"""The files of a training run folder, which is also what gets published as an adapter repo.

A finished run folder holds:

- ``adapter_config.json``, ``adapter_model.safetensors`` (peft) and the tokenizer files;
- ``catalog_lora.json`` (:class:`RunInfo`): task, method, base model, prompt template, label
  settings: everything needed to use the adapter the way it was trained;
- ``taxonomy.json`` (labels with counts), ``config.yaml`` (the exact training config);
- ``metrics.json``: ``{"test": {"base": {...}, "adapter": {...}, "baseline": {...}}, "validation": {...}}``;
- ``train_stats.json``: parameters, hardware, runtime, throughput, final losses, ``log_history``;
- ``loss_curve.png``; ``confusion_matrix.png`` for categories, ``per_label_f1.png`` for tags;
- ``references/``: the index of the training examples (:mod:`catalog_lora.retrieval.references`), when built;
- ``lexical.json``, ``lexical.safetensors``: a head's classical model, when its answers mix it in
  (:mod:`catalog_lora.inference.lexical`);
- ``lexical_search.json``, ``lexical_search.safetensors``: a description head's TF-IDF vectorizer, when it pools
  the candidates of both searches (``choice_search``; :mod:`catalog_lora.retrieval.tfidf`);
  ``base_adapter_baseline.png``: the headline metric of the three side by side;
- ``COMPLETE``: written last, so a crashed run is never mistaken for a finished one.

An adapter repo holds these files (the card as ``README.md``) and, for a head mixed with its
neighbours, ``neighbours.safetensors``: the references' embeddings and labels as plain tensors
(:func:`catalog_lora.retrieval.neighbours.save_plain`), written when the run is published. A generate adapter
that shows training examples in its prompts (``prompt_examples``) gets the references' embeddings in
``neighbours.safetensors`` and their texts and answers, row by row, in ``prompt_examples.jsonl``
(:func:`catalog_lora.retrieval.examples.save_plain`).
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path

import yaml

from catalog_lora.records.dataset_files import TAXONOMY_FILE
from catalog_lora.records.labels import Taxonomy
from catalog_lora.records.task_spec import TaskSpec

INFO_FILE = "catalog_lora.json"
CONFIG_FILE = "config.yaml"
METRICS_FILE = "metrics.json"
STATS_FILE = "train_stats.json"
LOSS_PLOT = "loss_curve.png"
CONFUSION_PLOT = "confusion_matrix.png"
PER_LABEL_PLOT = "per_label_f1.png"
SYSTEMS_PLOT = "base_adapter_baseline.png"
PLOTS = (LOSS_PLOT, SYSTEMS_PLOT, PER_LABEL_PLOT, CONFUSION_PLOT)
COMPLETE_MARKER = "COMPLETE"
PROGRESS_FILE = "progress.json"  # written while training runs: step, losses, phase (see training.train)
REFERENCES_DIR = "references"  # the index of the training examples (catalog_lora.retrieval.references), when built
NEIGHBOURS_FILE = "neighbours.safetensors"  # the same examples as plain tensors, in a published head's repo
LEXICAL_FILES = ("lexical.json", "lexical.safetensors")  # a head's classical model (catalog_lora.inference.lexical)
# a description head's word search, when it pools its candidates (catalog_lora.retrieval.tfidf.LexicalSearch)
SEARCH_FILES = ("lexical_search.json", "lexical_search.safetensors")
CHOICE_SEARCHES = ("references", "pooled")  # a description head's candidates: RunInfo.choice_search
EXAMPLES_FILE = "prompt_examples.jsonl"  # their texts and answers, in a published repo whose prompts show examples
ADAPTER_FILES = ("adapter_config.json", "adapter_model.safetensors")
METHODS = ("generate", "head")
REPO_ID_RULE = (
    "a Hub repo id is 'namespace/name': your user or organization name, a slash, then the repo name; "
    "each part 1-96 characters from letters, digits, '-', '_' and '.', not starting or ending with '-' or '.', "
    "without '--' or '..'"
)
_REPO_PART = r"(?!.*(--|\.\.))[A-Za-z0-9_](?:[\w.-]{0,94}[A-Za-z0-9_])?"
REPO_ID_PATTERN = re.compile(rf"^{_REPO_PART}/{_REPO_PART}$", re.ASCII)


def is_repo_id(value: str) -> bool:
    """Whether ``value`` has the form of a Hub repo id (``namespace/name``, see :data:`REPO_ID_RULE`)."""
    return isinstance(value, str) and REPO_ID_PATTERN.fullmatch(value) is not None


def check_repo_id(repo_id: str) -> str:
    """``repo_id`` itself, or a ``ValueError`` that states the rule."""
    if not is_repo_id(repo_id):
        raise ValueError(f"invalid repo id {repo_id!r}: {REPO_ID_RULE}")
    return repo_id


@dataclass
class RunInfo:
    """How an adapter is meant to be used; saved as ``catalog_lora.json`` beside it.

    ``task``, ``label_levels`` and ``label_field`` are the adapter's :class:`TaskSpec` (:attr:`spec`),
    kept as flat keys so that every ``catalog_lora.json`` written so far reads unchanged."""

    task: str
    method: str = "generate"
    base_model: str = "embedded"
    base_model_hub_id: str = ""
    prompt_template: str = "alpaca"
    prompt_labels: bool = False
    label_levels: int | None = None
    label_field: str = "labels"
    max_new_tokens: int = 64
    max_length: int = 512
    thresholds: list[float] = field(default_factory=list)
    # Answers whose label confidence is below this are marked for review; chosen on the validation
    # split at the end of training (catalog_lora.inference.confidence.choose_threshold). None: no marks.
    review_threshold: float | None = None
    at_least_one_label: bool = True
    labels: list[str] = field(default_factory=list)
    adapter_name: str = "default"
    num_layers: int | None = None
    """Head method: the base runs its first ``num_layers`` decoder layers only (None = all)."""
    knn_k: int = 0
    """Head method: neighbours from the references index mixed into the head's scores (0 = none)."""
    knn_weight: float = 0.0
    """The neighbours' share of the mix, tuned on validation (see catalog_lora.retrieval.neighbours); for a
    description head, the nearest candidate's share of its choice (catalog_lora.inference.choice.choose)."""
    knn_temperature: float = 0.05
    """Softmax temperature over the neighbours' cosine similarities."""
    lexical_weight: float = 0.0
    """Head method, tags and categories: the classical model's share of the mix (``lexical.json`` and
    ``lexical.safetensors``, catalog_lora.inference.lexical), tuned on validation; 0 = not mixed in."""
    prompt_examples: int = 0
    """Generate method: the nearest training examples (references index) shown in each prompt with
    their answers (0 = none); see catalog_lora.records.prompts. Description head: the candidates it chooses among."""
    choice_attributes: list[str] = field(default_factory=list)
    """Description head: the attributes its input shows for the product and each candidate (empty = all)."""
    choice_search: str = "references"
    """Description head: where its candidates come from when it answers (:data:`CHOICE_SEARCHES`): ``references``,
    the references index's nearest by meaning; ``pooled``, also the nearest by TF-IDF (``lexical_search.*``)."""
    attributes: list[str] = field(default_factory=list)
    """Tags and categories: the attributes (e.g. ``[brand]``) the adapter reads beside the text. Its prompt shows
    them (``Attributes: brand: …``) and its votes read ``text [values]`` (catalog_lora.records.prompts); other
    attributes a caller passes are ignored. Empty: the text alone (every run before they were kept)."""
    bf16_agreement: float | None = None
    """Head method: the share of validation texts whose answer in bf16 equals the fp32 one
    (catalog_lora.inference.bf16_check); a Space on a CPU with native bf16 serves the head in bf16 when it
    is high enough. None: not measured."""
    bf16_agreement_texts: int = 0
    """How many validation texts ``bf16_agreement`` was measured on."""

    @property
    def spec(self) -> TaskSpec:
        """The task and the labels the adapter was trained on."""
        return TaskSpec(self.task, self.label_levels, self.label_field)

    @property
    def multi_label(self) -> bool:
        return self.spec.multi_label

    @property
    def num_labels(self) -> int | None:
        """The head's outputs: one per label, or one score per candidate for a description head."""
        if self.method != "head":
            return None
        return 1 if self.task == "description" else len(self.labels)

    @property
    def problem_type(self) -> str | None:
        if self.method != "head":
            return None
        return "multi_label_classification" if self.multi_label else "single_label_classification"

    def save(self, folder: str | Path) -> None:
        (Path(folder) / INFO_FILE).write_text(json.dumps(asdict(self), indent=2, ensure_ascii=False) + "\n")

    @classmethod
    def from_dict(cls, data: dict) -> RunInfo:
        known = {f for f in cls.__dataclass_fields__}
        return cls(**{k: v for k, v in data.items() if k in known})


def fetch_file(adapter: str, filename: str, required: bool = True) -> Path | None:
    """A file of an adapter given as a local folder or a Hub repo id."""
    local = Path(adapter) / filename
    if Path(adapter).is_dir():
        if local.is_file():
            return local
        if required:
            raise FileNotFoundError(f"{adapter} has no {filename}; is it a catalog-lora run folder?")
        return None
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import EntryNotFoundError

    try:
        return Path(hf_hub_download(adapter, filename))
    except EntryNotFoundError:
        if required:
            raise FileNotFoundError(
                f"Hub repo {adapter} has no {filename}; was it published by catalog-lora?"
            ) from None
        return None


def read_run_info(adapter: str) -> RunInfo:
    return RunInfo.from_dict(json.loads(fetch_file(adapter, INFO_FILE).read_text()))


def read_metrics(adapter: str) -> dict:
    return _read_json(adapter, METRICS_FILE) or {}


@dataclass(frozen=True)
class RunFolder:
    """What a run folder (or the adapter repo published from it) says about the run, read once.

    ``info`` and ``metrics`` are always there; a missing optional file is None (``plots``: the
    plots present, in :data:`PLOTS` order)."""

    source: str
    info: RunInfo
    metrics: dict
    adapter_config: dict | None
    config: dict | None
    stats: dict | None
    taxonomy: Taxonomy | None
    plots: tuple[str, ...]

    @classmethod
    def read(cls, source: str | Path) -> RunFolder:
        source = str(source)
        config = fetch_file(source, CONFIG_FILE, required=False)
        taxonomy = fetch_file(source, TAXONOMY_FILE, required=False)
        return cls(
            source=source,
            info=read_run_info(source),
            metrics=read_metrics(source),
            adapter_config=_read_json(source, ADAPTER_FILES[0]),
            config=yaml.safe_load(config.read_text(encoding="utf-8")) if config else None,
            stats=_read_json(source, STATS_FILE),
            taxonomy=Taxonomy.load(taxonomy) if taxonomy else None,
            plots=tuple(plot for plot in PLOTS if fetch_file(source, plot, required=False)),
        )

    @property
    def attribute_dropout(self) -> float:
        """The share of its training examples the adapter was shown without their attributes
        (``data.attribute_dropout`` of its config; 0 when off or not recorded)."""
        return float(self._data_setting("attribute_dropout") or 0.0)

    @property
    def auxiliary_field(self) -> str:
        """The second tag field the head learnt beside its own tags, by outputs dropped before it was saved
        (``data.auxiliary_field`` of its config; "" when off or not recorded)."""
        return str(self._data_setting("auxiliary_field") or "")

    @property
    def auxiliary_levels(self) -> int:
        """The depth of the category path the head learnt beside its own categories, by outputs dropped before it
        was saved (``data.auxiliary_levels`` of its config; 0 when off or not recorded)."""
        return int(self._data_setting("auxiliary_levels") or 0)

    @property
    def auxiliary_weight(self) -> float | None:
        """The weight of those outputs' loss beside the head's own (``train.auxiliary_weight`` of its config);
        None when the head learnt nothing beside its own labels or the weight is not recorded (runs before the
        setting weighed every output alike)."""
        weight = ((self.config or {}).get("train") or {}).get("auxiliary_weight")
        learnt = self.auxiliary_field or self.auxiliary_levels
        return float(weight) if learnt and weight is not None else None

    def _data_setting(self, key: str):
        """``data.<key>`` of the run's config, or None."""
        return ((self.config or {}).get("data") or {}).get(key)


def _read_json(source: str, filename: str) -> dict | None:
    path = fetch_file(source, filename, required=False)
    return json.loads(path.read_text(encoding="utf-8")) if path else None
