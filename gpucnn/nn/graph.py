"""Whole training steps as one graph: ``compile_step`` captures forward,
backward and update of a fixed-shape batch (``gpucnn.runtime.capture``: a
CUDA graph on a GPU, the recorded launches on the emulator) and each call
replays it after copying the batch into the step's own input buffers.

What a step may contain: kernel launches and device copies only. The
optimizer must say so (``capturable = True``: it updates parameters in place
with kernels, its state exists before the capture, made by its ``prepare()``
where it has one, and nothing it computes on the host changes from step to
step); an op that would stop on the host
raises ``CaptureError`` naming it when the step is compiled.

What stopped a step on the host, and what happens now: an op without
kernels runs on the NumPy reference through a host copy (the losses, until
they have kernels): CaptureError names it (``backend.call``); SGD's array
expressions and lazily created momentum: CaptureError unless the optimizer
is capturable; the range checks of class labels and max-pool indices read
values back: skipped while capturing (the indices come from our own
kernel); batch norm rebound its running statistics to new arrays: now
copied in place, and num_batches_tracked is a host counter bumped after
each replay; batch norm in eval mode: CaptureError; dropout drew its mask on
the host: now on the device. Every op allocates its outputs: during the
capture from the graph's pool, never during a replay.

Hyper-parameters are frozen into the graph: when ``optimizer.lr`` changes (a
schedule), the next call captures the step again, unless the optimizer reads
it from the device (``lr_on_device``, as gpucnn.nn's optimizers do). So does nothing else:
load a checkpoint or move the model *before* compiling.
"""
from __future__ import annotations

import contextlib

from gpucnn import backend
from gpucnn.nn._array import is_cupy
from gpucnn.runtime import capture
from gpucnn.runtime.capture import CaptureError

__all__ = ["compile_step", "CompiledStep", "CaptureError"]


def _runtime_of(x) -> str:
    if is_cupy(x):
        return "cuda"
    name = backend.current()
    if name == "cuda":
        raise CaptureError("compile_step on the GPU needs the model and the example batch there: "
                           "model.to('cuda') and CuPy arrays (NumPy arrays would be copied every step)")
    if name == "numpy":
        raise CaptureError("compile_step needs kernels to capture: give CuPy arrays (a model on 'cuda') or "
                           "select the emulator (gpucnn.use_backend('emulator')); the NumPy backend "
                           "runs no kernels")
    return name


def _copy(a):
    """A buffer of the step's own, holding ``a`` (never a view of the caller's array)."""
    return a.copy()


def _same_layout(name, got, want):
    if type(got) is not type(want) or got.shape != want.shape or got.dtype != want.dtype:
        raise ValueError(f"compiled step: {name} must be a {type(want).__module__}.{type(want).__name__} of "
                         f"shape {tuple(want.shape)} and dtype {want.dtype} (the example's), got "
                         f"{type(got).__module__}.{type(got).__name__} of shape {tuple(got.shape)} and dtype "
                         f"{got.dtype}")


class CompiledStep:
    """``step(x, y)`` runs one captured training step on (x, y) and returns the
    loss, a 0-d array on the model's device that the next call overwrites.
    ``output`` is the model's output for the same batch (overwritten too)."""

    def __init__(self, model, loss, optimizer, x_example, y_example):
        if not getattr(optimizer, "capturable", False):
            raise CaptureError(f"{type(optimizer).__name__}.step cannot be captured into a step graph: the "
                               f"optimizer does not declare capturable = True (it updates with array "
                               f"expressions or keeps host-side state that changes every step)")
        self.model, self.loss, self.optimizer = model, loss, optimizer
        self.runtime = _runtime_of(x_example)
        self.x, self.y = _copy(x_example), _copy(y_example)
        self.captures = 0
        if hasattr(optimizer, "prepare"):
            optimizer.prepare()  # its state before the capture: no host-to-device copy inside it
        self._capture()

    def _body(self):
        out = self.model.forward(self.x)
        value = self.loss.forward(out, self.y)
        self.model.backward_params(self.loss.backward())
        self.optimizer.step()
        return value, out

    def _capture(self):
        self.graph = None  # the old graph's buffers go before the new ones are allocated
        self._lr = getattr(self.optimizer, "lr", None)
        with backend.use_backend(self.runtime) if self.runtime == "emulator" else contextlib.nullcontext():
            self.graph, (self.value, self.output) = capture.capture(self.runtime, self._body)
        self.captures += 1

    @property
    def pool_bytes(self) -> int:
        """Device memory the captured step's own buffers hold (0 on the emulator)."""
        return self.graph.pool_bytes

    def __call__(self, x, y):
        _same_layout("x", x, self.x)
        _same_layout("y", y, self.y)
        if not getattr(self.optimizer, "lr_on_device", False) and getattr(self.optimizer, "lr", None) != self._lr:
            self._capture()
        capture.copy_into(self.x, x)
        capture.copy_into(self.y, y)
        self.graph.replay()
        return self.value


def compile_step(model, loss, optimizer, x_example, y_example) -> CompiledStep:
    """Capture one training step of ``model`` on batches shaped like
    (x_example, y_example); see the module docstring."""
    return CompiledStep(model, loss, optimizer, x_example, y_example)
