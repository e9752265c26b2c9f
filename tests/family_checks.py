"""What the tests of the 3x3 families that launch a weights kernel and then a forward kernel
(test_halo.py, test_wino.py) share: the calls they check, and a record of the launches."""
from __future__ import annotations

import contextlib

import pytest
from test_math_modes import conv_args

import gpucnn


def forward_case(xs, ws, padding, bias, relu):
    """(fn, args): conv2d of x (shape xs) by w (ws), or conv2d_bias_relu's fused epilogue, with
    or without the bias, at ``padding``."""
    kw = dict(padding=padding)
    x, w, b, _ = conv_args(xs, ws, kw)

    def fn(x, w, b):
        if relu:
            return (gpucnn.conv2d_bias_relu(x, w, b if bias else None, **kw),)
        return (gpucnn.conv2d(x, w, b if bias else None, **kw),)
    return fn, (x, w, b)


def backward_data_case(xs, ws, padding):
    """(fn, args): conv2d_backward's dx alone (no bias), dy of the forward's output shape."""
    kw = dict(padding=padding)
    x, w, _, dy = conv_args(xs, ws, kw)

    def fn(x, w, dy):
        return gpucnn.conv2d_backward(dy, x, w, bias=False, **kw)[:1]
    return fn, (x, w, dy)


@contextlib.contextmanager
def launches_of(module):
    """The base names of ``module``'s launch and launch_tasks calls inside the block, in order
    (the launches still run)."""
    launched = []
    real_tasks, real_launch = module.launch_tasks, module.launch
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(module, "launch_tasks", lambda rt, fam, base, *a, **k: (launched.append(base),
                                                                           real_tasks(rt, fam, base, *a, **k)))
        mp.setattr(module, "launch", lambda rt, fam, base, *a, **k: (launched.append(base),
                                                                     real_launch(rt, fam, base, *a, **k)))
        yield launched
