"""Constrained decoding: every generated answer is a list of labels from the taxonomy.

A prefix tree holds the token sequences of all labels. At each step a row may only
continue the label it is in; once a label is complete it may also close the answer (EOS)
or, for multi-label answers, emit the separator and start another unused label.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from transformers import LogitsProcessor

SEPARATOR = ","


@dataclass
class _Node:
    children: dict[int, _Node] = field(default_factory=dict)
    label: str | None = None


def _build_tree(sequences: dict[str, list[int]]) -> _Node:
    root = _Node()
    for label, ids in sequences.items():
        node = root
        for token in ids:
            node = node.children.setdefault(token, _Node())
        node.label = label
    return root


@dataclass
class _RowState:
    node: _Node
    used: set[str] = field(default_factory=set)
    done: bool = False


class LabelConstraint(LogitsProcessor):
    """A ``LogitsProcessor`` for one ``generate`` call restricting answers to taxonomy labels.

    ``leading_space`` says whether the first label follows a space-less prompt end
    (``Tags:`` in the alpaca template) and so is tokenized with a leading space, as in training.
    """

    def __init__(self, tokenizer, labels: list[str], multi_label: bool, leading_space: bool):
        self.eos_id = tokenizer.eos_token_id
        self.multi_label = multi_label
        encode = lambda s: tokenizer.encode(s, add_special_tokens=False)  # noqa: E731
        first_prefix = " " if leading_space else ""
        self.first_tree = _build_tree({label: encode(first_prefix + label) for label in labels})
        # After ", " the next label is tokenized with its leading space in any template.
        self.next_tree = _build_tree({label: encode(" " + label) for label in labels})
        separator = encode(SEPARATOR)
        if len(separator) != 1:
            raise ValueError(f"separator {SEPARATOR!r} must be one token, got {separator}")
        self.separator_id = separator[0]
        self.prompt_length: int | None = None

    def start(self) -> _RowState:
        """The state of a row that has generated nothing yet."""
        return _RowState(self.first_tree)

    def allowed(self, row: _RowState) -> list[int]:
        """The tokens ``row`` may emit next."""
        if row.done:
            return [self.eos_id]
        if row.used:
            allowed = [token for token, child in row.node.children.items() if self._has_unused(child, row.used)]
        else:
            allowed = list(row.node.children)
        if row.node.label is not None:
            allowed.append(self.eos_id)
            if self.multi_label and self._has_unused(self.next_tree, row.used | {row.node.label}):
                allowed.append(self.separator_id)
        return allowed

    def _has_unused(self, node: _Node, used: set[str]) -> bool:
        if node.label is not None and node.label not in used:
            return True
        return any(self._has_unused(child, used) for child in node.children.values())

    def advance(self, row: _RowState, token: int) -> None:
        """Move ``row`` past the token it just emitted."""
        if token == self.eos_id or row.done:
            row.done = True
        elif token == self.separator_id and row.node.label is not None:
            row.used.add(row.node.label)
            row.node = self.next_tree
        elif token in row.node.children:
            row.node = row.node.children[token]
        else:
            row.done = True

    def _state(self, generated: list[int]) -> _RowState:
        # Rebuilt from the row's tokens each step, so beam search may reorder rows freely.
        row = self.start()
        for token in generated:
            self.advance(row, token)
        return row

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        if self.prompt_length is None:
            self.prompt_length = input_ids.shape[1]
        mask = torch.full_like(scores, float("-inf"))
        for i, generated in enumerate(input_ids[:, self.prompt_length :].tolist()):
            mask[i, self.allowed(self._state(generated))] = 0.0
        return scores + mask
