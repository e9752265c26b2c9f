"""The memory-bound half of the static performance model (gpucnn.bench.model):
PREDICTIONS of the fraction of the copy bandwidth each memory-bound kernel
reaches, and of the fused conv+bias+ReLU against the separate passes (ours, and the
three separate passes of the issue's target).

Little's law per wave of resident threads (the record's blocks_per_sm x 256):
a thread keeps ``inflight`` bytes of DRAM reads outstanding and needs
``rounds`` dependent round trips of LATENCY_NS, so a wave takes
max(its bytes / copy bandwidth, its round trips, its instructions at the
issue rate). In steady state that is the fraction
min(1, bytes in flight per SM / (read share x bandwidth x latency / SMs)).
Then empty blocks (a grid larger than its threads with work), launches,
and the host's launch path as the bench reads it (model_consts.timed): each
row's own op call (HOST_BY_OP: bench/host_path.py's null CuPy path for that
op, 3.1-6.5 us, plus CuPy's launch), not one figure for all, so a fast op's
row is not charged the slowest op's host path.
"""
from __future__ import annotations

import dataclasses

from gpucnn.bench import cases, fused, model, model_static
from gpucnn.bench import model_consts as K
from gpucnn import shapes
from gpucnn.cuda import algo, conv, launch, norm, pool, wino

BLOCK = launch.BLOCK
GRID_CAP = launch.MAX_BLOCKS * BLOCK  # grid_for's cap, in threads
VEC = 16  # bytes of a float4: map2's, channel_apply's and channel.cuh's vector (group)
SETUP_INSTR = 100  # PlaneWalk's set-up, once a thread (its divisions' 32-bit paths; sm_90 SASS, rough)
REC_TAPS = 2 * 2 * 9  # the pooling pair kernels' recorded loop: a two-row 3x3 block (tests/test_sass.py: 5 row loads)

# Each memory row's op call on the host (model_consts' HOST_*_US, measured); a row not here takes HOST_MEM_US.
# The batch-norm backward is one call of two launches: its reduction and data rows take half of it each.
HOST_BY_OP = {
    "relu forward": K.HOST_RELU_FORWARD_US, "relu backward": K.HOST_RELU_BACKWARD_US,
    "add_relu": K.HOST_ADD_RELU_US, "max_pool forward": K.HOST_MAX_POOL_US, "avg_pool forward": K.HOST_AVG_POOL_US,
    "batchnorm forward": K.HOST_BN_APPLY_US, "batchnorm stats": K.HOST_BN_STATS_US,
    "batchnorm backward reduction": K.HOST_BN_BACKWARD_US, "batchnorm backward data": K.HOST_BN_BACKWARD_US,
    "conv2d bias gradient": K.HOST_BIAS_GRAD_US,
}


def host_us(op: str, s: int) -> float:
    """The host launch path of row ``op``'s call in scenario ``s``."""
    return HOST_BY_OP.get(op, K.HOST_MEM_US).at(s)


@dataclasses.dataclass(frozen=True)
class Stream:
    """One memory-bound launch as Little's law sees it."""
    op: str
    shape: str
    kernel: str        # its row in static-sm90.md
    read: float        # compulsory bytes read
    write: float       # bytes written
    threads: int       # threads with work
    launched: int      # threads launched (at least those with work)
    inflight: float    # DRAM bytes a thread keeps in flight
    rounds: float      # dependent DRAM round trips per thread
    instr: float       # instructions per thread (from the record's loop)
    l1_rounds: float = 0.0
    tree: bool = False  # a block-wide fixed tree at the end (the reductions)
    elect: bool = False  # the reductions' last-chunk election and channel total (ELECT_US)
    kernels: int = 1    # launches
    target: float | None = K.TARGET_MAP  # issue 11's fraction of copy bandwidth (None: no target)


def _per(row: dict, loads: str, per_item: int) -> float:
    """Loop instructions per item: the recorded loop holds LDG/``per_item`` items."""
    return row["instructions"] * per_item / max(1, row[loads])


