"""The training-step benchmark: one step (forward, backward, SGD update with
momentum) of each model of ``cases.STEPS``, ours against PyTorch with the
same architecture (``torch_models``), timed side by side.

On a GPU: ours is the captured step (``compile_step``; when the step cannot
be captured it runs eagerly and the row says why), against PyTorch eager
with cudnn.benchmark=True and against torch.compile of the model (where it
compiles). Peak device memory: for ours the CuPy pool's bytes (parameters,
gradients, optimizer state and inputs in the default pool, which keeps
every block it ever held, plus the graph's private pool: a high-water mark
of memory held, not just in use), for PyTorch torch.cuda.max_memory_allocated.
On a CPU: the NumPy backend against PyTorch CPU eager at 1 and 2 threads,
quiet and with one core busy, no memory figures (``cpu_steps``).
"""
from __future__ import annotations

import numpy as np

from gpucnn.bench import cases, timing

LR, MOMENTUM = 0.01, 0.9


def _inputs(rng, shape, classes, batch, n=2):
    return ([rng.standard_normal((batch, *shape), dtype=np.float32) for _ in range(n)],
            [rng.integers(0, classes, batch) for _ in range(n)])


def _ours(model, xs, ys, device):
    """(step function, inputs, notes) of gpucnn's training step."""
    from gpucnn.nn import SGD, CaptureError, CrossEntropyLoss, compile_step
    if device == "cuda":
        import cupy
        model.to("cuda")
        xs, ys = [cupy.asarray(x) for x in xs], [cupy.asarray(y) for y in ys]
    loss_fn, opt = CrossEntropyLoss(), SGD(model, LR, momentum=MOMENTUM)
    notes = {"graph": False, "why": None, "step": None}
    if device == "cuda":
        try:
            notes["step"] = compile_step(model, loss_fn, opt, xs[0], ys[0])
            notes["graph"] = True
            return notes["step"], list(zip(xs, ys)), notes
        except CaptureError as e:
            notes["why"] = str(e)

    def eager(x, y):
        loss_fn.forward(model.forward(x), y)
        model.backward_params(loss_fn.backward())
        opt.step()
    return eager, list(zip(xs, ys)), notes


def _torch(model, xs, ys, device, compiled):
    """(step function, inputs) of the same step in PyTorch, eager or with torch.compile."""
    import torch

    from gpucnn.bench import torch_models
    net = torch_models.from_gpucnn(model).to(device)
    opt = torch.optim.SGD(net.parameters(), lr=LR, momentum=MOMENTUM)
    loss_fn = torch.nn.CrossEntropyLoss()
    fwd = torch.compile(net) if compiled else net
    inputs = [(torch.from_numpy(x).to(device), torch.from_numpy(y).to(device)) for x, y in zip(xs, ys)]

    def step(x, y):
        opt.zero_grad(set_to_none=True)
        loss_fn(fwd(x), y).backward()
        opt.step()
    return step, inputs


def _peers(device, compile_torch):
    if device == "cuda":
        return ["torch-eager"] + (["torch-compile"] if compile_torch else [])
    return ["torch-cpu"]


def _measure(clk, name, fn, inputs, budget_s, min_reps):
    r = timing.interleaved(clk, {name: (fn, inputs)}, budget_s=budget_s, min_reps=min_reps)
    return r[name]["ms"]


def _peak_ours(device, notes):
    if device != "cuda":
        return None
    import cupy
    return int(cupy.get_default_memory_pool().total_bytes()) + (notes["step"].pool_bytes if notes["step"] else 0)


def _fresh_memory(device):
    """Start a memory measurement: empty CuPy's pool, reset PyTorch's peak."""
    if device != "cuda":
        return
    import cupy
    cupy.get_default_memory_pool().free_all_blocks()
    try:
        import torch
    except ImportError:
        return
    if torch.cuda.is_available():  # a CPU build of torch has no peak to reset (AttributeError)
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


def _torch_entry(model, xs, ys, device, peer, clk, budget_s, min_reps):
    import torch
    _fresh_memory(device)
    try:
        fn, inputs = _torch(model, xs, ys, device if device == "cuda" else "cpu", peer == "torch-compile")
        ms = _measure(clk, peer, fn, inputs, budget_s, min_reps)
    except Exception as e:  # torch.compile fails on some set-ups: report it, keep the other rows
        return {"error": f"{type(e).__name__}: {e}"[:300]}
    peak = int(torch.cuda.max_memory_allocated()) if device == "cuda" else None
    return {"ms": ms, "peak_bytes": peak}


def step_row(name, shape, classes, batch, device, peers, clk, budget_s, min_reps=3):
    """One model's row: ours and each peer (ms, images/s, peak bytes), and ours over each peer in images/s."""
    from gpucnn.nn import MODELS
    rng = np.random.default_rng(0)
    xs, ys = _inputs(rng, shape, classes, batch)
    row = {"model": name, "input": list(shape), "batch": batch, "results": {}}
    if name not in MODELS:
        row["error"] = f"{name} is not in gpucnn.nn.MODELS"
        return row
    model = MODELS[name](shape, classes, rng=rng)
    for peer in peers:
        row["results"][peer] = _torch_entry(model, xs, ys, device, peer, clk, budget_s, min_reps)
    _fresh_memory(device)
    fn, inputs, notes = _ours(model, xs, ys, device)
    ours = {"ms": _measure(clk, "ours", fn, inputs, budget_s, min_reps), "graph": notes["graph"],
            "why": notes["why"]}
    ours["peak_bytes"] = _peak_ours(device, notes)
    row["ours"] = ours
    for r in [ours, *row["results"].values()]:
        if "ms" in r:
            r["images_per_s"] = batch / r["ms"] * 1e3
    row["ratio"] = {p: ours["images_per_s"] / r["images_per_s"] for p, r in row["results"].items() if "ms" in r}
    return row


def models(only=None):
    """The entries of ``cases.STEPS`` whose model name ``only`` keeps (cases.matches; all without it)."""
    return [m for m in cases.STEPS if cases.matches(only, m[0])]


def run_steps(device, small, budget_s, clk, compile_torch=True, have_torch=True, progress=None, only=None,
              thread_counts=None, busy=True, on_row=None):
    """The rows of the models of ``cases.STEPS`` (tiny shapes with ``small``; see ``models``).
    On a CPU, ``cpu_steps``' rows: one per model, thread count (``thread_counts``,
    default 1 and 2) and, with ``busy``, also with one core kept busy. On a GPU
    ``on_row(row)`` is called with each row as it is timed."""
    entries = [(n, (s[0], 8, 8) if small else s, c, 4 if small else b) for n, s, c, b in models(only)]
    if device != "cuda":
        from gpucnn.bench import cpu_steps
        return cpu_steps.run_cpu_steps(entries, have_torch, budget_s, small, thread_counts, busy, progress)
    peers = _peers(device, compile_torch) if have_torch else []
    rows = []
    for name, shape, classes, batch in entries:
        rows.append(step_row(name, shape, classes, batch, device, peers, clk, budget_s, 1 if small else 3))
        if on_row is not None:
            on_row(rows[-1])
        if progress is not None:
            progress(f"training step {name}")
    return rows
