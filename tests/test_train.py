"""Checkpoints, data loading and the training loop / ``gpucnn train``."""
from __future__ import annotations

import gzip
import json
import pickle

import numpy as np
import pytest

from gpucnn import backend, checkpoint, cli, data, nn, train


def _net(seed=0):
    """A tiny net with every kind of state: parameters, batch-norm buffers, a dropout generator."""
    rng = np.random.default_rng(seed)
    return nn.Sequential(nn.Conv2D(1, 3, 3, padding=1, rng=rng), nn.BatchNorm2D(3), nn.ReLU(),
                         nn.MaxPool2D(2), nn.Flatten(), nn.Dropout(0.3, rng=np.random.default_rng(seed + 1)),
                         nn.Linear(3 * 3 * 3, 4, rng=rng))


def _setup(seed=0):
    model = _net(seed)
    opt = nn.SGD(model, 0.1, momentum=0.9, nesterov=True, weight_decay=1e-3)
    return model, opt, nn.StepLR(opt, 1, gamma=0.5)


def _step(model, opt, sched, i):
    rng = np.random.default_rng(i)
    x, y = rng.standard_normal((5, 1, 6, 6)).astype(np.float32), rng.integers(0, 4, 5)
    loss_fn = nn.CrossEntropyLoss()
    loss = loss_fn.forward(model.forward(x), y)
    model.backward(loss_fn.backward())
    opt.step()
    sched.step()
    return float(loss)


def test_checkpoint_resume_is_bitwise(tmp_path):
    model, opt, sched = _setup()
    for i in range(3):
        _step(model, opt, sched, i)
    path = checkpoint.save(tmp_path / "ck.npz", model, opt, sched, epoch=3)
    want_loss = _step(model, opt, sched, 3)
    resumed, ropt, rsched = _setup(seed=5)  # different initial weights, all overwritten
    assert checkpoint.load(path, resumed, ropt, rsched)["epoch"] == 3
    assert _step(resumed, ropt, rsched, 3) == want_loss
    for k, v in {**model.params(), **model.buffers()}.items():
        np.testing.assert_array_equal({**resumed.params(), **resumed.buffers()}[k], v, err_msg=k)
    assert ropt.lr == opt.lr
    assert [p.name for p in tmp_path.iterdir()] == ["ck.npz"]  # no temporary file left


def test_checkpoint_from_another_architecture_names_the_mismatch(tmp_path):
    model, opt, sched = _setup()
    path = checkpoint.save(tmp_path / "ck.npz", model)
    other = nn.Sequential(nn.Conv2D(1, 5, 3, padding=1), nn.BatchNorm2D(5), nn.ReLU(), nn.MaxPool2D(2),
                          nn.Flatten(), nn.Linear(5 * 3 * 3, 4))
    with pytest.raises(ValueError, match=r"parameter '0.weight' has shape \(3, 1, 3, 3\) in the file "
                                         r"but \(5, 1, 3, 3\) in the model"):
        checkpoint.load(path, other)
    with pytest.raises(ValueError, match=r"missing from the file: \['0.bias'"):
        checkpoint.load(checkpoint.save(tmp_path / "lin.npz", nn.Sequential(nn.Linear(2, 2, bias=False))),
                        nn.Sequential(nn.Linear(2, 2)))


def test_checkpoint_write_is_atomic(tmp_path, monkeypatch):
    model, _, _ = _setup()
    path = checkpoint.save(tmp_path / "ck.npz", model, epoch=1)
    before = path.read_bytes()

    def crash(*a, **k):
        raise OSError("disk full")
    monkeypatch.setattr(np, "savez", crash)
    with pytest.raises(OSError, match="disk full"):
        checkpoint.save(path, model, epoch=2)
    assert path.read_bytes() == before and [p.name for p in tmp_path.iterdir()] == ["ck.npz"]


# ---- data --------------------------------------------------------------------------------

def _write_idx(path, arr, compress):
    codes = {np.uint8: 0x08}
    header = bytes([0, 0, codes[arr.dtype.type], arr.ndim]) + np.array(arr.shape, ">u4").tobytes()
    raw = header + arr.tobytes()
    (gzip.open(str(path) + ".gz", "wb") if compress else open(path, "wb")).write(raw)


