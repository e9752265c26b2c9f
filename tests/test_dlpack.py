"""Arrays of other libraries in the functional API, through DLPack.

A CPU tensor comes in as a NumPy array over the same memory (no copy), a CUDA
tensor as a CuPy array; results are NumPy or CuPy arrays, as for those inputs.
Uses PyTorch (skipped cleanly without it) as the other library.
"""
from __future__ import annotations

import numpy as np
import pytest
from crosscheck import torch_or_skip

import gpucnn
from gpucnn import _checks
from gpucnn import backend as _backend

pytestmark = pytest.mark.family("relu")


def test_cpu_tensor_is_taken_without_a_copy():
    torch = torch_or_skip()
    t = torch.randn(2, 3, 4, 5)
    for view in (t, t.transpose(1, 3), t[:, 1:, ::2]):
        a = _checks.array("x", view)
        assert type(a) is np.ndarray and a.shape == tuple(view.shape)
        assert np.shares_memory(a, t.numpy())
        np.testing.assert_array_equal(a, view.numpy())
    a = _checks.array("x", t)
    t[0, 0, 0, 0] = 123.0  # the same memory: a write to the tensor shows in the array
    assert a[0, 0, 0, 0] == 123.0


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_functional_ops_take_cpu_tensors(backend, dtype):
    torch = torch_or_skip()
    gen = torch.Generator().manual_seed(40)
    tdt = getattr(torch, dtype)
    x = torch.randn(4, 3, 5, 5, generator=gen, dtype=tdt)
    w = torch.randn(2, 3, 3, 3, generator=gen, dtype=tdt)
    keep = x.clone()
    y = gpucnn.relu(x, 0.1)
    assert type(y) is np.ndarray and y.dtype == np.dtype(dtype)
    np.testing.assert_array_equal(y, gpucnn.relu(x.numpy(), 0.1))
    np.testing.assert_array_equal(gpucnn.conv2d(x, w, padding=1), gpucnn.conv2d(x.numpy(), w.numpy(), padding=1))
    g = torch.ones(3, dtype=tdt)
    z, saved = gpucnn.batch_norm2d(x, g, g, torch.zeros(3, dtype=tdt), torch.ones(3, dtype=tdt))
    assert type(z) is np.ndarray and type(saved.running_mean) is np.ndarray
    assert torch.equal(x, keep)


def test_bad_tensors_name_the_argument():
    torch = torch_or_skip()
    with pytest.raises(TypeError, match="x must be float32 or float64, got dtype int64"):
        gpucnn.relu(torch.arange(6))
    with pytest.raises(TypeError, match=r"x \(torch.Tensor\) could not be taken through DLPack.*grad"):
        gpucnn.relu(torch.ones(3, requires_grad=True))
    with pytest.raises(TypeError, match=r"dy \(torch.Tensor\).*DLPack"):
        gpucnn.relu_backward(torch.ones(3, dtype=torch.bfloat16), np.ones(3))
    with pytest.raises(TypeError, match="x must be a numpy or cupy array, or support DLPack, got object"):
        gpucnn.relu(object())


def test_mixed_with_numpy_arrays():
    torch = torch_or_skip()
    x = np.linspace(-1, 1, 12).reshape(3, 4)
    np.testing.assert_array_equal(gpucnn.relu_backward(torch.ones(3, 4, dtype=torch.float64), x),
                                  gpucnn.relu_backward(np.ones((3, 4)), x))


@pytest.mark.gpu
def test_cuda_tensor_comes_in_as_cupy():
    torch = torch_or_skip()
    if not torch.cuda.is_available() or not _backend.available("cuda")[0]:
        pytest.skip("needs torch with CUDA and CuPy with a GPU")
    import cupy
    t = torch.randn(2, 3, 4, 5, device="cuda")
    a = _checks.array("x", t)
    assert isinstance(a, cupy.ndarray) and a.data.ptr == t.data_ptr()  # the same memory
    y = gpucnn.relu(t)
    assert isinstance(y, cupy.ndarray)
    cupy.testing.assert_array_equal(y, cupy.asarray(torch.relu(t)))
