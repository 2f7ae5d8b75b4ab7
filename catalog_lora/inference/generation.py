"""The engine's generation path: batched, constrained decoding, confidences, ranked categories, streaming.

Prompts are left-padded after their shared prefix (run once per batch), decoded by
:func:`catalog_lora.inference.decoding.decode` under the taxonomy's
:class:`~catalog_lora.inference.constrained.LabelConstraint`, stopped at the end of a one-line answer,
and parsed into labels with each label's probability.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator

import torch
from transformers import DynamicCache, LogitsProcessorList, StoppingCriteria, StoppingCriteriaList, TextIteratorStreamer

from catalog_lora.inference.confidence import label_confidences
from catalog_lora.inference.constrained import SEPARATOR, LabelConstraint
from catalog_lora.inference.decoding import Sampling, decode
from catalog_lora.inference.prediction import AdapterSpec, Prediction
from catalog_lora.records.labels import parse_answer


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


class GenerationMixin:
    """:class:`catalog_lora.inference.engine.Engine`'s generation path (uses its model, tokenizer, ``_encode``
    and ``_using``)."""

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
        """Yield the growing answer for one text, token by token (the Space's Describe tab); a description
        head's chosen description comes whole."""
        spec = self.spec(name)
        if spec.info.method == "head":
            prediction = self.predict(name, [text], [attributes], use_adapter=use_adapter)[0]
            if prediction.error:
                raise ValueError(prediction.error)
            yield prediction.text
            return
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
