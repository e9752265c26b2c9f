"""Where kernels come from and where they run.

``loader`` is the only code that reads ``kernels/``; ``cupy_runtime`` builds
modules with CuPy for a GPU; ``emulator`` builds the same text for the CPU.
A ``Runtime`` bundles the array module and the module loader of one backend,
so that the launch code in ``gpucnn.cuda`` is the same for both.
"""
from __future__ import annotations

import functools

import numpy as np

from gpucnn.runtime import direct, loader


class Runtime:
    """One execution target for the CUDA kernels: its array module (``xp``)
    and a ``module(family, options)`` that returns an object with CuPy's
    ``get_function(name)`` interface."""

    def __init__(self, name, xp, module, device, device_id=None):
        self.name, self.xp, self._device = name, xp, device
        self._device_id = device_id or (lambda: 0)  # the current device's number (CuPy's modules are per device)
        self.module = module

    @property
    def module(self):
        return self._module

    @module.setter
    def module(self, module):
        """A new module source: the functions remembered from the old one are dropped."""
        self._module = module
        # (family, kernel, options, device) -> [module, function, its DirectKernel]
        self._functions: dict[tuple, list] = {}

    def device_id(self) -> int:
        """The current device's number (0 where there is one device, as on the emulator)."""
        return self._device_id()

    def device(self) -> tuple[int, int]:
        """(compute capability as major * 10 + minor, multiprocessor count) of the current device."""
        return self._device()

    def function(self, family: str, kernel: str, options: tuple = ()):
        """The kernel ``kernel`` of the module that ``module(family, options, kernel)``
        gives on the current device, remembered per (family, kernel, options, device):
        CuPy's RawModule.get_function builds a new RawKernel and looks its function
        up at each call, a new RawKernel's max_dynamic_shared_size_bytes is a driver
        query (gemm.launch_gemm reads it), and loader.cupy_module's own look-up (the
        device, its compute capability, the part's options) cost 1.4 us a launch on
        the H200's host (gpu.sh step 2d, session 21) where the device's number is one
        driver call. An A/B build set now (loader.BUILD) adds its options
        (loader.switch_options). With the driver launch path set (direct.PATH), the
        kernel wrapped in a DirectKernel."""
        if loader.BUILD:  # one attribute read at each launch otherwise
            options = tuple(options) + loader.switch_options(family)
        key = (family, kernel, options, self._device_id())
        hit = self._functions.get(key)
        if hit is None:
            module = self._module(family, options, kernel)  # held by the entry, with its function
            hit = self._functions[key] = [module, module.get_function(kernel), None]
        if direct.PATH == "cupy":
            return hit[1]
        if hit[2] is None:  # GPUCNN_LAUNCH=driver: our own argument packing (direct.DirectKernel)
            hit[2] = direct.DirectKernel(hit[1], self.xp)
        return hit[2]

    def _map(self, f, out):
        if isinstance(out, tuple):
            return tuple(self._map(f, o) for o in out)
        return f(out) if isinstance(out, (np.ndarray,)) or type(out).__module__.startswith("cupy") else out

    def to_device(self, a):
        """NumPy arrays go to the device of this runtime (a no-op for the emulator)."""
        if self.xp is np or not isinstance(a, np.ndarray):
            return a
        return self.xp.asarray(a)

    def to_host(self, a):
        if self.xp is np or isinstance(a, np.ndarray) or not hasattr(a, "get"):
            return a
        return a.get()

    def from_device_like(self, out, args):
        """Give results back as the kind of array the caller passed."""
        if self.xp is np or any(type(a).__module__.startswith("cupy") for a in args):
            return out
        return self._map(lambda o: o.get() if hasattr(o, "get") else o, out)

    def from_host_like(self, out, args):
        if self.xp is np or not any(type(a).__module__.startswith("cupy") for a in args):
            return out
        return self._map(self.xp.asarray, out)


@functools.lru_cache(maxsize=None)
def runtime_for(name: str) -> Runtime:
    """The Runtime of backend "emulator" or "cuda"."""
    if name == "emulator":
        from gpucnn.runtime.emulator import settings
        return Runtime(name, np, loader.emulator_module,
                       lambda: (settings.current().compute_capability, settings.current().sm_count))
    if name == "cuda":
        import cupy
        from gpucnn.runtime import cupy_runtime
        return Runtime(name, cupy, loader.cupy_module, cupy_runtime.device, cupy.cuda.runtime.getDevice)
    raise ValueError(f"no kernel runtime for backend {name!r}")
