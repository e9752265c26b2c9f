"""One run of the suite: every case and pass on every backend, side by side,
with the machine's limits measured in the same run; returns the result as a
JSON-ready dict (see ``report`` for the table, the file and the chart)."""
from __future__ import annotations

import datetime
import math
import os
import platform
import sys
import time

import numpy as np

from gpucnn.bench import cases, fused, limits, modes, ops, steps, timing, tuning

# Backend names: what runs, and where. The first of a run is ours.
BACKENDS = {"gpucnn-cuda": ("gpucnn", "cuda"), "gpucnn-numpy": ("gpucnn", "cpu"),
            "torch-cudnn": ("torch", "cuda"), "torch-cpu": ("torch", "cpu"), **modes.BACKENDS}
DEFAULT = {"cuda": ["gpucnn-cuda", "torch-cudnn", "torch-cudnn-tf32", "gpucnn-cuda-tf32", "gpucnn-cuda-3xtf32",
                    "gpucnn-cuda-fp32", "torch-cpu", "gpucnn-numpy"],
           "cpu": ["gpucnn-numpy", "torch-cpu"]}
# A memory-bound row's copy of its input tensor, timed beside it (not a backend: no ratio).
COPY = "copy"
# Rotate inputs among enough copies to overflow the last-level cache.
ROTATE_BYTES = {"cuda": 128 * 2**20, "cpu": 64 * 2**20}
SCHEMA = 1


def _have_torch(device):
    try:
        import torch
    except ImportError:
        return False
    return device == "cpu" or torch.cuda.is_available()


def _setup_threads(threads):
    """Give NumPy's BLAS, PyTorch and our chunked ops the same thread count;
    returns what each was set to (None where it could not be read)."""
    from gpucnn.reference import workspace
    os.environ["GPUCNN_THREADS"] = str(threads)
    out = {"gpucnn": workspace.threads(), "blas": None, "torch": None}
    try:
        import threadpoolctl
        threadpoolctl.threadpool_limits(threads, user_api="blas")
        out["blas"] = [i["num_threads"] for i in threadpoolctl.threadpool_info() if i["user_api"] == "blas"]
    except ImportError:
        pass
    try:
        import torch
        torch.set_num_threads(threads)
        out["torch"] = torch.get_num_threads()
    except ImportError:
        pass
    return out


def _torch_cuda_setup():
    import torch
    torch.backends.cudnn.benchmark = True
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cuda.matmul.allow_tf32 = False


def _copies(case, device):
    return max(1, min(16, math.ceil(ROTATE_BYTES[device] / max(1, case.nbytes("forward")
                                                              if case.kind == "mem" else case.nbytes()))))


def _row(case, direction, res, full_n, lim, names):
    ours = names[0]
    ms = res[ours]["ms"]
    flops = case.flops()
    nbytes = case.nbytes() if case.kind == "conv" else case.nbytes(direction)
    row = {"case": case.label(), "name": case.name, "kind": case.kind,
           "op": "conv" if case.kind == "conv" else case.op, "pass": direction,
           "batch": case.N, "full_batch": full_n, "flops": flops, "bytes": nbytes,
           "ms": {n: res[n]["ms"] for n in names}, "reps": res[ours]["samples"],
           "gflops": flops / ms / 1e6, "gbps": nbytes / ms / 1e6}
    row["fraction_of_limit"] = (row["gflops"] / lim["matmul_gflops"] if case.kind == "conv"
                                else row["gbps"] / lim["copy_gbps"])
    if case.kind == "mem":  # the input's size, which the bandwidth targets are stated on
        row["tensor_bytes"] = case.tensor_bytes()
        if COPY in res:  # a copy of that tensor, timed in the same loop: the fixed costs at this size
            row["copy_ms"] = res[COPY]["ms"]
            row["copy_gbps"] = 2 * row["tensor_bytes"] / row["copy_ms"] / 1e6
            row["fraction_of_same_copy"] = row["gbps"] / row["copy_gbps"]
    row["ratio"] = {n: ms / res[n]["ms"] for n in names[1:]}
    if case.kind == "conv":
        row["modes"] = modes.row_modes(row, lim)
        if BACKENDS[ours] == ("gpucnn", "cuda"):
            from gpucnn.runtime import cupy_runtime
            row["algo"] = chosen(case, direction, names, cupy_runtime.device())
    return row


