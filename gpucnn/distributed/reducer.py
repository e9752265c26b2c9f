"""The gradient all-reduce of a data-parallel step, and the broadcast of the
initial state.

All gradients are packed, in the model's fixed parameter order, into one flat
buffer allocated once; the buffer is all-reduced in buckets of at most
``bucket_mb`` MiB (one collective each: few large messages use the link's
bandwidth, and a bucket bounds the temporary memory of the MPI path), then
divided by the number of ranks. The gradients handed to the optimizer are
views of that buffer.
"""
from __future__ import annotations

import time

from gpucnn.nn._array import xp_of

DEFAULT_BUCKET_MB = 25  # as PyTorch DistributedDataParallel's bucket_cap_mb


class GradReducer:
    def __init__(self, world, bucket_mb: float = DEFAULT_BUCKET_MB):
        if not bucket_mb > 0:
            raise ValueError(f"bucket_mb must be > 0, got {bucket_mb}")
        self.world, self.bucket_mb = world, bucket_mb
        self.flat, self.layout = None, None
        self.seconds = 0.0  # time spent in collectives (synchronized), for the benchmark
        self.calls = 0

    def _allocate(self, grads: dict):
        dtypes = {g.dtype for g in grads.values()}
        if len(dtypes) != 1:
            raise TypeError(f"the gradient all-reduce needs one dtype for all parameters, got "
                            f"{sorted(str(d) for d in dtypes)}")
        layout, offset = [], 0
        for name, g in grads.items():
            layout.append((name, offset, g.size, tuple(g.shape)))
            offset += g.size
        first = next(iter(grads.values()))
        self.flat = xp_of(first).empty(offset, first.dtype)
        self.layout = layout

    def _fits(self, grads: dict) -> bool:
        return (self.layout is not None and len(grads) == len(self.layout)
                and all(name in grads and grads[name].size == n and grads[name].dtype == self.flat.dtype
                        for name, _, n, _ in self.layout))

    def buckets(self):
        """(start, stop) element ranges of the flat buffer, one collective each."""
        per = max(1, int(self.bucket_mb * 2**20) // self.flat.itemsize)
        return [(a, min(a + per, self.flat.size)) for a in range(0, self.flat.size, per)]

    def reduce(self, grads: dict) -> dict:
        """The average over the ranks of each gradient, as views of the flat buffer."""
        if not self._fits(grads):
            self._allocate(grads)
        flat = self.flat
        for name, offset, n, _ in self.layout:
            flat[offset:offset + n] = grads[name].reshape(-1)
        comm = self.world.comm_for(flat)
        t0 = time.perf_counter()
        for a, b in self.buckets():
            comm.allreduce_sum(flat[a:b])
        self.seconds += time.perf_counter() - t0
        self.calls += 1
        if self.world.size > 1:
            flat /= self.world.size
        return {name: flat[offset:offset + n].reshape(shape) for name, offset, n, shape in self.layout}


def broadcast_state(world, arrays: dict, root: int = 0) -> None:
    """Overwrite every array of ``arrays`` (name -> array, updated in place) with
    rank ``root``'s; the names must come in the same order on every rank."""
    for name, a in arrays.items():
        if not a.flags.c_contiguous:
            raise ValueError(f"cannot broadcast {name!r}: the array is not contiguous")
        world.comm_for(a).bcast(a if a.ndim else a.reshape(1), root)

