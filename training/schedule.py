"""The learning-rate schedule: linear warm-up, then cosine or linear decay to zero.

How far along the decay is: the share of the planned optimizer steps done or, when the run has a
time budget (``train.max_minutes``) and ``train.anneal_to_budget`` is on, the share of the budget
spent, whichever is ahead. A CPU run that its budget cuts before its planned epochs then still
ends with the learning rate near zero, where a step-based cosine would stop halfway down (budgeted
training: Li, Yumer and Ramanan, ICLR 2020). Without a budget it is exactly transformers'
``get_cosine_schedule_with_warmup`` / ``get_linear_schedule_with_warmup``.
"""

from __future__ import annotations

import math

from torch.optim.lr_scheduler import LambdaLR

SCHEDULES = ("cosine", "linear")


class Schedule:
    """The multiplier of the peak learning rate at a step (a ``LambdaLR`` function).

    ``time_share`` is the share of the time budget spent, set by the training loop after every
    optimizer step (0 without a budget); it is saved with the scheduler's state.
    """

    def __init__(self, kind: str, warmup_steps: int, total_steps: int):
        if kind not in SCHEDULES:
            raise ValueError(f"schedule {kind!r} is not one of {SCHEDULES}")
        self.kind, self.warmup_steps, self.total_steps = kind, warmup_steps, max(1, total_steps)
        self.time_share = 0.0

    def __call__(self, step: int) -> float:
        if step < self.warmup_steps:
            return step / max(1, self.warmup_steps)
        warmup = self.warmup_steps / self.total_steps
        share = max(step / self.total_steps, self.time_share)
        done = min(1.0, max(0.0, (share - warmup) / max(1e-9, 1.0 - warmup)))
        if self.kind == "cosine":
            return 0.5 * (1.0 + math.cos(math.pi * done))
        return 1.0 - done


def make_scheduler(optimizer, kind: str, warmup_ratio: float, total_steps: int) -> tuple[LambdaLR, Schedule]:
    """The scheduler to step after every optimizer step, and its :class:`Schedule` (to feed the time share)."""
    schedule = Schedule(kind, math.ceil(warmup_ratio * total_steps), total_steps)
    return LambdaLR(optimizer, schedule), schedule
