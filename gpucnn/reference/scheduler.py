"""The NumPy backend's threads: the spans of chunked ops, and deferred work.

Two kinds of work share the workspace threads (``workspace.threads()`` in
all, the caller's included):

* a *job*: the spans of one ``run_spans`` call (the chunks of one op). The
  calling thread runs spans itself and idle workers take the next span from
  the same iterator (dynamic scheduling: a thread slowed by another process
  on its core takes fewer spans); the caller returns once every span is done.
* a *deferred task* (``defer``): work whose result nobody reads before the
  enclosing ``deferring()`` block ends, such as the filter gradients of a
  training step's backward pass, which no later layer of that pass reads.
  A worker runs it when no op has spans waiting, and between the task's own
  spans it takes an op's first: the chain of input gradients, layer after
  layer, keeps every thread it can use, while the memory-bound ops on it
  that do not speed up on two threads (batch norm, ReLU) leave a core to
  the filter gradients. The block's end waits for its tasks (helping with
  them) and raises the first error one of them raised.

A span's own ``run_spans`` (or ``defer``) runs serially: no nesting, so no
thread ever waits on work that only it could run.
"""
from __future__ import annotations

import collections
import contextlib
import contextvars
import os
import threading

_cv = threading.Condition()
_jobs: list = []  # running jobs, the critical ones (not from deferred tasks) first
_tasks: collections.deque = collections.deque()  # deferred tasks not started yet
_workers = [0]  # worker threads started
_running = [0]  # deferred tasks started and not finished
_local = threading.local()  # in_span, in_task: what this thread runs; depth, pending: its deferring blocks


class _Job:
    """The spans of one run_spans call: ``limit`` threads besides the caller may help."""
    __slots__ = ("fn", "it", "low", "limit", "active", "done", "error")

    def __init__(self, fn, spans, low: bool, limit: int):
        self.fn, self.it, self.low, self.limit = fn, iter(spans), low, limit
        self.active, self.done, self.error = 0, False, None

    def take(self):
        """The next span, or None when none is left (call with _cv held)."""
        if not self.done:
            span = next(self.it, None)
            if span is not None:
                return span
            self.done = True
        return None

    def run(self, span) -> None:
        """fn on span, _cv released meanwhile (call with _cv held); an error
        is kept for the caller and stops the handing out of spans."""
        _cv.release()
        _local.in_span = True
        try:
            self.fn(*span)
        except BaseException as e:
            err = e
        else:
            err = None
        finally:
            _local.in_span = False
            _cv.acquire()
        if err is not None:
            self.error = self.error or err
            self.done = True


class _Task:
    __slots__ = ("fn", "ctx", "finished", "error")

    def __init__(self, fn):
        # The caller's context: the backend chosen by use_backend, algorithm overrides.
        self.fn, self.ctx = fn, contextvars.copy_context()
        self.finished, self.error = False, None

    def run(self) -> None:
        """fn in the caller's context, _cv released meanwhile (call with _cv held)."""
        _running[0] += 1
        _cv.release()
        _local.in_task = True
        try:
            self.ctx.run(self.fn)
        except BaseException as e:
            self.error = e
        finally:
            _local.in_task = False
            _cv.acquire()
        _running[0] -= 1
        self.finished = True
        _cv.notify_all()


def _help(critical_only: bool = False) -> bool:
    """Run one span of the first job with a span left and room for a helper
    (critical jobs first); False if there was none (call with _cv held)."""
    for job in _jobs:
        if critical_only and job.low:
            break
        if job.active >= job.limit:
            continue
        span = job.take()
        if span is None:
            continue
        job.active += 1
        job.run(span)
        job.active -= 1
        if job.done and not job.active:
            _cv.notify_all()
        return True
    return False


def _serve(until) -> None:
    """Help jobs (critical first), else run queued tasks, else wait, until
    ``until()`` holds (call with _cv held)."""
    while not until():
        if _help():
            continue
        if _tasks:
            _tasks.popleft().run()
            continue
        _cv.wait()


def _worker() -> None:
    with _cv:
        _serve(lambda: False)


def _start(n: int) -> None:
    """At least ``n`` worker threads (call with _cv held)."""
    while _workers[0] < n:
        threading.Thread(target=_worker, name=f"gpucnn-{_workers[0]}", daemon=True).start()
        _workers[0] += 1


def _forget() -> None:
    """In a forked child the workers are gone: start afresh."""
    global _cv
    _cv = threading.Condition()
    _jobs.clear()
    _tasks.clear()
    _workers[0] = 0
    _running[0] = 0


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget)


def nested() -> bool:
    """Whether this thread is running a span (its ops then run serially)."""
    return getattr(_local, "in_span", False)


def busy() -> bool:
    """Whether deferred tasks are waiting or running."""
    return bool(_tasks) or _running[0] > 0


def active() -> bool:
    """Whether this thread is inside a ``deferring()`` block."""
    return bool(getattr(_local, "depth", 0))


def run(fn, spans, nthreads: int) -> None:
    """fn(*span) for each span on up to ``nthreads`` threads, this one included."""
    low = getattr(_local, "in_task", False)
    job = _Job(fn, spans, low, nthreads - 1)
    with _cv:
        _start(nthreads - 1)
        _jobs.insert(len(_jobs) if low else sum(not j.low for j in _jobs), job)
        _cv.notify_all()
        try:
            while True:
                # A deferred task's spans give way to the critical path's.
                if low and _help(critical_only=True):
                    continue
                span = job.take()
                if span is None:
                    break
                job.run(span)
            while job.active:  # spans that helpers took
                _cv.wait()
        finally:
            _jobs.remove(job)
    if job.error is not None:
        raise job.error


def defer(fn, nthreads: int) -> bool:
    """Queue fn() to run before the enclosing ``deferring()`` block ends, on
    a worker (or on this thread while the block ends); False, with nothing
    queued, outside such a block, with fewer than two threads, or from
    inside a span or a deferred task."""
    if nthreads < 2 or not getattr(_local, "depth", 0) or nested() or getattr(_local, "in_task", False):
        return False
    task = _Task(fn)
    _local.pending.append(task)
    with _cv:
        _start(1)
        _tasks.append(task)
        _cv.notify_all()
    return True


def _finish(tasks) -> None:
    """Wait for ``tasks``, running queued tasks and helping jobs meanwhile."""
    with _cv:
        _serve(lambda: all(t.finished for t in tasks))


@contextlib.contextmanager
def deferring():
    """A block whose deferred tasks (``defer``) are all done when it ends;
    blocks nest, and the outermost one waits. Then the first error of a
    task is raised, unless the block is already raising one."""
    depth = getattr(_local, "depth", 0)
    if not depth:
        _local.pending = []
    _local.depth = depth + 1
    try:
        yield
    except BaseException:
        if not depth:
            _finish(_local.pending)
        raise
    finally:
        _local.depth = depth
    if not depth:
        tasks, _local.pending = _local.pending, []
        _finish(tasks)
        for t in tasks:
            if t.error is not None:
                raise t.error
