"""Data-parallel training with 2 real MPI ranks (``mpiexec -n 2``, NumPy and
emulator backends): the weights of the single-process training, bitwise
agreement between the ranks and between runs, resuming, and failure. The
ranks run tests/distributed_worker.py or ``gpucnn train``. Skipped, with the
reason, only where MPI cannot start here."""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import gpucnn
from gpucnn import cli

sys.path.insert(0, str(Path(__file__).resolve().parent))
import distributed_worker as worker  # noqa: E402
from conftest import tol  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
WORKER = str(Path(worker.__file__))


def _mpiexec():
    here = Path(sys.executable).parent / "mpiexec"
    return str(here) if here.exists() else shutil.which("mpiexec")


def _env(**extra):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
               GPUCNN_THREADS="1", OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1")
    for v in ("PMI_SIZE", "PMI_RANK", "PMI_FD", "OMPI_COMM_WORLD_SIZE", "PMIX_RANK"):
        env.pop(v, None)  # a pytest run under mpiexec must not hand its rank to the children
    return {**env, **extra}


def _run(args, n=2, timeout=300, launcher=(), **env):
    t0 = time.monotonic()
    p = subprocess.run([_mpiexec(), *launcher, "-n", str(n), *args], capture_output=True, text=True,
                       timeout=timeout, env=_env(**env), cwd=ROOT)
    return p, time.monotonic() - t0


def _mpi_start_problem():
    if _mpiexec() is None:
        return "no mpiexec on PATH (pip install 'gpucnn[distributed]')"
    try:
        import mpi4py  # noqa: F401
    except ImportError:
        return "mpi4py is not installed (pip install 'gpucnn[distributed]')"
    try:
        p, _ = _run([sys.executable, "-c", "from mpi4py import MPI; assert MPI.COMM_WORLD.Get_size() == 2"],
                    timeout=60)
    except subprocess.TimeoutExpired:
        return "mpiexec -n 2 did not start 2 ranks within 60 s"
    return None if p.returncode == 0 else f"mpiexec -n 2 failed here: {p.stderr.strip()[-300:]}"


_problem = _mpi_start_problem()
pytestmark = pytest.mark.skipif(_problem is not None, reason=f"MPI cannot start: {_problem}")


@pytest.mark.parametrize("n", [2, 3])
def test_allreduce_adds_in_rank_order_on_every_rank(tmp_path, n):
    """The MPI all-reduce is ((b0 + b1) + b2) + ..., bitwise, on every rank, for a
    buffer that does not split evenly; another order would round differently."""
    p, _ = _run([sys.executable, WORKER, "allreduce", str(tmp_path)], n=n)
    assert p.returncode == 0, p.stderr
    want = worker.rank_buffer(0)
    for r in range(1, n):
        want = want + worker.rank_buffer(r)
    reordered = worker.rank_buffer(n - 1)
    for r in range(n - 2, -1, -1):
        reordered = reordered + worker.rank_buffer(r)
    if n > 2:  # a + b == b + a in IEEE arithmetic; with three ranks the order shows
        assert not np.array_equal(want, reordered)
    for r in range(n):
        np.testing.assert_array_equal(np.load(tmp_path / f"rank{r}.npy"), want, err_msg=f"rank {r}")


def _weights(out):
    return [dict(np.load(out / f"rank{r}.npz")) for r in (0, 1)]


CASES = [("numpy", "float64", "lenet", False), ("numpy", "float64", "bn", True),
         ("emulator", "float32", "lenet", False), ("emulator", "float32", "bn", True)]


@pytest.mark.parametrize("where,dtype,model,sync_bn", CASES,
                         ids=["numpy-f64-lenet", "numpy-f64-syncbn", "emulator-f32-lenet", "emulator-f32-syncbn"])
def test_two_ranks_train_as_one_process(tmp_path, where, dtype, model, sync_bn):
    """10 momentum-SGD steps of a global batch of 9 (5 + 4 examples) on 2 ranks
    give the weights (and batch-norm running statistics) of one process on the
    whole batches: no batch norm, or batch norm with --sync-bn (and a dropout
    layer)."""
    with gpucnn.use_backend(where):  # on the emulator this also builds the kernels the ranks load
        want = worker.reference_steps(model, np.dtype(dtype).type)
    p, _ = _run([sys.executable, WORKER, "steps", str(tmp_path), "--model", model, "--dtype", dtype,
                 "--backend", where] + (["--sync-bn"] if sync_bn else []))
    assert p.returncode == 0, p.stderr
    r0, r1 = _weights(tmp_path)
    for name, w in want.items():
        np.testing.assert_array_equal(r0[name], r1[name], err_msg=f"ranks disagree on {name}")
        if dtype == "float64":
            rel = np.abs(r0[name] - w).max() / max(np.abs(w).max(), 1)
            assert rel <= 1e-12, (name, rel)
        else:
            np.testing.assert_allclose(r0[name], w, **tol(np.float32), err_msg=name)


