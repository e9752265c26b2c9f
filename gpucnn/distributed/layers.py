"""Layers whose data-parallel form differs from the single-process one.

SyncBatchNorm2D (``--sync-bn``, as PyTorch's SyncBatchNorm): in training the
statistics are those of the global batch, the ranks' per-channel sums
all-reduced (two passes in float64, as the functional op: the sum and count,
then the squared deviations); the backward all-reduces sum(dy) and
sum(dy * xhat), so dx is the single-process one. Without it each rank
normalizes with its own share of the batch (PyTorch DistributedDataParallel's
default) and the run is no longer the single-process one.

ShardedDropout: every rank draws the mask of the whole global batch from the
same generator and keeps its own rows, so the ranks' generators stay equal
(a checkpoint's one state restores them all) and the masks are the
single-process ones.

``convert`` changes the class of the layers in place rather than replacing
them: containers hold their children in their own ways, and every reference
to a layer stays valid.
"""
from __future__ import annotations

import numpy as np

from gpucnn import functional as F
from gpucnn.backend import call
from gpucnn.functional.norm import BatchNormSaved
from gpucnn.nn._array import xp_of
from gpucnn.nn.regularization import BatchNorm2D, Dropout

_AXES = (0, 2, 3)


def _c(v):
    return v.reshape(1, -1, 1, 1)


class SyncBatchNorm2D(BatchNorm2D):
    world = None  # set by convert

    def _allreduce(self, v):
        return self.world.comm_for(v).allreduce_sum(v)

    def forward(self, x):
        if not self.training:
            return super().forward(x)
        xp, c = xp_of(x), self.weight.shape[0]
        if x.ndim != 4 or x.shape[1] != c:
            raise ValueError(f"SyncBatchNorm2D({c}) expects (N, {c}, H, W), got shape {tuple(x.shape)}")
        x64 = x.astype(np.float64)
        sums = xp.empty(c + 1, np.float64)
        sums[:c] = x64.sum(axis=_AXES)
        sums[c] = x.size // c
        self._allreduce(sums)
        count = float(sums[c])
        if count < 2:
            raise ValueError(f"SyncBatchNorm2D needs more than one value per channel over all ranks, "
                             f"got {count:.0f}")
        mean = sums[:c] / count
        var = self._allreduce(((x64 - _c(mean)) ** 2).sum(axis=_AXES)) / count
        invstd = 1.0 / xp.sqrt(var + self.eps)
        saved_mean, saved_invstd = mean.astype(x.dtype), invstd.astype(x.dtype)
        y = call("norm", "batch_norm_apply", x, saved_mean, saved_invstd, self.weight, self.bias)
        b, m = self._buffers, self.momentum
        b["running_mean"] = ((1 - m) * b["running_mean"].astype(np.float64) + m * mean).astype(x.dtype)
        b["running_var"] = ((1 - m) * b["running_var"].astype(np.float64)
                            + m * var * (count / (count - 1))).astype(x.dtype)
        b["num_batches_tracked"] = b["num_batches_tracked"] + 1
        saved = BatchNormSaved(saved_mean, saved_invstd, True, b["running_mean"], b["running_var"])
        self._save(x=x, saved=saved, count=count)
        return y

    def backward(self, dy):
        x, saved = self._load("x", "saved")
        if not saved.batch_stats:
            return super().backward(dy)
        xp, c = xp_of(x), self.weight.shape[0]
        count = self._saved["count"]
        invstd = saved.invstd.astype(np.float64)
        xhat = (x.astype(np.float64) - _c(saved.mean.astype(np.float64))) * _c(invstd)
        dy64 = dy.astype(np.float64)
        local = xp.empty(2 * c, np.float64)
        local[:c] = dy64.sum(axis=_AXES)
        local[c:] = (dy64 * xhat).sum(axis=_AXES)
        self._grads["bias"], self._grads["weight"] = local[:c].astype(x.dtype), local[c:].astype(x.dtype)
        total = self._allreduce(local.copy()) / count
        scale = _c(self.weight.astype(np.float64) * invstd)
        return (scale * (dy64 - _c(total[:c]) - xhat * _c(total[c:]))).astype(x.dtype)


class ShardedDropout(Dropout):
    world = None  # set by convert

    def forward(self, x):
        if not self.training or self.p == 0:
            return super().forward(x)
        w = self.world
        if x.shape[0] != w.step.n_local:
            raise ValueError(f"ShardedDropout: a batch of {x.shape[0]} rows, but this rank's share of the "
                             f"step is {w.step.n_local}; batches must come from the distributed sampler")
        # The mask of the whole global batch (the generator advances as in one
        # process), of which this rank's rows are rank, rank + N, ...
        xp = xp_of(x)
        _, mask = F.dropout(xp.ones((w.step.n_global, *x.shape[1:]), x.dtype), self.p, self.state)
        mask = xp.ascontiguousarray(mask[w.rank::w.size])
        self._save(mask=mask)
        return F.dropout_backward(x, mask)  # x * mask, as the single-process forward computes it


def _modules(module):
    yield module
    for _, child in module.children():
        yield from _modules(child)


def convert(model, world, sync_bn: bool = False):
    """Give ``model``'s dropout layers (and with ``sync_bn`` its batch-norm
    layers) their data-parallel class, in place; returns the model."""
    for m in _modules(model):
        if type(m) is Dropout:
            m.__class__, m.world = ShardedDropout, world
        elif sync_bn and type(m) is BatchNorm2D:
            m.__class__, m.world = SyncBatchNorm2D, world
    return model
