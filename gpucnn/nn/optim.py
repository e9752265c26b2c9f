"""Optimizers with torch.optim's semantics: SGD (the seed's Eq. 8,
w <- w - lr * dz/dw, with momentum, Nesterov momentum and weight decay),
Adam and AdamW (bias correction, weight decay, amsgrad).

An optimizer takes a module or its ``parameters()`` (or ``named_parameters()``)
and reads each parameter's ``.data`` and ``.grad`` at every step, so moving or
reloading the model never leaves it stale. The backward passes *set* the
gradients (see gpucnn.nn.module), so a step uses the gradient of the last
backward alone; ``zero_grad()`` sets them to None, and a step on a parameter
without a gradient is an error rather than a silent skip.

The whole step is one kernel over all parameters on a GPU or the emulator
(kernels/optim.cu) and the NumPy reference otherwise. The state lives in flat
arrays allocated at the first step on the parameters' device, and the learning
rate and step count in a small float64 array beside them (``lr`` writes it), so
a GPU step neither allocates nor waits on the host once the state exists.
"""
from __future__ import annotations

import math

import numpy as np

from gpucnn import backend
from gpucnn.nn._array import is_cupy, to_device, to_host, xp_of
from gpucnn.nn.lr_scheduler import CosineAnnealingLR, StepLR  # noqa: F401  (their old home)
from gpucnn.nn.module import Module
from gpucnn.nn.parameter import Parameter
from gpucnn.reference import optim as ref

_SCALARS = ("step", "beta1_power", "beta2_power")  # scal[1:4] in checkpoints


def _collect(who: str, params_or_model) -> tuple[list, list]:
    """(names, Parameters) from a Module (or a wrapper of one, such as
    gpucnn.distributed's DataParallel), parameters() or named_parameters()."""
    if isinstance(params_or_model, Module) or callable(getattr(params_or_model, "named_parameters", None)):
        items = list(params_or_model.named_parameters())
    elif isinstance(params_or_model, (Parameter, dict, str)) or not hasattr(params_or_model, "__iter__") \
            or hasattr(params_or_model, "shape"):
        raise TypeError(f"{who} takes a gpucnn.nn.Module or an iterable of its Parameters "
                        f"(model.parameters()), got {type(params_or_model).__name__}")
    else:
        items = list(params_or_model)
        for i, it in enumerate(items):
            if isinstance(it, dict):
                raise TypeError(f"{who}: parameter groups (dicts) are not supported; pass model.parameters()")
            if isinstance(it, tuple) and len(it) == 2 and isinstance(it[1], Parameter):
                continue
            if not isinstance(it, Parameter):
                raise TypeError(f"{who}: element {i} of the parameters is a {type(it).__name__}, not a "
                                f"gpucnn.nn.Parameter (pass model.parameters() or the model)")
        items = [(str(it[0]), it[1]) if isinstance(it, tuple) else (str(i), it) for i, it in enumerate(items)]
    if not items:
        raise ValueError(f"{who} got an empty parameter list")
    if len({id(p) for _, p in items}) != len(items):
        raise ValueError(f"{who}: a parameter appears more than once")
    return [n for n, _ in items], [p for _, p in items]


def _nonneg(who: str, **values) -> None:
    for name, v in values.items():
        if not isinstance(v, (int, float)) or isinstance(v, bool) or not math.isfinite(v) or v < 0:
            raise ValueError(f"{who}: {name} must be a finite number >= 0, got {v!r}")


def _kernel_runtime(a):
    """The kernels' runtime for parameters like ``a``, or None for the NumPy reference."""
    from gpucnn.runtime import runtime_for
    if is_cupy(a):
        return runtime_for("cuda")
    return runtime_for("emulator") if backend.current() == "emulator" else None


