"""Optimizer steps, the NumPy way: the oracle for kernels/optim.cu and the CPU backend.

Same interface as the kernels (gpucnn.cuda.optim): the parameters and their
gradients as lists of arrays (the parameters updated in place), the state of
every tensor in flat arrays cut at ``offsets``, and ``scal`` (float64, 6): lr,
steps done t, beta1^t, beta2^t, lr / (1 - beta1^t), 1 / sqrt(1 - beta2^t),
advanced here by one step as optim_advance does. The arithmetic is written
per tensor from torch.optim's single-tensor formulas (torch/optim/sgd.py,
adam.py), whole arrays at a time, not element by element as in the kernels.
"""
from __future__ import annotations

import numpy as np


def advance(scal: np.ndarray, beta1: float, beta2: float) -> None:
    """Count one step and update the bias corrections in ``scal``, in place."""
    scal[1] += 1.0
    scal[2] *= beta1
    scal[3] *= beta2
    scal[4] = scal[0] / (1.0 - scal[2])
    scal[5] = 1.0 / np.sqrt(1.0 - scal[3])


def _views(flat, offsets, params):
    return [flat[offsets[k]:offsets[k + 1]].reshape(p.shape) for k, p in enumerate(params)]


def sgd_step(params, grads, offsets, buf, scal, momentum, dampening, weight_decay, nesterov) -> None:
    """torch.optim.SGD's step: g += wd * p; buf = g at the first step, else
    momentum * buf + (1 - dampening) * g; g = g + momentum * buf (Nesterov) or
    buf; p -= lr * g."""
    advance(scal, 0.0, 0.0)
    lr, first = scal[0], scal[1] == 1.0
    bufs = _views(buf, offsets, params) if momentum else [None] * len(params)
    for p, g, b in zip(params, grads, bufs):
        dt = p.dtype.type
        if weight_decay:
            g = g + dt(weight_decay) * p
        if momentum:
            b[...] = g if first else b * dt(momentum) + g * (1 - dt(dampening))
            g = g + dt(momentum) * b if nesterov else b
        p -= dt(lr) * g


def adam_step(params, grads, offsets, m, v, vmax, scal, beta1, beta2, eps, weight_decay, decoupled,
              amsgrad) -> None:
    """torch.optim.Adam's step (AdamW's when ``decoupled``): the first and
    second moments m, v of the gradient (with weight_decay * p added to it, or
    p scaled by 1 - lr * weight_decay for AdamW), then
    p -= lr / (1 - beta1^t) * m / (sqrt(v or max(vmax, v)) / sqrt(1 - beta2^t) + eps)."""
    advance(scal, beta1, beta2)
    lr, step_size, inv_bc2_sqrt = scal[0], scal[4], scal[5]
    ms, vs = _views(m, offsets, params), _views(v, offsets, params)
    vmaxes = _views(vmax, offsets, params) if amsgrad else [None] * len(params)
    for p, g, mk, vk, vmk in zip(params, grads, ms, vs, vmaxes):
        dt = p.dtype.type
        if weight_decay and decoupled:
            p *= 1 - dt(lr) * dt(weight_decay)
        elif weight_decay:
            g = g + dt(weight_decay) * p
        mk += (1 - dt(beta1)) * (g - mk)
        vk[...] = vk * dt(beta2) + (1 - dt(beta2)) * g * g
        second = vk
        if amsgrad:
            np.maximum(vmk, vk, out=vmk)
            second = vmk
        p -= dt(step_size) * (mk / (np.sqrt(second) * dt(inv_bc2_sqrt) + dt(eps)))
