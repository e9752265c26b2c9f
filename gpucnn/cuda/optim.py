"""Launch code of kernels/optim.cu (same interface as gpucnn.reference.optim).

The parameters and gradients reach the kernel as tables of device addresses
(one uint64 each), so one launch updates every tensor. A table is built once
per distinct set of addresses and kept (the few most recent), so steps whose
arrays stay put, as in a replayed CUDA graph, upload nothing. On the GPU a
table travels from its own pinned host buffer with an asynchronous copy on
the current stream: no synchronization, and legal inside stream capture.
On the emulator the addresses are those of the NumPy arrays, which the
kernels, compiled for the CPU, update in place.
"""
from __future__ import annotations

import collections
import ctypes

import numpy as np

from gpucnn.cuda.launch import kernel_name, launch

FAMILY = "optim"
KERNELS = ("optim_advance", "sgd_step", "adam_step")
_TABLES_KEPT = 8
_tables: collections.OrderedDict = collections.OrderedDict()


def _address(a) -> int:
    return int(a.data.ptr) if hasattr(a.data, "ptr") else int(a.ctypes.data)


def _upload(rt, host: np.ndarray):
    if rt.xp is np:
        return host
    import cupy
    pinned = cupy.cuda.alloc_pinned_memory(host.nbytes)
    staged = np.frombuffer(pinned, host.dtype, host.size)
    staged[...] = host
    dev = cupy.empty(host.shape, host.dtype)
    dev.data.copy_from_host_async(ctypes.c_void_p(staged.ctypes.data), host.nbytes, cupy.cuda.get_current_stream())
    return dev, pinned  # the pinned buffer must outlive the copy: kept with the table


def _table(rt, params, grads):
    """(params, grads) address tables and the int64 offsets, cached by address."""
    key = (rt.name, tuple(_address(a) for a in (*params, *grads)), tuple(p.size for p in params))
    hit = _tables.get(key)
    if hit is None:
        sizes = np.array([p.size for p in params], np.int64)
        offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
        host = [np.array([_address(a) for a in arrays], np.uint64) for arrays in (params, grads)]
        hit = _tables[key] = (*(_upload(rt, h) for h in host), _upload(rt, offsets))
        while len(_tables) > _TABLES_KEPT:
            _tables.popitem(last=False)
    _tables.move_to_end(key)
    return tuple(t if rt.xp is np else t[0] for t in hit)


def _advance(rt, dtype, scal, beta1, beta2):
    fn = rt.function(FAMILY, kernel_name("optim_advance", dtype))
    fn((1,), (1,), (scal, np.float64(beta1), np.float64(beta2)))


def sgd_step(rt, params, grads, offsets, buf, scal, momentum, dampening, weight_decay, nesterov):
    dtype = params[0].dtype
    pt, gt, ot = _table(rt, params, grads)
    _advance(rt, dtype, scal, 0.0, 0.0)
    launch(rt, FAMILY, "sgd_step", dtype, int(offsets[-1]),
           (pt, gt, ot, np.int32(len(params)), buf, scal, np.float64(momentum), np.float64(dampening),
            np.float64(weight_decay), np.int32(bool(nesterov))))


def adam_step(rt, params, grads, offsets, m, v, vmax, scal, beta1, beta2, eps, weight_decay, decoupled, amsgrad):
    dtype = params[0].dtype
    pt, gt, ot = _table(rt, params, grads)
    _advance(rt, dtype, scal, beta1, beta2)
    launch(rt, FAMILY, "adam_step", dtype, int(offsets[-1]),
           (pt, gt, ot, np.int32(len(params)), m, v, vmax, scal, np.float64(beta1), np.float64(beta2),
            np.float64(eps), np.float64(weight_decay), np.int32(bool(decoupled)), np.int32(bool(amsgrad))))
