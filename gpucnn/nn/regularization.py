"""Batch normalization, through the functional ops batch_norm2d and its
backward (the kernels of kernels/batchnorm.cu on a GPU or the emulator), and
dropout, through dropout and its backward (kernels/dropout.cu)."""
from __future__ import annotations

import numpy as np

from gpucnn import functional as F
from gpucnn.nn._array import to_device, to_host
from gpucnn.nn.module import Module
from gpucnn.runtime import capture


class BatchNorm2D(Module):
    """torch.nn.BatchNorm2d: in training, normalize with the batch's mean and
    biased variance and update running_mean / running_var (the unbiased
    variance) by running = (1 - momentum) * running + momentum * batch; in
    eval mode, normalize with the running statistics. The functional op
    returns the updated statistics; the layer stores them as its buffers.

    x (N, num_features, H, W) -> y of the same shape; parameters weight and
    bias (num_features,) (gamma, beta), buffers running_mean, running_var
    (num_features,) and num_batches_tracked (int64, 0-d). backward(dy)
    returns dx (N, C, H, W) and sets the gradients of weight and bias."""

    def __init__(self, num_features, eps=1e-5, momentum=0.1, *, dtype=np.float32):
        super().__init__()
        self.eps, self.momentum = eps, momentum
        self._params["weight"] = np.ones(num_features, dtype)
        self._params["bias"] = np.zeros(num_features, dtype)
        self._buffers["running_mean"] = np.zeros(num_features, dtype)
        self._buffers["running_var"] = np.ones(num_features, dtype)
        self._buffers["num_batches_tracked"] = np.zeros((), np.int64)

    def forward(self, x):
        if x.ndim != 4 or x.shape[1] != self.weight.shape[0]:
            raise ValueError(f"BatchNorm2D({self.weight.shape[0]}) expects (N, {self.weight.shape[0]}, H, W), "
                             f"got shape {tuple(x.shape)}")
        if self.training and x.size // x.shape[1] < 2:
            raise ValueError(f"BatchNorm2D needs more than one value per channel in training, "
                             f"got shape {tuple(x.shape)}")
        b = self._buffers
        y, saved = F.batch_norm2d(x, self.weight, self.bias, b["running_mean"], b["running_var"],
                                  self.training, self.momentum, self.eps)
        if self.training:
            # In place, so that a captured step keeps updating the buffers the layer holds.
            capture.copy_into(b["running_mean"], saved.running_mean)
            capture.copy_into(b["running_var"], saved.running_var)
            capture.host_effect(self._count_batch)
        self._save(x=x, saved=saved)
        return y

    def _count_batch(self):
        # A host counter: incrementing it needs no launch, in a graph or out of it.
        self._buffers["num_batches_tracked"] = np.asarray(to_host(self._buffers["num_batches_tracked"]) + 1)

    def to(self, device):
        super().to(device)
        self._buffers["num_batches_tracked"] = to_host(self._buffers["num_batches_tracked"])
        return self

    def backward(self, dy):
        return self.backward_through_relu(dy, None)

    def backward_through_relu(self, dy, y):
        """backward for dy given at the output y of a ReLU that followed this
        layer (fused in the forward, gpucnn.nn.fusion): the ReLU's mask y > 0
        inside batch norm's passes. y None: plain backward."""
        x, saved = self._load("x", "saved")
        dx, self._grads["weight"], self._grads["bias"] = F.batch_norm2d_backward(
            dy, x, self.weight, saved, self.eps, y)
        return dx

    def __repr__(self):
        return f"BatchNorm2D({self.weight.shape[0]}, eps={self.eps}, momentum={self.momentum})"


class Dropout(Module):
    """Inverted dropout as torch.nn.Dropout: in training, zero each element with
    probability p and scale the rest by 1/(1-p); identity in eval mode.

    The mask comes from a counter-based generator on the array's device
    (``F.dropout``) seeded once from ``rng``: a run is reproducible and the
    same on every backend, and a captured step draws a new mask each replay.
    Any shape; backward(dy) returns dy times the forward's mask (dy itself
    in eval mode). No parameters."""

    def __init__(self, p=0.5, *, rng=None):
        super().__init__()
        if not 0 <= p < 1:
            raise ValueError(f"dropout probability must lie in [0, 1), got {p}")
        self.p = p
        rng = rng if rng is not None else np.random.default_rng()
        self.state = F.dropout_state(int(rng.integers(2**63)))

    def forward(self, x):
        if not self.training or self.p == 0:
            self._save(mask=None)
            return x
        y, mask = F.dropout(x, self.p, self.state)
        self._save(mask=mask)
        return y

    def backward(self, dy):
        mask = self._load("mask")
        return dy if mask is None else F.dropout_backward(dy, mask)

    def to(self, device):
        super().to(device)
        self.state = to_device(self.state, device)
        return self

    def rng_states(self) -> dict:
        seed, offset = (int(v) for v in to_host(self.state))
        return {"": {"seed": seed, "offset": offset}}

    def set_rng_states(self, states: dict) -> None:
        st = states[""]
        if not isinstance(st, dict) or set(st) != {"seed", "offset"}:
            raise ValueError(f"dropout generator state must be {{'seed', 'offset'}}, got {st!r} (a checkpoint "
                             f"from before dropout drew its masks on the device?)")
        # In place: a captured step keeps reading the same state array.
        self.state[...] = to_device(np.array([st["seed"], st["offset"]], np.uint64), self.device)

    def __repr__(self):
        return f"Dropout(p={self.p})"
