"""Stochastic gradient descent (the seed's Eq. 8, w <- w - lr * dz/dw) with
momentum, Nesterov momentum and weight decay exactly as torch.optim.SGD, and
the learning-rate schedules of torch's StepLR and CosineAnnealingLR.

The optimizer holds the model, not its arrays: it reads ``model.params()``
(updated in place) and ``model.grads()`` (replaced by every backward) at
each step, so moving or reloading the model never leaves it stale.
"""
from __future__ import annotations

import math

from gpucnn.nn._array import to_device


class SGD:
    def __init__(self, model, lr, momentum=0.0, dampening=0.0, weight_decay=0.0, nesterov=False):
        if lr < 0 or momentum < 0 or weight_decay < 0:
            raise ValueError(f"lr, momentum and weight_decay must be >= 0, got {lr}, {momentum}, {weight_decay}")
        if nesterov and (momentum <= 0 or dampening != 0):
            raise ValueError("Nesterov momentum needs momentum > 0 and dampening 0 (as torch)")
        self.model = model
        self.lr, self.momentum, self.dampening = lr, momentum, dampening
        self.weight_decay, self.nesterov = weight_decay, nesterov
        self.buffers = {}  # momentum buffers by parameter name, created at the first step

    def step(self):
        params, grads = self.model.params(), self.model.grads()
        missing = sorted(set(params) - set(grads))
        if missing:
            raise RuntimeError(f"SGD.step: no gradient for {missing}; call model.backward first")
        for name, p in params.items():
            g = grads[name]
            if self.weight_decay:
                g = g + self.weight_decay * p
            if self.momentum:
                buf = self.buffers.get(name)
                if buf is None:  # torch starts the buffer at the first gradient, undamped
                    buf = g.copy()
                else:
                    buf *= self.momentum
                    buf += (1 - self.dampening) * g
                self.buffers[name] = buf
                g = g + self.momentum * buf if self.nesterov else buf
            p -= self.lr * g

    def state_dict(self) -> dict:
        return {f"momentum_buffer.{k}": v for k, v in self.buffers.items()}

    def load_state_dict(self, state: dict) -> None:
        params = self.model.params()
        prefix = "momentum_buffer."
        buffers = {}
        for key, v in state.items():
            name = key[len(prefix):] if key.startswith(prefix) else None
            if name not in params or v.shape != params[name].shape:
                raise ValueError(f"optimizer state {key!r} (shape {tuple(v.shape)}) matches no parameter "
                                 f"of the model")
            buffers[name] = to_device(v, self.model.device).astype(params[name].dtype)
        self.buffers = buffers

    def to(self, device):
        self.buffers = {k: to_device(v, device) for k, v in self.buffers.items()}
        return self


class _Schedule:
    """Sets ``optimizer.lr`` from the epoch count; ``step()`` once per epoch."""

    def __init__(self, optimizer):
        self.optimizer = optimizer
        self.base_lr = optimizer.lr
        self.epoch = 0

    def lr_at(self, epoch: int) -> float:
        raise NotImplementedError

    def step(self):
        self.epoch += 1
        self.optimizer.lr = self.lr_at(self.epoch)

    def state_dict(self) -> dict:
        return {"epoch": self.epoch, "base_lr": self.base_lr}

    def load_state_dict(self, state: dict) -> None:
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
