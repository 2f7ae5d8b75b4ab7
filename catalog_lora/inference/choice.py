"""A description adapter that chooses: of the descriptions of the ``k`` nearest training products,
the one that fits the product, scored by a head on the decoder.

Why choose rather than write: in a retailer's catalog the sizes, flavours and packs of one product
line share one description, so the description of the most similar training product is a strong
answer (the classical baseline copies the TF-IDF nearest one). The adapter does better in two ways:
its candidates are searched by the product's title *and* the attributes it names (``choice_attributes``,
e.g. the brand; the references index is keyed on them), and a model that reads the product next to
each candidate picks among them: the same product line or not, the same kind of product, a
description that names another product. Training gives each candidate a share of the target by how
close its description is to the product's own (chrF), and at the end of training the nearest
candidate's share of the choice is tuned on validation (:func:`choose`). With ``choice_search: pooled`` it answers
among candidates of two searches (:func:`catalog_lora.retrieval.examples.pool`): the nearest by TF-IDF, the
classical baseline's search (whose nearest is its answer, so the nearest's share is the baseline's vote), and the
nearest by meaning; the two find different product lines, and the head picks among both.

The input, one line per product (the one definition: training, the engine and the card use it)::

    Product: Oats 1 kg [Saffola]
    1. Oats 500 g [Saffola] Rolled oats for a quick porridge…
    2. Muesli 1 kg [Kellogg's] Crunchy flakes with…

Each line is tokenized on its own and the lines joined by the newline's tokens, so a candidate's line
ends at a known position. The head (one output) reads the decoder's last hidden state at the end of
each candidate's line, where causal attention has seen the product and that candidate (a cross-encoder
per candidate, in one forward pass for all ``k``); a softmax over the ``k`` scores says how sure the
choice is. Reading the input's last token alone, as a classifier over the ``k`` places, did not learn
in a CPU budget (its validation loss stayed at chance after an epoch).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

import torch

from catalog_lora.inference.prediction import Prediction
from catalog_lora.records.prompts import CUT_MARK, Example, with_attribute_values

CANDIDATE_TOKENS = 8  # of each candidate's description: enough to tell a product line's text from another's
PRODUCT_LINE = "Product: {product}"
CANDIDATE_LINE = "{slot}. {product} {description}"
NO_POSITION = -1  # a candidate place the product does not fill (fewer candidates, or cut to fit)


def description_start(description: str, tokenizer) -> str:
    """The first :data:`CANDIDATE_TOKENS` tokens of a candidate's description, on one line (cut: ends with the cut mark)."""
    ids = tokenizer.encode(description, add_special_tokens=False)
    start = " ".join(tokenizer.decode(ids[:CANDIDATE_TOKENS]).split())
    return start + (CUT_MARK if len(ids) > CANDIDATE_TOKENS else "")


def choice_lines(
    text: str, attributes: dict | None, candidates: Sequence[Example], tokenizer, attribute_keys: Sequence[str] = ()
) -> list[str]:
    """The product's line, then one line per candidate (most similar first)."""
    lines = [PRODUCT_LINE.format(product=with_attribute_values(text, attributes, attribute_keys))]
    for slot, candidate in enumerate(candidates, start=1):
        product = with_attribute_values(candidate.text, candidate.attributes, attribute_keys)
        lines.append(CANDIDATE_LINE.format(slot=slot, product=product, description=description_start(candidate.answer, tokenizer)))
    return lines


