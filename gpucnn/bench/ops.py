"""What each backend runs for a case and a pass, and the inputs it runs on.

``build(case, direction, backend, device, copies)`` returns ``(fn, inputs)``:
``fn(*inputs[i])`` is one call of the op, and ``inputs`` holds ``copies``
independent input sets, rotated between calls so a small case does not run
from cache. Backends:

* ``gpucnn``: this library through its internal dispatch (``backend.call``),
  so a pass runs alone (the public ``conv2d_backward`` computes dx, dw and db
  together); NumPy arrays on the CPU, CuPy arrays on a GPU;
* ``torch``: PyTorch's own op for the same pass, on the CPU or on CUDA
  (cuDNN), through ``torch.ops.aten`` where the public API bundles passes.
"""
from __future__ import annotations

import functools

import numpy as np

from gpucnn import backend
from gpucnn.functional.conv import _conv_geometry
from gpucnn.functional.pool import _pool_window


def _arrays(case, rng):
    """NumPy float32 inputs of one call: a dict of named arrays."""
    def r(*shape):
        return rng.standard_normal(shape, dtype=np.float32)

    c = case
    if c.kind == "conv":
        P, Q = c.out_hw()
        return {"x": r(c.N, c.C, c.H, c.W), "w": r(c.K, c.C // c.groups, c.R, c.S),
                "dy": r(c.N, c.K, P, Q)}
    x = r(c.N, c.C, c.H, c.W)
    P, Q = c.out_hw()
    a = {"x": x, "dy": r(c.N, c.C, P, Q)}
    if c.op == "batchnorm":  # the statistics of x, the affine pair, running statistics to update
        var = x.var((0, 2, 3), dtype=np.float64)
        a.update(mean=x.mean((0, 2, 3), dtype=np.float64).astype(np.float32), var=var.astype(np.float32),
                 invstd=(1 / np.sqrt(var + EPS)).astype(np.float32), gamma=r(c.C), beta=r(c.C),
                 running_mean=np.zeros(c.C, np.float32), running_var=np.ones(c.C, np.float32))
    return a


def to_backend(a, backend_name, device):
    """NumPy array a as the backend takes it: a tensor for torch, a CuPy array for ours on a GPU."""
    if backend_name == "torch":
        import torch
        return torch.from_numpy(a).to(device)
    if device == "cuda":
        import cupy as cp
        return cp.asarray(a)
    return a


@functools.lru_cache(maxsize=1)
def _host_sets(case, copies, seed):
    """The NumPy input sets of a case, made once for all its passes and backends (the bench
    times one case at a time): drawing 100 MB tensors took most of a memory-bound step's time
    (gpu.sh's 5a), and each backend of each pass drew the same ones again."""
    rng = np.random.default_rng(seed)
    sets = [_arrays(case, rng) for _ in range(copies)]
    if case.kind == "mem" and case.op == "max_pool":  # the backward's argmax
        from gpucnn.reference.pool import max_pool2d_forward
        for a in sets:
            a["idx"] = max_pool2d_forward(a["x"], _win(case))[1]
    return sets


def _inputs(case, backend_name, device, copies, seed):
    # A copy of each array on the CPU: backends must not share one (PyTorch updates batch norm's
    # running statistics in place, and torch.from_numpy shares the memory).
    return [{k: to_backend(v.copy() if device == "cpu" else v, backend_name, device) for k, v in a.items()}
            for a in _host_sets(case, copies, seed)]


def _win(case):
    return _pool_window((case.N, case.C, case.H, case.W), case.k, case.stride, case.pad, 1, False, "bench")


MOMENTUM, EPS = 0.1, 1e-5  # BatchNorm2D's defaults


def _gpucnn_fn(case, direction):
    call = backend.call
    if case.kind == "conv":
        g = _conv_geometry((case.N, case.C, case.H, case.W), (case.K, case.C // case.groups, case.R, case.S),
                           case.stride, case.pad, case.dilation, case.groups)
        return {"forward": lambda a: call("conv", "conv2d_forward", a["x"], a["w"], None, g),
                "backward_data": lambda a: call("conv", "conv2d_backward_data", a["dy"], a["w"], g),
                "backward_filter": lambda a: call("conv", "conv2d_backward_filter", a["dy"], a["x"], g),
                }[direction]
    if case.op == "relu":
        return {"forward": lambda a: call("relu", "relu_forward", a["x"], 0.0),
                "backward": lambda a: call("relu", "relu_backward", a["dy"], a["x"], 0.0)}[direction]
    if case.op == "batchnorm":
        return {"stats": lambda a: call("norm", "batch_norm_stats", a["x"], a["running_mean"], a["running_var"],
                                        MOMENTUM, EPS)[:2],
                "forward": lambda a: call("norm", "batch_norm_apply", a["x"], a["mean"], a["invstd"], a["gamma"],
                                          a["beta"]),
                "backward": lambda a: call("norm", "batch_norm_backward", a["dy"], a["x"], a["mean"], a["invstd"],
                                           a["gamma"], True)}[direction]
    if case.op == "bias_grad":
        return {"backward": lambda a: call("conv", "conv2d_backward_bias", a["dy"])}[direction]
    win = _win(case)
    if case.op == "max_pool":
        return {"forward": lambda a: call("pool", "max_pool2d_forward", a["x"], win),
                "backward": lambda a: call("pool", "max_pool2d_backward", a["dy"], a["idx"], win)}[direction]
    return {"forward": lambda a: call("pool", "avg_pool2d_forward", a["x"], win, True),
            "backward": lambda a: call("pool", "avg_pool2d_backward", a["dy"], win, True)}[direction]


def _torch_fn(case, direction):
    import torch
    aten = torch.ops.aten
    c = case
    if c.kind == "conv":
        s, p, d = [c.stride] * 2, [c.pad] * 2, [c.dilation] * 2

        def bwd(mask):
            return lambda a: aten.convolution_backward(a["dy"], a["x"], a["w"], None, s, p, d, False,
                                                       [0, 0], c.groups, mask)
        return {"forward": lambda a: torch.nn.functional.conv2d(a["x"], a["w"], None, s, p, d, c.groups),
                "backward_data": bwd([True, False, False]),
                "backward_filter": bwd([False, True, False])}[direction]
    if c.op == "relu":
        return {"forward": lambda a: torch.relu(a["x"]),
                "backward": lambda a: aten.threshold_backward(a["dy"], a["x"], 0.0)}[direction]
    if c.op == "batchnorm":
        def stats(a):  # one reduction, as batch norm's training forward starts (no running update)
            var, mean = torch.var_mean(a["x"], (0, 2, 3), correction=0)
            return mean, torch.rsqrt(var + EPS)
        return {"stats": stats,
                "forward": lambda a: torch.nn.functional.batch_norm(a["x"], a["mean"], a["var"], a["gamma"],
                                                                    a["beta"], False, 0.0, EPS),
                "backward": lambda a: aten.native_batch_norm_backward(
                    a["dy"], a["x"], a["gamma"], a["running_mean"], a["running_var"], a["mean"], a["invstd"],
                    True, EPS, [True, True, True])}[direction]
    if c.op == "bias_grad":
        return {"backward": lambda a: a["dy"].sum((0, 2, 3))}[direction]
    k, st, pd = [c.k] * 2, [c.stride] * 2, [c.pad] * 2
    if c.op == "max_pool":
        return {"forward": lambda a: aten.max_pool2d_with_indices(a["x"], k, st, pd, [1, 1], False),
                "backward": lambda a: aten.max_pool2d_with_indices_backward(
                    a["dy"], a["x"], k, st, pd, [1, 1], False, a["idx"])}[direction]
    return {"forward": lambda a: aten.avg_pool2d(a["x"], k, st, pd, False, True, None),
            "backward": lambda a: aten.avg_pool2d_backward(a["dy"], a["x"], k, st, pd, False, True, None)
            }[direction]


def build(case, direction, backend_name, device="cpu", copies=1, seed=0):
    """(fn, inputs) for one backend; the same seed gives every backend the same data."""
    fn = (_torch_fn if backend_name == "torch" else _gpucnn_fn)(case, direction)
    sets = _inputs(case, backend_name, device, copies, seed)
    return (no_grad(fn) if backend_name == "torch" else fn), [(a,) for a in sets]


def no_grad(fn):
    """fn run under torch.no_grad: the peers time inference, no autograd graph."""
    import torch

    def run(*args):
        with torch.no_grad():
            return fn(*args)
    return run
