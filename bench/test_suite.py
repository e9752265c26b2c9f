"""Every case and pass of the suite, on ours and on each peer, as
pytest-benchmark tests: ``pytest bench --benchmark-only`` (see conftest.py).

The same cases, backends and inputs as ``gpucnn bench``; pytest-benchmark
does the statistics, so there are no limits or ratios here: those come from
``gpucnn bench``, which measures peers side by side."""
import itertools

import pytest

from gpucnn.bench import cases, ops, run, timing


def _device(config):
    d = config.getoption("--bench-device")
    if d == "auto":
        from gpucnn.runtime import cupy_runtime
        d = "cuda" if cupy_runtime.gpu_available()[0] else "cpu"
    return d


def pytest_generate_tests(metafunc):
    if "case" not in metafunc.fixturenames:
        return
    device = _device(metafunc.config)
    only = metafunc.config.getoption("--bench-only")
    params = [pytest.param(c, d, b, device, id=f"{c.label()} {d} {b}")
              for c, _ in cases.suite(device, only=only) for d in cases.passes(c)
              for b in run.DEFAULT[device] if b.startswith("gpucnn") or run._have_torch(run.BACKENDS[b][1])]
    metafunc.parametrize("case,direction,backend,device", params)


def test_pass(benchmark, case, direction, backend, device):
    impl, where = run.BACKENDS[backend]
    if impl == "torch" and where == "cuda":
        run._torch_cuda_setup()
    fn, inputs = ops.build(case, direction, impl, where, copies=run._copies(case, where))
    clk = timing.clock(where)
    rotation = itertools.cycle(inputs)

    def call(args):
        fn(*args)
        clk.sync()

    benchmark.extra_info.update(flops=case.flops(), bytes=case.nbytes() if case.kind == "conv"
                                else case.nbytes(direction), batch=case.N)
    benchmark.pedantic(call, setup=lambda: ((next(rotation),), {}), rounds=10, warmup_rounds=2)
