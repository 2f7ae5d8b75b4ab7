"""The one inference engine: used by evaluation, ``training.predict``, the benchmark and the Space.

One base model is loaded once; any number of LoRA adapters sit on it and are switched
per request under a lock, so requests for different adapters never mix. Generation is
truly batched (left padding, attention masks, KV cache, batches sorted by length),
greedy by default, stops at the end of the answer and can be constrained to the taxonomy.
The classification-head path needs one forward pass per batch and no generation.

Three opt-in CPU speed-ups (``Engine.load``): ``merge=True`` folds a single adapter into the base
weights (no LoRA work per layer and step); ``quantization="bf16"`` runs the whole model in bf16 on a
CPU that computes bf16 natively; ``quantization="int8"`` runs the decoder's linear layers in int8
(:mod:`catalog_lora.model.int8`; the output layer stays fp32). Each refuses what it cannot do.

The engine keeps the adapters and builds the prompts; its generation path is in
:mod:`catalog_lora.inference.generation`, its head path in :mod:`catalog_lora.inference.head`, and what it works with
(:class:`~catalog_lora.inference.prediction.AdapterSpec`, :class:`~catalog_lora.inference.prediction.Prediction`) in
:mod:`catalog_lora.inference.prediction`.
"""

from __future__ import annotations

import threading
from contextlib import contextmanager, nullcontext

import torch
from tqdm.auto import tqdm

from catalog_lora.inference.choice import choice_input
from catalog_lora.inference.confidence import low_confidence
from catalog_lora.inference.generation import GenerationMixin
from catalog_lora.inference.head import HeadMixin
from catalog_lora.inference.prediction import AdapterSpec, Prediction
from catalog_lora.model.base_model import load_base_model
from catalog_lora.model.batching import cut_batches
from catalog_lora.model.int8 import quantize_int8
from catalog_lora.records.labels import Taxonomy
from catalog_lora.records.prompts import Example, PromptTemplate
from catalog_lora.runs.folder import TAXONOMY_FILE, RunInfo, fetch_file, read_run_info

# A product in the adapter's own prompt: finds the int8 layers' outlier channels (catalog_lora/model/int8.py).
INT8_CALIBRATION_TEXT = "Lathers well and smells fresh, but the pump broke after a week. Great value for a big bottle."


