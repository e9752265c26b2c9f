"""Learning-rate schedules as torch's StepLR and CosineAnnealingLR: each sets
``optimizer.lr`` (any gpucnn.nn optimizer) from the number of epochs done."""
from __future__ import annotations

import math


class _Schedule:
    """Sets ``optimizer.lr`` from the epoch count; ``step()`` once per epoch."""

    def __init__(self, optimizer):
        self.optimizer = optimizer
        self.base_lr = optimizer.lr
        self.epoch = 0

    def lr_at(self, epoch: int) -> float:
        """The learning rate after ``epoch`` epochs."""
        raise NotImplementedError

    def step(self):
        """One epoch done: set optimizer.lr for the next."""
        self.epoch += 1
        self.optimizer.lr = self.lr_at(self.epoch)

    def state_dict(self) -> dict:
        """The epoch count and base learning rate (JSON-able)."""
        return {"epoch": self.epoch, "base_lr": self.base_lr}

    def load_state_dict(self, state: dict) -> None:
        """Restore state_dict() and set optimizer.lr to match it."""
        self.epoch, self.base_lr = int(state["epoch"]), float(state["base_lr"])
        self.optimizer.lr = self.lr_at(self.epoch)


class StepLR(_Schedule):
    """lr = base_lr * gamma ** (epoch // step_size)."""

    def __init__(self, optimizer, step_size, gamma=0.1):
        super().__init__(optimizer)
        self.step_size, self.gamma = step_size, gamma

    def lr_at(self, epoch):
        return self.base_lr * self.gamma ** (epoch // self.step_size)


class CosineAnnealingLR(_Schedule):
    """lr = eta_min + (base_lr - eta_min) * (1 + cos(pi * epoch / T_max)) / 2,
    the closed form torch's CosineAnnealingLR follows for epoch <= T_max."""

    def __init__(self, optimizer, T_max, eta_min=0.0):
        super().__init__(optimizer)
        self.T_max, self.eta_min = T_max, eta_min

    def lr_at(self, epoch):
        return self.eta_min + (self.base_lr - self.eta_min) * (1 + math.cos(math.pi * epoch / self.T_max)) / 2
