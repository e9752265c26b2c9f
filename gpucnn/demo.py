"""A small demonstration of the functional API: a conv -> ReLU -> max-pool ->
linear net trained by hand-written backward passes and plain SGD (the seed's
Eq. 8) on a synthetic two-class image problem, on whichever backend is
selected (NumPy by default)."""
from __future__ import annotations

import time

import numpy as np

import gpucnn as F


def _data(rng, n=256):
    """8x8 images: class 1 has a bright vertical bar, class 0 a horizontal one."""
    x = rng.normal(0, 0.3, size=(n, 1, 8, 8)).astype(np.float32)
    labels = rng.integers(0, 2, size=n)
    pos = rng.integers(1, 7, size=n)
    for i in range(n):  # building the toy data set, not part of any op
        if labels[i]:
            x[i, 0, :, pos[i]] += 1.0
        else:
            x[i, 0, pos[i], :] += 1.0
    return x, labels.astype(np.int64)


def run(steps: int = 60, lr: float = 0.1, seed: int = 0, out=print) -> float:
    """Train for ``steps`` SGD steps; returns the final training accuracy."""
    rng = np.random.default_rng(seed)
    x, labels = _data(rng)
    w1 = (rng.normal(0, 0.5, size=(4, 1, 3, 3))).astype(np.float32)
    b1 = np.zeros(4, np.float32)
    w2 = (rng.normal(0, 0.2, size=(2, 4 * 4 * 4))).astype(np.float32)
    b2 = np.zeros(2, np.float32)
    t0 = time.perf_counter()
    for step in range(steps + 1):
        h1 = F.conv2d(x, w1, b1, padding=1)                 # (N, 4, 8, 8)
        a1 = F.relu(h1)
        p1, idx = F.max_pool2d(a1, 2, return_indices=True)  # (N, 4, 4, 4)
        logits = F.linear(p1.reshape(len(x), -1), w2, b2)
        loss, dlogits = F.softmax_cross_entropy(logits, labels)
        acc = float((logits.argmax(1) == labels).mean())
        if step % 20 == 0:
            out(f"step {step:3d}  loss {float(loss):.4f}  accuracy {acc:.3f}")
        if step == steps:
            break
        dp1, dw2, db2 = F.linear_backward(dlogits, p1.reshape(len(x), -1), w2)
        da1 = F.max_pool2d_backward(dp1.reshape(p1.shape), a1, 2, indices=idx)
        dh1 = F.relu_backward(da1, h1)
        _, dw1, db1 = F.conv2d_backward(dh1, x, w1, padding=1)
        for p, g in ((w1, dw1), (b1, db1), (w2, dw2), (b2, db2)):
            p -= lr * g  # the seed's SGD step, Eq. 8
    out(f"{steps} steps in {time.perf_counter() - t0:.2f} s on backend {F.backend.current()!r}")
    return acc
