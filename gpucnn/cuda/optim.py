"""Launch code of kernels/optim.cu (same interface as gpucnn.reference.optim).

The parameters and gradients reach the kernel as tables of addresses (one
uint64 each), so one launch updates every tensor. Tables live in a ring of
SLOTS preallocated slots per tensor count, each a host staging row and a
device row: a step whose arrays have not moved (as in a replayed CUDA graph)
finds its slot and uploads nothing; a new set of addresses is written into a
free (or the least recently used) slot and copied asynchronously on the
current stream. On a GPU the staging rows are pinned, so the copy neither
synchronizes nor breaks stream capture (CUDA's cudaMemcpyAsync: CuPy's own
copy refuses every host-to-device copy while capturing: bench/results/
gpu-2026-11-30, step 6); a slot written during a capture is
read again by every replay, so it is never reused. No step allocates once the
ring exists. On the emulator the addresses are those of the NumPy arrays,
which the kernels, compiled for the CPU, update in place.
"""
from __future__ import annotations

import collections

import numpy as np

from gpucnn.cuda.launch import kernel_name, launch

FAMILY = "optim"
KERNELS = ("optim_advance", "sgd_step", "adam_step")
SLOTS = 16
_rings: dict = {}


def _address(a) -> int:
    return int(a.data.ptr) if hasattr(a.data, "ptr") else int(a.ctypes.data)


class _Ring:
    """SLOTS tables of ``width`` addresses on one runtime, reused least recently used first."""

    def __init__(self, rt, width: int):
        self.rt, self.gpu = rt, rt.xp is not np
        if self.gpu:
            import cupy
            self._pinned = cupy.cuda.alloc_pinned_memory(SLOTS * width * 8)
            self.host = np.frombuffer(self._pinned, np.uint64, SLOTS * width).reshape(SLOTS, width)
        else:
            self.host = np.zeros((SLOTS, width), np.uint64)
        self.dev = rt.xp.zeros((SLOTS, width), np.uint64)
        self.slots = collections.OrderedDict()  # addresses -> slot, least recently used first
        self.events = [None] * SLOTS
        self.frozen = set()  # slots a captured graph reads

    def _free_slot(self) -> int:
        used = set(self.slots.values())
        free = [s for s in range(SLOTS) if s not in used]
        if free:
            return free[0]
        for key, s in self.slots.items():
            if s not in self.frozen:
                del self.slots[key]
                return s
        raise RuntimeError(f"optimizer: all {SLOTS} address tables are held by captured CUDA graphs")

    def table(self, key: tuple):
        slot = self.slots.get(key)
        if slot is None:
            slot = self._free_slot()
            if self.events[slot] is not None:
                self.events[slot].synchronize()  # an earlier copy from this row may still be pending
            self.host[slot] = key
            self._upload(slot)
            self.slots[key] = slot
        self.slots.move_to_end(key)
        return self.dev[slot]

    def _upload(self, slot: int) -> None:
        if not self.gpu:
            self.dev[slot] = self.host[slot]
            return
        import cupy
        stream, rt = cupy.cuda.get_current_stream(), cupy.cuda.runtime
        row = self.host[slot]
        # CUDA's own call: CuPy's copy_from_host_async refuses any host-to-device copy while the stream
        # captures (whatever the memory); from pinned memory CUDA records it as a graph node.
        rt.memcpyAsync(self.dev[slot].data.ptr, row.ctypes.data, row.nbytes, rt.memcpyHostToDevice, stream.ptr)
        if stream.is_capturing():
            self.frozen.add(slot)
            self.events[slot] = None
        else:
            self.events[slot] = cupy.cuda.Event(block=False, disable_timing=True)
            self.events[slot].record(stream)


def _tables(rt, params, grads, offsets):
    """(params, grads, offsets) tables on the device of ``rt``."""
    n = len(params)
    ring = _rings.get((rt.name, n))
    if ring is None:
        ring = _rings[(rt.name, n)] = _Ring(rt, 3 * n + 1)
    # One row: the addresses, then the offsets viewed as uint64 (they are >= 0).
    key = (*(_address(a) for a in (*params, *grads)), *(int(o) for o in offsets))
    row = ring.table(key)
    return row[:n], row[n:2 * n], row[2 * n:].view(np.int64)


def _advance(rt, dtype, scal, beta1, beta2):
    fn = rt.function(FAMILY, kernel_name("optim_advance", dtype))
    fn((1,), (1,), (scal, np.float64(beta1), np.float64(beta2)))


def sgd_step(rt, params, grads, offsets, buf, scal, momentum, dampening, weight_decay, nesterov):
    dtype = params[0].dtype
    pt, gt, ot = _tables(rt, params, grads, offsets)
    _advance(rt, dtype, scal, 0.0, 0.0)
    launch(rt, FAMILY, "sgd_step", dtype, int(offsets[-1]),
           (pt, gt, ot, np.int32(len(params)), buf, scal, np.float64(momentum), np.float64(dampening),
            np.float64(weight_decay), np.int32(bool(nesterov))))


def adam_step(rt, params, grads, offsets, m, v, vmax, scal, beta1, beta2, eps, weight_decay, decoupled, amsgrad):
    dtype = params[0].dtype
    pt, gt, ot = _tables(rt, params, grads, offsets)
    _advance(rt, dtype, scal, beta1, beta2)
    launch(rt, FAMILY, "adam_step", dtype, int(offsets[-1]),
           (pt, gt, ot, np.int32(len(params)), m, v, vmax, scal, np.float64(beta1), np.float64(beta2),
            np.float64(eps), np.float64(weight_decay), np.int32(bool(decoupled)), np.int32(bool(amsgrad))))
