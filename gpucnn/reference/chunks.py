"""A convolution's chunks (``conv_algo.plan``: whole images, or bands of
output rows) run on the workspace threads, each calling a one-thread BLAS;
and the sum of per-chunk parts, added in chunk order so that the bits do
not depend on the thread count."""
from __future__ import annotations

from gpucnn.reference import conv_algo, workspace


def run(g, itemsize, fn, bands: bool = False):
    """``fn(n0, n1, rows)`` over ``conv_algo.plan``'s chunks of images, on the
    workspace threads (each calling a one-thread BLAS); with ``bands``, a
    batch of few chunks is also cut into bands of output rows
    (``conv_algo.split_bands``), each a call with one band."""
    spans, rows = conv_algo.plan(g.N, g.C, g.win, itemsize)
    if not bands:
        workspace.run_spans(lambda n0, n1: fn(n0, n1, rows), spans, blas=True)
        return
    work = [(n0, n1, [band]) for n0, n1 in spans for band in conv_algo.split_bands(rows, len(spans))]
    workspace.run_spans(lambda i, _: fn(*work[i]), [(i, i + 1) for i in range(len(work))], blas=True)


def summed(g, itemsize, part):
    """The sum over ``conv_algo.plan``'s chunks of ``part(n0, n1, rows)``,
    added in chunk order (the bits do not depend on the thread count); None
    for an empty batch."""
    parts = {}
    run(g, itemsize, lambda n0, n1, rows: parts.__setitem__(n0, part(n0, n1, rows)))
    total = None
    for n0 in sorted(parts):
        total = parts[n0] if total is None else total + parts[n0]
    return total
