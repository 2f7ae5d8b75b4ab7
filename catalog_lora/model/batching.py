"""Cutting an ordered list of rows into batches, by rows or by tokens, and padding a batch's rows to one
width: the rules that training (:func:`training.data.length_grouped_batches`, :class:`training.data.Collator`)
and the engine (:meth:`catalog_lora.inference.engine.Engine.predict`, a description head's candidates) share.

A batch costs what its longest row costs times its rows (every row is padded to the longest), so a
token budget counts ``rows x longest``. Rows in length order then make short rows fill a large batch
and long rows a small one: the device does about the same work each call, which is what keeps a
GPU busy on a catalog of 3-word titles and 200-word reviews alike.
"""

from __future__ import annotations

from collections.abc import Sequence


def cut_batches(order: Sequence[int], lengths: Sequence[int], max_rows: int, max_tokens: int = 0) -> list[list[int]]:
    """``order`` cut into consecutive batches of at most ``max_rows`` rows and, with ``max_tokens``, at most
    ``max_tokens`` padded tokens (``rows x the longest row``); a row longer than the budget is a batch alone.
    Every index of ``order`` is in exactly one batch, in order."""
    if max_rows < 1:
        raise ValueError(f"max_rows={max_rows} must be at least 1")
    if max_tokens < 0:
        raise ValueError(f"max_tokens={max_tokens} must be 0 (rows only) or positive")
    batches: list[list[int]] = []
    batch: list[int] = []
    longest = 0
    for index in order:
        width = max(longest, lengths[index])
        if batch and (len(batch) == max_rows or (max_tokens and (len(batch) + 1) * width > max_tokens)):
            batches.append(batch)
            batch, width = [], lengths[index]
        batch.append(index)
        longest = width
    if batch:
        batches.append(batch)
    return batches


def pad_rows(rows: Sequence[Sequence], fill, width: int | None = None, left: bool = False) -> list[list]:
    """Each row cut to ``width`` (default: the longest row's length) and padded with ``fill`` up to it, on the
    right, or on the left (``left``: a generation prompt, whose answer must end in the last column)."""
    width = max(len(row) for row in rows) if width is None else width
    padded = []
    for row in rows:
        row = list(row[:width])
        pad = [fill] * (width - len(row))
        padded.append(pad + row if left else row + pad)
    return padded
