"""The memory-bound half of the static performance model (gpucnn.bench.model):
PREDICTIONS of the fraction of the copy bandwidth each memory-bound kernel
reaches, and of the fused conv+bias+ReLU against the separate passes.

Little's law per wave of resident threads (the record's blocks_per_sm x 256):
a thread keeps ``inflight`` bytes of DRAM reads outstanding and needs
``rounds`` dependent round trips of LATENCY_NS, so a wave takes
max(its bytes / copy bandwidth, its round trips, its instructions at the
issue rate). In steady state that is the fraction
min(1, bytes in flight per SM / (read share x bandwidth x latency / SMs)).
Then empty blocks (grids sized by elements over vector loops), launches,
and the host's launch path as the bench reads it (model_consts.timed).
"""
from __future__ import annotations

import dataclasses

from gpucnn.bench import cases, fused, model, model_static
from gpucnn.bench import model_consts as K
from gpucnn.cuda import launch, norm

BLOCK = launch.BLOCK
GRID_CAP = launch.MAX_BLOCKS * BLOCK  # grid_for's cap, in threads
VEC = 16  # bytes of a float4: map2's and channel_apply's vector
CH_UNROLL = norm.UNIT // norm.THREADS  # channel.cuh's independent loads per thread


@dataclasses.dataclass(frozen=True)
class Stream:
    """One memory-bound launch as Little's law sees it."""
    op: str
    shape: str
    kernel: str        # its row in static-sm90.md
    read: float        # compulsory bytes read
    write: float       # bytes written
    threads: int       # threads with work
    launched: int      # threads launched (the grid may be sized by elements, the loop by vectors)
    inflight: float    # DRAM bytes a thread keeps in flight
    rounds: float      # dependent DRAM round trips per thread
    instr: float       # instructions per thread (from the record's loop)
    l1_rounds: float = 0.0
    tree: bool = False  # a block-wide fixed tree at the end (the reductions)
    kernels: int = 1    # launches (a reduction's finalize)
    target: float | None = K.TARGET_MAP  # issue 11's fraction of copy bandwidth (None: no target)


def _per(row: dict, loads: str, per_item: int) -> float:
    """Loop instructions per item: the recorded loop holds LDG/``per_item`` items."""
    return row["instructions"] * per_item / max(1, row[loads])


