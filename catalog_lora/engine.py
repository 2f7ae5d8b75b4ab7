"""The one inference engine: used by evaluation, ``training.predict``, the benchmark and the Space.

One base model is loaded once; any number of LoRA adapters sit on it and are switched
per request under a lock, so requests for different adapters never mix. Generation is
truly batched (left padding, attention masks, KV cache, batches sorted by length),
greedy by default, stops at the end of the answer and can be constrained to the taxonomy.
The classification-head path needs one forward pass per batch and no generation.

Two opt-in CPU speed-ups (``Engine.load``): ``merge=True`` folds a single generate adapter into the
base weights (no LoRA work per layer and step), and ``quantization="int8"`` runs the decoder's
linear layers in int8 (:mod:`catalog_lora.int8`; the output layer stays fp32). Both refuse what
they cannot do.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch
from tqdm.auto import tqdm
from transformers import DynamicCache, LogitsProcessorList, StoppingCriteria, StoppingCriteriaList, TextIteratorStreamer

from catalog_lora.base_model import load_base_model
from catalog_lora.confidence import label_confidences, low_confidence
from catalog_lora.constrained import SEPARATOR, LabelConstraint
from catalog_lora.decoding import Sampling, decode
from catalog_lora.examples import nearest_examples
from catalog_lora.int8 import quantize_int8
from catalog_lora.labels import Taxonomy, parse_answer
from catalog_lora.neighbours import mix, neighbour_votes
from catalog_lora.prompts import Example, PromptTemplate
from catalog_lora.run_files import TAXONOMY_FILE, RunInfo, fetch_file, read_run_info


@dataclass
class Prediction:
    """One product's answer. ``labels`` for tags and categories, ``text`` the raw answer.

    ``confidence`` holds each chosen label's probability (see :mod:`catalog_lora.confidence`),
    ``scores`` the alternatives (every tag of a head adapter, the top categories with ``top_k``),
    ``low_confidence`` the chosen labels below the adapter's review threshold."""

    text: str = ""
    labels: list[str] = field(default_factory=list)
    scores: dict[str, float] = field(default_factory=dict)
    unknown: list[str] = field(default_factory=list)
    truncated: bool = False
    error: str | None = None
    confidence: dict[str, float] = field(default_factory=dict)
    low_confidence: list[str] = field(default_factory=list)

    @property
    def needs_review(self) -> bool:
        """A chosen label is below the review threshold."""
        return bool(self.low_confidence)


@dataclass
class AdapterSpec:
    """An adapter as the engine uses it: how to prompt, which labels, where it came from."""

    name: str
    source: str
    info: RunInfo
    taxonomy: Taxonomy | None
    peft_name: str
    _neighbours: object = None

    @property
    def neighbours(self):
        """The references index whose labels are mixed into a head's scores (opened on first use)."""
        if self._neighbours is None:
            from catalog_lora.references import ReferenceIndex, locate_index

            self._neighbours = ReferenceIndex.open(locate_index(self.source))
        return self._neighbours

    def examples(self, texts: list[str]) -> list[list[Example]]:
        """The nearest training examples shown in each text's prompt (none unless the run shows them)."""
        if not self.info.prompt_examples:
            return [[] for _ in texts]
        return nearest_examples(self.neighbours, texts, self.info.prompt_examples)

    @property
    def template(self) -> PromptTemplate:
        labels = tuple(self.taxonomy.labels) if self.info.prompt_labels and self.taxonomy else ()
        return PromptTemplate(self.info.task, self.info.prompt_template, labels)


def newline_tokens(tokenizer) -> torch.Tensor:
    """``[vocab]`` booleans: which tokens hold a newline."""
    vocab = tokenizer.convert_ids_to_tokens(list(range(len(tokenizer))))
    text = [tokenizer.convert_tokens_to_string([t]) if t is not None else "" for t in vocab]
    return torch.tensor(["\n" in t for t in text])


