"""Loss layers: ``forward(pred, target) -> loss`` (a 0-d array) and
``backward() -> dpred``, the first factor of back propagation (the seed's
Eqs. 10-11). Both average over the batch."""
from __future__ import annotations

from gpucnn import functional as F


class _Loss:
    _fn = None

    def __init__(self):
        self._dpred = None

    def __call__(self, pred, target):
        return self.forward(pred, target)

    def forward(self, pred, target):
        # The functional losses return the gradient with the loss; keep it for backward.
        loss, self._dpred = type(self)._fn(pred, target)
        return loss

    def backward(self):
        if self._dpred is None:
            raise RuntimeError(f"{type(self).__name__}.backward called before forward")
        return self._dpred


class CrossEntropyLoss(_Loss):
    """Softmax cross-entropy of logits (N, C) against int class ids (N,),
    as torch.nn.CrossEntropyLoss with reduction='mean'."""
    _fn = staticmethod(F.softmax_cross_entropy)


class SquaredErrorLoss(_Loss):
    """The seed's Eq. 6, ||t - x||^2 summed over a sample, averaged over the batch."""
    _fn = staticmethod(F.squared_error)
