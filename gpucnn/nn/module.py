"""The layer protocol and ``Sequential``.

A layer computes ``forward(x)`` and, for the output gradient of that same
call, ``backward(dy) -> dx``; backward *sets* (does not accumulate) the
gradients of its parameters: each backward replaces ``.grad`` with the
gradient of that call alone, so one backward per optimizer step needs no
``zero_grad`` (which sets the gradients to None, torch's default).
Parameters, their gradients and buffers (state that is not trained, such as
batch-norm running statistics) are named as in torch's state_dict
("0.weight", "3.running_mean"), so that weights can be copied to and from
torch and checkpoints name what they hold.
"""
from __future__ import annotations

import functools
from typing import NamedTuple

import numpy as np

from gpucnn.nn._array import is_cupy, to_device
from gpucnn.nn.fusion import fused_backward, fused_forward
from gpucnn.nn.parameter import Parameter
from gpucnn.reference import scheduler, workspace

_KINDS = ("_params", "_grads", "_buffers")


class IncompatibleKeys(NamedTuple):
    """What ``load_state_dict`` returns: the names it did not find and those it did not use."""
    missing_keys: list
    unexpected_keys: list


def _deferring(method):
    """``backward`` (or ``backward_params``) run in a workspace.deferring()
    block: what a layer defers (a convolution's filter gradient, on the
    NumPy backend) is done, and its gradients set, when the outermost call
    returns."""
    @functools.wraps(method)
    def run(self, *args, **kwargs):
        if scheduler.active():
            return method(self, *args, **kwargs)
        with workspace.deferring():
            return method(self, *args, **kwargs)
    return run


class Module:
    """Base of every layer. Subclasses fill ``_params`` (trainable arrays),
    ``_buffers`` (other state) and, in backward, ``_grads``; containers
    override ``children()``."""

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        for name in ("backward", "backward_params"):
            if name in vars(cls):
                setattr(cls, name, _deferring(vars(cls)[name]))

    def __init__(self):
        self.training = True
        self.device = "cpu"
        self._params, self._grads, self._buffers = {}, {}, {}
        self._saved = {}
        self._handles = {}  # Parameter objects by key, so that each has one identity

    def __getattr__(self, name):
        # Reached only when normal lookup fails: expose params and buffers as
        # attributes (layer.weight, bn.running_mean) without duplicating them.
        for kind in ("_params", "_buffers"):
            table = self.__dict__.get(kind, {})
            if name in table:
                return table[name]
        raise AttributeError(f"{type(self).__name__} has no attribute {name!r}")

    def __call__(self, x):
        return self.forward(x)

    def forward(self, x):
        """The layer's output for x; keeps what backward needs."""
        raise NotImplementedError

    def backward(self, dy):
        """For dy, the gradient of the loss with respect to the last forward's
        output (same shape), return dx, the gradient with respect to its
        input, and *set* the gradients of the parameters (replacing any)."""
        raise NotImplementedError

    def backward_params(self, dy) -> None:
        """Set the parameters' gradients for dy as ``backward`` does, when
        nobody needs the input's gradient: a model's first layer, whose input
        is data (PyTorch skips it when the input does not require grad).
        Layers that can skip computing dx override this; by default it is
        backward(dy) with dx dropped."""
        self.backward(dy)

    def children(self):
        """(name, module) pairs of the sub-layers; none for a plain layer."""
        return []

    def _save(self, **arrays):
        self._saved = arrays

    def _load(self, *names):
        """What forward saved for backward, or a clear error if there was no forward."""
        if not self._saved:
            raise RuntimeError(f"{type(self).__name__}.backward called before forward")
        return tuple(self._saved[n] for n in names) if len(names) > 1 else self._saved[names[0]]

    def _named(self, kind: str) -> dict:
        out = dict(getattr(self, kind))
        for cname, child in self.children():
            out.update({f"{cname}.{k}": v for k, v in child._named(kind).items()})
        return out

    def params(self) -> dict:
        """Trainable arrays by name; updating them in place updates the layer."""
        return self._named("_params")

    def grads(self) -> dict:
        """Gradients of the parameters from the last backward, by name."""
        return self._named("_grads")

    def buffers(self) -> dict:
        """Arrays that are state but not trained (batch-norm statistics), by name."""
        return self._named("_buffers")

    def named_parameters(self, prefix: str = ""):
        """Yield (name, Parameter) for every parameter, in state_dict order."""
        for key in self._params:
            if key not in self._handles:
                self._handles[key] = Parameter(self, key)
            yield prefix + key, self._handles[key]
        for cname, child in self.children():
            yield from child.named_parameters(f"{prefix}{cname}.")

    def parameters(self):
        """Yield every Parameter (``.data``, ``.grad``), as torch's ``Module.parameters()``."""
        for _, p in self.named_parameters():
            yield p

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Forget the gradients: None (the default) or, with set_to_none=False,
        zeros in place. Since backward sets gradients rather than adding to
        them, neither is needed between steps."""
        for p in self.parameters():
            if set_to_none:
                p.grad = None
            elif p.grad is not None:
                p.grad[...] = 0

    def _state_items(self, prefix: str = ""):
        # torch's order: a module's parameters, then its buffers, then its children.
        for kind in ("_params", "_buffers"):
            for k, v in getattr(self, kind).items():
                yield prefix + k, v, self, kind, k
        for cname, child in self.children():
            yield from child._state_items(f"{prefix}{cname}.")

    def state_dict(self) -> dict:
        """Parameters and buffers by torch's names ("0.weight", "1.running_mean"), the arrays themselves."""
        return {name: v for name, v, *_ in self._state_items()}

    def load_state_dict(self, state: dict, strict: bool = True) -> IncompatibleKeys:
        """Copy ``state`` (name -> array: NumPy, CuPy or anything ``np.asarray``
        takes, such as a torch CPU tensor) into the module, each array cast to
        the dtype and device of the one it replaces. With strict, any missing
        or unexpected name is a ValueError; a shape that differs always is.
        Returns the missing and unexpected names."""
        slots = {name: (module, kind, k, v) for name, v, module, kind, k in self._state_items()}
        missing = [k for k in slots if k not in state]
        unexpected = [k for k in state if k not in slots]
        problems = [f"missing keys {missing}"] if strict and missing else []
        problems += [f"unexpected keys {unexpected}"] if strict and unexpected else []
        for name in (k for k in state if k in slots):
            have = tuple(slots[name][3].shape)
            if tuple(np.shape(state[name])) != have:
                problems.append(f"{name!r} has shape {tuple(np.shape(state[name]))} in the state_dict but "
                                f"{have} in the module")
        if problems:
            raise ValueError(f"load_state_dict into {type(self).__name__}: " + "; ".join(problems))
        for name in (k for k in state if k in slots):
            module, kind, k, old = slots[name]
            v = state[name]
            v = v if is_cupy(v) else np.asarray(v)
            getattr(module, kind)[k] = to_device(v, module.device).astype(old.dtype, copy=True)
        return IncompatibleKeys(missing, unexpected)

    def _set(self, kind: str, name: str, value) -> None:
        head, _, rest = name.partition(".")
        if rest:
            children = dict(self.children())
            if head not in children:
                raise KeyError(name)
            children[head]._set(kind, rest, value)
            return
        table = getattr(self, kind)
        if name not in table:
            raise KeyError(name)
        table[name] = value

    def set_param(self, name: str, value) -> None:
        """Replace parameter ``name`` ("3.weight") with the array ``value`` (as is: no cast, no copy)."""
        self._set("_params", name, value)

    def set_buffer(self, name: str, value) -> None:
        """Replace buffer ``name`` ("1.running_mean") with the array ``value``."""
        self._set("_buffers", name, value)

    def rng_states(self) -> dict:
        """JSON-able states of random generators (dropout), by layer name."""
        out = {}
        for cname, child in self.children():
            out.update({f"{cname}.{k}" if k else cname: v for k, v in child.rng_states().items()})
        return out

    def set_rng_states(self, states: dict) -> None:
        """Restore what rng_states() returned."""
        children = dict(self.children())
        for name, state in states.items():
            head, _, rest = name.partition(".")
            child = children.get(head)
            if child is None:
                raise KeyError(f"no layer {head!r} holds a random generator ({name!r})")
            child.set_rng_states({rest: state})

    def train(self, mode: bool = True):
        """Training mode (batch statistics, dropout) or, with mode=False, evaluation; returns self."""
        self.training = bool(mode)
        for _, child in self.children():
            child.train(mode)
        return self

    def eval(self):
        """Evaluation mode (running statistics, no dropout); returns self."""
        return self.train(False)

    def to(self, device: str):
        """Move parameters, gradients and buffers to "cpu" (NumPy) or "cuda" (CuPy)."""
        for kind in _KINDS:
            table = getattr(self, kind)
            for k, v in table.items():
                table[k] = to_device(v, device)
        self._saved = {}
        self.device = device
        for _, child in self.children():
            child.to(device)
        return self


