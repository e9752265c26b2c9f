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

from gpucnn import checkpoint, data, nn, runs
from gpucnn import distributed as dist
from gpucnn.backend import use_backend
from gpucnn.nn import MODELS, CaptureError, CrossEntropyLoss, compile_step
from gpucnn.nn._array import to_device, xp_of
from gpucnn.runtime.loader import on_compile

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
    overwrite: bool = False
    plot: bool = False
    progress: bool = True
    sync_bn: bool = False
    limit: int | None = None  # the first N training and N held-out examples only


class Progress:
    """A progress bar with running loss and accuracy, redrawn in place on a
    terminal at most ten times a second; elsewhere (logs, CI) one line per epoch."""

    def __init__(self, total: int, label: str, stream=None, enabled: bool = True):
        self.total, self.label, self.enabled = total, label, enabled
        self.stream = stream if stream is not None else sys.stderr
        self.live = enabled and getattr(self.stream, "isatty", lambda: False)()
        self.t0 = self.last = time.perf_counter()
        self.state = (0, 0.0, 0.0)  # (done, loss, acc) of the last update

    def _line(self, done, loss, acc):
        filled = int(30 * done / max(self.total, 1))
        return (f"{self.label} [{'#' * filled}{'.' * (30 - filled)}] {done}/{self.total} "
                f"loss {loss:.4f} acc {acc:.4f} {time.perf_counter() - self.t0:.1f}s")

    def due(self, done) -> bool:
        """Whether ``update`` would redraw now (so the caller reads its sums only then)."""
        return self.live and (time.perf_counter() - self.last > 0.1 or done == self.total)

    def update(self, done, loss, acc):
        self.state = (done, loss, acc)
        if self.due(done):
            self.stream.write("\r" + self._line(done, loss, acc))
            self.stream.flush()
            self.last = time.perf_counter()

    def note(self, text):
        """Show ``text`` after the bar until the next redraw (on a terminal),
        else on a line of its own: what a long pause is spent on."""
        if not self.enabled:
            return
        if self.live:
            self.stream.write(f"\r{self._line(*self.state)} | {text}\x1b[K")
        else:
            self.stream.write(f"{self.label}: {text}\n")
        self.stream.flush()

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
        model.backward_params(loss_fn.backward())
        optimizer.step()
    return loss, logits


def run_epoch(model, loss_fn, x, y, batch_size, device, optimizer=None, rng=None, progress=None, step=None):
    """One pass over (x, y): training steps when an optimizer is given, else
    evaluation; batches shaped like ``step``'s replay it. Returns (mean loss,
    accuracy) over the samples of all ranks. The sums stay on the device until read."""
    total_loss = correct = None
    seen = 0
    for xb, yb in dist.batches(x, y, batch_size, rng):
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
        done = dist.global_seen(seen)
        if progress is not None and progress.due(done):
            progress.update(done, float(total_loss) / seen, int(correct) / seen)
    total_loss, correct, seen = dist.sum_over_ranks(float(total_loss), int(correct), seen)
    return total_loss / seen, correct / seen


def _restore(cfg, out, model, optimizer, scheduler, ckpt):
    """Resume from OUT/checkpoint.npz (checked by runs.preflight): (first
    epoch to run, training seconds so far)."""
    record = runs.restore(ckpt, model, optimizer, scheduler, cfg.epochs)
    # Drop metrics of epochs after the checkpoint (a crash between the two writes).
    metrics = out / "metrics.jsonl"
    if metrics.is_file() and dist.current().is_main:
        lines = [ln for ln in metrics.read_text().splitlines()
                 if ln.strip() and json.loads(ln)["epoch"] <= record["epoch"]]
        metrics.write_text("".join(ln + "\n" for ln in lines))
    return record["epoch"] + 1, record["seconds"]


@dist.guarded
def fit(cfg: Config, log=None) -> list[dict]:
    """Train as ``cfg`` says; returns the metrics of the epochs run. Under an MPI
    launcher the ranks train together and only rank 0 prints and writes."""
    record = runs.preflight(cfg)
    main = dist.init(cfg.device).is_main
    log = log if log is not None else (lambda s: print(s, file=sys.stderr))
    log = log if main else (lambda s: None)
    if record is not None:
        dist.check_resume(record)
    if runs.finished(record, cfg):
        log(f"{cfg.out}: the run has done all its {cfg.epochs} epochs; nothing left to do "
            f"(--resume with a larger --epochs extends it)")
        return []
    # Every rank has checked OUT before rank 0 writes to it.
    dist.barrier()
    ds = runs.load_data(cfg)
    if cfg.limit is not None:
        ds = data.head(ds, cfg.limit)
    ds = data.to_device(ds, cfg.device)
    model = MODELS[cfg.model](ds.input_shape, ds.classes, rng=np.random.default_rng(cfg.seed))
    if cfg.device == "cuda":
        model.to("cuda")
    model = dist.wrap(model, cfg.sync_bn)
    loss_fn = CrossEntropyLoss()
    optimizer = make_optimizer(cfg, model)
    scheduler = runs.CosineSchedule(optimizer, cfg.epochs)
    out = Path(cfg.out)
    if main:
        out.mkdir(parents=True, exist_ok=True)
    ckpt = out / "checkpoint.npz"
    first, seconds = (_restore(cfg, out, model, optimizer, scheduler, ckpt) if cfg.resume else (1, 0.0))
    if main and not cfg.resume:
        runs.start_fresh(out)
    log(f"{cfg.model} on {cfg.dataset}: {len(ds.x_train)} training, {len(ds.x_test)} held-out "
        f"images {tuple(ds.input_shape)}, device {cfg.device}, epochs {first}..{cfg.epochs}")
    history = []
    bar = None  # compiles before the first epoch's bar are logged
    with _backend_for(cfg.device), on_compile(lambda text: bar.note(text) if bar is not None else log(text)):
        # Ranks all-reduce their gradients between backward and update, which
        # a captured graph cannot hold: under MPI every step runs eagerly.
        step = None if dist.current().active else compile_training_step(
            model, loss_fn, optimizer, ds.x_train, ds.y_train, cfg.batch_size, cfg.device, log)
        for epoch in range(first, cfg.epochs + 1):
            bar = Progress(len(ds.x_train), f"epoch {epoch}/{cfg.epochs}", enabled=cfg.progress and main)
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
            if main:
                checkpoint.save(ckpt, model, optimizer, scheduler, epoch=epoch, seconds=seconds,
                                config=dataclasses.asdict(cfg), **dist.checkpoint_meta())
                with open(out / "metrics.jsonl", "a") as f:
                    f.write(json.dumps(row) + "\n")
            history.append(row)
    if cfg.plot and main:
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
