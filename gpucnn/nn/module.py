"""The layer protocol and ``Sequential``.

A layer computes ``forward(x)`` and, for the output gradient of that same
call, ``backward(dy) -> dx``; backward *sets* (does not accumulate) the
gradients of its parameters, so one backward per optimizer step needs no
zero_grad. Parameters, their gradients and buffers (state that is not
trained, such as batch-norm running statistics) are named as in torch's
state_dict ("0.weight", "3.running_mean"), so that weights can be copied to
and from torch and checkpoints name what they hold.
"""
from __future__ import annotations

from gpucnn.nn._array import to_device
from gpucnn.nn.fusion import fused_forward

_KINDS = ("_params", "_grads", "_buffers")


class Module:
    def __init__(self):
        self.training = True
        self.device = "cpu"
        self._params, self._grads, self._buffers = {}, {}, {}
        self._saved = {}

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
        raise NotImplementedError

    def backward(self, dy):
        raise NotImplementedError

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
        return self._named("_buffers")

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
        self._set("_params", name, value)

    def set_buffer(self, name: str, value) -> None:
        self._set("_buffers", name, value)

    def rng_states(self) -> dict:
        """JSON-able states of random generators (dropout), by layer name."""
        out = {}
        for cname, child in self.children():
            out.update({f"{cname}.{k}" if k else cname: v for k, v in child.rng_states().items()})
        return out

    def set_rng_states(self, states: dict) -> None:
        children = dict(self.children())
        for name, state in states.items():
            head, _, rest = name.partition(".")
            child = children.get(head)
            if child is None:
                raise KeyError(f"no layer {head!r} holds a random generator ({name!r})")
            child.set_rng_states({rest: state})

    def train(self, mode: bool = True):
        self.training = bool(mode)
        for _, child in self.children():
            child.train(mode)
        return self

    def eval(self):
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
    """Layers applied in order; backward runs them in reverse (the chain rule, Eq. 4)."""

    def __init__(self, *layers: Module):
        super().__init__()
        self.layers = list(layers)

    def children(self):
        return [(str(i), layer) for i, layer in enumerate(self.layers)]

    def __getitem__(self, i):
        return self.layers[i]

    def __len__(self):
        return len(self.layers)

    def forward(self, x):
        i = 0
        while i < len(self.layers):  # a Conv2D or BatchNorm2D and its ReLU run fused (gpucnn.nn.fusion)
            y = fused_forward(self.layers[i], self.layers[i + 1], x) if i + 1 < len(self.layers) else None
            x, i = (self.layers[i].forward(x), i + 1) if y is None else (y, i + 2)
        return x

    def backward(self, dy):
        for layer in reversed(self.layers):
            dy = layer.backward(dy)
        return dy

    def __repr__(self):
        inner = "".join(f"\n  ({i}) {layer!r}" for i, layer in enumerate(self.layers))
        return f"Sequential({inner}\n)"

