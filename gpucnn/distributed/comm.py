"""The collectives data-parallel training needs, on the established engines:
MPI (mpi4py) for NumPy arrays, NCCL (cupy.cuda.nccl) for CuPy arrays, and a
communicator of one for a single process without MPI.

Every wait has a deadline (``GPUCNN_DIST_TIMEOUT`` seconds, default 300): a
rank whose peers stopped answering raises ``DistributedError`` instead of
hanging, and the caller aborts the job (see ``gpucnn.distributed.launch``).

Reduction order. ``allreduce_sum`` adds the ranks' buffers in rank order,
((b0 + b1) + b2) + ..., on every rank and in every run, whatever MPI
implementation or algorithm is underneath: the buffer is split into one
chunk per rank, an all-to-all hands rank j the j-th chunk of every rank, rank
j adds them in rank order, and an all-gather returns the sums. NCCL chooses
its own order, which is fixed for a fixed rank count, message size and
algorithm; the algorithm is pinned to Ring unless NCCL_ALGO is set.
"""
from __future__ import annotations

import json
import os
import time

import numpy as np

DEFAULT_TIMEOUT_S = 300.0


class DistributedError(RuntimeError):
    """Another rank failed, died or stopped answering."""


def timeout_s() -> float:
    raw = os.environ.get("GPUCNN_DIST_TIMEOUT", "")
    try:
        value = float(raw) if raw else DEFAULT_TIMEOUT_S
    except ValueError:
        raise ValueError(f"GPUCNN_DIST_TIMEOUT must be a number of seconds, got {raw!r}") from None
    if not value > 0:
        raise ValueError(f"GPUCNN_DIST_TIMEOUT must be > 0, got {raw!r}")
    return value


def _poll(done, what: str, rank: int, timeout: float) -> None:
    """Wait until done() is true. Each poll also moves MPI's transfer on, so for
    the first second (a step's collectives, a rank finishing its backward) poll
    without pause, only yielding the core; a longer wait (rank 0 writing a
    checkpoint) sleeps 1 ms between polls and leaves the core free."""
    t0 = time.monotonic()
    while not done():
        waited = time.monotonic() - t0
        if waited > timeout:
            raise DistributedError(
                f"rank {rank}: no answer from the other ranks for {timeout:.0f} s in {what}; a rank "
                f"died, failed or hangs (the deadline is GPUCNN_DIST_TIMEOUT seconds)")
        time.sleep(0.001 if waited > 1.0 else 0)


class SelfComm:
    """The communicator of a single process: every collective is the identity."""
    size, rank = 1, 0

    def allreduce_sum(self, buf):
        return buf

    def bcast(self, arr, root=0):
        return arr

    def bcast_json(self, obj, root=0):
        return obj

    def abort(self, code=1):
        raise SystemExit(code)


class MPIComm:
    """Collectives on NumPy arrays over an mpi4py communicator."""

    def __init__(self, comm, timeout=None):
        self.comm = comm
        self.rank, self.size = comm.Get_rank(), comm.Get_size()
        self.timeout = timeout_s() if timeout is None else timeout

    def _wait(self, request, what):
        _poll(request.Test, f"MPI {what}", self.rank, self.timeout)

    def allreduce_sum(self, buf):
        """Sum the 1-D contiguous ``buf`` over the ranks in place, in rank order."""
        n = self.size
        if n == 1:
            return buf
        chunk = -(-len(buf) // n)
        send = buf  # a buffer that splits evenly travels as it is; else a zero-padded copy
        if n * chunk != len(buf):
            send = np.zeros(n * chunk, buf.dtype)
            send[:len(buf)] = buf
        recv = np.empty(n * chunk, buf.dtype)
        self._wait(self.comm.Ialltoall(send, recv), "all-to-all of the all-reduce")
        parts = recv.reshape(n, chunk)
        acc = parts[0] + parts[1]
        for r in range(2, n):  # the fixed order: rank 0's chunk, plus rank 1's, plus ...
            acc += parts[r]
        self._wait(self.comm.Iallgather(acc, send), "all-gather of the all-reduce")
        if send is not buf:
            buf[:] = send[:len(buf)]
        return buf

    def bcast(self, arr, root=0):
        """Rank ``root``'s contiguous ``arr`` into every rank's ``arr``."""
        if self.size > 1:
            self._wait(self.comm.Ibcast(arr, root=root), "broadcast")
        return arr

    def bcast_json(self, obj, root=0):
        """A JSON-able object from rank ``root`` (its length first, then its bytes)."""
        raw = np.frombuffer(json.dumps(obj).encode(), np.uint8) if self.rank == root else None
        n = self.bcast(np.array([0 if raw is None else len(raw)], np.int64), root)
        raw = raw.copy() if raw is not None else np.empty(int(n[0]), np.uint8)
        return json.loads(self.bcast(raw, root).tobytes().decode())

    def abort(self, code=1):
        self.comm.Abort(code)


def unique_id_message(uid) -> dict:
    """NCCL's unique id as JSON for the host broadcast: CuPy 14 gives it as bytes and takes bytes
    (bench/results/gpu-2026-11-30, a tuple was refused), earlier CuPy a tuple of ints."""
    return {"bytes": isinstance(uid, (bytes, bytearray)), "id": [int(v) for v in uid]}


def unique_id(message: dict):
    """The unique id of ``unique_id_message``, as the type rank 0's CuPy gave it."""
    return bytes(message["id"]) if message["bytes"] else tuple(message["id"])


class NCCLComm:
    """Collectives on CuPy arrays through NCCL; the unique id travels over ``host``
    (an MPIComm, or a SelfComm for a communicator of one)."""

    def __init__(self, host, timeout=None):
        import cupy
        from cupy.cuda import nccl
        if not nccl.available:
            raise RuntimeError("CuPy finds no NCCL library, which training on several GPUs needs: see "
                               "'Additional CUDA Libraries' in CuPy's installation guide")
        os.environ.setdefault("NCCL_ALGO", "Ring")  # a fixed reduction order (see the module doc)
        self.cupy, self.nccl = cupy, nccl
        self.rank, self.size = host.rank, host.size
        self.timeout = timeout_s() if timeout is None else timeout
        uid = host.bcast_json(unique_id_message(nccl.get_unique_id()) if host.rank == 0 else None)
        self.comm = nccl.NcclCommunicator(self.size, unique_id(uid), self.rank)
        self._types = {np.dtype(np.float32): nccl.NCCL_FLOAT32, np.dtype(np.float64): nccl.NCCL_FLOAT64,
                       np.dtype(np.int64): nccl.NCCL_INT64}

    def _type(self, arr):
        if arr.dtype not in self._types:
            raise TypeError(f"NCCL collectives here take float32, float64 or int64 arrays, got {arr.dtype}")
        return self._types[arr.dtype]

    def _wait(self, what):
        stream = self.cupy.cuda.get_current_stream()
        event = stream.record()
        _poll(lambda: event.done, f"NCCL {what}", self.rank, self.timeout)

    def allreduce_sum(self, buf):
        stream = self.cupy.cuda.get_current_stream().ptr
        self.comm.allReduce(buf.data.ptr, buf.data.ptr, buf.size, self._type(buf), self.nccl.NCCL_SUM, stream)
        self._wait("all-reduce")
        return buf

    def bcast(self, arr, root=0):
        stream = self.cupy.cuda.get_current_stream().ptr
        self.comm.bcast(arr.data.ptr, arr.size, self._type(arr), root, stream)
        self._wait("broadcast")
        return arr

    def abort(self, code=1):
        self.comm.abort()