def _per_element(row: dict, loads_per_elem: int) -> float:
    """Loop instructions per float32 element of a loop making ``loads_per_elem`` loads an element:
    a 16-byte load or cp.async copy brings 4 (the vector or ring path sass_stream records where a
    kernel has one), a scalar load 1."""
    for wide in ("LDGSTS", "LDG.128"):
        if row[wide]:
            return _per(row, wide, loads_per_elem) / 4
    return _per(row, "LDG", loads_per_elem)


def map_stream(op, shape, kernel, n, reads, rec, loads_per_vec=None, target=K.TARGET_MAP, vecs=1) -> Stream:
    """A 16-byte vector map over n float32 elements (relu.cu's map2, batchnorm.cu's
    channel_apply): ``vecs`` vectors a thread, loaded together (the grid covers
    them: launch.vector_threads, norm._map_threads), ``reads`` input streams."""
    _, r = model_static.row(rec, kernel)
    vectors = -(-n // 4)
    threads = min(-(-vectors // vecs), GRID_CAP)
    per = -(-vectors // threads)  # vectors a thread
    if r["LDG.128"]:
        instr = _per(r, "LDG.128", reads) * per
    else:  # the record's loop is the scalar fallback: its instructions per element, 4 a vector
        instr = _per(r, "LDG", loads_per_vec) * 4 * per
    return Stream(op, shape, kernel, 4.0 * n * reads, 4.0 * n, threads, threads, VEC * reads * min(per, vecs),
                  -(-per // vecs), instr, target=target)


def pool_stream(case, rec, sms: int) -> Stream:
    """Pooling forward on pool2d.cu's pair kernels (pool.pairs: every MEM case is
    2x2/2 or 3x3/2): a thread takes two outputs of a row, or of two rows where
    the pairs fill pool.PAIR_WAVES waves twice over (pool._forward's rows). Its
    2(rows - 1) + k input rows come in one 16-byte load each, all in flight
    together (the side column of a 3x3 or a padded 2x2 from the neighbour
    lane, or from L1 or L2): one round trip a thread. Instructions: the
    record's loop (the kernel's hot loop, sass_stream's pick among its K, pad
    and rows bodies: the two-row 3x3 block's, 36 taps, REC_TAPS) scaled by the
    taps a thread's block reads (2 x rows x k^2: a 2x2 pair's 8 take 8/36 of
    it), plus PlaneWalk's set-up (~100, once a thread): an upper bound, as the
    loop holds the scalar path too. Before the pair kernels (one output a thread, 9 scalar loads) the
    H200 ran 3x3/2 p1 at 38% and 2x2/2 at 64% (bench/results/gpu-2026-11-30);
    the pairs (rows 1, a scalar side column) at 82% and 93% in a CUDA graph
    (gpu-2026-11-30-s21)."""
    P, Q = case.out_hw()
    win = shapes.window(case.H, case.W, (case.k,) * 2, (case.stride,) * 2, (case.pad,) * 4, (1, 1), False, pool=True)
    base, threads, rows = pool._forward(win, f"{case.op}2d_forward", case.N * case.C, sms, True, pool.PAIR_ROWS)
    R = int(rows[0])
    per = case.N * case.C * -(-P // R) * -(-Q // 2) / threads  # blocks of R x 2 outputs a thread
    kernel = f"{base}_f32"
    _, r = model_static.row(rec, kernel)
    write = (4 + (8 if case.op == "max_pool" else 0)) * case.N * case.C * P * Q
    return Stream(f"{case.op} forward", case.label(), kernel, 4.0 * case.N * case.C * case.H * case.W, write,
                  threads, threads, VEC * (2 * (R - 1) + case.k), per,
                  r["instructions"] * 2 * R * case.k ** 2 / REC_TAPS * per + SETUP_INSTR)


def reduce_stream(op, shape, kernel, N, C, HW, streams, loads_per_elem, rec, sms, unroll=norm.UNROLL,
                  ring=False) -> Stream:
    """channel.cuh's (channel, chunk) blocks, one wave of them (norm.channel_chunks):
    ``unroll`` 16-byte groups of each stream in flight a thread (float4 groups:
    HW % 4 == 0 here), a round trip per block step; with ``ring`` (channel_walk_async,
    one stream) norm.RING - 1 groups in flight through shared memory instead, a round trip
    per norm.RING - 1 groups; one launch, the channel's last chunk to finish adding its
    chunks (ELECT_US after the last tree)."""
    _, r = model_static.row(rec, kernel)
    chunk, chunks = norm.channel_chunks(C, N * HW, sms)
    per_thread = chunk / norm.THREADS
    group = 4 if HW % 4 == 0 else 1
    ahead = norm.RING - 1 if ring else unroll
    threads = C * chunks * norm.THREADS
    read = 4.0 * N * C * HW * streams
    return Stream(op, shape, kernel, read, 0.0, threads, threads, 4.0 * group * ahead * streams,
                  per_thread / (group * ahead), _per_element(r, loads_per_elem) * per_thread, tree=True, elect=True,
                  target=K.TARGET_REDUCTION)


def _one_stream(op, shape, base, use_ring, N, C, HW, rec, sms) -> Stream:
    """The statistics' or the bias gradient's launch as the launch code picks it: the ring
    kernel (base_async_f32) where ``use_ring`` (norm.STATS_ASYNC, conv.BIAS_ASYNC) and the
    planes are whole 16-byte groups, else the plain walk's."""
    ring = use_ring and HW % 4 == 0
    return reduce_stream(op, shape, f"{base}_async_f32" if ring else f"{base}_f32", N, C, HW, 1, 1, rec, sms,
                         ring=ring)


def case_streams(c, rec, sms: int) -> list[Stream]:
    """The memory-bound launches of the MemCase ``c``: ReLU's two, pooling's forward, batch norm's
    apply, statistics and backward pair, or the bias gradient; the reductions chunked for ``sms`` SMs."""
    n, shape, N, C, HW = c.N * c.C * c.H * c.W, c.label(), c.N, c.C, c.H * c.W
    if c.op == "relu":
        return [map_stream("relu forward", shape, "relu_forward_f32", n, 1, rec),
                map_stream("relu backward", shape, "relu_backward_f32", n, 2, rec)]
    if c.op == "batchnorm":
        # batchnorm.cu's element-wise kernels: 4 (forward) or 2 (backward) vectors a thread (HW % 4 == 0);
        # a vector's own loads: x (forward), dy and x (backward), and the channel's 4 or 5 parameters. The
        # reductions' loads an element: x (the shift is read once a block), dy and x and the fused ReLU's y
        # (mean once a block).
        return [apply_over(shape, n, rec),
                _one_stream("batchnorm stats", shape, "batchnorm_stats", norm.STATS_ASYNC, N, C, HW, rec, sms),
                reduce_stream("batchnorm backward reduction", shape, "batchnorm_backward_sums_f32", N, C, HW,
                              2, 3, rec, sms, norm.UNROLL_BACKWARD),
                map_stream("batchnorm backward data", shape, "batchnorm_backward_data_f32", n, 2, rec, 8, None,
                           norm.APPLY_VECS_BWD)]
    if c.op == "bias_grad":  # a load an element: dy
        return [_one_stream("conv2d bias gradient", shape, "conv2d_bias_grad", conv.BIAS_ASYNC, N, C, HW, rec, sms)]
    return [pool_stream(c, rec, sms)]


def streams(rec=None, sms: int = algo.DEFAULT_SMS) -> list[Stream]:
    """The suite's memory-bound launches: MEM's ReLU, pooling forward, batch-norm and bias-gradient
    cases (case_streams), and the residual add+ReLU on fused.py's batch-norm row (cifar-resnet's
    output); the reductions chunked for ``sms`` SMs."""
    rec = rec or model_static.load()
    out = [st for c in cases.MEM for st in case_streams(c, rec, sms)]
    bn = next(case for case, _ in fused.suite("cuda") if case.kind == "bn")
    out.append(map_stream("add_relu", bn.label(), "add_relu_f32", bn.N * bn.C * bn.H * bn.W, 2, rec, target=None))
    return out


def device_us(st: Stream, dev, s: int, rec) -> float:
    """Device time of the launch(es), without the host: waves, empty blocks, launches."""
    r = rec[st.kernel]
    slots = dev.sms * r["blocks_per_sm"] * BLOCK
    per_thread = (st.read + st.write) / st.threads
    lat = (st.rounds * K.LATENCY_NS.at(s) + st.l1_rounds * K.L1_HIT_NS.mid) / 1e3 + st.tree * K.TREE_US.at(s)
    issue = st.instr / 32 / (K.ISSUE_PER_CLOCK.mid * dev.sms * dev.clock_ghz * 1e3)  # us per thread / (SMs x issue)

    def wave(n):
        return max(model.bw_us(n * per_thread, dev), lat, n * issue) if n else 0.0

    full, tail = divmod(st.threads, slots)
    empty = -(-st.launched // BLOCK) - (-(-st.threads // BLOCK))
    return (full * wave(slots) + wave(tail) + empty * K.EMPTY_BLOCK_NS.at(s) / 1e3
            + st.kernels * K.LAUNCH_US.at(s) + st.elect * K.ELECT_US.at(s))  # the election: once, after the last wave


def in_flight(st: Stream, dev, s: int, rec) -> tuple[float, float]:
    """(bytes in flight per SM, bytes needed per SM for the copy bandwidth): Little's law."""
    have = rec[st.kernel]["blocks_per_sm"] * BLOCK * st.inflight
    share = st.read / (st.read + st.write)
    need = share * dev.copy_tbs * 1e12 * K.LATENCY_NS.at(s) * 1e-9 / dev.sms
    return have, need


def mem_rows(dev, rec=None) -> list[dict]:
    rec = rec or model_static.load()
    out = []
    for st in streams(rec, dev.sms):
        ideal = model.bw_us(st.read + st.write, dev)
        dev_us = [device_us(st, dev, s, rec) for s in K.SCENARIOS]
        bench_us = [K.timed(d, host_us(st.op, s)) for s, d in zip(K.SCENARIOS, dev_us)]
        frac = [ideal / t for t in bench_us]
        have, need = in_flight(st, dev, K.MID, rec)
        judged = st.target is not None and max(st.read, st.write) >= K.TARGET_MIN_BYTES
        out.append({"stream": st, "bytes": st.read + st.write, "ideal_us": ideal, "device_us": dev_us,
                    "bench_us": bench_us, "device_frac": [ideal / t for t in dev_us], "bench_frac": frac,
                    "have": have, "need": need,
                    "verdict": model.verdict(min(frac), max(frac), st.target, below=False) if judged else "-"})
    return out


def fused_rows(dev, rec=None) -> list[dict]:
    """conv2d_bias_relu: fused (the GEMM's epilogue) against separate (the same GEMM
    with the bias, then relu_forward: one more op call and a pass over y) and against
    the three separate passes (the GEMM without the bias, then fused.py's bias pass,
    batch norm's apply kernel, and relu_forward: two more op calls and passes)."""
    rec = rec or model_static.load()
    out = []
    for case in (c for c in cases.CONV if c.name in fused.CONV_CASES):
        P, Q = case.out_hw()
        n = case.N * case.K * P * Q
        relu = [relu_over(case.label(), n, rec)]
        three = [apply_over(case.label(), n, rec)] + relu
        for m in model.MODES:
            c = model.choice(case, "forward", m, dev)
            conv = [model.ours_us(case, "forward", c, dev, s, rec)["kernels_us"] for s in K.SCENARIOS]
            f = [K.timed(x, K.HOST_US.at(s)) for s, x in zip(K.SCENARIOS, conv)]
            sep, thr = ([_after(x, extra, dev, s, rec) for s, x in zip(K.SCENARIOS, conv)] for extra in (relu, three))
            gain, gain3 = [b / a for a, b in zip(f, sep)], [b / a for a, b in zip(f, thr)]
            bounds = {extra_name: {"peak": fused_bound(case, extra, dev, rec, _peak_us(case, m, dev)),
                                   "cudnn": fused_bound(case, extra, dev, rec, model.cudnn_kernels_us(case, m, dev))}
                      for extra_name, extra in (("bound", relu), ("bound_three", three))}
            out.append({"case": case.name, "math": m, "choice": c, "fused_us": f, "separate_us": sep,
                        "gain": gain, "verdict": model.verdict(min(gain), max(gain), K.TARGET_FUSED, below=False),
                        "three_us": thr, "gain_three": gain3,
                        "verdict_three": model.verdict(min(gain3), max(gain3), K.TARGET_FUSED, below=False), **bounds})
    return out


def _after(conv_us: float, extra: list, dev, s: int, rec) -> float:
    """A GEMM of device time ``conv_us`` and the ``extra`` launches after it, each its own op call,
    as the bench reads them in scenario ``s`` (model_consts.timed)."""
    return K.timed(conv_us + sum(device_us(st, dev, s, rec) for st in extra),
                   K.HOST_US.at(s) + sum(host_us(st.op, s) for st in extra))


def _peak_us(case, math_, dev) -> float:
    """The forward's device time at math mode ``math_``'s arithmetic peak (FFMA for fp32,
    dense TF32 for tf32, a third of it for 3xtf32's three MMAs a product) or at the copy
    rate, whichever is slower, and one launch: no kernel of that mode runs faster. In fp32
    the products are Winograd's F(2x2, 3x3) where its kernels can run (wino.ok): 16 a 2x2
    block of outputs and a channel where the direct sum takes 36."""
    rate = {"fp32": dev.fp32_tflops, "tf32": dev.tf32_tflops, "3xtf32": dev.tf32_tflops / 3}[math_]
    flops = case.flops()
    if math_ == "fp32" and wino.ok(model.geometry(case)):
        flops *= wino.XI / (4 * wino.KH * wino.KW)
    return max(flops / (rate * 1e6), model.bw_us(case.nbytes(), dev)) + K.LAUNCH_US.mid


def fused_bound(case, extra: list, dev, rec, conv_us: float) -> float:
    """unfused / fused, central constants, for a forward GEMM of device time ``conv_us``:
    what fusing saves (the ``extra`` launches' passes and op calls) over that GEMM as the
    bench times it. The saving does not grow with the GEMM's speed, so the ratio falls as
    the GEMM slows: at the mode's peak (_peak_us) it is the most any kernel could reach."""
    return _after(conv_us, extra, dev, K.MID, rec) / K.timed(conv_us, K.HOST_US.mid)


def bn_row(dev, rec=None) -> dict:
    """fused.py's batch_norm2d_relu row: fused = batch_norm_stats (one launch: the
    sums, the running statistics read and the new ones written by the kernel) then
    batch_norm_apply with the ReLU, two op calls; separate adds relu_forward over y.
    ``fraction``: the bytes those kernels must move (x read twice, y written) over
    the fused time, against the copy rate."""
    rec = rec or model_static.load()
    shape = next(case for case, _ in fused.suite("cuda") if case.kind == "bn").label()
    by_op = {st.op: st for st in streams(rec, dev.sms) if st.shape == shape}
    stats, apply = by_op["batchnorm stats"], by_op["batchnorm forward"]
    relu = relu_over(apply.shape, int(apply.write // 4), rec)
    dev_f = [device_us(stats, dev, s, rec) + device_us(apply, dev, s, rec) for s in K.SCENARIOS]
    host = [host_us(stats.op, s) + host_us(apply.op, s) for s in K.SCENARIOS]
    f = [K.timed(x, h) for x, h in zip(dev_f, host)]
    sep = [K.timed(x + device_us(relu, dev, s, rec), h + host_us(relu.op, s))
           for s, x, h in zip(K.SCENARIOS, dev_f, host)]
    moved = stats.read + apply.read + apply.write
    return {"shape": apply.shape, "fused_us": f, "separate_us": sep, "gain": [b / a for a, b in zip(f, sep)],
            "bytes": moved, "fraction": [model.bw_us(moved, dev) / t for t in f]}


def relu_over(shape: str, n: int, rec) -> Stream:
    """The separate side's relu_forward over an output of n float32 values."""
    return map_stream("relu forward", shape, "relu_forward_f32", n, 1, rec)


def apply_over(shape: str, n: int, rec) -> Stream:
    """batchnorm.cu's apply kernel over n float32 values: batch norm's forward rows, and the
    three passes' bias pass (fused.py) over a convolution's output."""
    return map_stream("batchnorm forward", shape, "batchnorm_forward_f32", n, 1, rec, 5, vecs=norm.APPLY_VECS)


# A bench row's (op, pass) -> the model's streams its one call launches (batch norm's backward: two).
BENCH_STREAMS = {("relu", "forward"): ("relu forward",), ("relu", "backward"): ("relu backward",),
                 ("max_pool", "forward"): ("max_pool forward",), ("avg_pool", "forward"): ("avg_pool forward",),
                 ("batchnorm", "forward"): ("batchnorm forward",), ("batchnorm", "stats"): ("batchnorm stats",),
                 ("batchnorm", "backward"): ("batchnorm backward reduction", "batchnorm backward data"),
                 ("bias_grad", "backward"): ("conv2d bias gradient",)}


def predicted(op: str, pass_: str, shape: str, dev, rec=None) -> dict | None:
    """The central prediction for a memory-bound bench row (the op ``op``'s pass ``pass_`` on the
    case labelled ``shape``): {"device_us": its kernels, "timed_us": as the bench reads the call},
    or None for a row the model does not have."""
    case = next((c for c in cases.MEM if c.op == op and c.label() == shape), None)
    return None if case is None else predicted_case(case, pass_, dev, rec)


def predicted_case(case, pass_: str, dev, rec=None) -> dict | None:
    """predicted's figures for the pass ``pass_`` of any MemCase ``case``."""
    names = BENCH_STREAMS.get((case.op, pass_), ())
    rec = rec or model_static.load()
    sts = [st for st in case_streams(case, rec, dev.sms) if st.op in names]
    if not sts:
        return None
    device = sum(device_us(st, dev, K.MID, rec) for st in sts)
    return {"device_us": device, "timed_us": K.timed(device, sum(host_us(st.op, K.MID) for st in sts))}


def fit_line(points) -> tuple[float, float]:
    """(fixed us, rate TB/s) of t = fixed + bytes / rate, least squares over ``points`` of
    (bytes, us); the rate is inf where the times do not grow with the bytes."""
    n = len(points)
    mx, my = sum(b for b, _ in points) / n, sum(t for _, t in points) / n
    sxx = sum((b - mx) ** 2 for b, _ in points)
    slope = sum((b - mx) * (t - my) for b, t in points) / sxx if sxx else 0.0  # us a byte
    return my - slope * mx, (1e-6 / slope if slope > 0 else float("inf"))


def sweep_rows(dev, rec=None) -> list[dict]:
    """The size sweep (cases.SWEEP at cases.SWEEP_N) as the model predicts it: each op's device
    us at each batch, and its fit (fixed us, TB/s)."""
    rec = rec or model_static.load()
    out = []
    for op, pass_ in cases.SWEEP:
        pts = [(c.nbytes(pass_), predicted_case(c, pass_, dev, rec)["device_us"])
               for c in (cases.sweep_case(op, n) for n in cases.SWEEP_N)]
        out.append({"op": op, "pass": pass_, "points": pts, "fit": fit_line(pts)})
    return out
