"""Python side of the CUDA kernels: allocate outputs, pick the launch shape,
marshal the arguments and call the kernel. Each function takes a
``gpucnn.runtime.Runtime`` first, so the same code runs on a GPU through CuPy
and on the CPU through the emulator."""