def _fake_mnist(root, n=(40, 20), compress=True):
    rng = np.random.default_rng(0)
    for part, count in zip(("train", "test"), n):
        img, lab = data.IDX_FILES[part]
        labels = rng.integers(0, 10, count).astype(np.uint8)
        images = rng.integers(0, 50, (count, 28, 28)).astype(np.uint8)
        images[np.arange(count), labels * 2, :] = 255  # a learnable signal: a bright row per class
        _write_idx(root / img, images, compress)
        _write_idx(root / lab, labels, compress)
    return root


@pytest.mark.parametrize("compress", [True, False], ids=["gz", "raw"])
def test_mnist_idx(tmp_path, compress):
    _fake_mnist((tmp_path / "mnist").mkdir() or tmp_path / "mnist", compress=compress)
    ds = data.load_idx_dataset("mnist", tmp_path)
    assert ds.x_train.shape == (40, 1, 28, 28) and ds.x_test.shape == (20, 1, 28, 28)
    assert ds.x_train.dtype == np.float32 and ds.y_train.dtype == np.int64 and ds.x_train.max() == 1.0
    idx = int(np.argmax(ds.x_train[0, 0].mean(axis=1)))
    assert idx == 2 * ds.y_train[0]


def test_missing_files_say_where_to_put_them(tmp_path):
    with pytest.raises(FileNotFoundError, match=f"in {tmp_path / 'fashion-mnist'}"):
        data.load("fashion-mnist", tmp_path)
    with pytest.raises(FileNotFoundError, match="cifar-10-batches-py"):
        data.load("cifar10", tmp_path)
    (tmp_path / "mnist").mkdir()
    (tmp_path / "mnist" / "train-images-idx3-ubyte").write_bytes(b"\x00\x00\x08\x03\x00")
    with pytest.raises(ValueError, match="header"):
        data.read_idx(tmp_path / "mnist" / "train-images-idx3-ubyte")


def test_cifar10_batches(tmp_path):
    d = tmp_path / data.CIFAR_DIR
    d.mkdir()
    rng = np.random.default_rng(0)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        batch = {b"data": rng.integers(0, 256, (3, 3072)).astype(np.uint8), b"labels": [1, 2, 3],
                 b"batch_label": b"x"}
        (d / name).write_bytes(pickle.dumps(batch, protocol=2))  # the official files are protocol 2
    ds = data.load("cifar10", tmp_path)
    assert ds.x_train.shape == (15, 3, 32, 32) and ds.x_test.shape == (3, 3, 32, 32)
    np.testing.assert_allclose(ds.x_train.mean(axis=(0, 2, 3)), 0, atol=1e-5)  # normalized
    (d / "test_batch").write_bytes(pickle.dumps({b"data": np.zeros(1), b"evil": print}, protocol=2))
    with pytest.raises(pickle.UnpicklingError, match="refusing"):
        data.load("cifar10", tmp_path)


def test_split_batches_normalize():
    x, y = np.arange(50, dtype=np.float32).reshape(10, 1, 5, 1), np.arange(10)
    a = data.split(x, y, 0.3, seed=1)
    assert [len(p) for p in a] == [7, 7, 3, 3]
    assert sorted(np.concatenate([a[1], a[3]])) == list(range(10))
    assert all(np.array_equal(u, v) for u, v in zip(a, data.split(x, y, 0.3, seed=1)))
    got = [yb for _, yb in data.batches(x, y, 4, np.random.default_rng(0))]
    assert [len(b) for b in got] == [4, 4, 2] and sorted(np.concatenate(got)) == list(range(10))
    ds = data.normalize(data.Dataset("t", *a, classes=10))
    assert abs(ds.x_train.mean()) < 1e-6 and abs(ds.x_train.std() - 1) < 1e-5


def test_digits():
    pytest.importorskip("sklearn")
    ds = data.load("digits")
    assert ds.x_train.shape[1:] == (1, 8, 8) and len(ds.x_train) + len(ds.x_test) == 1797


# ---- training loop and CLI -----------------------------------------------------------------

