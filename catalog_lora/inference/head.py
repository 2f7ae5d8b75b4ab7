"""The engine's classification-head path: one forward pass per batch, no generation.

A head adapter's probabilities (sigmoid per tag, softmax over categories), optionally mixed with
the labels of the nearest training examples (:mod:`catalog_lora.retrieval.neighbours`), become the chosen
labels: per-label thresholds for tags, the top categories for a category head. A description head
picks one of the nearest training products' descriptions (:mod:`catalog_lora.inference.choice`).
"""

from __future__ import annotations

import torch

from catalog_lora.inference.choice import NO_POSITION, candidate_scores, choose, encode_lines
from catalog_lora.inference.prediction import AdapterSpec, Prediction
from catalog_lora.model.batching import pad_rows
from catalog_lora.records.prompts import Example
from catalog_lora.retrieval.neighbours import mix, neighbour_votes
from catalog_lora.retrieval.references import Reference


class HeadMixin:
    """:class:`catalog_lora.inference.engine.Engine`'s head path (uses its model, ``_encode`` and ``_using``)."""

    @staticmethod
    def vote_k(spec: AdapterSpec, use_adapter: bool) -> int:
        """How many nearest training examples ``spec``'s answers mix in (0: none, the model alone)."""
        if spec.info.method != "head" or spec.info.task == "description" or not use_adapter:
            return 0
        return spec.info.knn_k if spec.info.knn_k and spec.info.knn_weight else 0

    @torch.inference_mode()
    def _classify(
        self,
        spec: AdapterSpec,
        prompts: list[str],
        hits: list[list[Reference]],
        shown: list[list[Example]],
        use_adapter: bool,
        top_k: int,
    ) -> list[Prediction]:
        """``hits``: each text's nearest training examples, most similar first (at least :meth:`vote_k` of
        them when the answer mixes in their vote); ``shown``: a description head's candidates per text
        (catalog_lora.inference.choice); unused otherwise."""
        if spec.info.task == "description":
            return self._choose(spec, prompts, shown, use_adapter)
        k = self.vote_k(spec, use_adapter)
        mixing = k > 0
        if mixing:
            votes = neighbour_votes(
                [row[:k] for row in hits],
                spec.taxonomy,
                spec.info.label_levels,
                spec.info.knn_temperature,
            )
        if mixing and spec.info.knn_weight >= 1.0:
            probs = torch.from_numpy(votes)  # the neighbours' share is all of the answer: no model pass needed
        else:
            logits = self._once(("head", spec.peft_name, use_adapter, tuple(prompts)), lambda: self._head_logits(spec, prompts, use_adapter))
            probs = torch.sigmoid(logits) if spec.info.multi_label else torch.softmax(logits, dim=-1)
            if mixing:
                probs = torch.from_numpy(mix(probs.cpu().numpy(), votes, spec.info.knn_weight))
        labels = spec.taxonomy.labels
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

    def _head_logits(self, spec: AdapterSpec, prompts: list[str], use_adapter: bool) -> torch.Tensor:
        with self._using(spec, use_adapter):
            batch = self._encode(prompts, "right")
            logits = self.model(**batch).logits.float()
        self.tokens_processed += batch["input_ids"].numel()
        return logits

    def _choose(
        self, spec: AdapterSpec, prompts: list[str], shown: list[list[Example]], use_adapter: bool
    ) -> list[Prediction]:
        """A description head: each prompt's lines encoded as in training, every candidate scored in one pass."""
        share = spec.info.knn_weight if use_adapter else 0.0  # the nearest candidate's share, tuned on validation
        encoded = [encode_lines(prompt.split("\n"), self.tokenizer) for prompt in prompts]
        positions = torch.tensor(pad_rows([p for _, p in encoded], NO_POSITION), device=self.device)
        if share >= 1.0:  # the nearest candidate takes the whole choice: no model pass needed
            scores = torch.zeros(positions.shape).masked_fill(positions.cpu() == NO_POSITION, float("-inf"))
        else:
            pad = self.tokenizer.pad_token_id

            def score() -> torch.Tensor:
                ids = torch.tensor(pad_rows([row for row, _ in encoded], pad), device=self.device)
                mask = torch.tensor(pad_rows([[1] * len(row) for row, _ in encoded], 0), device=self.device)
                with self._using(spec, use_adapter):
                    scores = candidate_scores(self.model, ids, mask, positions).cpu()
                self.tokens_processed += ids.numel()
                return scores

            scores = self._once(("choice", spec.peft_name, use_adapter, tuple(prompts)), score)
        return [choose(row, candidates, share) for row, candidates in zip(scores, shown, strict=True)]
