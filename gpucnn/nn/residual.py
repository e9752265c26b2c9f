"""``Residual``: the skip connection of He et al.'s ResNets."""
from __future__ import annotations

from gpucnn import _checks as chk
from gpucnn.backend import call
from gpucnn.nn.module import Module


def _add(a, b, relu=False):
    """a + b (relu: torch.relu of it) as a kernel on the GPU and the
    emulator, so a captured step repeats it."""
    chk.same_dtype(a=a, b=b)
    return call("relu", "add", a, b, relu)


class Residual(Module):
    """output = block(x) + shortcut(x), with shortcut the identity when None.

    block and shortcut are modules mapping x to arrays of one shape. Their
    parameters are named "block.<name>" and "shortcut.<name>", as a torch
    module with attributes ``block`` and ``shortcut`` names them.
    backward(dy) runs both branches' backward on dy (setting their
    gradients) and returns the sum of their input gradients.
    """

    def __init__(self, block: Module, shortcut: Module | None = None):
        super().__init__()
        for name, m in (("block", block), ("shortcut", shortcut)):
            if m is not None and not isinstance(m, Module):
                raise TypeError(f"Residual: {name} must be a gpucnn.nn.Module, got {type(m).__name__}")
        self.block, self.shortcut = block, shortcut

    def children(self):
        return [("block", self.block)] + ([("shortcut", self.shortcut)] if self.shortcut is not None else [])

    def forward(self, x):
        return self.forward_relu(x, False)

    def forward_relu(self, x, relu=True):
        """forward, then torch.relu of the sum in the same pass (``relu``):
        how Sequential fuses a Residual and the ReLU after it."""
        y = self.block.forward(x)
        s = x if self.shortcut is None else self.shortcut.forward(x)
        if y.shape != s.shape:
            raise ValueError(f"Residual: block output {tuple(y.shape)} and shortcut output {tuple(s.shape)} "
                             f"differ (input {tuple(x.shape)})")
        self._save(ran=True)
        return _add(y, s, relu)

    def backward(self, dy):
        self._load("ran")
        dx = self.block.backward(dy)
        return _add(dx, dy if self.shortcut is None else self.shortcut.backward(dy))

    def __repr__(self):
        inner = repr(self.block).replace("\n", "\n  ")
        short = "identity" if self.shortcut is None else repr(self.shortcut).replace("\n", "\n  ")
        return f"Residual(\n  block={inner},\n  shortcut={short}\n)"
