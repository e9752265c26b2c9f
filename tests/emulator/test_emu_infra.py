"""Build cache, signal-handler hygiene, the ucontext fallback and signature parsing.
(The emulator's speed is measured in bench/emulator_speed.py, not here.)"""
import ctypes
import signal
import subprocess
import sys
import textwrap
import threading
import uuid

import numpy as np
import pytest

from emu_helpers import KERNELS, kernel, source, requires_emulator
from gpucnn.runtime.emulator import EmuModule, LaunchConfigError, OutOfBoundsError, build, emulation

pytestmark = requires_emulator


def test_build_cache_reused(tmp_path, monkeypatch):
    monkeypatch.setenv("GPUCNN_CACHE_DIR", str(tmp_path))
    code = source("basic") + f"// {uuid.uuid4()}\n"
    runs = build.stats["compiler_runs"]
    EmuModule(code)
    assert build.stats["compiler_runs"] > runs
    runs = build.stats["compiler_runs"]
    EmuModule(code)  # same process
    build._loaded.clear()  # as a fresh process would: only the disk cache is left
    mod = EmuModule(code)
    assert build.stats["compiler_runs"] == runs, "a cached module must not run the compiler"
    a = np.arange(10, dtype=np.float32)
    c = np.empty_like(a)
    mod.get_function("vadd")(1, 32, (a, a, c, np.int64(10)))
    np.testing.assert_array_equal(c, 2 * a)
    EmuModule(code, ("-DSOMETHING=1",))  # other options: another entry
    assert build.stats["compiler_runs"] > runs


def _segv_handler() -> tuple[bytes, bytes]:
    libc = ctypes.CDLL(None)
    act, ss = ctypes.create_string_buffer(256), ctypes.create_string_buffer(64)
    assert libc.sigaction(signal.SIGSEGV, None, act) == 0 and libc.sigaltstack(None, ss) == 0
    return act.raw[:8] + act.raw[136:140], ss.raw[:24]


def test_previous_signal_handlers_restored():
    before = _segv_handler()
    x, y = np.ones(10, np.float32), np.empty(10, np.float32)
    with pytest.raises(OutOfBoundsError):
        kernel("bugs", "off_by_one")(1, 32, (x, y, np.int32(10)))
    kernel("basic", "vadd")(1, 32, (x, x, y, np.int64(10)))
    assert _segv_handler() == before


def test_faulthandler_still_works_after_launches():
    script = textwrap.dedent(f"""
        import ctypes, faulthandler, sys
        import numpy as np
        sys.path[:0] = [{str(KERNELS.parent)!r}, {str(KERNELS.parents[2])!r}]
        faulthandler.enable()
        from emu_helpers import kernel
        from gpucnn.runtime.emulator import OutOfBoundsError
        x, y = np.ones(10, np.float32), np.empty(10, np.float32)
        try:
            kernel("bugs", "off_by_one")(1, 32, (x, y, np.int32(10)))
        except OutOfBoundsError:
            print("caught", flush=True)
        kernel("basic", "vadd")(1, 32, (x, x, y, np.int64(10)))
        ctypes.string_at(0)
    """)
    p = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert "caught" in p.stdout, p.stderr
    assert p.returncode != 0 and "Fatal Python error: Segmentation fault" in p.stderr, p.stderr


def test_ucontext_fallback(tmp_path, monkeypatch):
    monkeypatch.setenv("GPUCNN_EMU_UCONTEXT", "1")
    mod = EmuModule(source("shared"))
    x = np.random.default_rng(0).standard_normal((2, 256), dtype=np.float32)
    y = np.empty_like(x)
    with emulation(resume_order="shuffle", seed=5):
        mod.get_function("smooth")(2, 256, (x, y, np.int32(4)))
    ref = x.copy()
    for _ in range(4):
        ref = np.float32(0.5) * ref + np.float32(0.25) * (np.roll(ref, 1, 1) + np.roll(ref, -1, 1))
    np.testing.assert_allclose(y, ref, rtol=1e-5, atol=1e-6)
    bugs = EmuModule(source("bugs"))
    with pytest.raises(OutOfBoundsError, match="bugs.cu"):
        bugs.get_function("off_by_one")(1, 32, (x[0, :10].copy(), np.empty(10, np.float32), np.int32(10)))


def test_signature_parsing():
    mod = EmuModule(textwrap.dedent("""\
        #define BLOCK 64
        namespace helpers { __device__ __forceinline__ double twice(double v) { return 2 * v; } }
        template <typename T> __global__ void not_extern_c(T* y) { y[0] = T(1); }
        extern "C" {
        __global__ void __launch_bounds__(BLOCK)
        in_block(const double* __restrict__ x,
                 double* __restrict__ y,   /* a comment, with a comma */
                 unsigned long long n) {
            for (unsigned long long i = threadIdx.x; i < n; i += blockDim.x) y[i] = helpers::twice(x[i]);
        }
        }
        extern "C" __global__ __launch_bounds__(2 * BLOCK, 1) void before_void(int* y, const char* s, void* raw) {
            y[threadIdx.x] = s[0];
        }
        extern "C" __global__ void no_params(void) {}
    """))
    assert mod.kernel_names == ["in_block", "before_void", "no_params"]
    k = mod.get_function("in_block")
    assert [name for name, _ in k.params] == ["x", "y", "n"] and k.launch_bounds == 64
    x, y = np.arange(5.0), np.empty(5)
    k(1, 64, (x, y, 5))
    np.testing.assert_array_equal(y, 2 * x)
    with pytest.raises(LaunchConfigError):
        k(1, 65, (x, y, 5))
    assert mod.get_function("before_void").launch_bounds == 128
    assert [n for n, _ in mod.get_function("before_void").params] == ["y", "s", "raw"]
    mod.get_function("no_params")(1, 1, ())
    with pytest.raises(AttributeError):
        mod.get_function("not_extern_c")


def test_concurrent_launches_are_serialised():
    errors = []

    def work():
        try:
            a = np.arange(5000, dtype=np.float32)
            c = np.empty_like(a)
            for _ in range(5):
                kernel("basic", "vadd")(8, 128, (a, a, c, np.int64(a.size)))
                assert np.array_equal(c, 2 * a)
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors


def test_settings_scoping():
    from gpucnn.runtime.emulator import configure, settings
    base = settings.current()
    with emulation(resume_order="shuffle", seed=9) as s:
        assert s.resume_order == "shuffle" and s.seed == 9 and s.guard == base.guard
        with emulation(guard="start"):
            assert settings.current().resume_order == "shuffle" and settings.current().guard == "start"
    assert settings.current() == base
    try:
        assert configure(resume_order="reverse").resume_order == "reverse"
        assert settings.current().resume_order == "reverse"
    finally:
        configure(resume_order=base.resume_order)
    with pytest.raises(ValueError):
        configure(resume_order="sideways")
    with pytest.raises(ValueError):
        emulation(guard="middle").__enter__()