def _cfg(tmp_path, **kw):
    _fake_mnist(tmp_path)
    base = dict(dataset="mnist", data_dir=str(tmp_path), epochs=2, batch_size=16, lr=0.02,
                out=str(tmp_path / "run"), progress=False)
    return train.Config(**{**base, **kw})


def test_cli_train_writes_metrics_and_checkpoint(tmp_path, capsys):
    _fake_mnist(tmp_path)
    argv = ["train", "--dataset", "mnist", "--data-dir", str(tmp_path), "--epochs", "2",
            "--batch-size", "16", "--out", str(tmp_path / "run"), "--no-progress"]
    assert cli.main(argv) == 0
    rows = [json.loads(ln) for ln in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2]
    for key in ("train_loss", "train_acc", "test_loss", "test_acc", "seconds"):
        assert all(np.isfinite(r[key]) for r in rows), key
    assert rows[1]["seconds"] >= rows[0]["seconds"] > 0
    assert (tmp_path / "run" / "checkpoint.npz").is_file()
    assert "held-out accuracy" in capsys.readouterr().out


def crash_fit(monkeypatch, cfg, at_pass: int) -> None:
    """train.fit(cfg) interrupted (KeyboardInterrupt) as it starts pass ``at_pass``
    of run_epoch (passes alternate: training epoch 1, its evaluation, ...)."""
    calls, real = [], train.run_epoch

    def crash(*a, **k):
        calls.append(1)
        if len(calls) == at_pass:
            raise KeyboardInterrupt
        return real(*a, **k)
    monkeypatch.setattr(train, "run_epoch", crash)
    with pytest.raises(KeyboardInterrupt):
        train.fit(cfg, log=lambda s: None)
    monkeypatch.setattr(train, "run_epoch", real)


def test_resume_after_a_crash_continues_exactly(tmp_path, monkeypatch):
    whole = train.fit(_cfg(tmp_path, out=str(tmp_path / "a")), log=lambda s: None)
    crash_fit(monkeypatch, _cfg(tmp_path, out=str(tmp_path / "b")), 3)  # as training epoch 2 starts
    resumed = train.fit(_cfg(tmp_path, out=str(tmp_path / "b"), resume=True), log=lambda s: None)
    assert [r["epoch"] for r in resumed] == [2]
    for key in ("train_loss", "train_acc", "test_loss", "test_acc"):
        assert resumed[0][key] == whole[1][key], key
    a, b = (np.load(tmp_path / d / "checkpoint.npz") for d in "ab")
    for k in a.files:
        if k != "meta":
            np.testing.assert_array_equal(a[k], b[k], err_msg=k)
    lines = (tmp_path / "b" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(ln)["epoch"] for ln in lines] == [1, 2]
    with pytest.raises(ValueError, match="--seed 0, not 3"):
        train.fit(_cfg(tmp_path, out=str(tmp_path / "b"), resume=True, seed=3), log=lambda s: None)


def test_plot(tmp_path):
    pytest.importorskip("matplotlib")
    train.fit(_cfg(tmp_path, epochs=1, plot=True), log=lambda s: None)
    assert (tmp_path / "run" / "metrics.png").stat().st_size > 1000


def test_progress_bar_plain_stream():
    import io
    s = io.StringIO()
    bar = train.Progress(10, "epoch 1/1", stream=s)
    bar.update(5, 0.5, 0.25)
    bar.close(10, 0.4, 0.5, " | done")
    assert s.getvalue().count("\n") == 1 and "10/10 loss 0.4000 acc 0.5000" in s.getvalue()


# ---- training on the kernels: captured steps, device-resident data, options -----------------

def _need_emulator():
    ok, why = backend.available("emulator")
    if not ok:
        pytest.skip(f"emulator unavailable: {why}")


def _emulator():
    _need_emulator()
    return backend.use_backend("emulator")