def _in_graph(runs, ours, row, lim, budget_s, small) -> dict:
    """A GPU memory row's op and its same-size copy, each captured with its CALLS calls into
    a CUDA graph and replayed (timing.GraphClock), side by side: the device's time without the
    host's launch path. {"ms", "copy_ms", "fraction_of_limit", "fraction_of_same_copy"}, or
    {"why"} where a capture failed."""
    res = _graph_times(runs, [ours, COPY], budget_s, small)
    if "why" in res:
        return res
    ms, copy_ms = res[ours]["ms"], res[COPY]["ms"]
    gbps = row["bytes"] / ms / 1e6
    return {"ms": ms, "copy_ms": copy_ms, "fraction_of_limit": gbps / lim["copy_gbps"],
            "fraction_of_same_copy": gbps / (2 * row["tensor_bytes"] / copy_ms / 1e6)}


def _graph_times(runs, names, budget_s, small) -> dict:
    """timing.interleaved's medians of ``runs[name]`` for each of ``names``, each run's calls
    replayed from a CUDA graph (timing.GraphClock); {"why"} where a capture failed (the rows
    keep their eager times: a GPU run is too rare to lose to one op that cannot be captured)."""
    try:
        return timing.interleaved(timing.GraphClock(), {n: runs[n] for n in names}, budget_s=budget_s,
                                  min_reps=3 if small else 5)
    except Exception as e:  # noqa: BLE001 - named in the row and the report, never swallowed silently
        return {"why": f"{type(e).__name__}: {e}"}


def chosen(case, direction, names, device) -> dict:
    """{our GPU backend: the algorithm its pass ran on ``device`` ((compute capability, SMs)):
    the one autotuning kept where it tuned the pass (--algo autotune), else the heuristic's}."""
    from gpucnn import mathmode
    from gpucnn.bench import model
    from gpucnn.cuda import algo, autotune
    cc, sms = device
    g, out = model.geometry(case), {}
    for n in names:
        if BACKENDS[n] != ("gpucnn", "cuda"):
            continue
        with mathmode.math_mode(modes.MODE_OF.get(n)):
            math = mathmode.effective(cc)
        c = autotune.tuned_choice(g, direction, math) or algo.choose(g, direction, np.float32, math, sms, cc)
        out[n] = model.describe(c)
    return out


def geomeans(rows, names):
    """{kind/op/pass: {peer: geometric mean of our time over the peer's}}."""
    groups = {}
    for r in rows:
        key = f"{'conv' if r['kind'] == 'conv' else r['op']} {r['pass']}"
        for peer in names[1:]:
            groups.setdefault(key, {}).setdefault(peer, []).append(math.log(r["ratio"][peer]))
    return {k: {p: math.exp(sum(v) / len(v)) for p, v in d.items()} for k, d in groups.items()}


class Bar:
    """A one-line progress bar on stderr, redrawn in place on a terminal."""

    def __init__(self, total, enabled=True, stream=None):
        self.total, self.done, self.enabled = total, 0, enabled
        self.stream = stream if stream is not None else sys.stderr
        self.live = getattr(self.stream, "isatty", lambda: False)()
        self.t0 = time.perf_counter()

    def step(self, label):
        self.done += 1
        if not self.enabled or not (self.live or self.done == self.total):
            return
        filled = int(30 * self.done / max(1, self.total))
        self.stream.write(f"\rbench [{'#' * filled}{'.' * (30 - filled)}] {self.done}/{self.total} "
                          f"{time.perf_counter() - self.t0:5.0f}s {label[:40]:40s}"
                          + ("\n" if self.done == self.total else ""))
        self.stream.flush()