class Optimizer:
    """Base of SGD and Adam: parameters, the flat state, lr and the step."""
    _kinds: tuple = ()  # names of the per-parameter state arrays, as in checkpoints
    # A step is kernels only, reading lr and the step count from a device
    # array: it can be captured into a step graph (gpucnn.nn.compile_step),
    # and a change of lr needs no new capture.
    capturable = True
    lr_on_device = True

    def __init__(self, params_or_model, lr):
        who = type(self).__name__
        self._names, self._params = _collect(who, params_or_model)
        _nonneg(who, lr=lr)
        self._lr = float(lr)
        self._scal = None  # float64 (6,) on the device: lr, t, beta1^t, beta2^t, step size, 1/sqrt(bc2)
        self._flat = {}    # state kind -> flat array over all parameters
        self._offsets = None

    @property
    def lr(self) -> float:
        """The learning rate; setting it also writes the copy the kernels read."""
        return self._lr

    @lr.setter
    def lr(self, value):
        _nonneg(type(self).__name__, lr=value)
        self._lr = float(value)
        if self._scal is not None:
            self._scal[0] = self._lr  # a device write outside the step, read by the next step

    def _active_kinds(self) -> tuple:
        return self._kinds

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Set every parameter's gradient to None (or to zeros in place with set_to_none=False)."""
        for p in self._params:
            if set_to_none:
                p.grad = None
            elif p.grad is not None:
                p.grad[...] = 0

    def _arrays(self):
        """The parameters' arrays and gradients, checked."""
        who = type(self).__name__
        params = [p.data for p in self._params]
        missing = [n for n, p in zip(self._names, self._params) if p.grad is None]
        if missing:
            raise RuntimeError(f"{who}.step: no gradient for {missing}; call model.backward first")
        grads = [p.grad for p in self._params]
        kinds = {(type(a).__module__.split(".")[0], a.dtype) for a in params + grads}
        if len(kinds) != 1:
            raise TypeError(f"{who}.step: parameters and gradients must share one array kind and dtype, got "
                            f"{sorted(str(k) for k in kinds)}")
        for n, p, g in zip(self._names, params, grads):
            if g.shape != p.shape or not p.flags.c_contiguous:
                raise ValueError(f"{who}.step: parameter {n!r} {tuple(p.shape)} needs a C-contiguous array and "
                                 f"a gradient of its shape, got {tuple(g.shape)}")
        xp = xp_of(params[0])
        return params, [g if g.flags.c_contiguous else xp.ascontiguousarray(g) for g in grads]

    def _ensure_state(self, params) -> None:
        xp = xp_of(params[0])
        if self._scal is not None and xp_of(self._scal) is xp:
            return
        device = "cuda" if is_cupy(params[0]) else "cpu"
        if self._scal is not None:  # the model moved: the state follows it
            self._scal = to_device(self._scal, device)
            self._flat = {k: to_device(v, device) for k, v in self._flat.items()}
            return
        self._offsets = np.concatenate([[0], np.cumsum([p.size for p in params])]).astype(np.int64)
        self._scal = xp.asarray(np.array([self._lr, 0, 1, 1, 0, 0], np.float64))
        total, dtype = int(self._offsets[-1]), params[0].dtype
        self._flat = {k: xp.zeros(total if k in self._active_kinds() else 0, dtype) for k in self._kinds}

    def prepare(self) -> None:
        """Make the state (the device scalars and the flat buffers) on the parameters' device now, as
        the first step would. A step graph's capture calls it first (gpucnn.nn.graph): creating the
        scalars copies from the host, which CUDA forbids while a stream is capturing."""
        self._ensure_state([p.data for p in self._params])

    def step(self) -> None:
        """One update of every parameter from its current gradient."""
        params, grads = self._arrays()
        self._ensure_state(params)
        rt = _kernel_runtime(params[0])
        if rt is None:
            getattr(ref, self._op)(params, grads, self._offsets, *self._step_args())
        else:
            from gpucnn.cuda import optim as kernels
            getattr(kernels, self._op)(rt, params, grads, self._offsets, *self._step_args())

    def state_dict(self) -> dict:
        """The state as host arrays: "step", "beta1_power", "beta2_power" (0-d)
        and "<kind>.<parameter name>" per parameter (momentum_buffer for SGD;
        exp_avg, exp_avg_sq, max_exp_avg_sq for Adam); empty before the first step."""
        if self._scal is None:
            return {}
        scal = to_host(self._scal)
        out = {k: np.array(scal[i + 1]) for i, k in enumerate(_SCALARS)}
        for kind in self._active_kinds():
            flat = to_host(self._flat[kind])
            for k, (name, p) in enumerate(zip(self._names, self._params)):
                out[f"{kind}.{name}"] = flat[self._offsets[k]:self._offsets[k + 1]].reshape(p.shape).copy()
        return out

    def load_state_dict(self, state: dict) -> None:
        """Restore what state_dict returned (onto the parameters' device). A
        momentum-only SGD state without "step" (older checkpoints) counts as
        one step done."""
        who = type(self).__name__
        wanted = {f"{kind}.{n}": p.shape for kind in self._active_kinds() for n, p in zip(self._names, self._params)}
        arrays = {k: v for k, v in state.items() if k not in _SCALARS}
        unknown = sorted(set(arrays) - set(wanted))
        if unknown:
            raise ValueError(f"{who}.load_state_dict: state {unknown} matches no parameter of this optimizer")
        bad = [f"{k} {tuple(np.shape(v))} != {tuple(wanted[k])}" for k, v in arrays.items()
               if tuple(np.shape(v)) != tuple(wanted[k])]
        if bad:
            raise ValueError(f"{who}.load_state_dict: shapes differ: {bad}")
        step = float(state.get("step", 1 if arrays else 0))
        if step and len(arrays) != len(wanted):
            raise ValueError(f"{who}.load_state_dict: after {step:g} steps the state needs all of "
                             f"{sorted(wanted)}, missing {sorted(set(wanted) - set(arrays))}")
        params = [p.data for p in self._params]
        self._scal = None
        self._ensure_state(params)
        xp = xp_of(params[0])
        for key, v in arrays.items():
            kind, name = key.split(".", 1)
            k = self._names.index(name)
            self._flat[kind][self._offsets[k]:self._offsets[k + 1]] = xp.asarray(
                np.asarray(to_host(v), params[0].dtype).ravel())
        scal = np.array([self._lr, step, *(float(state.get(k, 1.0)) for k in _SCALARS[1:]), 0, 0], np.float64)
        self._scal[...] = xp.asarray(scal)

    def to(self, device):
        """Move the state to "cpu" or "cuda" (a step also moves it to the parameters' device)."""
        if self._scal is not None:
            self._scal = to_device(self._scal, device)
            self._flat = {k: to_device(v, device) for k, v in self._flat.items()}
        return self