class _StopAtNewline(StoppingCriteria):
    """Tags and categories are one line: a row is done once it emits any token holding a newline."""

    def __init__(self, newline: torch.Tensor, prompt_length: int):
        self.newline = newline
        self.prompt_length = prompt_length

    def __call__(self, input_ids, scores, **kwargs) -> torch.BoolTensor:
        if input_ids.shape[1] <= self.prompt_length:
            return torch.zeros(input_ids.shape[0], dtype=torch.bool, device=input_ids.device)
        return self.newline.to(input_ids.device)[input_ids[:, -1]]


MIN_SHARED_PREFIX = 8
# A product in the adapter's own prompt: finds the int8 layers' outlier channels (catalog_lora/int8.py).
INT8_CALIBRATION_TEXT = "Lathers well and smells fresh, but the pump broke after a week. Great value for a big bottle."


class Engine:
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

        ``merge=True`` folds the one generate adapter into the base weights; ``quantization="int8"``
        then runs the decoder's linear layers in int8 on CPU (see :mod:`catalog_lora.int8`)."""
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
        if (merge or quantization == "int8") and heads:
            option = "merge=True" if merge else "quantization='int8'"
            raise ValueError(f"{option} serves generate adapters only; {sorted(heads)} are head adapters")
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
        """The transformers model under any peft wrapper (``LlamaForCausalLM`` for generate adapters)."""
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
        with self._lock:
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
            self.model.set_adapter(spec.peft_name)
            yield

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
        constrained: bool = True,
        do_sample: bool = False,
        temperature: float = 1.0,
        max_new_tokens: int | None = None,
        top_k: int = 0,
        progress: bool = False,
    ) -> list[Prediction]:
        """Predict every text with adapter ``name`` (or the bare base with ``use_adapter=False``).

        Returns one :class:`Prediction` per text, in input order.
        """
        spec = self.spec(name)
        attributes = attributes or [None] * len(texts)
        if len(attributes) != len(texts):
            raise ValueError(f"got {len(texts)} texts but {len(attributes)} attribute dicts")
        if spec.info.method == "head":
            run_batch = lambda batch, texts: self._classify(spec, batch, texts, use_adapter, top_k)  # noqa: E731
        else:
            options = dict(
                constrained=constrained,
                do_sample=do_sample,
                temperature=temperature,
                max_new_tokens=max_new_tokens or spec.info.max_new_tokens,
                top_k=top_k,
            )
            run_batch = lambda batch, texts: self._generate(spec, batch, use_adapter, **options)  # noqa: E731
        shown = spec.examples(texts)
        prompts = [
            self.prompt_for(spec, text, attrs, examples)
            for text, attrs, examples in zip(texts, attributes, shown, strict=True)
        ]
        order = sorted(range(len(texts)), key=lambda i: -len(prompts[i][0]))
        results: list[Prediction | None] = [None] * len(texts)
        bar = tqdm(total=len(texts), desc=f"predict [{name}]", unit="item", disable=not progress)
        for start in range(0, len(order), batch_size):
            index = order[start : start + batch_size]
            batch = run_batch([prompts[i][0] for i in index], [texts[i] for i in index])
            for i, prediction in zip(index, batch, strict=True):
                prediction.truncated = prompts[i][1]
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

        ``examples``: the training examples to show (looked up when the adapter shows some and none are given)."""
        if spec.info.method == "head":
            text_only = PromptTemplate(spec.info.task, "alpaca").user_input(text, attributes)
            ids = self.tokenizer.encode(text_only, add_special_tokens=False)
            if len(ids) <= spec.info.max_length:
                return text_only, False
            return self.tokenizer.decode(ids[: spec.info.max_length]), True
        if examples is None:
            examples = spec.examples([text])[0]
        budget = spec.info.max_length - spec.info.max_new_tokens
        return spec.template.fit(text, self.tokenizer, budget, attributes, examples)

    def _encode(self, prompts: list[str], padding_side: str):
        self.tokenizer.padding_side = padding_side
        batch = self.tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=False)
        return {k: v.to(self.device) for k, v in batch.items()}

    @torch.inference_mode()
    def _classify(
        self, spec: AdapterSpec, prompts: list[str], texts: list[str], use_adapter: bool, top_k: int
    ) -> list[Prediction]:
        with self._using(spec, use_adapter):
            batch = self._encode(prompts, "right")
            logits = self.model(**batch).logits.float()
        self.tokens_processed += batch["input_ids"].numel()
        labels = spec.taxonomy.labels
        probs = torch.sigmoid(logits) if spec.info.multi_label else torch.softmax(logits, dim=-1)
        if use_adapter and spec.info.knn_k and spec.info.knn_weight:
            votes = neighbour_votes(
                spec.neighbours.query(texts, spec.info.knn_k),
                spec.taxonomy,
                spec.info.label_levels,
                spec.info.knn_temperature,
            )
            probs = torch.from_numpy(mix(probs.cpu().numpy(), votes, spec.info.knn_weight))
        results = []
        if spec.info.multi_label:
            thresholds = torch.tensor(spec.info.thresholds or [0.5] * len(labels), device=probs.device)
            for row in probs:
                chosen = (row >= thresholds).nonzero().flatten().tolist()
                if not chosen and spec.info.at_least_one_label:
                    chosen = [int(row.argmax())]
                chosen.sort(key=lambda j: -row[j])
                picked = [labels[j] for j in chosen]
                scores = {labels[j]: float(row[j]) for j in range(len(labels))}
                results.append(Prediction(", ".join(picked), picked, scores, confidence={p: scores[p] for p in picked}))
        else:
            for row in probs:
                top = row.topk(min(top_k or 1, len(labels)))
                ranked = {labels[j]: float(p) for p, j in zip(top.values.tolist(), top.indices.tolist(), strict=True)}
                best = labels[int(row.argmax())]
                results.append(Prediction(best, [best], ranked, confidence={best: float(row.max())}))
        return results

    def _generation_kwargs(self, spec: AdapterSpec, prompt_length: int, constrained: bool):
        processors = LogitsProcessorList()
        if constrained and spec.taxonomy is not None and spec.info.task != "description":
            processors.append(
                LabelConstraint(
                    self.tokenizer,
                    spec.taxonomy.labels,
                    multi_label=spec.info.multi_label,
                    leading_space=spec.info.prompt_template == "alpaca",
                )
            )
        stops = StoppingCriteriaList()
        if spec.template.single_line:
            stops.append(_StopAtNewline(self.newline, prompt_length))
        return dict(
            logits_processor=processors,
            stopping_criteria=stops,
            pad_token_id=self.tokenizer.pad_token_id,
            eos_token_id=self.tokenizer.eos_token_id,
        )

    def _encode_shared_prefix(self, prompts: list[str]):
        """Left-pad after the prompts' common token prefix, so that prefix can be run once.

        Rows look like ``[shared prefix][padding][own suffix]``; the attention mask hides the
        padding and ``generate`` derives positions from the mask, so each row sees exactly its
        own prompt. Returns ``(batch, prefix_length)``; prefix length 0 means plain left padding.
        """
        ids = [self.tokenizer.encode(p, add_special_tokens=False) for p in prompts]
        prefix = 0
        limit = min(len(x) for x in ids) - 1
        while prefix < limit and all(x[prefix] == ids[0][prefix] for x in ids):
            prefix += 1
        if prefix < MIN_SHARED_PREFIX:
            return self._encode(prompts, "left"), 0
        width = max(len(x) for x in ids) - prefix
        pad = self.tokenizer.pad_token_id
        rows = [ids[0][:prefix] + [pad] * (width - len(x) + prefix) + x[prefix:] for x in ids]
        masks = [[1] * prefix + [0] * (width - len(x) + prefix) + [1] * (len(x) - prefix) for x in ids]
        batch = {"input_ids": torch.tensor(rows), "attention_mask": torch.tensor(masks)}
        return {k: v.to(self.device) for k, v in batch.items()}, prefix

    @property
    def newline(self) -> torch.Tensor:
        """Which tokens hold a newline (computed once)."""
        if self._newline is None:
            self._newline = newline_tokens(self.tokenizer)
        return self._newline

    def _cache(self, batch, prefix: int) -> DynamicCache:
        """The KV cache to decode with: empty, or holding the shared prefix, computed for one row
        (hidden states only, no output layer) and repeated for all."""
        cache = DynamicCache(config=self.causal_lm.config)
        if prefix:
            self.causal_lm.model(input_ids=batch["input_ids"][:1, :prefix], past_key_values=cache, use_cache=True)
            cache.batch_repeat_interleave(batch["input_ids"].shape[0])
            self.tokens_processed += prefix
        return cache

    @torch.inference_mode()
    def _generate(
        self, spec, prompts, use_adapter, *, constrained, do_sample, temperature, max_new_tokens, top_k
    ) -> list[Prediction]:
        batch, prefix = self._encode_shared_prefix(prompts) if self.share_prefix else (self._encode(prompts, "left"), 0)
        [constraint] = self._generation_kwargs(spec, batch["input_ids"].shape[1], constrained)["logits_processor"] or [
            None
        ]
        constrained_run = constraint is not None
        model = self.causal_lm
        with self._using(spec, use_adapter):
            decoded = decode(
                model.model,
                model.get_output_embeddings().weight,
                batch,
                self._cache(batch, prefix),
                prefix,
                max_new_tokens=max_new_tokens,
                eos_id=self.tokenizer.eos_token_id,
                stop=self.newline if spec.template.single_line else None,
                constraint=constraint,
                sampling=Sampling(temperature) if do_sample else None,
            )
        self.tokens_processed += decoded.positions
        answers = self.tokenizer.batch_decode(decoded.tokens, skip_special_tokens=True)
        results = [self._parse(spec, answer) for answer in answers]
        for prediction, tokens, row in zip(results, decoded.tokens, decoded.logprobs, strict=True):
            prediction.confidence = self._confidences(spec, tokens, row)
        if constrained_run:
            # Under the constraint the only text outside the taxonomy is a label cut short by
            # max_new_tokens: drop that fragment rather than report it as an invented label.
            for prediction in results:
                prediction.unknown = []
        if top_k and spec.info.task == "category":
            for prediction, prompt in zip(results, prompts, strict=True):
                prediction.scores = self.rank_categories(spec, prompt, top_k, use_adapter)
        return results

    def _confidences(self, spec: AdapterSpec, tokens: list[int], logprobs: list[float]) -> dict[str, float]:
        if spec.taxonomy is None or spec.info.task == "description":
            return {}
        separator = self.tokenizer.encode(SEPARATOR, add_special_tokens=False)[0] if spec.info.multi_label else None
        return label_confidences(tokens, logprobs, self.tokenizer, spec.taxonomy, separator)

    def _parse(self, spec: AdapterSpec, answer: str) -> Prediction:
        answer = answer.strip()
        if spec.taxonomy is None or spec.info.task == "description":
            return Prediction(text=answer)
        parsed = parse_answer(answer, spec.taxonomy)
        return Prediction(text=answer, labels=parsed.labels, unknown=parsed.unknown)

    @torch.inference_mode()
    def rank_categories(self, spec: AdapterSpec, prompt: str, k: int, use_adapter: bool = True) -> dict[str, float]:
        """The ``k`` most likely taxonomy paths for one prompt (constrained beam search), each with its probability."""
        batch = self._encode([prompt], "left")
        length = batch["input_ids"].shape[1]
        beams = min(k, len(spec.taxonomy))
        with self._using(spec, use_adapter):
            output = self.model.generate(
                **batch,
                max_new_tokens=spec.info.max_new_tokens,
                num_beams=beams,
                num_return_sequences=beams,
                do_sample=False,
                return_dict_in_generate=True,
                top_p=None,
                top_k=None,
                **self._generation_kwargs(spec, length, constrained=True),
            )
        answers = [self._cut_at_eos(row) for row in output.sequences[:, length:].tolist()]
        prompt_ids = batch["input_ids"][0].tolist()
        ranked: dict[str, float] = {}
        for answer, logprobs in zip(
            answers, self._answer_logprobs(spec, prompt_ids, answers, use_adapter), strict=True
        ):
            for label, p in self._confidences(spec, answer, logprobs).items():
                ranked.setdefault(label, p)
        return dict(sorted(ranked.items(), key=lambda kv: -kv[1]))

    def _cut_at_eos(self, tokens: list[int]) -> list[int]:
        eos = self.tokenizer.eos_token_id
        return tokens[: tokens.index(eos)] if eos in tokens else tokens

    @torch.inference_mode()
    def _answer_logprobs(self, spec: AdapterSpec, prompt_ids: list[int], answers: list[list[int]], use_adapter: bool):
        """Each answer token's log-probability after ``prompt_ids`` under the constrained distribution
        (teacher forcing, one forward pass): the same numbers greedy decoding records for its own answer."""
        width = max(1, max(map(len, answers)))
        pad = self.tokenizer.pad_token_id
        rows = [prompt_ids + a + [pad] * (width - len(a)) for a in answers]
        masks = [[1] * (len(prompt_ids) + len(a)) + [0] * (width - len(a)) for a in answers]
        batch = {
            "input_ids": torch.tensor(rows, device=self.device),
            "attention_mask": torch.tensor(masks, device=self.device),
        }
        with self._using(spec, use_adapter):
            logits = self.model(**batch).logits[:, len(prompt_ids) - 1 : -1].float()
        self.tokens_processed += batch["input_ids"].numel()
        constraint = self._generation_kwargs(spec, len(prompt_ids), constrained=True)["logits_processor"][0]
        constraint.prompt_length = len(prompt_ids)
        out = []
        for i, answer in enumerate(answers):
            steps = [
                torch.log_softmax(
                    constraint(batch["input_ids"][i : i + 1, : len(prompt_ids) + t], logits[i, t][None]), -1
                )[0, token]
                for t, token in enumerate(answer)
            ]
            out.append([float(x) for x in steps])
        return out

    def stream(
        self,
        name: str,
        text: str,
        attributes: dict | None = None,
        max_new_tokens: int | None = None,
        use_adapter: bool = True,
    ) -> Iterator[str]:
        """Yield the growing answer for one text, token by token (the Space's Describe tab)."""
        spec = self.spec(name)
        prompt, _ = self.prompt_for(spec, text, attributes)
        batch = self._encode([prompt], "left")
        streamer = TextIteratorStreamer(self.tokenizer, skip_prompt=True, skip_special_tokens=True)
        kwargs = self._generation_kwargs(spec, batch["input_ids"].shape[1], constrained=True)

        def run():
            with self._using(spec, use_adapter), torch.inference_mode():
                self.model.generate(
                    **batch,
                    streamer=streamer,
                    do_sample=False,
                    top_p=None,
                    top_k=None,
                    max_new_tokens=max_new_tokens or spec.info.max_new_tokens,
                    **kwargs,
                )

        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        answer = ""
        for piece in streamer:
            answer += piece
            yield answer.strip()
        thread.join()


def _load_taxonomy(source: str) -> Taxonomy | None:
    path = fetch_file(source, TAXONOMY_FILE, required=False)
    return Taxonomy.load(path) if path else None
