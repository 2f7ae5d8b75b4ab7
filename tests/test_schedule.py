"""The learning-rate schedule: transformers' schedules without a budget, annealed by the budget with one."""

import pytest
import torch
from transformers import get_cosine_schedule_with_warmup, get_linear_schedule_with_warmup

from training.schedule import Schedule, make_scheduler


def _optimizer():
    return torch.optim.SGD([torch.nn.Parameter(torch.zeros(2))], lr=1e-3)


@pytest.mark.parametrize("kind, reference", [("cosine", get_cosine_schedule_with_warmup), ("linear", get_linear_schedule_with_warmup)])
def test_without_a_budget_it_is_the_transformers_schedule(kind, reference):
    ours, _ = make_scheduler(_optimizer(), kind, 0.1, 50)
    theirs = reference(_optimizer(), 5, 50)
    for _ in range(50):
        assert ours.get_last_lr()[0] == pytest.approx(theirs.get_last_lr()[0], abs=1e-12)
        for scheduler in (ours, theirs):
            scheduler.optimizer.step()
            scheduler.step()


def test_the_budget_share_moves_the_decay_ahead_of_the_steps():
    schedule = Schedule("cosine", warmup_steps=10, total_steps=100)
    assert schedule(55) == pytest.approx(0.5)  # halfway through the decay by steps
    schedule.time_share = 0.55  # ... and by time: the same
    assert schedule(20) == pytest.approx(0.5)
    schedule.time_share = 1.0  # the budget is spent: annealed, whatever the step
    assert schedule(20) == pytest.approx(0.0, abs=1e-12)
    schedule.time_share = 0.05  # behind the steps: the steps lead
    assert schedule(55) == pytest.approx(0.5)
    assert schedule(5) == pytest.approx(0.5)  # warm-up stays by steps


def test_the_time_share_is_saved_with_the_scheduler_for_a_resumed_run():
    scheduler, schedule = make_scheduler(_optimizer(), "linear", 0.0, 100)
    schedule.time_share = 0.7
    state = scheduler.state_dict()
    resumed, resumed_schedule = make_scheduler(_optimizer(), "linear", 0.0, 100)
    resumed.load_state_dict(state)
    assert resumed_schedule.time_share == 0.7


def test_an_unknown_schedule_is_refused():
    with pytest.raises(ValueError, match="'step' is not one of"):
        Schedule("step", 0, 10)