class SGD(Optimizer):
    """torch.optim.SGD: g = grad + weight_decay * p; with momentum, buf = g at
    the first step, then momentum * buf + (1 - dampening) * g, and
    g = g + momentum * buf (Nesterov) or buf; p -= lr * g.

    params_or_model: a Module, or its parameters() / named_parameters().
    State: one momentum buffer per parameter (when momentum > 0)."""
    _kinds = ("momentum_buffer",)
    _op = "sgd_step"

    def __init__(self, params_or_model, lr, momentum=0.0, dampening=0.0, weight_decay=0.0, nesterov=False):
        super().__init__(params_or_model, lr)
        _nonneg("SGD", momentum=momentum, dampening=dampening, weight_decay=weight_decay)
        if nesterov and (momentum <= 0 or dampening != 0):
            raise ValueError("SGD: Nesterov momentum needs momentum > 0 and dampening 0 (as torch)")
        self.momentum, self.dampening = float(momentum), float(dampening)
        self.weight_decay, self.nesterov = float(weight_decay), bool(nesterov)

    def _active_kinds(self):
        return self._kinds if self.momentum else ()

    def _step_args(self):
        return (self._flat["momentum_buffer"], self._scal, self.momentum, self.dampening, self.weight_decay,
                self.nesterov)


class Adam(Optimizer):
    """torch.optim.Adam: with t the step count and g = grad (+ weight_decay * p),
    m = beta1 m + (1 - beta1) g, v = beta2 v + (1 - beta2) g^2 (v replaced by
    the running maximum max_exp_avg_sq with amsgrad), and
    p -= lr / (1 - beta1^t) * m / (sqrt(v) / sqrt(1 - beta2^t) + eps).

    params_or_model: a Module, or its parameters() / named_parameters().
    State: exp_avg (m), exp_avg_sq (v) and, with amsgrad, max_exp_avg_sq."""
    _kinds = ("exp_avg", "exp_avg_sq", "max_exp_avg_sq")
    _op = "adam_step"
    _decoupled = False

    def __init__(self, params_or_model, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, amsgrad=False):
        super().__init__(params_or_model, lr)
        who = type(self).__name__
        if not isinstance(betas, (tuple, list)) or len(betas) != 2 or not all(
                isinstance(b, (int, float)) and 0 <= b < 1 for b in betas):
            raise ValueError(f"{who}: betas must be two numbers in [0, 1), got {betas!r}")
        _nonneg(who, eps=eps, weight_decay=weight_decay)
        self.betas, self.eps = (float(betas[0]), float(betas[1])), float(eps)
        self.weight_decay, self.amsgrad = float(weight_decay), bool(amsgrad)

    def _active_kinds(self):
        return self._kinds if self.amsgrad else self._kinds[:2]

    def _step_args(self):
        f = self._flat
        return (f["exp_avg"], f["exp_avg_sq"], f["max_exp_avg_sq"], self._scal, *self.betas, self.eps,
                self.weight_decay, self._decoupled, self.amsgrad)


class AdamW(Adam):
    """torch.optim.AdamW: Adam with decoupled weight decay, p *= 1 - lr * weight_decay
    before the update instead of adding weight_decay * p to the gradient;
    weight_decay defaults to 1e-2."""
    _decoupled = True

    def __init__(self, params_or_model, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2, amsgrad=False):
        super().__init__(params_or_model, lr, betas, eps, weight_decay, amsgrad)
