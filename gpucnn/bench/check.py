"""The arguments of ``gpucnn bench``, checked before anything is timed: a
device that is there, known peers that can run here, an --only that
matches a case."""
from __future__ import annotations

from gpucnn.bench import cases, fused, run, steps
from gpucnn.usage import UsageError


def _gpu() -> tuple[bool, str]:
    from gpucnn.runtime import cupy_runtime
    return cupy_runtime.gpu_available()


def _peer_available(name: str, device: str) -> str:
    """Why backend ``name`` cannot run on ``device`` here ("" when it can)."""
    lib, where = run.BACKENDS[name]
    if where == "cuda" and device != "cuda":
        return f"it runs on a GPU, but --device is {device}"
    if lib == "torch":
        try:
            import torch
        except ImportError:
            return 'PyTorch is not installed (pip install torch, or "gpucnn[bench]" for the rest)'
        if where == "cuda" and not torch.cuda.is_available():
            return "PyTorch sees no CUDA device"
    return ""


def arguments(device: str, backends: str | None, only: str | None, small: bool, steps_only: bool = False,
              fused_only: bool = False):
    """(device, backend names or None for the default), or a UsageError.
    With ``steps_only``, ``only`` picks training-step models, not cases; with
    ``fused_only``, cases of the fused rows."""
    if steps_only and fused_only:
        raise UsageError("--steps-only and --fused-only exclude each other: give one (or neither, for all rows)")
    if device == "auto":
        device = "cuda" if _gpu()[0] else "cpu"
    elif device == "cuda":
        ok, why = _gpu()
        if not ok:
            raise UsageError(f"--device cuda is not available here: {why}")
    names = None
    if backends:
        names = [n.strip() for n in backends.split(",") if n.strip()]
        for n in names:
            if n not in run.BACKENDS:
                raise UsageError(f"--backends: unknown backend {n!r}; the backends are {', '.join(run.BACKENDS)}")
            why = _peer_available(n, device)
            if why:
                raise UsageError(f"--backends {n} is not available here: {why}")
        if not names or run.BACKENDS[names[0]][0] != "gpucnn":
            raise UsageError(f"--backends must start with ours (gpucnn-cuda or gpucnn-numpy), got {backends!r}")
    if only is not None and steps_only:
        if not steps.models(only):
            raise UsageError(f"--only {only!r} matches no model of the training-step rows; the models are: "
                             f"{', '.join(m for m, *_ in cases.STEPS)}")
    elif only is not None:
        suites = [fused.suite] if fused_only else [cases.suite, fused.suite]
        if not any(s(device, small=small, only=only) for s in suites):
            known = dict.fromkeys(c.label() for s in suites for c, _ in s(device, small=small))
            raise UsageError(f"--only {only!r} matches no case{' of the fused rows' * fused_only}; "
                             f"the cases are: {', '.join(known)}")
    return device, names
