"""The world a process runs in: rank and size from the MPI launcher
(``mpirun``/``mpiexec``), the GPU it takes, its communicators, and what it
does when anything fails (tell, then abort every rank; never hang)."""
from __future__ import annotations

import dataclasses
import functools
import os
import sys
import time
import traceback

from gpucnn.distributed.comm import DistributedError, MPIComm, NCCLComm, SelfComm

# What MPI launchers put in each rank's environment: MPICH's and Intel MPI's
# hydra (PMI_*), Open MPI (OMPI_*), PMIx launchers, MVAPICH.
_LAUNCHER_SIZE_VARS = ("PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "PMIX_SIZE", "MV2_COMM_WORLD_SIZE")
_LAUNCHER_VARS = _LAUNCHER_SIZE_VARS + ("PMI_RANK", "PMIX_RANK", "OMPI_COMM_WORLD_RANK")
# Seconds a failing rank waits between saying so and aborting (see guarded).
ABORT_GRACE_S = 0.5


@dataclasses.dataclass
class Step:
    """The current global batch: its size, this rank's share of it (positions
    rank, rank + size, ... of the batch), and the examples of the pass so far."""
    n_global: int = 0
    n_local: int = 0
    seen: int = 0


@dataclasses.dataclass(eq=False)
class World:
    rank: int = 0
    size: int = 1
    local_rank: int = 0
    host: object = dataclasses.field(default_factory=SelfComm)  # collectives on NumPy arrays
    gpu: object = None  # an NCCLComm when training on CUDA with NCCL
    step: Step = dataclasses.field(default_factory=Step)

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        """Whether training goes through the distributed path (several ranks, or NCCL forced)."""
        return self.size > 1 or self.gpu is not None

    def comm_for(self, a):
        """The communicator for array ``a``: NCCL for CuPy arrays, MPI (or self) for NumPy."""
        if type(a).__module__.split(".")[0] == "cupy":
            if self.gpu is None:
                raise DistributedError("a CuPy array needs the NCCL communicator, which this world lacks "
                                       "(initialize with device='cuda')")
            return self.gpu
        return self.host

    def abort(self, code=1):
        if self.gpu is not None:
            self.gpu.abort()
        self.host.abort(code)


_current = World()


def current() -> World:
    """The world of this process (a world of one until ``init`` finds a launcher)."""
    return _current


def launched_by_mpi() -> bool:
    return any(v in os.environ for v in _LAUNCHER_VARS)


def _launcher_size() -> int:
    for v in _LAUNCHER_SIZE_VARS:
        if os.environ.get(v, "").isdigit():
            return int(os.environ[v])
    return 1


def _mpi_comm():
    try:
        from mpi4py import MPI
    except ImportError as e:
        if _launcher_size() > 1:
            raise ImportError(f"started by an MPI launcher with {_launcher_size()} ranks, but mpi4py is not "
                              f"installed, so the ranks cannot talk: pip install 'gpucnn[distributed]'") from e
        return None
    return MPI.COMM_WORLD


def _take_gpu(local_rank: int) -> None:
    import cupy
    count = cupy.cuda.runtime.getDeviceCount()
    cupy.cuda.Device(local_rank % count).use()


def init(device: str = "cpu", nccl: bool | None = None) -> World:
    """Set up this process's world and return it. Under an MPI launcher: rank and
    size from MPI_COMM_WORLD, the rank within the node from a shared-memory
    split; on CUDA, GPU ``local_rank % device_count`` and an NCCL communicator
    (``nccl=True`` forces one for a single process too). Without a launcher, a
    world of one. Calling it again returns the same MPI world."""
    global _current
    if _current.size > 1:
        return _current
    comm = _mpi_comm() if launched_by_mpi() else None
    if comm is None:
        world = World()
    else:
        from mpi4py import MPI
        local = comm.Split_type(MPI.COMM_TYPE_SHARED)
        world = World(comm.Get_rank(), comm.Get_size(), local.Get_rank(), MPIComm(comm))
        local.Free()
    if device == "cuda":
        _take_gpu(world.local_rank)
        if nccl if nccl is not None else world.size > 1:
            world.gpu = NCCLComm(world.host)
    _current = world
    return world


def reset() -> None:
    """Back to a world of one (tests; an MPI world cannot be left)."""
    global _current
    if _current.size == 1:
        _current = World()


def guarded(fn):
    """Run ``fn``; if it raises on one rank of several, say which rank failed and
    why on stderr, then abort the job, so the other ranks stop instead of
    waiting forever in their next collective."""
    @functools.wraps(fn)
    def run(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except BaseException as e:
            world = current()
            if world.size > 1:
                # The one line first: on a loaded machine another rank's
                # abort can end this process while the traceback is written.
                print(f"gpucnn.distributed: rank {world.rank} of {world.size} failed ({type(e).__name__}: "
                      f"{e}); aborting all ranks", file=sys.stderr, flush=True)
                if not isinstance(e, (DistributedError, KeyboardInterrupt)):
                    traceback.print_exc()
                    sys.stderr.flush()
                # MPICH's launcher forwards the ranks' stderr through a pipe
                # and stops forwarding when the job is aborted: without a
                # moment's grace the line above was lost in 2 of 6 runs of
                # tests/test_distributed_mpi.py on a loaded 2-core machine.
                time.sleep(ABORT_GRACE_S)
                world.abort(1)
            raise
    return run
