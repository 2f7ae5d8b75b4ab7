"""How sure an answer is: the probability of each label the model wrote, and the review mark.

For generated answers a label's confidence is the product of its tokens' probabilities under the
distribution the model actually decoded from (after the taxonomy constraint, so the alternatives
are other taxonomy labels). Head adapters give theirs directly (sigmoid per tag, softmax over
categories). A label below the adapter's review threshold (``RunInfo.review_threshold``, chosen on
the validation split at the end of training) is marked for review.
"""

from __future__ import annotations

import math

from catalog_lora.records.labels import Taxonomy


def label_confidences(
    tokens: list[int], logprobs: list[float], tokenizer, taxonomy: Taxonomy, separator_id: int | None
) -> dict[str, float]:
    """``{label: probability}`` for the labels of one generated answer.

    The answer is cut at EOS; with ``separator_id`` (multi-label answers) each label is the run of
    tokens between separators, else the whole answer is one label. A piece that is not a taxonomy
    label gets no confidence; a repeated label keeps its first."""
    pieces: list[tuple[list[int], float]] = [([], 0.0)]
    for token, logprob in zip(tokens, logprobs, strict=True):
        if token == tokenizer.eos_token_id:
            break
        if token == separator_id:
            pieces.append(([], 0.0))
            continue
        ids, total = pieces[-1]
        pieces[-1] = (ids + [token], total + logprob)
    confidence: dict[str, float] = {}
    for ids, total in pieces:
        label = taxonomy.canonical(tokenizer.decode(ids, skip_special_tokens=True).strip()) if ids else None
        if label is not None and label not in confidence:
            confidence[label] = math.exp(total)
    return confidence


def low_confidence(confidence: dict[str, float], labels: list[str], threshold: float | None) -> list[str]:
    """The chosen labels whose confidence is below ``threshold`` (none when there is no threshold)."""
    if threshold is None:
        return []
    return [label for label in labels if confidence.get(label, 0.0) < threshold]


def choose_threshold(answers: list[tuple[float, bool]]) -> float:
    """The review threshold for ``(confidence, correct)`` answers.

    The flag "confidence below the threshold" should catch the wrong answers and spare the right
    ones: the threshold maximizes the number of answers it classifies correctly (wrong ones below,
    right ones at or above), on a grid of 0.00 to 1.00 in steps of 0.01; ties go to the lowest
    threshold, so fewer answers are sent to review. No answers: 0.5."""
    if not answers:
        return 0.5
    grid = [i / 100 for i in range(101)]
    hits = [sum((conf >= t) == correct for conf, correct in answers) for t in grid]
    return grid[hits.index(max(hits))]
