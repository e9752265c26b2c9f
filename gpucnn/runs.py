"""What ``gpucnn train`` checks before any work, and the rules of its run
directory, so that a user's mistake never costs a result:

* every option is checked first (ranges, a known model, data set and
  device, the device available, matplotlib present for ``--plot``);
* ``--out DIR`` holding a run (a checkpoint or metrics) is refused unless
  ``--resume`` continues it or ``--overwrite`` replaces it (the old
  checkpoint, metrics and plot are then removed when training starts);
* ``--resume`` reads the whole checkpoint before anything else and refuses
  one that is missing, truncated, corrupted, pickled or from another model
  (model, data set or seed); on a run that has done all its epochs it says
  there is nothing left to do;
* ``--resume`` with more ``--epochs`` than the run was planned for extends
  it: the learning rate of the added epochs continues from that of the last
  epoch done and anneals along a new cosine toward zero over the added
  epochs (no jump; the plan is stored in the checkpoint, so resuming the
  extended run follows it).
"""
from __future__ import annotations

import math
import zipfile
import zlib
from pathlib import Path

from gpucnn import backend, checkpoint, data
from gpucnn.nn.optim import CosineAnnealingLR
from gpucnn.usage import UsageError, missing_package, require_module

RUN_FILES = ("checkpoint.npz", "metrics.jsonl", "metrics.png")
# (field, lowest allowed, whether the lowest itself is allowed, highest excluded)
_RANGES = (("epochs", 1, True, None), ("batch_size", 1, True, None), ("seed", 0, True, None),
           ("lr", 0.0, False, None), ("momentum", 0.0, True, 1.0), ("weight_decay", 0.0, True, None),
           ("limit", 1, True, None))
_OPTIONAL = ("lr", "limit")  # None: the optimizer's default learning rate; all the data


def _option(field: str) -> str:
    return "--" + field.replace("_", "-")


def check_options(cfg) -> None:
    """Ranges and names of the options, before anything is loaded."""
    from gpucnn.nn.models import MODELS
    from gpucnn.train import DEVICES, OPTIMIZERS
    for field, lo, closed, hi in _RANGES:
        v = getattr(cfg, field)
        if v is None and field in _OPTIONAL:
            continue
        want_int = isinstance(lo, int)
        ok = (isinstance(v, int) and not isinstance(v, bool)) if want_int else \
            isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
        ok = ok and (v >= lo if closed else v > lo) and (hi is None or v < hi)
        if not ok:
            rng = f"{'>=' if closed else '>'} {lo}" + (f" and < {hi}" if hi is not None else "")
            kind = "an integer" if want_int else "a finite number"
            raise UsageError(f"{_option(field)} must be {kind} {rng}, got {v!r}")
    for field, known in (("model", tuple(MODELS)), ("dataset", data.DATASETS), ("device", DEVICES),
                         ("optimizer", OPTIMIZERS)):
        if getattr(cfg, field) not in known:
            raise UsageError(f"{_option(field)} must be one of {', '.join(known)}; got {getattr(cfg, field)!r}")


def check_device(device: str) -> None:
    """The device can run here: a GPU CuPy sees, or a C++ compiler for the emulator."""
    if device == "cpu":
        return
    ok, why = backend.available("cuda" if device == "cuda" else "emulator")
    if not ok:
        raise UsageError(f"--device {device} is not available here: {why}")


def holds_run(out: Path) -> list[str]:
    """The run files in ``out`` that hold results (an empty metrics file holds none)."""
    return [n for n in RUN_FILES if (out / n).is_file() and (out / n).stat().st_size > 0]


def read_checkpoint(path: Path) -> dict:
    """The record of checkpoint ``path``, every array read; a one-line error otherwise."""
    try:
        return checkpoint.read(path)[1]
    except (zipfile.BadZipFile, EOFError, zlib.error) as e:
        raise UsageError(f"checkpoint {path} is truncated or corrupted ({e})") from e
    except ValueError as e:
        if "pickle" in str(e):
            raise UsageError(f"checkpoint {path} holds pickled objects, which gpucnn never loads "
                             f"(it can run code); it is not a gpucnn checkpoint") from e
        raise UsageError(f"checkpoint {path} cannot be read: {e}") from e
    except (OSError, KeyError) as e:
        raise UsageError(f"checkpoint {path} cannot be read: {e}") from e


