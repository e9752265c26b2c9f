"""gpucnn.distributed within one process: the sampler's split of each global
batch, the flat bucketed gradient buffer, the data-parallel layers in a world
of one (which must be the plain layers), the deadline of a collective, and
the launcher checks. The multi-rank runs are in test_distributed_mpi.py;
the 1-rank NCCL run needs a GPU."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from gpucnn import data, nn
from gpucnn import distributed as dist
from gpucnn.distributed import comm, launch, layers, parallel
from gpucnn.distributed.launch import World
from gpucnn.distributed.reducer import GradReducer

sys.path.insert(0, str(Path(__file__).resolve().parent))
from distributed_worker import train_steps as _train_steps  # noqa: E402

pytestmark = pytest.mark.family("norm")


@pytest.mark.parametrize("n_examples,batch,size", [(25, 7, 3), (20, 5, 2), (9, 9, 4)])
def test_ranks_take_every_nth_example_of_each_single_process_batch(n_examples, batch, size):
    x = np.arange(n_examples, dtype=np.float64).reshape(-1, 1, 1, 1)
    y = np.arange(n_examples)
    want = [yb for _, yb in data.batches(x, y, batch, np.random.default_rng(4))]
    worlds = [World(rank=r, size=size) for r in range(size)]
    got = [[yb for _, yb in parallel.batches(w, x, y, batch, np.random.default_rng(4))] for w in worlds]
    assert all(len(g) == len(want) for g in got)
    for step, whole in enumerate(want):
        for r in range(size):
            np.testing.assert_array_equal(got[r][step], whole[r::size])
    assert worlds[0].step.seen == n_examples


def test_a_step_that_leaves_a_rank_without_examples_is_refused():
    x, y = np.zeros((10, 1, 1, 1)), np.zeros(10, np.int64)
    world = World(rank=0, size=3)
    with pytest.raises(ValueError, match=r"--batch-size 4 over 10 examples leaves a step of 2 examples, "
                                         r"fewer than the 3 ranks"):
        next(parallel.batches(world, x, y, 4, np.random.default_rng(0)))
    with pytest.raises(ValueError, match="leaves a step of 2 examples"):
        next(parallel.batches(world, x, y, 2, np.random.default_rng(0)))
    # Evaluation (no generator): rank 2 has nothing in the last batch and skips it.
    shares = [len(yb) for _, yb in parallel.batches(World(rank=2, size=3), x, y, 4)]
    assert shares == [1, 1]


def test_gradient_buffer_buckets_cover_it_once():
    rng = np.random.default_rng(0)
    grads = {"a": rng.standard_normal((300, 7)), "b": rng.standard_normal(5), "c": rng.standard_normal((2, 3, 4))}
    red = GradReducer(World(), bucket_mb=1000 * 8 / 2**20)  # buckets of 1000 float64
    out = red.reduce(grads)
    spans = red.buckets()
    assert spans[0] == (0, 1000) and spans[-1][1] == 2100 + 5 + 24 and len(spans) == 3
    assert all(a == b for (_, b), (a, _) in zip(spans, spans[1:]))
    for k, g in grads.items():
        np.testing.assert_array_equal(out[k], g)
        assert np.shares_memory(out[k], red.flat)
    with pytest.raises(TypeError, match="one dtype for all parameters"):
        red.reduce({"a": np.zeros(3), "b": np.zeros(3, np.float32)})
    with pytest.raises(ValueError, match="bucket_mb must be > 0"):
        GradReducer(World(), 0)


def _bn_net(seed=0):
    rng = np.random.default_rng(seed)
    return nn.Sequential(nn.Conv2D(2, 3, 3, padding=1, rng=rng, dtype=np.float64), nn.BatchNorm2D(3, dtype=np.float64),
                         nn.ReLU(), nn.Flatten(), nn.Dropout(0.3, rng=np.random.default_rng(seed + 1)),
                         nn.Linear(3 * 4 * 4, 3, rng=rng, dtype=np.float64))


def test_data_parallel_in_a_world_of_one_is_the_plain_model(backend):
    """The wrapper, the sync-BN and sharded-dropout layers and the sampler with
    one rank: the same training, on every backend (the sync-BN forward applies
    the batch-norm kernel), to rounding."""
    rng = np.random.default_rng(1)
    x, y = rng.standard_normal((24, 2, 4, 4)), rng.integers(0, 3, 24)
    plain = _train_steps(_bn_net(), data.batches(x, y, 8, np.random.default_rng(2)))
    world = World()
    model = dist.DataParallel(_bn_net(), world, sync_bn=True)
    assert type(model.module[1]) is layers.SyncBatchNorm2D and type(model.module[4]) is layers.ShardedDropout
    _train_steps(model, parallel.batches(world, x, y, 8, np.random.default_rng(2)))
    for k, v in {**plain.params(), **plain.buffers()}.items():
        np.testing.assert_allclose({**model.params(), **model.buffers()}[k], v, rtol=1e-12, atol=1e-13, err_msg=k)
    assert model.module.rng_states() == plain.rng_states()
    assert model.reducer.calls == 3


def test_sync_batch_norm_needs_two_values_per_channel():
    model = layers.convert(nn.Sequential(nn.BatchNorm2D(2, dtype=np.float64)), World(), sync_bn=True)
    with pytest.raises(ValueError, match="more than one value per channel over all ranks, got 1"):
        model.forward(np.zeros((1, 2, 1, 1)))


def test_world_of_one_leaves_training_unchanged(tmp_path):
    dist.reset()
    model = _bn_net()
    assert dist.init("cpu").size == 1 and dist.wrap(model) is model
    assert dist.sum_over_ranks(1.5, 2) == (1.5, 2) and dist.global_seen(7) == 7
    assert dist.checkpoint_meta() == {"ranks": 1}
    with pytest.raises(ValueError, match=r"written by a run of 2 rank\(s\), this run has 1; resume with "
                                         r"the same number \(mpiexec -n 2\)"):
        dist.check_resume({"ranks": 2})


def test_a_collective_without_answer_raises_after_the_deadline():
    with pytest.raises(comm.DistributedError, match=r"rank 3: no answer from the other ranks for 0 s in MPI "
                                                    r"all-reduce; a rank died"):
        comm._poll(lambda: False, "MPI all-reduce", 3, 0.05)


def test_deadline_from_the_environment(monkeypatch):
    monkeypatch.setenv("GPUCNN_DIST_TIMEOUT", "12.5")
    assert comm.timeout_s() == 12.5
    for bad in ("soon", "0", "-3"):
        monkeypatch.setenv("GPUCNN_DIST_TIMEOUT", bad)
        with pytest.raises(ValueError, match="GPUCNN_DIST_TIMEOUT"):
            comm.timeout_s()


def test_launched_by_mpi_without_mpi4py_says_what_to_install(monkeypatch):
    dist.reset()
    monkeypatch.setenv("PMI_SIZE", "4")
    monkeypatch.setenv("PMI_RANK", "1")
    monkeypatch.setitem(sys.modules, "mpi4py", None)
    with pytest.raises(ImportError, match=r"MPI launcher with 4 ranks, but mpi4py is not installed.*"
                                          r"gpucnn\[distributed\]"):
        launch.init("cpu")
    assert dist.current().size == 1


@pytest.mark.parametrize("uid", [bytes(range(200, 256)) + bytes(72), tuple(range(-128, 0))],
                         ids=["cupy14-bytes", "tuple-of-ints"])
def test_the_nccl_unique_id_crosses_the_json_broadcast_as_it_was(uid):
    """NCCL's unique id, through the JSON that bcast_json sends, comes back as rank 0's CuPy gave it:
    bytes in CuPy 14 (NcclCommunicator refused the tuple the first GPU run passed), ints before."""
    import json
    back = comm.unique_id(json.loads(json.dumps(comm.unique_id_message(uid))))
    assert type(back) is type(uid) and back == uid


def _cuda_nccl_ready():
    from gpucnn import backend
    ok, why = backend.available("cuda")
    if not ok:
        return why
    try:
        from cupy.cuda import nccl
    except ImportError as e:
        return f"cupy.cuda.nccl does not import: {e}"
    return None if nccl.available else "CuPy finds no NCCL library here"


@pytest.mark.gpu
def test_one_rank_nccl_on_the_gpu_is_the_plain_gpu_training():
    """A communicator of one through NCCL (no MPI needed): the CuPy float64
    training through the NCCL all-reduce equals the plain GPU training bitwise
    (per-rank batch norm) or to rounding (sync-BN), and the NumPy reference
    within the float64 tolerance."""
    why = _cuda_nccl_ready()
    if why:
        pytest.skip(f"needs a GPU with NCCL: {why}")
    from gpucnn.nn._array import to_device, to_host
    rng = np.random.default_rng(1)
    x, y = rng.standard_normal((24, 2, 4, 4)), rng.integers(0, 3, 24)

    def on_gpu(batches):
        return ((to_device(a, "cuda"), to_device(b, "cuda")) for a, b in batches)
    host = _train_steps(_bn_net(), data.batches(x, y, 8, np.random.default_rng(2))).params()
    plain = _train_steps(_bn_net().to("cuda"), on_gpu(data.batches(x, y, 8, np.random.default_rng(2)))).params()
    dist.reset()
    world = launch.init("cuda", nccl=True)
    try:
        for sync_bn in (False, True):
            model = dist.DataParallel(_bn_net().to("cuda"), world, sync_bn=sync_bn)
            _train_steps(model, on_gpu(parallel.batches(world, x, y, 8, np.random.default_rng(2))))
            for k, v in plain.items():
                got = to_host(model.params()[k])
                if not sync_bn:
                    np.testing.assert_array_equal(got, to_host(v), err_msg=k)
                np.testing.assert_allclose(got, host[k], rtol=1e-10, atol=1e-12, err_msg=k)
    finally:
        dist.reset()
