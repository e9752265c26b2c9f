"""Batch normalization and dropout: element-wise array arithmetic through the
array module of the input (NumPy or CuPy), since no functional op covers them."""
from __future__ import annotations

import numpy as np

from gpucnn.nn._array import to_device, xp_of
from gpucnn.nn.module import Module


class BatchNorm2D(Module):
    """torch.nn.BatchNorm2d: in training, normalize with the batch's mean and
    biased variance and update running_mean / running_var (the unbiased
    variance) by running = (1 - momentum) * running + momentum * batch; in
    eval mode, normalize with the running statistics."""

    def __init__(self, num_features, eps=1e-5, momentum=0.1, *, dtype=np.float32):
        super().__init__()
        self.eps, self.momentum = eps, momentum
        self._params["weight"] = np.ones(num_features, dtype)
        self._params["bias"] = np.zeros(num_features, dtype)
        self._buffers["running_mean"] = np.zeros(num_features, dtype)
        self._buffers["running_var"] = np.ones(num_features, dtype)
        self._buffers["num_batches_tracked"] = np.zeros((), np.int64)

    @staticmethod
    def _c(v):
        return v.reshape(1, -1, 1, 1)

    def forward(self, x):
        if x.ndim != 4 or x.shape[1] != self.weight.shape[0]:
            raise ValueError(f"BatchNorm2D({self.weight.shape[0]}) expects (N, {self.weight.shape[0]}, H, W), "
                             f"got shape {tuple(x.shape)}")
        xp = xp_of(x)
        if self.training:
            n = x.size // x.shape[1]
            if n < 2:
                raise ValueError(f"BatchNorm2D needs more than one value per channel in training, "
                                 f"got shape {tuple(x.shape)}")
            mean, var = x.mean(axis=(0, 2, 3)), x.var(axis=(0, 2, 3))
            m, b = self.momentum, self._buffers
            b["running_mean"] = (1 - m) * b["running_mean"] + m * mean
            b["running_var"] = (1 - m) * b["running_var"] + m * var * (n / (n - 1))
            b["num_batches_tracked"] = b["num_batches_tracked"] + 1
        else:
            mean, var = self.running_mean, self.running_var
        inv_std = (1 / xp.sqrt(var + self.eps)).astype(x.dtype)
        xhat = (x - self._c(mean)) * self._c(inv_std)
        self._save(xhat=xhat, inv_std=inv_std, batch_stats=self.training)
        return xhat * self._c(self.weight) + self._c(self.bias)

    def backward(self, dy):
        xhat, inv_std, batch_stats = self._load("xhat", "inv_std", "batch_stats")
        axes = (0, 2, 3)
        self._grads["weight"] = (dy * xhat).sum(axis=axes)
        self._grads["bias"] = dy.sum(axis=axes)
        dxhat = dy * self._c(self.weight)
        if not batch_stats:  # running statistics are constants
            return dxhat * self._c(inv_std)
        # The batch mean and variance depend on x: the standard closed form of
        # d/dx of (x - mean) / sqrt(var + eps), with n values per channel.
        mean_d = dxhat.mean(axis=axes, keepdims=True)
        mean_dx = (dxhat * xhat).mean(axis=axes, keepdims=True)
        return (dxhat - mean_d - xhat * mean_dx) * self._c(inv_std)

    def __repr__(self):
        return f"BatchNorm2D({self.weight.shape[0]}, eps={self.eps}, momentum={self.momentum})"


class Dropout(Module):
    """Inverted dropout as torch.nn.Dropout: in training, zero each element with
    probability p and scale the rest by 1/(1-p); identity in eval mode.

    The mask is drawn on the host from one seeded generator whatever the
    device, so a run is reproducible and the same on every backend."""

    def __init__(self, p=0.5, *, rng=None):
        super().__init__()
        if not 0 <= p < 1:
            raise ValueError(f"dropout probability must lie in [0, 1), got {p}")
        self.p = p
        self.rng = rng if rng is not None else np.random.default_rng()

    def forward(self, x):
        if not self.training or self.p == 0:
            self._save(mask=None)
            return x
        keep = self.rng.random(x.shape) >= self.p
        mask = (keep / (1 - self.p)).astype(x.dtype)
        if xp_of(x) is not np:
            mask = to_device(mask, "cuda")
        self._save(mask=mask)
        return x * mask

    def backward(self, dy):
        mask = self._load("mask")
        return dy if mask is None else dy * mask

    def rng_states(self) -> dict:
        return {"": self.rng.bit_generator.state}

    def set_rng_states(self, states: dict) -> None:
        self.rng.bit_generator.state = states[""]

    def __repr__(self):
        return f"Dropout(p={self.p})"
