"""Comparisons with PyTorch on the CPU, and the record of how they went.

Every cross-check notes its op, the options it exercised and the error
relative to the result's magnitude (max |ours - torch| / max |torch| over
finite entries); ``pytest --crosscheck-report`` prints the table at the end.
"""
from __future__ import annotations

import numpy as np
import pytest
from conftest import TOL

# op -> {"cases": int, "options": set, "worst": {dtype name: float}}
RECORD: dict = {}


def torch_or_skip():
    return pytest.importorskip("torch")


def to_torch(a):
    return torch_or_skip().from_numpy(np.ascontiguousarray(a))


def note(op, got, want, dtype, options=()) -> float:
    """Record one comparison; returns its relative error."""
    got, want = np.asarray(got), np.asarray(want)
    fin = np.isfinite(want)
    scale = float(np.abs(want[fin]).max(initial=0.0))
    err = float(np.abs(got[fin].astype(np.float64) - want[fin]).max(initial=0.0))
    rel = err / scale if scale else err
    rec = RECORD.setdefault(op, {"cases": 0, "options": set(), "worst": {}})
    rec["cases"] += 1
    rec["options"].update(options)
    name = np.dtype(dtype).name
    rec["worst"][name] = max(rec["worst"].get(name, 0.0), rel)
    return rel


def close(op, got, want, dtype) -> None:
    """Assert got matches torch's want elementwise within TOL (NaN and inf
    positions exactly) and note the comparison."""
    want = np.asarray(want)
    assert got.shape == want.shape and got.dtype == np.dtype(dtype), (op, got.dtype, got.shape)
    np.testing.assert_allclose(got, want, **TOL[dtype], err_msg=op)
    note(op, got, want, dtype)


def report() -> str:
    lines = [f"{'op':34} {'cases':>5}  {'worst float32':>13}  {'worst float64':>13}  options"]
    for op, rec in sorted(RECORD.items()):
        w = rec["worst"]
        cells = [f"{w[d]:13.2e}" if d in w else f"{'-':>13}" for d in ("float32", "float64")]
        lines.append(f"{op:34} {rec['cases']:5d}  {cells[0]}  {cells[1]}  {', '.join(sorted(rec['options']))}")
    return "\n".join(lines)


def check(op, got, want, dtype, options=(), record=True):
    """Assert max|got - want| <= atol + rtol * max|want| (TOL[dtype]): the
    error relative to the result's magnitude, since a sum of many products
    can cancel to near zero in one element. Records it when ``record``."""
    assert got.shape == want.shape, f"{op}: shape {got.shape} != {want.shape}"
    assert got.dtype == np.dtype(dtype), f"{op}: dtype {got.dtype} != {np.dtype(dtype)}"
    scale = float(np.abs(want).max(initial=0.0))
    err = float(np.abs(got - want).max(initial=0.0))
    rel = note(op, got, want, dtype, options) if record else err / (scale or 1.0)
    t = TOL[dtype]
    assert err <= t["atol"] + t["rtol"] * scale, f"{op} {np.dtype(dtype).name} {sorted(options)}: relative error {rel:.3g}"


def randn(rng, shape, dtype):
    return rng.standard_normal(shape).astype(dtype)


def directional_fd(f, args, grads, rng, eps=1e-6):
    """Central differences of L = f(*args) along a random direction per
    argument, against <grad, direction>; f is linear or smooth, so in float64
    the two agree to rounding."""
    for i, (a, g) in enumerate(zip(args, grads)):
        v = rng.standard_normal(a.shape)
        plus, minus = list(args), list(args)
        plus[i], minus[i] = a + eps * v, a - eps * v
        numeric = (f(*plus) - f(*minus)) / (2 * eps)
        analytic = float(np.sum(g * v))
        assert abs(numeric - analytic) <= 1e-7 * max(1.0, abs(analytic)), (i, numeric, analytic)


def specials(rng, shape, dtype, p=0.15):
    """Random values with NaN, +-inf and repeated values sprinkled in."""
    x = rng.standard_normal(shape).round(1).astype(dtype)
    pick = rng.random(shape)
    x[pick < p / 3] = np.nan
    x[(pick >= p / 3) & (pick < 2 * p / 3)] = np.inf
    x[(pick >= 2 * p / 3) & (pick < p)] = -np.inf
    return x
