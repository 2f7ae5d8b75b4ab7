"""A description adapter that chooses: of the descriptions of the ``k`` nearest training products,
the one that fits the product (a classification head over ``k`` candidate slots).

Why choose rather than write: in a retailer's catalog the sizes, flavours and packs of one product
line share one description, so the description of the most similar training product is a strong
answer (the classical baseline copies the TF-IDF nearest one). What a nearest-title search misses,
a model that reads the product next to each candidate can see: the same brand or not, the same kind
of product, a description that names another product. So the adapter reads the product and its
``k`` candidates (the references index's nearest training products: title, attributes and the
start of their description) and its head scores the ``k`` slots; the answer is the description of
the best slot. Training targets the candidate whose description is closest to the product's own
(chrF), so the head learns which neighbour's description to trust.

The input, one string per product (the one definition: training, the engine and the card use it),
with the attribute values the run names (``choice_attributes``; none named: all)::

    Product: Oats 1 kg [Saffola]
    1. Oats 500 g [Saffola] Rolled oats for a quick porridge…
    2. Muesli 1 kg [Kellogg's] Crunchy flakes with…
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from catalog_lora.prediction import Prediction
from catalog_lora.prompts import CUT_MARK, Example

CANDIDATE_TOKENS = 8  # of each candidate's description: enough to tell a product line's text from another's


def slot_labels(k: int) -> list[str]:
    """The head's labels: the candidates' places, ``"1"`` (the most similar) to ``str(k)``."""
    if k < 2:
        raise ValueError(f"choosing among k={k} candidates needs k of at least 2")
    return [str(slot) for slot in range(1, k + 1)]


def _line(text: str, attributes: dict | None, keys: Sequence[str]) -> str:
    values = [str(value).strip() for key, value in (attributes or {}).items() if not keys or key in keys]
    shown = " / ".join(value for value in values if value)
    return f"{text} [{shown}]" if shown else text


def choice_input(
    text: str,
    attributes: dict | None,
    candidates: Sequence[Example],
    tokenizer,
    max_length: int,
    attribute_keys: Sequence[str] = (),
) -> tuple[str, bool]:
    """The head's input for ``text`` and its ``candidates`` (most similar first), and whether it was cut.

    ``attribute_keys``: the attributes shown (their values, in the record's order; empty: all). Each
    candidate's description shows its first :data:`CANDIDATE_TOKENS` tokens; an input still over
    ``max_length`` tokens keeps its first ``max_length`` (the product comes first, so it is never lost)."""
    lines = [f"Product: {_line(text, attributes, attribute_keys)}"]
    for slot, candidate in enumerate(candidates, start=1):
        ids = tokenizer.encode(candidate.answer, add_special_tokens=False)
        start = tokenizer.decode(ids[:CANDIDATE_TOKENS]).strip() + (CUT_MARK if len(ids) > CANDIDATE_TOKENS else "")
        lines.append(f"{slot}. {_line(candidate.text, candidate.attributes, attribute_keys)} {start}")
    joined = "\n".join(lines)
    ids = tokenizer.encode(joined, add_special_tokens=False)
    if len(ids) <= max_length:
        return joined, False
    return tokenizer.decode(ids[:max_length]), True

def choose(logits: torch.Tensor, candidates: Sequence[Example]) -> Prediction:
    """The answer of a head's ``logits`` over the slots: the description of the most probable candidate
    (slots past the candidates a product has are left out). ``scores`` holds each candidate's probability,
    keyed ``"<slot>. <its title>"``; ``confidence`` the chosen one's."""
    if not candidates:
        return Prediction(error="no training product to choose a description from: the references index is empty")
    probs = torch.softmax(logits[: len(candidates)].float(), dim=-1).tolist()
    best = max(range(len(candidates)), key=probs.__getitem__)
    scores = {f"{slot}. {c.text}": p for slot, (c, p) in enumerate(zip(candidates, probs, strict=True), start=1)}
    return Prediction(candidates[best].answer, scores=scores, confidence={f"{best + 1}. {candidates[best].text}": probs[best]})
