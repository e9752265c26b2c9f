"""CuPy is imported here and only when a GPU is asked for."""
from __future__ import annotations

import functools


def gpu_available() -> tuple[bool, str]:
    """Whether CuPy is installed and sees a CUDA device, with the reason if not."""
    try:
        import cupy
    except ImportError as e:
        return False, f"CuPy is not installed ({e}); pip install 'gpucnn[cuda12]' or 'gpucnn[cuda13]'"
    try:
        n = cupy.cuda.runtime.getDeviceCount()
    except Exception as e:  # CUDARuntimeError without a driver or device
        return False, f"CuPy sees no CUDA device ({e})"
    return (n > 0, "" if n > 0 else "CuPy sees no CUDA device")


def device() -> tuple[int, int]:
    """(compute capability as major * 10 + minor, multiprocessor count) of the current device."""
    import cupy
    return _device(cupy.cuda.runtime.getDevice())  # one driver call, where Device() builds an object


@functools.lru_cache(maxsize=None)
def _device(i: int) -> tuple[int, int]:
    import cupy
    d = cupy.cuda.Device(i)
    return int(d.compute_capability), int(d.attributes["MultiProcessorCount"])


def _version(v: int) -> str:
    """CUDA's integer versions: 13000 -> '13.0'."""
    return f"{v // 1000}.{v % 1000 // 10}"


def describe() -> list[str]:
    """Lines for ``gpucnn info``: CuPy's and CUDA's versions and each GPU."""
    try:
        import cupy
    except ImportError:
        return ["CuPy: not installed"]
    lines = [f"CuPy {cupy.__version__}"]
    rt = cupy.cuda.runtime
    try:
        lines.append(f"CUDA runtime {_version(rt.runtimeGetVersion())}, driver {_version(rt.driverGetVersion())}")
        for i in range(rt.getDeviceCount()):
            p = rt.getDeviceProperties(i)
            name = p["name"].decode() if isinstance(p["name"], bytes) else p["name"]
            lines.append(f"GPU {i}: {name}, sm_{p['major']}{p['minor']}, {p['multiProcessorCount']} SMs, "
                         f"{p['totalGlobalMem'] / 2**30:.1f} GiB")
    except Exception as e:  # no driver or no device: say so rather than fail
        lines.append(f"no CUDA device: {e}")
    return lines