def fit_lines(lines: Sequence[str], tokenizer, max_length: int) -> tuple[list[str], list[int], list[int], bool]:
    """The lines that fit in ``max_length`` tokens once joined by newlines, their token ids (each line
    tokenized on its own, joined by the newline's tokens), the position of each candidate line's last token
    (where the head reads it), and whether anything was cut: candidates that do not fit are left out whole,
    most similar kept first; a product line longer than half the window is cut to that half, so a candidate
    always has room."""
    newline = tokenizer.encode("\n", add_special_tokens=False)
    product = tokenizer.encode(lines[0], add_special_tokens=False)
    room = max(1, max_length // 2)
    cut = len(product) > room
    kept = [tokenizer.decode(product[:room]).strip() if cut else lines[0]]
    ids = tokenizer.encode(kept[0], add_special_tokens=False) if cut else product
    positions: list[int] = []
    used = min(len(product), room)
    for line in lines[1:]:
        tokens = tokenizer.encode(line, add_special_tokens=False)
        used += len(newline) + len(tokens)
        if used > max_length:
            return kept, ids, positions, True
        kept.append(line)
        ids = ids + newline + tokens
        positions.append(len(ids) - 1)
    return kept, ids, positions, cut


def encode_lines(lines: Sequence[str], tokenizer) -> tuple[list[int], list[int]]:
    """The token ids and candidate positions of lines that already fit (a prompt of :func:`choice_input`)."""
    _, ids, positions, _ = fit_lines(lines, tokenizer, sys.maxsize)
    return ids, positions


def choice_input(
    text: str,
    attributes: dict | None,
    candidates: Sequence[Example],
    tokenizer,
    max_length: int,
    attribute_keys: Sequence[str] = (),
) -> tuple[str, bool]:
    """The head's input, its lines joined by newlines (:func:`encode_lines` of its lines is what the model
    reads), and whether it was cut to ``max_length`` tokens."""
    lines, _, _, cut = fit_lines(choice_lines(text, attributes, candidates, tokenizer, attribute_keys), tokenizer, max_length)
    return "\n".join(lines), cut


def candidate_scores(model, input_ids: torch.Tensor, attention_mask: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
    """The head's score of each candidate place, ``(batch, k)``; places at :data:`NO_POSITION` get ``-inf``.

    ``model`` is the sequence-classification model with one output (its ``score`` layer is the head, or a
    wrapper of it: peft, DDP). Its forward pass applies the head at every position and keeps the last; the
    head's output is caught there and read at each candidate line's last token, inside the one forward
    pass, so gradients and distributed training see an ordinary forward."""
    head = next(module for name, module in model.named_modules() if name.split(".")[-1] == "score")
    caught = []
    hook = head.register_forward_hook(lambda module, inputs, output: caught.append(output))
    try:
        model(input_ids=input_ids, attention_mask=attention_mask)
    finally:
        hook.remove()
    per_token = caught[-1].squeeze(-1).float()
    scores = per_token.gather(1, positions.clamp(min=0))
    return scores.masked_fill(positions == NO_POSITION, float("-inf"))


def with_nearest_share(probs: Sequence[float], share: float) -> list[float]:
    """``(1 - share) * probs + share * [1, 0, …]``: the head's probabilities mixed with a vote for the nearest candidate."""
    mixed = [(1.0 - share) * p for p in probs]
    if mixed:
        mixed[0] += share
    return mixed


def choose(scores: torch.Tensor, candidates: Sequence[Example], nearest_share: float = 0.0) -> Prediction:
    """The answer from one product's candidate ``scores``: the description of the best candidate.

    ``nearest_share`` mixes the head's probabilities with a vote for the nearest candidate,
    ``(1 - share) * head + share * [1, 0, …]`` (tuned on validation, as a category head's neighbours
    are; 0 = the head alone, 1 = the nearest alone): the head then overrides the search's first answer
    only when it prefers another one clearly enough. ``scores`` of the prediction holds each shown
    candidate's probability, keyed ``"<place>. <its title>"``; ``confidence`` the chosen one's."""
    shown = int(torch.isfinite(scores).sum())
    if not shown:
        return Prediction(error="no training product to choose a description from: the references index is empty")
    probs = with_nearest_share(torch.softmax(scores[:shown], dim=-1).tolist(), nearest_share)
    best = max(range(shown), key=probs.__getitem__)
    ranked = {f"{slot}. {c.text}": p for slot, (c, p) in enumerate(zip(candidates, probs, strict=False), start=1)}
    return Prediction(candidates[best].answer, scores=ranked, confidence={f"{best + 1}. {candidates[best].text}": probs[best]})
