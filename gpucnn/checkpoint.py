"""Checkpoints: a model's parameters and buffers, the optimizer's state
(SGD's momentum buffers, Adam's moments, the step count), and a JSON record (epoch, learning rate, schedule, random generator
states, anything else the caller adds) in one ``.npz`` file.

The file is written to a temporary name in the same directory and renamed
over the target with ``os.replace``, which is atomic on POSIX and Windows: a
crash mid-write leaves the previous checkpoint intact. It is read with
``allow_pickle=False``, so a checkpoint cannot run code.
"""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import numpy as np

from gpucnn.nn._array import to_device, to_host

FORMAT = 1
_PARAM, _BUFFER, _OPTIM, _META = "param/", "buffer/", "optim/", "meta"


def save(path, model, optimizer=None, scheduler=None, **meta) -> Path:
    """Write the training state to ``path``; ``meta`` must be JSON-serializable."""
    path = Path(path)
    arrays = {_PARAM + k: to_host(v) for k, v in model.params().items()}
    arrays.update({_BUFFER + k: to_host(v) for k, v in model.buffers().items()})
    record = {"format": FORMAT, "rng_states": model.rng_states(), **meta}
    if optimizer is not None:
        arrays.update({_OPTIM + k: to_host(v) for k, v in optimizer.state_dict().items()})
        record["lr"] = optimizer.lr
        record["optimizer"] = type(optimizer).__name__
    if scheduler is not None:
        record["scheduler"] = scheduler.state_dict()
    arrays[_META] = np.array(json.dumps(record))
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise
    return path


def _check(path, kind, have: dict, want: dict) -> None:
    """Same names and shapes in the file as in the model, or an error naming the difference."""
    missing, extra = sorted(set(want) - set(have)), sorted(set(have) - set(want))
    problems = []
    if missing:
        problems.append(f"{kind}s missing from the file: {missing}")
    if extra:
        problems.append(f"{kind}s in the file that the model lacks: {extra}")
    for k in sorted(set(have) & set(want)):
        if tuple(have[k].shape) != tuple(want[k].shape):
            problems.append(f"{kind} {k!r} has shape {tuple(have[k].shape)} in the file but "
                            f"{tuple(want[k].shape)} in the model")
    if problems:
        raise ValueError(f"checkpoint {path} does not fit this model (another architecture?): "
                         + "; ".join(problems))


def _section(arrays, prefix):
    return {k[len(prefix):]: arrays[k] for k in arrays if k.startswith(prefix)}


def read(path) -> tuple[dict, dict]:
    """Every array of checkpoint ``path`` and its JSON record, read in full
    (so a truncated or corrupted file fails here), never unpickling."""
    with np.load(path, allow_pickle=False) as f:
        arrays = {k: f[k] for k in f.files}
    if _META not in arrays:
        raise ValueError(f"{path} is not a gpucnn checkpoint (no {_META!r} record)")
    record = json.loads(str(arrays[_META]))
    if not isinstance(record, dict) or record.get("format") != FORMAT:
        fmt = record.get("format") if isinstance(record, dict) else None
        raise ValueError(f"{path}: checkpoint format {fmt!r}, expected {FORMAT}")
    return arrays, record


def load(path, model, optimizer=None, scheduler=None) -> dict:
    """Restore what ``save`` wrote into ``model`` (and the optimizer and schedule
    when given) on the model's device; returns the JSON record."""
    arrays, record = read(path)
    params, buffers = model.params(), model.buffers()
    _check(path, "parameter", _section(arrays, _PARAM), params)
    _check(path, "buffer", _section(arrays, _BUFFER), buffers)
    for setter, prefix, current in ((model.set_param, _PARAM, params), (model.set_buffer, _BUFFER, buffers)):
        for k, v in _section(arrays, prefix).items():
            setter(k, to_device(v.astype(current[k].dtype, copy=False), model.device))
    model.set_rng_states(record["rng_states"])
    if optimizer is not None:
        saved = record.get("optimizer", "SGD")  # checkpoints before Adam hold SGD's state
        if saved != type(optimizer).__name__:
            raise ValueError(f"checkpoint {path} holds the state of {saved}, not of {type(optimizer).__name__}")
        optimizer.load_state_dict(_section(arrays, _OPTIM))
        optimizer.lr = record["lr"]
    if scheduler is not None and "scheduler" in record:
        scheduler.load_state_dict(record["scheduler"])
    return record
