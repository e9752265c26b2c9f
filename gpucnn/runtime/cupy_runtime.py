"""CuPy is imported here and only when a GPU is asked for."""
from __future__ import annotations


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