class Engine(GenerationMixin, HeadMixin):
    """One loaded base model (causal LM, or sequence classifier for head adapters) and its adapters."""

    def __init__(self, model, tokenizer, precision=None):
        self.model = model
        self.tokenizer = tokenizer
        self.precision = precision
        self.adapters: dict[str, AdapterSpec] = {}
        self._lock = threading.Lock()
        self._newline: torch.Tensor | None = None
        # The single adapter folded into the base weights (merge=True), if any.
        self.merged: str | None = None
        # Run the prompts' common prefix (the instruction) once per batch; see _encode_shared_prefix.
        self.share_prefix = True
        # Token positions run through the model, padding included: the benchmark's cost measure.
        self.tokens_processed = 0
        # Head passes kept for reuse while reusing_passes() is open (None: not kept).
        self._passes: dict | None = None

    @classmethod
    def load(
        cls,
        adapters: dict[str, str],
        base_model: str | None = None,
        quantization: str = "auto",
        device=None,
        merge: bool = False,
    ):
        """Load the base once and put every adapter (name → run folder or Hub id) on it.

        ``merge=True`` folds the one adapter into the base weights. On CPU, ``quantization="bf16"``
        runs the model in bf16 (adapters included) and ``quantization="int8"`` the decoder's linear
        layers in int8 (see :mod:`catalog_lora.model.int8`)."""
        if not adapters:
            raise ValueError("Engine.load needs at least one adapter: {name: run folder or Hub id}")
        infos = {name: read_run_info(source) for name, source in adapters.items()}
        first = next(iter(infos.values()))
        heads = {name for name, info in infos.items() if info.method == "head"}
        if heads and len(infos) > 1:
            raise ValueError(
                f"head adapters {sorted(heads)} need a classification model of their own; "
                "load them in a separate Engine, one head adapter each"
            )
        if merge and len(adapters) > 1:
            raise ValueError(
                f"merge=True folds one adapter into the base, got {len(adapters)} ({', '.join(adapters)}); "
                "load several adapters without merge, or one merged Engine each"
            )
        model, tokenizer, precision = load_base_model(
            base_model or first.base_model,
            quantization,
            device,
            num_labels=first.num_labels,
            problem_type=first.problem_type,
            num_layers=first.num_layers,
        )
        engine = cls(model, tokenizer, precision)
        for name, source in adapters.items():
            engine.add_adapter(source, name, infos[name])
        if merge:
            engine.merge()
        if precision.quantization == "int8":
            spec = engine.adapters[next(iter(adapters))]
            prompt = engine.prompt_for(spec, INT8_CALIBRATION_TEXT)[0]
            quantize_int8(engine.causal_lm, engine._encode([prompt], "left")["input_ids"])
        return engine

    def merge(self) -> None:
        """Fold the one loaded adapter into the base weights; it then serves only with the adapter on."""
        if len(self.adapters) != 1:
            raise ValueError(
                f"merge needs exactly one adapter loaded, got {len(self.adapters)}: {', '.join(self.adapters)}"
            )
        [name] = self.adapters
        self.model = self.model.merge_and_unload()
        self.merged = name

    @property
    def causal_lm(self):
        """The transformers model under any peft wrapper (``LlamaForCausalLM`` for generate adapters,
        ``LlamaForSequenceClassification`` for head adapters)."""
        from peft import PeftModel

        return self.model.get_base_model() if isinstance(self.model, PeftModel) else self.model

    def add_adapter(self, source: str, name: str, info: RunInfo | None = None) -> AdapterSpec:
        from peft import PeftModel

        info = info or read_run_info(source)
        if self.merged:
            raise ValueError(
                f"adapter {self.merged!r} is merged into this Engine's base; load {name!r} in another Engine"
            )
        if name in self.adapters:
            raise ValueError(f"an adapter named {name!r} is already loaded")
        with self._lock:  # not while another thread predicts: the model changes under it
            if isinstance(self.model, PeftModel):
                self.model.load_adapter(source, adapter_name=name)
            else:
                self.model = PeftModel.from_pretrained(self.model, source, adapter_name=name)
            if self.precision is not None and self.precision.quantization == "bf16":
                self.model.to(self.precision.dtype)  # peft loads adapter weights (and a head) in fp32
            self.model.eval()
        return self.register(name, info, _load_taxonomy(source), source, peft_name=name)

    def remove_adapter(self, name: str) -> None:
        """Take an adapter added by :meth:`add_adapter` off the model (its memory is freed); others stay."""
        spec = self.spec(name)
        with self._lock:
            self.model.delete_adapter(spec.peft_name)
            del self.adapters[name]

    def register(
        self, name: str, info: RunInfo, taxonomy: Taxonomy | None, source: str = "", peft_name: str = "default"
    ) -> AdapterSpec:
        """Make an adapter already on ``self.model`` (e.g. just trained, as ``peft_name``) usable by ``name``."""
        spec = AdapterSpec(name, source or name, info, taxonomy, peft_name)
        self.adapters[name] = spec
        return spec

    def spec(self, name: str) -> AdapterSpec:
        if name not in self.adapters:
            raise KeyError(f"no adapter named {name!r}; loaded: {', '.join(self.adapters) or 'none'}")
        return self.adapters[name]

    @contextmanager
    def _using(self, spec: AdapterSpec, use_adapter: bool):
        with self._lock, self._autocast():
            if self.merged:
                if not use_adapter:
                    raise ValueError(
                        f"adapter {self.merged!r} is merged into the base: use_adapter=False needs an Engine without merge"
                    )
                yield
                return
            if not use_adapter:
                with self.model.disable_adapter():
                    yield
                return
            if self.model.active_adapters != [spec.peft_name]:  # set_adapter walks every module: ~10 ms on a CPU
                self.model.set_adapter(spec.peft_name)
            yield

    @contextmanager
    def reusing_passes(self):
        """Inside, a head's forward pass over the same batch of prompts with the same adapter runs once: the
        evaluation's and the tuning's several scorings of one split (the mix, the head alone, each threshold)
        differ only in what is done with the head's scores. The model must not change inside."""
        if self._passes is not None:  # already open further up: one store for the whole block
            yield
            return
        self._passes = {}
        try:
            yield
        finally:
            self._passes = None

    def _once(self, key: tuple, compute):
        """``compute()``, or what it gave for ``key`` earlier inside :meth:`reusing_passes`."""
        if self._passes is None:
            return compute()
        if key not in self._passes:
            self._passes[key] = compute()
        return self._passes[key]

    def _autocast(self):
        """On CUDA the base computes in bf16 (or fp16) while LoRA weights and a head trained beside it may be
        fp32: autocast runs each operation in the compute dtype, as training did. Elsewhere nothing changes."""
        precision = self.precision
        if precision is None or not precision.device.startswith("cuda"):
            return nullcontext()
        return torch.autocast("cuda", dtype=precision.dtype)

    @property
    def device(self):
        return next(self.model.parameters()).device

    def predict(
        self,
        name: str,
        texts: list[str],
        attributes: list[dict] | None = None,
        *,
        use_adapter: bool = True,
        batch_size: int = 16,
        batch_tokens: int = 0,
        constrained: bool = True,
        do_sample: bool = False,
        temperature: float = 1.0,
        max_new_tokens: int | None = None,
        top_k: int = 0,
        progress: bool = False,
        examples: list[list[Example]] | None = None,
        references: int = 0,
    ) -> list[Prediction]:
        """Predict every text with adapter ``name`` (or the bare base with ``use_adapter=False``).

        ``examples``: per text, the training examples its prompt shows (a description head's candidates),
        when the caller has already looked them up; else the engine looks them up. ``batch_tokens``: batches
        of as many prompts as fit in that many padded tokens (a generated answer's budget counted in), up to
        ``batch_size`` (:func:`catalog_lora.model.batching.cut_batches`); 0 = ``batch_size`` prompts a batch.
        ``references``: also return each text's nearest training examples (``Prediction.references``, most
        similar first), from the same one search of the references index that a head's neighbour vote uses.
        Returns one :class:`Prediction` per text, in input order.
        """
        spec = self.spec(name)
        attributes = attributes or [None] * len(texts)
        if len(attributes) != len(texts):
            raise ValueError(f"got {len(texts)} texts but {len(attributes)} attribute dicts")
        attributes = [spec.read_attributes(a) for a in attributes]
        if examples is not None and len(examples) != len(texts):
            raise ValueError(f"got {len(texts)} texts but {len(examples)} lists of examples")
        if references < 0:
            raise ValueError(f"references={references} must be 0 (none) or the number of training examples per text")
        if spec.info.method == "head":
            run_batch = lambda batch, index, shown: self._classify(  # noqa: E731
                spec, batch, [(share, vote[index]) for share, vote in votes], shown, use_adapter, top_k
            )
        else:
            options = dict(
                constrained=constrained,
                do_sample=do_sample,
                temperature=temperature,
                max_new_tokens=max_new_tokens or spec.info.max_new_tokens,
                top_k=top_k,
            )
            run_batch = lambda batch, index, shown: self._generate(spec, batch, use_adapter, **options)  # noqa: E731
        shown = spec.examples(texts, attributes) if examples is None else examples
        # one search for every text: the head's vote takes the first knn_k hits, the caller the first `references`
        k = max(references, self.vote_k(spec, use_adapter))
        hits = spec.neighbours.query(texts, k, attributes) if k else [[] for _ in texts]
        votes = self.votes(spec, texts, attributes, hits, use_adapter)  # computed for every text at once, mixed batch by batch
        prompts = [
            self.prompt_for(spec, text, attrs, examples)
            for text, attrs, examples in zip(texts, attributes, shown, strict=True)
        ]
        if batch_tokens:  # the longest prompts first, measured in tokens, with room for the answer
            answer = 0 if spec.info.method == "head" else options["max_new_tokens"]
            ids = self.tokenizer([prompt for prompt, _ in prompts], add_special_tokens=False)["input_ids"]
            lengths = [len(row) + answer for row in ids]
        else:  # the longest prompts first, measured in characters (no tokenizer pass)
            lengths = [len(prompt) for prompt, _ in prompts]
        order = sorted(range(len(texts)), key=lambda i: -lengths[i])
        results: list[Prediction | None] = [None] * len(texts)
        bar = tqdm(total=len(texts), desc=f"predict [{name}]", unit="item", disable=not progress)
        for index in cut_batches(order, lengths, batch_size, batch_tokens):
            batch = run_batch([prompts[i][0] for i in index], index, [shown[i] for i in index])
            for i, prediction in zip(index, batch, strict=True):
                prediction.truncated = prompts[i][1]
                prediction.references = hits[i][:references]
                prediction.low_confidence = low_confidence(
                    prediction.confidence, prediction.labels, spec.info.review_threshold
                )
                results[i] = prediction
            bar.update(len(index))
        bar.close()
        return results

    def prompt_for(
        self, spec: AdapterSpec, text: str, attributes: dict | None = None, examples: list[Example] | None = None
    ) -> tuple[str, bool]:
        """The exact model input for ``text`` and whether the text was cut to fit the model's window.

        ``examples``: the training examples to show, or a description head's candidates (looked up when
        the adapter uses some and none are given)."""
        attributes = spec.read_attributes(attributes)
        if examples is None:
            examples = spec.examples([text], [attributes])[0]
        if spec.info.method == "head" and spec.info.task == "description":
            return choice_input(text, attributes, examples, self.tokenizer, spec.info.max_length, spec.info.choice_attributes)
        if spec.info.method == "head":
            text_only = PromptTemplate(spec.info.task, "alpaca").user_input(text, attributes)
            ids = self.tokenizer.encode(text_only, add_special_tokens=False)
            if len(ids) <= spec.info.max_length:
                return text_only, False
            return self.tokenizer.decode(ids[: spec.info.max_length]), True
        budget = spec.info.max_length - spec.info.max_new_tokens
        return spec.template.fit(text, self.tokenizer, budget, attributes, examples)

    def _encode(self, prompts: list[str], padding_side: str):
        self.tokenizer.padding_side = padding_side
        batch = self.tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=False)
        return {k: v.to(self.device) for k, v in batch.items()}


def _load_taxonomy(source: str) -> Taxonomy | None:
    path = fetch_file(source, TAXONOMY_FILE, required=False)
    return Taxonomy.load(path) if path else None
