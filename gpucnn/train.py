"""The training loop behind ``gpucnn train``: mini-batch SGD, Adam or AdamW
with a cosine schedule, a plain-text progress bar on stderr, one JSON line of
metrics per epoch in OUT/metrics.jsonl, and a checkpoint per epoch
(OUT/checkpoint.npz) from which ``resume`` continues exactly where the run stopped.

On "cuda" the data set is copied to the GPU once (``data.to_device``) and
the training steps of full batches replay one captured graph
(``gpucnn.nn.compile_step``; on "emulator" the same recorded launches); the
last, partial batch of an epoch runs eagerly, so every example is seen each
epoch. A step that cannot be captured (the error names the op) runs eagerly.
Running loss and accuracy are summed on the device and read on the host only
when the progress bar is redrawn and at the end of a pass."""
from __future__ import annotations

import contextlib
import dataclasses
import json
import sys
import time
from pathlib import Path

import numpy as np

from gpucnn import checkpoint, data, nn
from gpucnn.backend import use_backend
from gpucnn.nn import MODELS, CaptureError, CosineAnnealingLR, CrossEntropyLoss, compile_step
from gpucnn.nn._array import to_device, xp_of

DEVICES = ("cpu", "cuda", "emulator")
OPTIMIZERS = ("sgd", "adam", "adamw")
DEFAULT_LR = {"sgd": 0.05, "adam": 1e-3, "adamw": 1e-3}


@dataclasses.dataclass
class Config:
    model: str = "lenet"
    dataset: str = "digits"
    data_dir: str = "data"
    epochs: int = 12
    batch_size: int = 32
    optimizer: str = "sgd"
    lr: float | None = None  # None: DEFAULT_LR of the optimizer
    momentum: float = 0.9
    weight_decay: float = 5e-4
    device: str = "cpu"
    seed: int = 0
    out: str = "runs/train"
    resume: bool = False
    plot: bool = False
    progress: bool = True
    limit: int | None = None  # the first N training and N held-out examples only


class Progress:
    """A progress bar with running loss and accuracy, redrawn in place on a
    terminal at most ten times a second; elsewhere (logs, CI) one line per epoch."""

    def __init__(self, total: int, label: str, stream=None, enabled: bool = True):
        self.total, self.label, self.enabled = total, label, enabled
        self.stream = stream if stream is not None else sys.stderr
        self.live = enabled and getattr(self.stream, "isatty", lambda: False)()
        self.t0 = self.last = time.perf_counter()

    def _line(self, done, loss, acc):
        filled = int(30 * done / max(self.total, 1))
        return (f"{self.label} [{'#' * filled}{'.' * (30 - filled)}] {done}/{self.total} "
                f"loss {loss:.4f} acc {acc:.4f} {time.perf_counter() - self.t0:.1f}s")

    def due(self, done) -> bool:
        """Whether ``update`` would redraw now (so the caller reads its sums only then)."""
        return self.live and (time.perf_counter() - self.last > 0.1 or done == self.total)

    def update(self, done, loss, acc):
        if self.due(done):
            self.stream.write("\r" + self._line(done, loss, acc))
            self.stream.flush()
            self.last = time.perf_counter()

    def close(self, done, loss, acc, extra=""):
        if self.enabled:
            self.stream.write(("\r" if self.live else "") + self._line(done, loss, acc) + extra + "\n")
            self.stream.flush()


def _backend_for(device: str):
    if device not in DEVICES:
        raise ValueError(f"device must be one of {DEVICES}, got {device!r}")
    return use_backend("emulator") if device == "emulator" else contextlib.nullcontext()


def _place(a, device):
    return to_device(a, "cuda") if device == "cuda" else a


def make_optimizer(cfg: Config, model):
    """The optimizer ``cfg.optimizer`` names, with cfg's learning rate (or its default) and weight decay."""
    if cfg.optimizer not in OPTIMIZERS:
        raise ValueError(f"optimizer must be one of {OPTIMIZERS}, got {cfg.optimizer!r}")
    lr = DEFAULT_LR[cfg.optimizer] if cfg.lr is None else cfg.lr
    if cfg.optimizer == "sgd":
        return nn.SGD(model, lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay, nesterov=cfg.momentum > 0)
    cls = getattr(nn, {"adam": "Adam", "adamw": "AdamW"}[cfg.optimizer], None)
    if cls is None:
        raise ValueError(f"optimizer {cfg.optimizer!r} is not in this version of gpucnn.nn")
    return cls(model, lr=lr, weight_decay=cfg.weight_decay)


def compile_training_step(model, loss_fn, optimizer, x, y, batch_size, device, log):
    """A captured step for the full batches of (x, y) on "cuda" and "emulator",
    or None (on "cpu", with no full batch, or when the step cannot be captured:
    then every step runs eagerly, and ``log`` says why)."""
    if device == "cpu" or len(x) < batch_size:
        return None
    xb, yb = _place(x[:batch_size], device), _place(y[:batch_size], device)
    try:
        return compile_step(model.train(), loss_fn, optimizer, xb, yb)
    except CaptureError as e:
        log(f"training steps run eagerly: {e}")
        return None


def _eager_step(model, loss_fn, optimizer, xb, yb):
    logits = model.forward(xb)
    loss = loss_fn.forward(logits, yb)
    if optimizer is not None:
        model.backward(loss_fn.backward())
        optimizer.step()
    return loss, logits