class Sequential(Module):
    """Layers applied in order; backward runs them in reverse (the chain rule,
    Eq. 4), each setting its parameters' gradients, and returns the first
    layer's dx. Parameters are named "<index>.<name>", as torch's."""

    def __init__(self, *layers: Module):
        super().__init__()
        self.layers = list(layers)

    def children(self):
        return [(str(i), layer) for i, layer in enumerate(self.layers)]

    def __getitem__(self, i):
        """The i-th layer."""
        return self.layers[i]

    def __len__(self):
        """The number of layers."""
        return len(self.layers)

    def forward(self, x):
        i = 0
        while i < len(self.layers):  # a Conv2D or BatchNorm2D and its ReLU run fused (gpucnn.nn.fusion)
            y = fused_forward(self.layers[i], self.layers[i + 1], x) if i + 1 < len(self.layers) else None
            x, i = (self.layers[i].forward(x), i + 1) if y is None else (y, i + 2)
        return x

    def _backward_from(self, dy, first: int):
        """dy through layers[first:] in reverse; a pair the forward fused
        backward in one op where it can (gpucnn.nn.fusion)."""
        i = len(self.layers) - 1
        while i >= first:
            dx = fused_backward(self.layers[i - 1], self.layers[i], dy) if i > first else None
            dy, i = (self.layers[i].backward(dy), i - 1) if dx is None else (dx, i - 2)
        return dy

    def backward(self, dy):
        return self._backward_from(dy, 0)

    def backward_params(self, dy) -> None:
        if self.layers:
            self.layers[0].backward_params(self._backward_from(dy, 1))

    def __repr__(self):
        inner = "".join(f"\n  ({i}) {layer!r}" for i, layer in enumerate(self.layers))
        return f"Sequential({inner}\n)"

