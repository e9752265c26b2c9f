"""The training loop behind ``gpucnn train``: mini-batch SGD with a cosine
schedule, a plain-text progress bar on stderr, one JSON line of metrics per
epoch in OUT/metrics.jsonl, and a checkpoint per epoch (OUT/checkpoint.npz)
from which ``resume`` continues exactly where the run stopped."""
from __future__ import annotations

import contextlib
import dataclasses
import json
import sys
import time
from pathlib import Path

import numpy as np

from gpucnn import checkpoint, data, runs
from gpucnn import distributed as dist
from gpucnn.backend import use_backend
from gpucnn.nn import MODELS, SGD, CrossEntropyLoss
from gpucnn.nn._array import to_device
from gpucnn.runtime.loader import on_compile

DEVICES = ("cpu", "cuda", "emulator")


@dataclasses.dataclass
class Config:
    model: str = "lenet"
    dataset: str = "digits"
    data_dir: str = "data"
    epochs: int = 12
    batch_size: int = 32
    lr: float = 0.05
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

    def update(self, done, loss, acc):
        self.state = (done, loss, acc)
        now = time.perf_counter()
        if self.live and (now - self.last > 0.1 or done == self.total):
            self.stream.write("\r" + self._line(done, loss, acc))
            self.stream.flush()
            self.last = now

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


def run_epoch(model, loss_fn, x, y, batch_size, device, optimizer=None, rng=None, progress=None):
    """One pass over (x, y): training steps when an optimizer is given, else
    evaluation. Returns (mean loss, accuracy) over the samples."""
    total_loss, correct, seen = 0.0, 0, 0
    for xb, yb in dist.batches(x, y, batch_size, rng):
        xb, yb = _place(xb, device), _place(yb, device)
        logits = model.forward(xb)
        loss = float(loss_fn.forward(logits, yb))
        if optimizer is not None:
            model.backward(loss_fn.backward())
            optimizer.step()
        total_loss += loss * len(xb)
        correct += int((logits.argmax(axis=1) == yb).sum())
        seen += len(xb)
        if progress is not None:
            progress.update(dist.global_seen(seen), total_loss / seen, correct / seen)
    total_loss, correct, seen = dist.sum_over_ranks(total_loss, correct, seen)
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
    model = MODELS[cfg.model](ds.input_shape, ds.classes, rng=np.random.default_rng(cfg.seed))
    if cfg.device == "cuda":
        model.to("cuda")
    model = dist.wrap(model, cfg.sync_bn)
    loss_fn = CrossEntropyLoss()
    optimizer = SGD(model, cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay,
                    nesterov=cfg.momentum > 0)
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
    with _backend_for(cfg.device), on_compile(lambda text: bar.note(text)):
        for epoch in range(first, cfg.epochs + 1):
            bar = Progress(len(ds.x_train), f"epoch {epoch}/{cfg.epochs}", enabled=cfg.progress and main)
            t0 = time.perf_counter()
            # The shuffling depends on (seed, epoch) only, so a resumed run sees the same batches.
            train_loss, train_acc = run_epoch(model.train(), loss_fn, ds.x_train, ds.y_train, cfg.batch_size,
                                              cfg.device, optimizer, np.random.default_rng([cfg.seed, epoch]), bar)
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
