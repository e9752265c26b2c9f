"""gpucnn: hand-written CUDA kernels for the layers of a convolutional network,
with a NumPy reference of every op that is the CPU backend and the test oracle.

Importing gpucnn needs NumPy only; CuPy is imported when a GPU is asked for.
"""
from gpucnn import backend  # noqa: F401  (gpucnn.backend.current() and friends)
from gpucnn.backend import BackendUnavailable, use_backend
from gpucnn.mathmode import get_math_mode, math_mode, set_math_mode
from gpucnn.functional import *  # noqa: F401,F403
from gpucnn.functional import __all__ as _functional_all

__version__ = "0.1.0"
__all__ = [*_functional_all, "use_backend", "BackendUnavailable", "set_math_mode", "get_math_mode", "math_mode",
           "__version__"]