def test_per_rank_batch_norm_is_not_the_single_process_step(tmp_path):
    """Without --sync-bn each rank normalizes with its own examples' statistics
    (as DistributedDataParallel), so the run departs from one process's; the
    ranks still agree, rank 0's running statistics copied to rank 1 on
    entering evaluation."""
    want = worker.reference_steps("bn", np.float64)
    p, _ = _run([sys.executable, WORKER, "steps", str(tmp_path), "--model", "bn"])
    assert p.returncode == 0, p.stderr
    r0, r1 = _weights(tmp_path)
    for k in want:
        np.testing.assert_array_equal(r0[k], r1[k], err_msg=k)
    assert max(np.abs(r0[k] - w).max() / np.abs(w).max() for k, w in want.items()) > 1e-3


def _train_argv(out, epochs=2):
    return ["-m", "gpucnn.cli", "train", "--epochs", str(epochs), "--batch-size", "31", "--out", str(out),
            "--no-progress"]


def test_cli_under_mpiexec_resumes_bitwise(tmp_path, capsys):
    """`gpucnn train` unchanged under mpiexec: rank 0 alone prints and writes; a
    run stopped in epoch 2 and resumed with the same N ends with bitwise the
    weights of an uninterrupted run (so two runs agree bitwise); another N is
    refused."""
    a, b = tmp_path / "a", tmp_path / "b"
    p, _ = _run([sys.executable, *_train_argv(a)])
    assert p.returncode == 0, p.stderr
    assert p.stdout.count("held-out accuracy") == 1 and p.stderr.count("lenet on digits") == 1
    crash, _ = _run([sys.executable, WORKER, "fit", str(b), "--crash-epoch", "2"])
    assert crash.returncode != 0 and "rank 0 of 2 failed (KeyboardInterrupt" in crash.stderr
    assert [json.loads(ln)["epoch"] for ln in (b / "metrics.jsonl").read_text().splitlines()] == [1]
    p, _ = _run([sys.executable, *_train_argv(b), "--resume"])
    assert p.returncode == 0, p.stderr
    with np.load(a / "checkpoint.npz") as fa, np.load(b / "checkpoint.npz") as fb:
        assert fa.files == fb.files
        for k in fa.files:
            if k != "meta":
                np.testing.assert_array_equal(fa[k], fb[k], err_msg=k)
    rows = [(a / "metrics.jsonl").read_text().splitlines(), (b / "metrics.jsonl").read_text().splitlines()]
    assert [json.loads(r)["test_acc"] for r in rows[0]] == [json.loads(r)["test_acc"] for r in rows[1]]
    capsys.readouterr()
    assert cli.main(["train", "--epochs", "2", "--batch-size", "31", "--out", str(b), "--resume",
                     "--no-progress"]) == 2
    assert re.search(r"^gpucnn: error: .*written by a run of 2 rank\(s\), this run has 1", capsys.readouterr().err)


@pytest.mark.parametrize("fail,launcher,expect", [
    ("raise", (), "rank 1 of 2 failed (RuntimeError: injected failure in step 5)"),
    ("exit", (), None),
    ("exit", ("-disable-auto-cleanup",), "rank 0: no answer from the other ranks for 3 s")],
    ids=["raises", "exits", "exits-no-launcher-cleanup"])
def test_a_failing_rank_stops_the_others(tmp_path, fail, launcher, expect):
    """Rank 1 raises, or exits, in step 5 of epoch 1: the job ends within a bounded
    time with a non-zero status. A raise is reported and aborts the job; an exit
    is cleaned up by the launcher (its status is the job's), or, where the
    launcher leaves the others running, rank 0's collective times out with a
    clear error."""
    p, seconds = _run([sys.executable, WORKER, "fit", str(tmp_path), "--fail", fail], launcher=launcher,
                      timeout=120, GPUCNN_DIST_TIMEOUT="3")
    assert p.returncode != 0
    if expect is None:
        assert p.returncode == 3, p.stderr
    else:
        assert expect in p.stderr, p.stderr
    assert seconds < 60, seconds
    assert not (tmp_path / "checkpoint.npz").exists()  # it failed in epoch 1