def run(device="cpu", backends=None, small=False, only=None, budget_s=None, threads=None,
        train=True, progress=True, steps_only=False, compile_torch=True, step_threads=None, busy=True,
        with_fused=True, fused_only=False, on_row=None):
    """Run the suite; see the module docstring. GPUCNN_THREADS is restored after.
    ``train``: also the training-step rows (``steps``); ``steps_only``: only those;
    on a CPU ``step_threads`` (default 1 and 2) and ``busy`` choose the step rows'
    thread counts and whether they are timed again with one core busy.
    ``with_fused``: also the fused rows (``fused``); ``fused_only``: only those.
    ``on_row(section, row)`` is called as each row is timed ("rows", "fused", "train"), so
    that a run cut short keeps what it measured (the CLI's partial.jsonl)."""
    saved = os.environ.get("GPUCNN_THREADS")
    try:
        return _run(device, backends, small, only, budget_s, threads, (train or steps_only) and not fused_only,
                    progress, steps_only, compile_torch, step_threads, busy,
                    (with_fused or fused_only) and not steps_only, fused_only, on_row or (lambda section, row: None))
    finally:
        if saved is None:
            os.environ.pop("GPUCNN_THREADS", None)
        else:
            os.environ["GPUCNN_THREADS"] = saved


def _passive_omp() -> str | None:
    """Ask PyTorch's OpenMP threads to sleep rather than spin when idle.

    Spinning keeps a core busy for about 10 ms after each torch call, which is
    charged to whichever backend runs next in the interleaved timing; passive
    waiting barely changes torch's own times. It takes effect only if torch is
    not imported yet; the policy in force is recorded in the JSON."""
    if "torch" not in sys.modules:
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    return os.environ.get("OMP_WAIT_POLICY")


def _run(device, backends, small, only, budget_s, threads, train, progress, steps_only, compile_torch,
         step_threads=None, busy=True, with_fused=True, fused_only=False, on_row=lambda section, row: None):
    omp_policy = _passive_omp()
    if threads is None:
        from gpucnn.reference import workspace
        os.environ.pop("GPUCNN_THREADS", None)
        threads = workspace.threads()
    names = [n for n in (backends or DEFAULT[device])
             if BACKENDS[n][0] != "torch" or _have_torch(BACKENDS[n][1])]
    budget_s = budget_s if budget_s is not None else (0.05 if small else 1.0)
    thread_counts = _setup_threads(threads)
    if "torch-cudnn" in names:
        _torch_cuda_setup()
    clocks = {n: timing.clock(BACKENDS[n][1]) for n in names}
    small_limits = {"copy_bytes": 8 * 2**20, "n": 256, "reps": 2} if small else {}
    lim = limits.cuda(**small_limits) if device == "cuda" else limits.cpu(threads, **small_limits)
    todo = [] if steps_only or fused_only else [
        (c, full_n, d) for c, full_n in cases.suite(device, small=small, only=only) for d in cases.passes(c)]
    step_models = steps.models(only if steps_only else None) if train else []
    fused_todo = fused.suite(device, small=small, only=only) if with_fused else []
    bar = Bar(len(todo) + len(fused_todo) + len(step_models), enabled=progress)
    rows, box = [], machine(device)
    from gpucnn.bench import model
    model_key = model.device_key(box.get("gpu", ""))  # the static model's device, on a GPU
    for case, full_n, direction in todo:
        copies = 1 if small else _copies(case, device)
        runs = {}
        for n in names:
            fn, inputs = ops.build(case, direction, BACKENDS[n][0], BACKENDS[n][1], copies)
            runs[n] = (modes.wrap(n, fn), inputs)
        if case.kind == "mem":
            runs[COPY] = (limits.copier(device), limits.copy_pairs(device, case.tensor_bytes(), copies))
        res = timing.interleaved({**clocks, COPY: clocks[names[0]]}, runs, budget_s=budget_s,
                                 min_reps=3 if small else 5)
        rows.append(_row(case, direction, res, full_n, lim, names))
        if case.kind == "mem" and device == "cuda" and BACKENDS[names[0]] == ("gpucnn", "cuda"):
            rows[-1]["graph"] = _in_graph(runs, names[0], rows[-1], lim, budget_s, small)
        if case.kind == "conv" and device == "cuda":  # every candidate, where --algo autotune timed them
            from gpucnn.runtime import cupy_runtime
            tuning.attach(rows[-1], case, direction, names, cupy_runtime.device(), model_key)
        on_row("rows", rows[-1])
        bar.step(f"{case.label()} {direction}")
        del runs
    fused_rows = _fused_rows(fused_todo, names, device, small, budget_s, bar, on_row)
    step_rows = []
    if train:
        step_rows = steps.run_steps(device, small, budget_s, clocks[names[0]], compile_torch=compile_torch,
                                    have_torch=any(BACKENDS[n] == ("torch", device) for n in names),
                                    progress=bar.step, only=only if steps_only else None,
                                    thread_counts=step_threads, busy=busy, on_row=lambda row: on_row("train", row))
    if device == "cuda":
        model.attach(rows, box.get("gpu", ""))
    return {"schema": SCHEMA, "date": datetime.datetime.now(datetime.timezone.utc).isoformat(),
            "device": device, "machine": box, "versions": versions(),
            "threads": thread_counts, "omp_wait_policy": omp_policy, "load_average": _loadavg(), "backends": names, "ours": names[0],
            "limits": lim, "rows": rows, "geomean_ratio": geomeans(rows, names),
            "mode_geomeans": modes.geomeans(rows), "fused": fused_rows, "train": step_rows, "steps_only": steps_only,
            "fused_only": fused_only}


