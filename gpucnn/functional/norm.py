"""Batch normalization of (N, C, H, W) arrays: argument checks and dispatch.
Semantics of ``torch.nn.functional.batch_norm``, with one difference: the
running statistics are returned as new arrays instead of updated in place."""
from __future__ import annotations

import contextlib
import contextvars
import math
import numbers
from typing import NamedTuple

import numpy as np

from gpucnn import _checks as chk
from gpucnn.backend import _is_cupy, call
from gpucnn.runtime import capture


class BatchNormSaved(NamedTuple):
    """What ``batch_norm2d`` returns beside y.

    mean, invstd: the per-channel statistics that normalized x, (C,) arrays of
        x's dtype (the batch's, or the running ones in eval mode; invstd is
        1 / sqrt(var + eps));
    batch_stats: True when they are the batch's (training), so that the
        backward differentiates through them;
    running_mean, running_var: the running statistics after the call: new
        arrays in training, the arrays given in eval mode, None when none
        were given.
    """
    mean: object
    invstd: object
    batch_stats: bool
    running_mean: object
    running_var: object


def _per_channel(name, v, x):
    """None, or a (C,) array of x's dtype."""
    if v is None:
        return None
    if type(v) is type(x) and v.dtype == x.dtype and v.shape == x.shape[1:2]:
        return v  # what the checks below pass unchanged, in one test (~2 us a parameter less)
    v = chk.array(name, v, 1)
    chk.same_dtype(x=x, **{name: v})
    chk.shape_is(name, v, (x.shape[1],), f"one value per channel of x {tuple(x.shape)}")
    return v


def _real(name, v, lo, hi, lo_open):
    # type(v) is float first: the ABC check alone costs ~1 us
    if type(v) is not float and (not isinstance(v, numbers.Real) or isinstance(v, (bool, np.bool_))):
        raise TypeError(f"{name} must be a real number, got {v!r}")
    v = float(v)
    if not (math.isfinite(v) and (v > lo if lo_open else v >= lo) and v <= hi):
        want = f"> {lo}" if lo_open else f"in [{lo}, {hi}]"
        raise ValueError(f"{name} must be {want}, got {v!r}")
    return v


def _full(x, value):
    """A (C,) array of ``value`` of x's kind and dtype, for a gamma or beta left out."""
    if _is_cupy(x):
        import cupy as xp
    else:
        xp = np
    return xp.full(x.shape[1], value, x.dtype)


# Set by ``relu_epilogue``: batch_norm2d then applies a ReLU in its element-wise pass.
_relu_epilogue: contextvars.ContextVar[bool] = contextvars.ContextVar("gpucnn_bn_relu", default=False)


@contextlib.contextmanager
def relu_epilogue():
    """Inside the block, batch_norm2d returns relu(y) from its one element-wise
    pass: how ``Sequential`` fuses a BatchNorm2D and the ReLU after it without
    changing the layer (gpucnn.nn.module)."""
    token = _relu_epilogue.set(True)
    try:
        yield
    finally:
        _relu_epilogue.reset(token)