def map_stream(op, shape, kernel, n, reads, rec, grid_by_elements=False, loads_per_vec=None,
               target=K.TARGET_MAP) -> Stream:
    """A 16-byte vector map over n float32 elements (relu.cu's map2, batchnorm.cu's
    channel_apply): one vector a thread (the grid covers them), ``reads`` input streams."""
    _, r = model_static.row(rec, kernel)
    vectors = -(-n // 4)
    threads = min(vectors, GRID_CAP)
    iters = -(-vectors // threads)
    if r["LDG.128"]:
        instr = _per(r, "LDG.128", reads) * iters
    else:  # the record's loop is the scalar fallback: its instructions per element, 4 a vector
        instr = _per(r, "LDG", loads_per_vec) * 4 * iters
    launched = min(n, GRID_CAP) if grid_by_elements else threads
    return Stream(op, shape, kernel, 4.0 * n * reads, 4.0 * n, threads, launched, VEC * reads, iters, instr,
                  target=target)


def pool_stream(case, rec) -> Stream:
    """Pooling forward: a thread per output, a window row a round trip (pool2d.cu's
    tap loop for kw < 4 runs the unrolled loop's remainder: max compares each LDG
    before the next issues, its later taps L1 hits; avg issues a row's LDGs
    together, then adds). A warp's 4-byte loads sw*4 bytes apart bring sw*4 new
    bytes a thread a row. Not counted: PlaneWalk's set-up (two 64-bit divisions,
    CALLs outside the loop), which runs once a thread, here once an output, as
    the grid (cdiv(outputs, 256) blocks, under the 65535 cap) gives each thread one."""
    _, r = model_static.row(rec, f"{case.op}2d_forward_f32")
    P, Q = case.out_hw()
    outs = case.N * case.C * P * Q
    taps = case.k * case.k
    write = (4 + (8 if case.op == "max_pool" else 0)) * outs
    return Stream(f"{case.op} forward", case.label(), f"{case.op}2d_forward_f32", 4.0 * case.N * case.C * case.H
                  * case.W, write, outs, outs, 4.0 * case.stride, case.k, _per(r, "LDG", 1) * taps,
                  l1_rounds=case.k * (case.k - 1) if case.op == "max_pool" else 0)


def reduce_stream(op, shape, kernel, N, C, HW, streams, loads_per_elem, rec) -> Stream:
    """channel.cuh's (channel, chunk) blocks: CH_UNROLL loads of each stream in flight a thread."""
    _, r = model_static.row(rec, kernel)
    chunk, chunks = norm.channel_chunks(C, N * HW)
    per_thread = chunk / norm.THREADS
    threads = C * chunks * norm.THREADS
    read = 4.0 * N * C * HW * streams
    return Stream(op, shape, kernel, read, 0.0, threads, threads, 4.0 * CH_UNROLL * streams,
                  per_thread / CH_UNROLL, _per(r, "LDG", loads_per_elem) * per_thread, tree=True, kernels=2,
                  target=K.TARGET_REDUCTION)


def streams(rec=None) -> list[Stream]:
    """The suite's memory-bound launches: MEM's ReLU and pooling forward cases,
    and on fused.py's batch-norm row (cifar-resnet's output) batch norm, the
    bias gradient and the residual add+ReLU."""
    rec = rec or model_static.load()
    out = []
    for c in cases.MEM:
        n = c.N * c.C * c.H * c.W
        if c.op == "relu":
            out.append(map_stream("relu forward", c.label(), "relu_forward_f32", n, 1, rec))
            out.append(map_stream("relu backward", c.label(), "relu_backward_f32", n, 2, rec))
        else:
            out.append(pool_stream(c, rec))
    bn = next(case for case, _ in fused.suite("cuda") if case.kind == "bn")
    N, C, HW, n = bn.N, bn.C, bn.H * bn.W, bn.N * bn.C * bn.H * bn.W
    shape = bn.label()
    # batchnorm.cu's element-wise kernels are launched over x.size threads (norm.py) but loop over vectors;
    # a vector's own loads: x (forward), dy and x (backward), and the channel's 4 or 5 parameters.
    out += [map_stream("add_relu", shape, "add_relu_f32", n, 2, rec, target=None),
            map_stream("batchnorm forward", shape, "batchnorm_forward_f32", n, 1, rec, True, 5),
            reduce_stream("batchnorm stats", shape, "batchnorm_stats_partial_f32", N, C, HW, 1, 2, rec),
            reduce_stream("batchnorm backward reduction", shape, "batchnorm_backward_partial_f32", N, C, HW, 2,
                          4, rec),
            map_stream("batchnorm backward data", shape, "batchnorm_backward_data_f32", n, 2, rec, True, 8, None),
            reduce_stream("conv2d bias gradient", shape, "conv2d_bias_partial_f32", N, C, HW, 1, 1, rec)]
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
            + st.kernels * K.LAUNCH_US.at(s))


def in_flight(st: Stream, dev, s: int, rec) -> tuple[float, float]:
    """(bytes in flight per SM, bytes needed per SM for the copy bandwidth): Little's law."""
    have = rec[st.kernel]["blocks_per_sm"] * BLOCK * st.inflight
    share = st.read / (st.read + st.write)
    need = share * dev.copy_tbs * 1e12 * K.LATENCY_NS.at(s) * 1e-9 / dev.sms
    return have, need


def mem_rows(dev, rec=None) -> list[dict]:
    rec = rec or model_static.load()
    out = []
    for st in streams(rec):
        ideal = model.bw_us(st.read + st.write, dev)
        dev_us = [device_us(st, dev, s, rec) for s in K.SCENARIOS]
        bench_us = [K.timed(d, K.HOST_MEM_US.at(s)) for s, d in zip(K.SCENARIOS, dev_us)]
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
    with the bias, then relu_forward: one more op call and a pass over y)."""
    rec = rec or model_static.load()
    out = []
    for case in (c for c in cases.CONV if c.name in fused.CONV_CASES):
        P, Q = case.out_hw()
        relu = relu_over(case.label(), case.N * case.K * P * Q, rec)
        for m in model.MODES:
            c = model.choice(case, "forward", m, dev)
            conv = [model.ours_us(case, "forward", c, dev, s, rec, bias_given=True)["kernels_us"] for s in K.SCENARIOS]
            f = [K.timed(x, K.HOST_US.at(s)) for s, x in zip(K.SCENARIOS, conv)]
            sep = [K.timed(x + device_us(relu, dev, s, rec), K.HOST_US.at(s) + K.HOST_MEM_US.at(s))
                   for s, x in zip(K.SCENARIOS, conv)]
            gain = [b / a for a, b in zip(f, sep)]
            out.append({"case": case.name, "math": m, "choice": c, "fused_us": f, "separate_us": sep,
                        "gain": gain, "verdict": model.verdict(min(gain), max(gain), K.TARGET_FUSED, below=False)})
    return out


def bn_row(dev, rec=None) -> dict:
    """fused.py's batch_norm2d_relu row: fused = batch_norm_stats (two copies of the
    running statistics, the partial sums, the finalize) then batch_norm_apply with the
    ReLU, two op calls; separate adds relu_forward over y. ``fraction``: the bytes those
    kernels must move (x read twice, y written) over the fused time, against the copy rate."""
    rec = rec or model_static.load()
    by_op = {st.op: st for st in streams(rec)}
    stats, apply = by_op["batchnorm stats"], by_op["batchnorm forward"]
    relu = relu_over(apply.shape, int(apply.write // 4), rec)
    copies = 2  # norm.batch_norm_stats: copy_of(running_mean), copy_of(running_var)
    dev_f = [device_us(stats, dev, s, rec) + device_us(apply, dev, s, rec) + copies * K.LAUNCH_US.at(s)
             for s in K.SCENARIOS]
    f = [K.timed(x, 2 * K.HOST_MEM_US.at(s)) for s, x in zip(K.SCENARIOS, dev_f)]
    sep = [K.timed(x + device_us(relu, dev, s, rec), 3 * K.HOST_MEM_US.at(s)) for s, x in zip(K.SCENARIOS, dev_f)]
    moved = stats.read + apply.read + apply.write
    return {"shape": apply.shape, "fused_us": f, "separate_us": sep, "gain": [b / a for a, b in zip(f, sep)],
            "bytes": moved, "fraction": [model.bw_us(moved, dev) / t for t in f]}


def relu_over(shape: str, n: int, rec) -> Stream:
    """The separate side's relu_forward over an output of n float32 values."""
    return map_stream("relu forward", shape, "relu_forward_f32", n, 1, rec)
