"""``FiniteLoss``: one synchronisation per step, whatever the number of parameters; the decision is every rank's."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch

from inr_lightning.callbacks import FiniteLoss
from inr_lightning.errors import RunStopped


class Strategy:
    """Two ranks seen from rank 0: ``all_gather`` stacks this rank's row with ``other`` (rank 1's), and counts."""

    def __init__(self, other: list[float]) -> None:
        self.other, self.gathers = torch.tensor(other), 0

    def all_gather(self, tensor, group=None, sync_grads=False):
        self.gathers += 1
        return torch.stack([tensor, self.other])

    def reduce_boolean_decision(self, *args, **kwargs):   # the old per-check collective: must not be used
        raise AssertionError("FiniteLoss must gather once per step, not reduce per check")


def step(callback: FiniteLoss, module: torch.nn.Module, loss: float, strategy: Strategy) -> None:
    trainer = SimpleNamespace(world_size=2, strategy=strategy, global_step=7, current_epoch=1, checkpoint_callbacks=[])
    for p in module.parameters():
        p.grad = torch.ones_like(p)
    callback.on_before_backward(trainer, module, torch.tensor(loss))
    callback.on_before_optimizer_step(trainer, module, None)


def test_one_gather_per_step_for_many_parameters_and_a_nan_on_the_other_rank_stops_this_one():
    module = torch.nn.Sequential(*[torch.nn.Linear(3, 3) for _ in range(20)])   # 40 parameters
    callback, fine = FiniteLoss(), Strategy([0.5, 1.0, 1.0])
    for _ in range(3):
        step(callback, module, 0.25, fine)
    assert fine.gathers == 3   # one per step, not one per parameter or per check
    # Rank 1's loss was NaN: rank 0, whose own loss and gradients are finite, stops at the same step.
    with pytest.raises(RunStopped, match=r"^non-finite training loss \(nan on rank 1 of 2\) at step 7 \(epoch 1\)"):
        step(callback, module, 0.25, Strategy([math.nan, 0.0, 1.0]))
    # Rank 1's gradients overflowed (its loss was finite).
    with pytest.raises(RunStopped, match=r"^non-finite gradient at step 7"):
        step(callback, module, 0.25, Strategy([0.5, 1.0, 0.0]))
    # This rank's own gradient is inf: found on the device and read with the other checks, in the step's one gather.
    trainer = SimpleNamespace(world_size=2, strategy=fine, global_step=7, current_epoch=1, checkpoint_callbacks=[])
    callback.on_before_backward(trainer, module, torch.tensor(0.25))
    for p in module.parameters():
        p.grad = torch.ones_like(p)
    module[5].bias.grad[0] = math.inf
    with pytest.raises(RunStopped, match=r"^non-finite gradient at step 7"):
        callback.on_before_optimizer_step(trainer, module, None)
    assert fine.gathers == 4
