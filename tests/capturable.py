"""A loss and an optimizer made only of kernels that exist (ReLU and the
fully connected layer) and runtime copies, so that whole-step capture runs
end to end on the emulator whatever loss and optimizer kernels the library has."""
from __future__ import annotations

from gpucnn import functional as F
from gpucnn.nn._array import xp_of
from gpucnn.runtime import capture


class ReluSumLoss:
    """loss = sum(relu(pred)) through kernels: relu, then a (1, n) x (n,) product."""

    def forward(self, pred, target):
        self.pred = pred
        flat = F.relu(pred).reshape(1, -1)
        return F.linear(flat, xp_of(pred).ones((1, flat.shape[1]), pred.dtype)).reshape(())

    def backward(self):
        return F.relu_backward(xp_of(self.pred).ones_like(self.pred), self.pred)


class KernelSGD:
    """p <- p - lr * g with the fully connected kernel (y = x w^T + b with
    x = [[-lr]], w = g as a column, b = p) and a runtime copy back into p."""
    capturable = True

    def __init__(self, model, lr):
        self.model, self.lr = model, lr

    def step(self):
        grads = self.model.grads()
        for name, p in self.model.params().items():
            g = grads[name]
            new = F.linear(xp_of(p).full((1, 1), -self.lr, p.dtype), g.reshape(-1, 1), p.reshape(-1))
            capture.copy_into(p, new.reshape(p.shape))