def run_epoch(model, loss_fn, x, y, batch_size, device, optimizer=None, rng=None, progress=None, step=None):
    """One pass over (x, y): training steps when an optimizer is given, else
    evaluation; batches shaped like ``step``'s replay it. Returns (mean loss,
    accuracy) over the samples. The sums stay on the device until read."""
    total_loss = correct = None
    seen = 0
    for xb, yb in data.batches(x, y, batch_size, rng):
        xb, yb = _place(xb, device), _place(yb, device)
        if step is not None and xb.shape == step.x.shape:
            loss, logits = step(xb, yb), step.output
        else:
            loss, logits = _eager_step(model, loss_fn, optimizer, xb, yb)
        if total_loss is None:
            xp = xp_of(logits)
            total_loss, correct = xp.zeros((), np.float64), xp.zeros((), np.int64)
        total_loss = total_loss + loss.astype(np.float64) * len(xb)  # float64 sums in 0-d arrays
        correct = correct + (logits.argmax(axis=1) == yb).sum()
        seen += len(xb)
        if progress is not None and progress.due(seen):
            progress.update(seen, float(total_loss) / seen, int(correct) / seen)
    return float(total_loss) / seen, int(correct) / seen


def _restore(cfg, out, model, optimizer, scheduler, ckpt):
    """Resume from OUT/checkpoint.npz: (first epoch to run, training seconds so far)."""
    if not ckpt.is_file():
        raise FileNotFoundError(f"--resume: no checkpoint at {ckpt}; run without --resume first")
    record = checkpoint.load(ckpt, model, optimizer, scheduler)
    for key in ("model", "dataset", "seed"):
        if record["config"][key] != getattr(cfg, key):
            raise ValueError(f"--resume: the checkpoint was made with {key}={record['config'][key]!r}, "
                             f"not {getattr(cfg, key)!r}")
    # Drop metrics of epochs after the checkpoint (a crash between the two writes).
    metrics = out / "metrics.jsonl"
    if metrics.is_file():
        lines = [ln for ln in metrics.read_text().splitlines()
                 if ln.strip() and json.loads(ln)["epoch"] <= record["epoch"]]
        metrics.write_text("".join(ln + "\n" for ln in lines))
    return record["epoch"] + 1, record["seconds"]


def fit(cfg: Config, log=None) -> list[dict]:
    """Train as ``cfg`` says; returns the metrics of the epochs run."""
    log = log if log is not None else (lambda s: print(s, file=sys.stderr))
    ds = data.load(cfg.dataset, cfg.data_dir, seed=cfg.seed)
    if cfg.limit is not None:
        ds = data.head(ds, cfg.limit)
    ds = data.to_device(ds, cfg.device)
    model = MODELS[cfg.model](ds.input_shape, ds.classes, rng=np.random.default_rng(cfg.seed))
    if cfg.device == "cuda":
        model.to("cuda")
    loss_fn = CrossEntropyLoss()
    optimizer = make_optimizer(cfg, model)
    scheduler = CosineAnnealingLR(optimizer, T_max=cfg.epochs)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    ckpt = out / "checkpoint.npz"
    first, seconds = (_restore(cfg, out, model, optimizer, scheduler, ckpt) if cfg.resume else (1, 0.0))
    if not cfg.resume:
        (out / "metrics.jsonl").write_text("")
    log(f"{cfg.model} on {cfg.dataset}: {len(ds.x_train)} training, {len(ds.x_test)} held-out "
        f"images {tuple(ds.input_shape)}, device {cfg.device}, epochs {first}..{cfg.epochs}")
    history = []
    with _backend_for(cfg.device):
        step = compile_training_step(model, loss_fn, optimizer, ds.x_train, ds.y_train, cfg.batch_size,
                                     cfg.device, log)
        for epoch in range(first, cfg.epochs + 1):
            bar = Progress(len(ds.x_train), f"epoch {epoch}/{cfg.epochs}", enabled=cfg.progress)
            t0 = time.perf_counter()
            # The shuffling depends on (seed, epoch) only, so a resumed run sees the same batches.
            train_loss, train_acc = run_epoch(model.train(), loss_fn, ds.x_train, ds.y_train, cfg.batch_size,
                                              cfg.device, optimizer, np.random.default_rng([cfg.seed, epoch]), bar,
                                              step)
            seconds += time.perf_counter() - t0
            test_loss, test_acc = run_epoch(model.eval(), loss_fn, ds.x_test, ds.y_test, 256, cfg.device)
            bar.close(len(ds.x_train), train_loss, train_acc, f" | held-out loss {test_loss:.4f} acc {test_acc:.4f}")
            row = dict(epoch=epoch, train_loss=train_loss, train_acc=train_acc, test_loss=test_loss,
                       test_acc=test_acc, seconds=round(seconds, 3), lr=optimizer.lr)
            scheduler.step()
            checkpoint.save(ckpt, model, optimizer, scheduler, epoch=epoch, seconds=seconds,
                            config=dataclasses.asdict(cfg))
            with open(out / "metrics.jsonl", "a") as f:
                f.write(json.dumps(row) + "\n")
            history.append(row)
    if cfg.plot:
        log(f"plot: {plot(out / 'metrics.jsonl', out / 'metrics.png')}")
    return history


def plot(metrics_path, png_path) -> Path:
    """Loss and accuracy per epoch from a metrics.jsonl (needs matplotlib)."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as e:
        raise ImportError("--plot needs matplotlib: pip install matplotlib") from e
    rows = [json.loads(ln) for ln in Path(metrics_path).read_text().splitlines() if ln.strip()]
    epochs = [r["epoch"] for r in rows]
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for ax, key in zip(axes, ("loss", "acc")):
        for part in ("train", "test"):
            ax.plot(epochs, [r[f"{part}_{key}"] for r in rows], marker="o", label=part)
        ax.set_xlabel("epoch")
        ax.set_ylabel(key)
        ax.legend()
    fig.tight_layout()
    fig.savefig(png_path)
    plt.close(fig)
    return Path(png_path)
