"""Loss layers: ``forward(pred, target) -> loss`` and ``backward() -> dpred``,
the gradient of the loss with respect to pred (of loss.sum() when the loss
is not a scalar): the first factor of back propagation (the seed's Eqs. 10-11).
Forward computes both at once; backward returns the saved gradient."""
from __future__ import annotations

from gpucnn.functional import loss as L


class _Loss:
    def __init__(self):
        self._dpred = None

    def __call__(self, pred, target):
        return self.forward(pred, target)

    def _compute(self, pred, target):
        raise NotImplementedError

    def forward(self, pred, target):
        """The loss of pred against target; keeps its gradient for backward."""
        loss, self._dpred = self._compute(pred, target)
        return loss

    def backward(self):
        """d loss / d pred of the last forward (pred's shape)."""
        if self._dpred is None:
            raise RuntimeError(f"{type(self).__name__}.backward called before forward")
        return self._dpred


class CrossEntropyLoss(_Loss):
    """torch.nn.CrossEntropyLoss through ``gpucnn.cross_entropy``: logits (N, C)
    or (N, C, d1, ...) against class ids (N, d1, ...) or class probabilities
    shaped like the logits; weight, ignore_index, reduction and
    label_smoothing as torch's. forward returns the loss (0-d, or (N, d1, ...)
    with reduction="none"), backward the gradient of the loss (of its sum
    with "none") with respect to the logits.

    check_target=False skips the check that class ids lie in [0, C) or equal
    ignore_index, the loss's one read from the device to the host (for GPU
    steps that must not synchronize); an invalid id then makes its row NaN.
    """

    def __init__(self, weight=None, ignore_index=-100, reduction="mean", label_smoothing=0.0, *,
                 check_target=True):
        super().__init__()
        self.weight, self.ignore_index, self.reduction = weight, ignore_index, reduction
        self.label_smoothing, self.check_target = label_smoothing, check_target

    def _compute(self, pred, target):
        return L._cross_entropy(pred, target, self.weight, self.ignore_index, self.reduction,
                                self.label_smoothing, self.check_target)


class SquaredErrorLoss(_Loss):
    """The seed's Eq. 6, ||t - x||^2 summed over a sample and averaged over the
    batch (torch's mse_loss with reduction="sum", divided by N): forward(pred,
    target) with target shaped like pred returns the 0-d loss, backward
    2 (pred - target) / N."""

    def _compute(self, pred, target):
        return L.squared_error(pred, target)