def check_resume(cfg, ckpt: Path) -> dict:
    """The record of the checkpoint to resume from, which must fit ``cfg``."""
    if not ckpt.is_file():
        raise UsageError(f"--resume: no checkpoint at {ckpt}; run without --resume to start a run there")
    record = read_checkpoint(ckpt)
    made = record.get("config", {})
    for field in ("model", "dataset", "seed"):
        if made.get(field) != getattr(cfg, field):
            raise UsageError(f"--resume: {ckpt} was made with {_option(field)} {made.get(field)!r}, "
                             f"not {getattr(cfg, field)!r} (a checkpoint of another run)")
    if record.get("epoch", 0) > cfg.epochs:
        raise UsageError(f"--resume: {ckpt} is at epoch {record['epoch']}, past --epochs {cfg.epochs}")
    return record


def preflight(cfg) -> dict | None:
    """Every check that needs no data: returns the checkpoint record when resuming."""
    check_options(cfg)
    check_device(cfg.device)
    if cfg.plot:
        require_module("matplotlib", "--plot")
    if cfg.resume and cfg.overwrite:
        raise UsageError("--resume and --overwrite exclude each other")
    out = Path(cfg.out)
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out} is a file, not a directory")
    if cfg.resume:
        return check_resume(cfg, out / "checkpoint.npz")
    found = holds_run(out)
    if found and not cfg.overwrite:
        raise UsageError(f"--out {out} already holds a run ({', '.join(found)}); pass --resume to "
                         f"continue it or --overwrite to replace it")
    return None


def finished(record: dict | None, cfg) -> bool:
    return record is not None and record.get("epoch") == cfg.epochs


def start_fresh(out: Path) -> None:
    """Remove an overwritten run's files and start an empty metrics file."""
    for name in RUN_FILES:
        (out / name).unlink(missing_ok=True)
    (out / "metrics.jsonl").write_text("")


def load_data(cfg):
    """The data set, or a one-line error saying which file is missing or bad."""
    try:
        return data.load(cfg.dataset, cfg.data_dir, seed=cfg.seed)
    except ImportError as e:
        raise missing_package("sklearn", f"the {cfg.dataset!r} data set") from e
    except (OSError, ValueError, EOFError) as e:
        raise UsageError(f"--dataset {cfg.dataset}: {e}") from e


def restore(ckpt: Path, model, optimizer, scheduler, epochs: int) -> dict:
    """Load the checkpoint (checked by ``check_resume``) into the training
    state; re-plan the schedule when ``epochs`` differs from its plan."""
    try:
        record = checkpoint.load(ckpt, model, optimizer, scheduler)
    except ValueError as e:  # another architecture, or a hand-edited file
        raise UsageError(f"--resume: {e}") from e
    if "end" not in record.get("scheduler", {"end": None}):  # made before plans were stored
        scheduler.T_max = scheduler.end = record["config"]["epochs"]
    if scheduler.end != epochs:
        scheduler.replan(record["epoch"], epochs)
    return record


class CosineSchedule(CosineAnnealingLR):
    """torch's cosine annealing over a run's epochs, whose plan travels in
    ``state_dict``; ``replan`` extends or shortens it without a jump."""

    def __init__(self, optimizer, epochs: int):
        super().__init__(optimizer, T_max=epochs)
        self.end = epochs

    def state_dict(self) -> dict:
        return {**super().state_dict(), "T_max": self.T_max, "end": self.end}

    def load_state_dict(self, state: dict) -> None:
        self.T_max = int(state.get("T_max", self.T_max))
        self.end = int(state.get("end", self.end))
        super().load_state_dict(state)

    def replan(self, done: int, epochs: int) -> None:
        """Epochs done+1..epochs anneal from the learning rate epoch ``done``
        used toward zero: lr_last * (1 + cos(pi * i / (n + 1))) / 2 for the
        i-th of the n epochs left."""
        last = self.lr_at(self.epoch - 1) if self.epoch > 0 else self.base_lr
        self.base_lr, self.T_max, self.epoch, self.end = last, epochs - done + 1, 1, epochs
        self.optimizer.lr = self.lr_at(self.epoch)