def test_an_epoch_of_captured_steps_equals_an_eager_epoch():
    from capturable import KernelSGD, ReluSumLoss
    rng = np.random.default_rng(2)
    x, y = rng.standard_normal((10, 1, 6, 6)).astype(np.float32), rng.integers(0, 4, 10)
    with _emulator():
        eager, graphed = _net(), _net()
        want = train.run_epoch(eager, ReluSumLoss(), x, y, 4, "emulator", KernelSGD(eager, 0.01),
                               np.random.default_rng(0))
        opt = KernelSGD(graphed, 0.01)
        step = train.compile_training_step(graphed, ReluSumLoss(), opt, x, y, 4, "emulator", print)
        # Batches of 4, 4 and 2: two replays, then the partial batch eagerly.
        got = train.run_epoch(graphed, ReluSumLoss(), x, y, 4, "emulator", opt, np.random.default_rng(0),
                              step=step)
    assert step is not None and got == want
    for k, v in eager.params().items():
        np.testing.assert_array_equal(graphed.params()[k], v, err_msg=k)


def test_a_step_that_cannot_be_captured_runs_eagerly_and_says_why():
    logged = []
    with _emulator():
        model = _net()
        opt = nn.SGD(model, 0.1)
        opt.capturable = False  # as an optimizer of host-side array expressions would be
        step = train.compile_training_step(model, nn.CrossEntropyLoss(), opt,
                                           np.zeros((8, 1, 6, 6), np.float32), np.zeros(8, np.int64), 4,
                                           "emulator", logged.append)
    assert step is None and "eagerly" in logged[0] and "SGD.step" in logged[0]


@pytest.mark.parametrize("model", ["lenet", "resnet20"])
def test_cli_train_on_the_emulator(tmp_path, capsys, model):
    pytest.importorskip("sklearn")
    if model not in nn.MODELS:
        pytest.skip(f"{model} is not in gpucnn.nn.MODELS yet")
    _need_emulator()
    argv = ["train", "--model", model, "--device", "emulator", "--epochs", "1", "--limit", "16",
            "--batch-size", "8", "--out", str(tmp_path / "run"), "--no-progress"]
    assert cli.main(argv) == 0
    row, = [json.loads(ln) for ln in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert np.isfinite(row["train_loss"]) and 0 <= row["test_acc"] <= 1
    assert "16 training, 16 held-out" in capsys.readouterr().err


@pytest.mark.parametrize("name", train.OPTIMIZERS)
def test_optimizer_option(name):
    cls = {"sgd": "SGD", "adam": "Adam", "adamw": "AdamW"}[name]
    if not hasattr(nn, cls):
        pytest.skip(f"gpucnn.nn.{cls} is not there yet")
    opt = train.make_optimizer(train.Config(optimizer=name), _net())
    assert type(opt).__name__ == cls and opt.lr == train.DEFAULT_LR[name]
    assert train.make_optimizer(train.Config(optimizer=name, lr=0.5), _net()).lr == 0.5


def test_limit_and_device_data_off_the_gpu():
    x, y = np.arange(40, dtype=np.float32).reshape(10, 1, 2, 2), np.arange(10)
    ds = data.Dataset("t", x[:7], y[:7], x[7:], y[7:], classes=10)
    small = data.head(ds, 2)
    assert small.y_train.tolist() == [0, 1] and small.y_test.tolist() == [7, 8]
    assert data.to_device(ds, "emulator") is ds and data.nbytes(ds) == x.nbytes + y.nbytes
    with pytest.raises(ValueError, match="limit must be >= 1"):
        data.head(ds, 0)


@pytest.mark.gpu
def test_device_batches_follow_the_host_order():
    if not backend.available("cuda")[0]:
        pytest.skip("no CUDA GPU")
    x, y = np.arange(40, dtype=np.float32).reshape(10, 1, 2, 2), np.arange(10)
    ds = data.to_device(data.Dataset("t", x, y, x, y, classes=10), "cuda")
    assert type(ds.x_train).__module__.startswith("cupy")
    host = list(data.batches(x, y, 4, np.random.default_rng(5)))
    dev = list(data.batches(ds.x_train, ds.y_train, 4, np.random.default_rng(5)))
    for (hx, hy), (dx, dy) in zip(host, dev):
        np.testing.assert_array_equal(dx.get(), hx)
        np.testing.assert_array_equal(dy.get(), hy)
