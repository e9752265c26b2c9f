"""``gpucnn bench``: the benchmark suite (``cases``), what each backend runs
(``ops``), timing (``timing``), the machine's limits (``limits``), a run of
the whole suite (``run``) and its table, JSON and roofline chart (``report``).

Nothing here is imported by ``import gpucnn``; the GPU path needs only NumPy,
CuPy and (for the peers) PyTorch, so it runs where nothing can be installed.
"""
