"""Data parallelism for the layer API: the sampler that splits each global
batch across the ranks, and the model wrapper that makes a step of N ranks
the step of one process on the whole batch.

The sampler. The global batches are exactly those of ``gpucnn.data.batches``
for the same generator (the single-process batches); rank r takes positions
r, r + N, r + 2N, ... of each. When the batch size does not divide by N the
first (B mod N) ranks take one example more, and each rank's gradient is
weighted by its share, so the step is still the single-process one.

The wrapper (as PyTorch's DistributedDataParallel): ``backward`` scales the
output gradient by the rank's share (N * n_local / n_global; 1 when the batch
divides), runs the model's backward, and all-reduces the gradients;
``grads()`` returns the averaged ones, which the optimizer applies on every
rank alike. Entering evaluation copies rank 0's buffers (batch-norm running
statistics) to every rank, as DistributedDataParallel's broadcast_buffers,
so all ranks evaluate and checkpoint rank 0's model.
"""
from __future__ import annotations

import numpy as np

from gpucnn import data
from gpucnn.distributed import layers
from gpucnn.distributed.reducer import GradReducer, broadcast_state


def check_split(world, n_examples: int, batch_size: int) -> None:
    """Every training step must give each rank at least one example."""
    tail = n_examples % batch_size
    short = min(batch_size, n_examples) if tail == 0 else tail
    if short < world.size:
        raise ValueError(
            f"--batch-size {batch_size} over {n_examples} examples leaves a step of {short} examples, fewer "
            f"than the {world.size} ranks; choose a batch size of at least {world.size} whose last batch "
            f"(n_examples mod batch_size) is 0 or at least {world.size}")


def batches(world, x, y, batch_size: int, rng=None):
    """This rank's share of each of ``data.batches(x, y, batch_size, rng)``.
    Training (a generator given) needs every rank in every step; in evaluation
    a rank left without examples skips the step."""
    if rng is not None:
        check_split(world, len(x), batch_size)
    world.step.seen = 0
    for xb, yb in data.batches(x, y, batch_size, rng):
        mine = slice(world.rank, None, world.size)
        world.step.n_global, world.step.n_local = len(xb), len(xb[mine])
        world.step.seen += len(xb)
        if world.step.n_local:
            yield xb[mine], yb[mine]


def sum_over_ranks(world, *values) -> tuple:
    """Each of ``values`` (numbers) summed over the ranks, in rank order."""
    return tuple(world.host.allreduce_sum(np.array(values, np.float64)).tolist())


class DataParallel:
    """``module`` trained by all ranks together; everything else (params,
    buffers, checkpoints, device) is the module's."""

    def __init__(self, module, world, sync_bn: bool = False, bucket_mb=None):
        self.module, self.world = module, world
        layers.convert(module, world, sync_bn)
        self.reducer = GradReducer(world) if bucket_mb is None else GradReducer(world, bucket_mb)
        self._grads = None
        broadcast_state(world, {**module.params(), **module.buffers()})
        module.set_rng_states(world.host.bcast_json(module.rng_states()))

    def __getattr__(self, name):  # only reached for what the wrapper does not define
        return getattr(self.__dict__["module"], name)

    def __call__(self, x):
        return self.forward(x)

    def forward(self, x):
        self._grads = None
        return self.module.forward(x)

    def backward(self, dy):
        return self._reduced(self.module.backward, dy)

    def backward_params(self, dy) -> None:
        self._reduced(self.module.backward_params, dy)

    def _reduced(self, backward, dy):
        """backward(dy) of the local batch, then the gradients averaged over the world."""
        step = self.world.step
        if step.n_local * self.world.size != step.n_global:
            dy = dy * (step.n_local * self.world.size / step.n_global)
        dx = backward(dy)
        self._grads = self.reducer.reduce(self.module.grads())
        # The optimizers read each Parameter's .grad: make it the average.
        for name, p in self.module.named_parameters():
            p.grad = self._grads[name]
        return dx

    def grads(self) -> dict:
        if self._grads is None:
            raise RuntimeError("DataParallel.grads: no averaged gradients; call backward after forward")
        return self._grads

    def train(self, mode: bool = True):
        if not mode and self.world.size > 1:
            broadcast_state(self.world, self.module.buffers())
        self.module.train(mode)
        return self

    def eval(self):
        return self.train(False)

    def to(self, device):
        self.module.to(device)
        self.reducer = GradReducer(self.world, self.reducer.bucket_mb)
        return self

    def __repr__(self):
        return f"DataParallel(rank {self.world.rank} of {self.world.size}, {self.module!r})"