def batch_norm2d(x, gamma, beta, running_mean=None, running_var=None, training=True, momentum=0.1,
                 eps=1e-5):
    """y = gamma * (x - mean) / sqrt(var + eps) + beta per channel of x (N, C, H, W).

    training=True normalizes with the batch's mean and biased variance and,
    when running_mean and running_var are given, returns them updated as
    torch does: (1 - momentum) * running + momentum * batch statistic, with
    the unbiased variance. training=False normalizes with the running
    statistics, which are then required. gamma and beta may be None (1 and 0).
    x: (N, C, H, W); gamma, beta, running_mean, running_var: (C,) arrays of
    x's dtype; momentum in [0, 1]; eps > 0.
    Returns (y, saved): y shaped as x, and a ``BatchNormSaved`` whose
    running_mean and running_var are the updated statistics; no argument
    is modified.
    """
    x = chk.array("x", x, 4)
    gamma, beta = _per_channel("gamma", gamma, x), _per_channel("beta", beta, x)
    running_mean = _per_channel("running_mean", running_mean, x)
    running_var = _per_channel("running_var", running_var, x)
    if (running_mean is None) != (running_var is None):
        raise ValueError("running_mean and running_var must be given together, got "
                         f"running_mean={'None' if running_mean is None else 'an array'}, "
                         f"running_var={'None' if running_var is None else 'an array'}")
    training = chk.flag("training", training)
    momentum = _real("momentum", momentum, 0.0, 1.0, lo_open=False)
    eps = _real("eps", eps, 0.0, math.inf, lo_open=True)
    gamma = _full(x, 1) if gamma is None else gamma
    beta = _full(x, 0) if beta is None else beta
    if training:
        n = x.size // x.shape[1] if x.shape[1] else 0
        if n < 2:
            raise ValueError(f"batch_norm2d needs more than one value per channel in training, got "
                             f"x shape {tuple(x.shape)}")
        mean, invstd, rm, rv = call("norm", "batch_norm_stats", x, running_mean, running_var,
                                    momentum, eps)
    else:
        if running_mean is None:
            raise ValueError("batch_norm2d with training=False needs running_mean and running_var")
        mean, rm, rv = running_mean, running_mean, running_var
        capture.forbid("batch_norm2d(training=False)", "it sets up invstd with array expressions, "
                       "not kernels; capture training steps")
        # Per-channel set-up on C values, in float64, through the array's own methods.
        invstd = ((running_var.astype(np.float64) + eps) ** -0.5).astype(x.dtype)
    y = call("norm", "batch_norm_apply", x, mean, invstd, gamma, beta, _relu_epilogue.get())
    return y, BatchNormSaved(mean, invstd, training, rm, rv)


def batch_norm2d_backward(dy, x, gamma, saved, eps=1e-5, y=None):
    """Gradients of batch_norm2d with respect to x, gamma and beta.

    dy, x: (N, C, H, W), x the forward's input; gamma: (C,) or None (for 1);
    saved: the ``BatchNormSaved`` the forward returned (with batch
    statistics, the gradient flows through them too). ``eps`` is checked
    but changes nothing: saved.invstd already holds the forward's (as
    torch's native_batch_norm_backward, which takes it too). ``y``, the
    output of batch_norm2d_relu, makes it that op's backward: dy is masked
    where y <= 0 inside the same passes.
    Returns (dx, dgamma, dbeta): dx shaped as x, dgamma and dbeta (C,).
    """
    dy, x = chk.array("dy", dy, 4), chk.array("x", x, 4)
    chk.same_dtype(dy=dy, x=x)
    chk.shape_is("dy", dy, x.shape, "the shape of x")
    if y is not None:
        y = chk.array("y", y, 4)
        chk.same_dtype(dy=dy, y=y)
        chk.shape_is("y", y, x.shape, "the shape of x")
    gamma = _per_channel("gamma", gamma, x)
    if not isinstance(saved, BatchNormSaved):
        raise TypeError(f"saved must be the BatchNormSaved that batch_norm2d returned, got "
                        f"{type(saved).__name__}")
    mean, invstd = _per_channel("saved.mean", saved.mean, x), _per_channel("saved.invstd", saved.invstd, x)
    _real("eps", eps, 0.0, math.inf, lo_open=True)
    batch_stats = chk.flag("saved.batch_stats", saved.batch_stats)
    if batch_stats and x.size // max(x.shape[1], 1) < 2:
        raise ValueError(f"batch_norm2d_backward with batch statistics needs more than one value per "
                         f"channel, got x shape {tuple(x.shape)}")
    gamma = _full(x, 1) if gamma is None else gamma
    return call("norm", "batch_norm_backward", dy, x, mean, invstd, gamma, batch_stats, y)
