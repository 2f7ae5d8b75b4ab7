"""The engine's classification-head path: one forward pass per batch, no generation.

A head adapter's probabilities (sigmoid per tag, softmax over categories), optionally mixed with
the labels of the nearest training examples (:mod:`catalog_lora.retrieval.neighbours`) and the classical
model's probabilities (:mod:`catalog_lora.inference.lexical`; :mod:`catalog_lora.inference.votes`), become the chosen
labels: per-label thresholds for tags, the top categories for a category head. A description head
picks one of the nearest training products' descriptions (:mod:`catalog_lora.inference.choice`).
"""

from __future__ import annotations

import numpy as np
import torch

from catalog_lora.inference.choice import NO_POSITION, candidate_scores, choose, encode_lines
from catalog_lora.inference.prediction import AdapterSpec, Prediction
from catalog_lora.inference.votes import mix
from catalog_lora.model.batching import pad_rows
from catalog_lora.records.prompts import Example, vote_text
from catalog_lora.retrieval.neighbours import neighbour_votes
from catalog_lora.retrieval.references import Reference


class HeadMixin:
    """:class:`catalog_lora.inference.engine.Engine`'s head path (uses its model, ``_encode`` and ``_using``)."""

    @staticmethod
    def vote_k(spec: AdapterSpec, use_adapter: bool) -> int:
        """How many nearest training examples ``spec``'s answers mix in (0: none, the model alone)."""
        if spec.info.method != "head" or spec.info.task == "description" or not use_adapter:
            return 0
        return spec.info.knn_k if spec.info.knn_k and spec.info.knn_weight else 0

    def votes(
        self, spec: AdapterSpec, texts: list[str], attributes: list[dict | None], hits: list[list[Reference]], use_adapter: bool
    ) -> list[tuple[float, np.ndarray]]:
        """The votes mixed into ``spec``'s head for ``texts``, as ``(share, one row per text)`` pairs
        (catalog_lora.inference.votes.mix): the neighbours' labels from ``hits`` (each text's nearest
        training examples, at least :meth:`vote_k` of them) and the classical model's probabilities of each
        text with its ``attributes``' values (those the adapter reads: ``Oats 1 kg [Saffola]``)."""
        info = spec.info
        if info.knn_weight + info.lexical_weight > 1.0 + 1e-9:
            raise ValueError(
                f"{spec.name}: the votes' shares knn_weight={info.knn_weight} and lexical_weight={info.lexical_weight} "
                "sum past 1; the head's share is what they leave (catalog_lora.json)"
            )
        votes = []
        k = self.vote_k(spec, use_adapter)
        if k:
            neighbours = neighbour_votes([row[:k] for row in hits], spec.taxonomy, spec.info.label_levels, spec.info.knn_temperature)
            votes.append((spec.info.knn_weight, neighbours))
        if use_adapter and spec.info.method == "head" and spec.info.task != "description" and spec.info.lexical_weight:
            keyed = [vote_text(text, extra) for text, extra in zip(texts, attributes, strict=True)]
            votes.append((spec.info.lexical_weight, spec.lexical.probabilities(keyed).numpy()))
        return votes

    @torch.inference_mode()
    def _classify(
        self,
        spec: AdapterSpec,
        prompts: list[str],
        votes: list[tuple[float, np.ndarray]],
        shown: list[list[Example]],
        use_adapter: bool,
        top_k: int,
    ) -> list[Prediction]:
        """``votes``: what :meth:`votes` gave, the rows of these prompts; ``shown``: a description head's
        candidates per text (catalog_lora.inference.choice); unused otherwise."""
        if spec.info.task == "description":
            return self._choose(spec, prompts, shown, use_adapter)
        if sum(share for share, _ in votes) >= 1.0:  # the votes are all of the answer: no model pass needed
            probs = torch.from_numpy(mix(np.zeros_like(votes[0][1]), votes)).float()
        else:
            logits = self._once(("head", spec.peft_name, use_adapter, tuple(prompts)), lambda: self._head_logits(spec, prompts, use_adapter))
            probs = torch.sigmoid(logits) if spec.info.multi_label else torch.softmax(logits, dim=-1)
            if votes:
                probs = torch.from_numpy(mix(probs.cpu().numpy(), votes)).float()
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
