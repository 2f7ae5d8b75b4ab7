"""The engine's decoding loop: batched generation without ``generate``, for short label answers.

Profiling one batch of ``generate`` on one CPU thread (bench/results/speed.md) showed where its
time goes besides the decoder's own matmuls: the 49k-column output layer on every row at every
step, rows that have finished still being run (padding) until the longest answer ends, and
per-step bookkeeping of the logits processors. This loop, per step:

- runs the decoder for the rows still generating only, dropping finished rows from the batch and
  from the KV cache (a finished answer costs nothing more);
- computes the output layer on the last position only, and under the taxonomy constraint only on
  the token columns some row may choose (the others get probability 0 anyway);
- advances each row's constraint state by its one new token instead of re-reading the answer.

It gives the same answers as ``generate`` with the same processors (``tests/test_engine.py``);
the recorded log-probabilities are those of the distribution decoded from, after the constraint
and before temperature and top-k (as ``TokenLogProbs`` records them under ``generate``).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from catalog_lora.inference.constrained import LabelConstraint


@dataclass
class Decoded:
    """Each row's new tokens (through its stop token), their log-probabilities, and the cost."""

    tokens: list[list[int]]
    logprobs: list[list[float]]
    positions: int


@dataclass
class Sampling:
    """Sampling settings; greedy when ``temperature`` is ``None``."""

    temperature: float | None = None
    top_k: int = 50


def positions_from_mask(mask: torch.Tensor) -> torch.Tensor:
    """Position ids of a left-padded batch, as ``generate`` derives them (padding at 0)."""
    return (mask.long().cumsum(-1) - 1).masked_fill(mask == 0, 0)


@torch.inference_mode()
def decode(
    decoder,
    head: torch.Tensor,
    batch: dict[str, torch.Tensor],
    cache,
    prefix: int,
    *,
    max_new_tokens: int,
    eos_id: int,
    stop: torch.Tensor | None = None,
    constraint: LabelConstraint | None = None,
    sampling: Sampling | None = None,
) -> Decoded:
    """Generate up to ``max_new_tokens`` for each row of ``batch`` (left-padded ``input_ids`` and
    ``attention_mask``).

    ``decoder`` is the transformer without its output layer (``LlamaModel``: returns the last
    hidden states), ``head`` the output layer's weight ``[vocab, hidden]``. ``cache`` holds the
    first ``prefix`` positions of every row already (0: an empty cache). A row ends at EOS or at a
    token whose ``stop`` entry is true (kept in its answer).
    """
    sampling = sampling or Sampling()
    ids, mask = batch["input_ids"], batch["attention_mask"]
    rows = ids.shape[0]
    positions = positions_from_mask(mask)
    hidden = decoder(
        input_ids=ids[:, prefix:],
        attention_mask=mask,
        position_ids=positions[:, prefix:],
        past_key_values=cache,
        use_cache=True,
    ).last_hidden_state[:, -1]
    cost = ids[:, prefix:].numel()
    active = list(range(rows))  # original row index of each row still in the batch
    states = [constraint.start() for _ in range(rows)] if constraint else None
    tokens: list[list[int]] = [[] for _ in range(rows)]
    logprobs: list[list[float]] = [[] for _ in range(rows)]
    next_position = positions[:, -1] + 1
    for step in range(max_new_tokens):
        scores, columns = _scores(hidden, head, [states[i] for i in active] if states else None, constraint)
        chosen = _choose(scores, sampling)
        picked = torch.log_softmax(scores, dim=-1).gather(1, chosen[:, None]).squeeze(1).tolist()
        chosen = columns[chosen] if columns is not None else chosen
        keep = []
        for slot, (row, token, logprob) in enumerate(zip(active, chosen.tolist(), picked, strict=True)):
            tokens[row].append(token)
            logprobs[row].append(logprob)
            if states:
                constraint.advance(states[row], token)
            if token != eos_id and not (stop is not None and stop[token]):
                keep.append(slot)
        if not keep or step == max_new_tokens - 1:
            break
        if len(keep) < len(active):
            index = torch.tensor(keep, device=ids.device)
            cache.batch_select_indices(index)
            mask, chosen, next_position = mask[index], chosen[index], next_position[index]
            active = [active[slot] for slot in keep]
        mask = torch.cat([mask, mask.new_ones(len(active), 1)], dim=1)
        hidden = decoder(
            input_ids=chosen[:, None],
            attention_mask=mask,
            position_ids=next_position[:, None],
            past_key_values=cache,
            use_cache=True,
        ).last_hidden_state[:, -1]
        next_position = next_position + 1
        cost += len(active)
    return Decoded(tokens, logprobs, cost)


def _scores(hidden, head, states, constraint) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The output layer for the last position: every column, or under the constraint only the
    columns some row may choose (``-inf`` where that row may not). Returns the scores and the
    vocabulary id of each column (``None``: all of them, in order)."""
    if constraint is None:
        return (hidden @ head.T).float(), None
    allowed = [constraint.allowed(state) for state in states]
    vocabulary = sorted(set().union(*allowed))
    column = {token: j for j, token in enumerate(vocabulary)}
    columns = torch.tensor(vocabulary, device=hidden.device)
    scores = (hidden @ head[columns].T).float()
    mask = torch.full_like(scores, float("-inf"))
    for i, tokens in enumerate(allowed):
        mask[i, [column[t] for t in tokens]] = 0.0
    return scores + mask, columns


def _choose(scores: torch.Tensor, sampling: Sampling) -> torch.Tensor:
    if sampling.temperature is None:
        return scores.argmax(dim=-1)
    warped = scores / sampling.temperature
    if sampling.top_k and sampling.top_k < warped.shape[-1]:
        kth = warped.topk(sampling.top_k, dim=-1).values[:, -1:]
        warped = warped.masked_fill(warped < kth, float("-inf"))
    return torch.multinomial(torch.softmax(warped, dim=-1), 1).squeeze(1)