def _fused_rows(todo, names, device, small, budget_s, bar, on_row=lambda section, row: None):
    """The fused rows of ``todo`` ([(case, full batch)]): ours and the peers that run on ``device``."""
    ours = [n for n in names if BACKENDS[n] == ("gpucnn", device)]
    peers = [n for n in names if BACKENDS[n] == ("torch", device)]
    clk, out = timing.clock(device), []
    for case, full_n in todo:
        chosen = fused.plan(case, ours, peers)
        if chosen:
            runs = fused.runs(case, chosen, device, 1 if small else _copies(case, device))
            res = timing.interleaved(clk, runs, budget_s=budget_s, min_reps=3 if small else 5)
            graph = (_graph_times(runs, [f"{n} {side}" for n in chosen for side in fused.sides(case)],
                                  budget_s, small) if device == "cuda" else None)
            for row in fused.rows(case, full_n, res, chosen, graph):
                out.append(row)
                on_row("fused", row)
            del runs
        bar.step(f"{case.label()} fused")
    return out


def _loadavg():
    try:
        return list(os.getloadavg())
    except OSError:
        return None


def machine(device):
    m = {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
         "cpus": os.cpu_count()}
    try:
        with open("/proc/cpuinfo") as f:
            m["cpu"] = next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), None)
    except OSError:
        pass
    if device == "cuda":
        import cupy as cp
        props = cp.cuda.runtime.getDeviceProperties(0)
        name = props["name"]
        m["gpu"] = name.decode() if isinstance(name, bytes) else name
    return m


def versions():
    import gpucnn
    v = {"gpucnn": gpucnn.__version__, "python": platform.python_version(), "numpy": np.__version__}
    for mod in ("torch", "cupy"):
        try:
            v[mod] = __import__(mod).__version__
        except ImportError:
            pass
    try:
        import torch
        if torch.cuda.is_available():
            v["cudnn"] = torch.backends.cudnn.version()
            v["cuda"] = torch.version.cuda
    except ImportError:
        pass
    return v
