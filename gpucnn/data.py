"""Data sets for training, read from local files only (nothing is downloaded):
scikit-learn's bundled 8x8 digits, MNIST and Fashion-MNIST from their IDX
files (gzipped or raw), CIFAR-10 from its official python batches. Also the
seeded shuffling, mini-batches, held-out split and normalization, and the
copy of a data set to the GPU that lets batches be gathered there."""
from __future__ import annotations

import dataclasses
import gzip
import os
import pickle
from pathlib import Path

import numpy as np

from gpucnn.nn._array import is_cupy, xp_of

IDX_FILES = {"train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
             "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}
IDX_URLS = {"mnist": "https://yann.lecun.com/exdb/mnist/",
            "fashion-mnist": "https://github.com/zalandoresearch/fashion-mnist"}
CIFAR_DIR = "cifar-10-batches-py"
DATASETS = ("digits", "mnist", "fashion-mnist", "cifar10")


@dataclasses.dataclass
class Dataset:
    """Images (N, C, H, W) float32 and int64 labels, a training and a held-out part."""
    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    classes: int

    @property
    def input_shape(self):
        return self.x_train.shape[1:]


def split(x, y, test_fraction: float, seed: int):
    """A seeded random held-out split: (x_train, y_train, x_test, y_test)."""
    if not 0 < test_fraction < 1:
        raise ValueError(f"test_fraction must lie in (0, 1), got {test_fraction}")
    order = np.random.default_rng(seed).permutation(len(x))
    n_test = max(1, int(round(len(x) * test_fraction)))
    test, train = order[:n_test], order[n_test:]
    return x[train], y[train], x[test], y[test]


def normalize(ds: Dataset) -> Dataset:
    """Scale every channel to zero mean and unit variance with the statistics of
    the training part only, so that nothing of the held-out part leaks in."""
    mean = ds.x_train.mean(axis=(0, 2, 3), keepdims=True, dtype=np.float64)
    std = ds.x_train.std(axis=(0, 2, 3), keepdims=True, dtype=np.float64)
    std[std == 0] = 1
    scale = lambda x: ((x - mean) / std).astype(np.float32)  # noqa: E731
    return dataclasses.replace(ds, x_train=scale(ds.x_train), x_test=scale(ds.x_test))


def batches(x, y, batch_size: int, rng: np.random.Generator | None = None):
    """Mini-batches (x, y) in a seeded random order, or in order without rng;
    the last batch may be smaller.

    For arrays on a GPU (``to_device``) the order is drawn from the same
    seeded generator on the host, copied over once per pass, and each batch
    is gathered on the device: the same batches, no image leaves the GPU."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    order = rng.permutation(len(x)) if rng is not None else np.arange(len(x))
    if is_cupy(x):
        order = xp_of(x).asarray(order)
    for i in range(0, len(x), batch_size):
        idx = order[i:i + batch_size]
        yield x[idx], y[idx]


def head(ds: Dataset, n: int) -> Dataset:
    """The first ``n`` training and the first ``n`` held-out examples (a quick run)."""
    if n < 1:
        raise ValueError(f"limit must be >= 1, got {n}")
    return dataclasses.replace(ds, x_train=ds.x_train[:n], y_train=ds.y_train[:n], x_test=ds.x_test[:n],
                               y_test=ds.y_test[:n])


def nbytes(ds: Dataset) -> int:
    return sum(a.nbytes for a in (ds.x_train, ds.y_train, ds.x_test, ds.y_test))


def to_device(ds: Dataset, device: str, headroom: float = 0.5) -> Dataset:
    """``ds`` with its arrays on ``device`` ("cuda": copied once; else as it is),
    unless it would take more than ``headroom`` of the GPU's free memory, in
    which case it stays on the host and each batch is copied over."""
    if device != "cuda":
        return ds
    import cupy
    free, _ = cupy.cuda.runtime.memGetInfo()
    if nbytes(ds) > headroom * free:
        return ds
    return dataclasses.replace(ds, **{f: cupy.asarray(getattr(ds, f))
                                      for f in ("x_train", "y_train", "x_test", "y_test")})


def load_digits(seed: int = 0, test_fraction: float = 0.2) -> Dataset:
    try:
        from sklearn.datasets import load_digits as sk_digits
    except ImportError as e:
        raise ImportError("the 'digits' data set comes with scikit-learn, which is not installed: "
                          "pip install scikit-learn") from e
    d = sk_digits()
    x = (d.images / 16.0).astype(np.float32)[:, None]  # pixel values are 0..16
    parts = split(x, d.target.astype(np.int64), test_fraction, seed)
    return Dataset("digits", *parts, classes=10)


def _find(data_dir: Path, subdirs, name: str, hint: str) -> Path:
    """The first of DIR/SUB/name(.gz) that exists, else an error saying where to put it."""
    tried = []
    for sub in subdirs:
        for suffix in ("", ".gz"):
            p = data_dir / sub / (name + suffix)
            if p.is_file():
                return p
            tried.append(str(p))
    raise FileNotFoundError(f"{name} not found; looked for {', '.join(tried)}. {hint}")


def read_idx(path) -> np.ndarray:
    """An IDX file (the MNIST format): magic 0,0,type,ndim then ndim big-endian
    uint32 sizes, then the data; gzip is detected by its magic bytes."""
    raw = Path(path).read_bytes()
    if raw[:2] == b"\x1f\x8b":
        raw = gzip.decompress(raw)
    types = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in types:
        raise ValueError(f"{path} is not an IDX file (header {raw[:4]!r})")
    ndim = raw[3]
    if len(raw) < 4 + 4 * ndim:
        raise ValueError(f"{path}: IDX header promises {ndim} dimensions but the file ends first")
    shape = tuple(int(s) for s in np.frombuffer(raw, ">u4", ndim, offset=4))
    dtype = np.dtype(types[raw[2]])
    count, offset = int(np.prod(shape)), 4 + 4 * ndim
    if len(raw) - offset != count * dtype.itemsize:
        raise ValueError(f"{path}: header says shape {shape} ({count * dtype.itemsize} bytes) but "
                         f"{len(raw) - offset} bytes follow")
    return np.frombuffer(raw, dtype, count, offset=offset).reshape(shape)


def load_idx_dataset(name: str, data_dir) -> Dataset:
    """MNIST or Fashion-MNIST from DATA_DIR/NAME/ or DATA_DIR/ (the four official files)."""
    data_dir = Path(data_dir).expanduser()
    hint = (f"Put the four {name} IDX files ({', '.join(sum(IDX_FILES.values(), ()))}, optionally "
            f".gz) in {data_dir / name}/ (from {IDX_URLS[name]}).")
    parts = []
    for split_name in ("train", "test"):
        img_name, lab_name = IDX_FILES[split_name]
        images = read_idx(_find(data_dir, (name, "."), img_name, hint))
        labels = read_idx(_find(data_dir, (name, "."), lab_name, hint))
        if images.ndim != 3 or labels.shape != images.shape[:1]:
            raise ValueError(f"{name} {split_name}: images {images.shape} and labels {labels.shape} "
                             f"do not pair up")
        parts += [(images / 255.0).astype(np.float32)[:, None], labels.astype(np.int64)]
    return Dataset(name, *parts, classes=10)


class _ArrayUnpickler(pickle.Unpickler):
    """CIFAR-10's python batches are pickles; unpickling can run arbitrary code,
    so allow only what the official files hold: dicts, lists, bytes and
    NumPy arrays."""
    ALLOWED = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
               ("numpy", "ndarray"), ("numpy", "dtype"), ("numpy.core.multiarray", "scalar"),
               ("numpy._core.multiarray", "scalar"),
               # Python 3 writes bytes into protocol-2 pickles as _codecs.encode(str, "latin1").
               ("_codecs", "encode")}

    def find_class(self, module, name):
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"CIFAR batch refers to {module}.{name}, which a data "
                                         f"file has no need of; refusing to load it")
        return super().find_class(module, name)


def _cifar_batch(path: Path):
    with open(path, "rb") as f:
        d = _ArrayUnpickler(f, encoding="bytes").load()
    data, labels = np.asarray(d[b"data"], np.uint8), np.asarray(d[b"labels"], np.int64)
    if data.ndim != 2 or data.shape[1] != 3072 or len(labels) != len(data):
        raise ValueError(f"{path}: expected data (N, 3072) and N labels, got {data.shape}, {labels.shape}")
    return (data.reshape(-1, 3, 32, 32) / 255.0).astype(np.float32), labels


def load_cifar10(data_dir) -> Dataset:
    data_dir = Path(data_dir).expanduser()
    hint = (f"Extract cifar-10-python.tar.gz (https://www.cs.toronto.edu/~kriz/cifar.html) into "
            f"{data_dir}/ so that {data_dir / CIFAR_DIR}/ holds data_batch_1..5 and test_batch.")
    subdirs = (CIFAR_DIR, os.path.join("cifar10", CIFAR_DIR), ".")
    train = [_cifar_batch(_find(data_dir, subdirs, f"data_batch_{i}", hint)) for i in range(1, 6)]
    x_test, y_test = _cifar_batch(_find(data_dir, subdirs, "test_batch", hint))
    return Dataset("cifar10", np.concatenate([t[0] for t in train]), np.concatenate([t[1] for t in train]),
                   x_test, y_test, classes=10)


def load(name: str, data_dir="data", seed: int = 0) -> Dataset:
    """Data set ``name`` (one of DATASETS), normalized with its training statistics."""
    if name == "digits":
        ds = load_digits(seed)
    elif name in IDX_URLS:
        ds = load_idx_dataset(name, data_dir)
    elif name == "cifar10":
        ds = load_cifar10(data_dir)
    else:
        raise ValueError(f"dataset must be one of {DATASETS}, got {name!r}")
    return normalize(ds)
